"""CSV reading, atomic writes and plot helpers."""

import os

import numpy as np
import pytest

from genrec.foundations.io import read_points_csv
from genrec.foundations.plots import ellipse_params, plot_gmm_2d, plot_trace
from genrec.io import atomic_write_json, atomic_write_text


def test_read_points_csv_header_blank_lines_and_bom(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("\ufeffa,b,c\n1,2,3\n\n4,5,6e1\n", encoding="utf-8")
    X = read_points_csv(p)
    np.testing.assert_array_equal(X, [[1, 2, 3], [4, 5, 60]])
    q = tmp_path / "b.csv"
    q.write_text("1.5\n-2\n")
    np.testing.assert_array_equal(read_points_csv(q), [[1.5], [-2.0]])


def test_atomic_write_replaces_and_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": Boom()})  # json fails before anything is written
    assert target.read_text() == "second"
    assert os.listdir(tmp_path) == ["out.txt"]
    atomic_write_json(tmp_path / "n.json", {"a": np.arange(2), "b": np.float64(np.inf)})
    assert (tmp_path / "n.json").read_text().split() == [
        "{",
        '"a":',
        "[",
        "0,",
        "1",
        "],",
        '"b":',
        "null",
        "}",
    ]


def test_ellipse_params():
    w, h, ang = ellipse_params(np.diag([4.0, 1.0]), n_std=1.0)
    assert (w, h) == pytest.approx((4.0, 2.0))
    assert abs(np.sin(np.radians(ang))) < 1e-12  # major axis along x
    w, h, ang = ellipse_params(np.array([[2.0, 1.0], [1.0, 2.0]]), n_std=2.0)
    assert (w, h) == pytest.approx((4 * np.sqrt(3.0), 4.0))
    assert abs(np.tan(np.radians(ang)) - 1.0) < 1e-9  # along the diagonal


def test_plots_write_png(tmp_path):
    plot_trace([1.0, 2.0, 2.5], tmp_path / "t.png", "bound")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    plot_gmm_2d(
        X,
        rng.integers(2, size=50),
        np.array([0.5, 0.5]),
        np.zeros((2, 3)),
        np.stack([np.eye(3)] * 2),
        "full",
        tmp_path / "e.png",
    )
    for name in ("t.png", "e.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"

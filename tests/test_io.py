"""genrec.io: strict JSON and atomic writes."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from genrec.io import atomic_write_files, atomic_write_json, jsonable, to_json


def _strict_loads(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_jsonable_converts_numpy_paths_and_non_finite_floats():
    obj = {
        1: np.float32(np.nan),
        "inf": [float("inf"), -math.inf],
        "t": (np.int64(3), np.bool_(True)),
        "a": np.array([[0.5, np.nan]]),
        "p": Path("x") / "y",
        "s": "nan",
    }
    assert jsonable(obj) == {
        "1": None,
        "inf": [None, None],
        "t": [3, True],
        "a": [[0.5, None]],
        "p": str(Path("x") / "y"),
        "s": "nan",
    }
    assert type(jsonable(np.bool_(False))) is bool
    assert type(jsonable(np.int32(7))) is int


def test_to_json_is_strict_and_one_line_without_indent():
    text = to_json({"loss": float("nan"), "k": [1, 2]}, indent=None)
    assert text.endswith("\n") and text.count("\n") == 1
    assert _strict_loads(text) == {"loss": None, "k": [1, 2]}


def test_atomic_write_json_writes_nothing_when_serialisation_fails(tmp_path):
    target = tmp_path / "o.json"
    atomic_write_json(target, {"ok": np.float64(-np.inf)})
    assert _strict_loads(target.read_text()) == {"ok": None}
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert _strict_loads(target.read_text()) == {"ok": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]


def test_check_writable_names_the_option_and_the_blocking_file(tmp_path):
    from genrec.errors import ConfigError
    from genrec.io import check_writable

    a_file = tmp_path / "log.csv"
    a_file.write_text("x")
    check_writable(None, "--out")  # nothing asked: nothing to check
    check_writable(tmp_path / "new" / "deeper" / "r.json", "--output")  # folders get made
    with pytest.raises(ConfigError, match=r"^--output .*log.csv is a file, not a folder"):
        check_writable(a_file / "r.json", "--output")
    with pytest.raises(ConfigError, match="--out .* is a file, not a folder"):
        check_writable(a_file, "--out", folder=True)
    check_writable(a_file, "--output")  # a file to replace is fine


def test_atomic_write_files_lands_all_or_nothing(tmp_path):
    folder = tmp_path / "out"
    atomic_write_files(folder, {"a.txt": "caf\u00e9", "b.bin": b"\x00\x01"})
    assert (folder / "a.txt").read_text(encoding="utf-8") == "caf\u00e9"
    assert (folder / "b.bin").read_bytes() == b"\x00\x01"
    for bad in (
        {"c.txt": 3, "a.txt": "new", "b.bin": b"new"},  # fails first or last
        {"a.txt": "new", "b.bin": b"new", "c.txt": 3},
    ):
        with pytest.raises(TypeError):  # an int is no file content
            atomic_write_files(folder, bad)
    assert (folder / "a.txt").read_text(encoding="utf-8") == "caf\u00e9"
    assert (folder / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.bin"]  # no temp left


def test_atomic_write_files_renames_in_the_order_given(tmp_path, monkeypatch):
    import os

    renamed = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b).name), real(a, b)))
    atomic_write_files(tmp_path, {"z": "1", "a": "2", "m": "3"})
    assert renamed == ["z", "a", "m"]


def test_save_arrays_round_trips_and_refuses_the_name_numpy_takes_as_its_flag(tmp_path):
    from genrec.io import load_arrays, save_arrays

    target = tmp_path / "w.npz"
    arrays = {"a": np.arange(3, dtype=np.int64), "b": np.array(["x", "yz"])}
    save_arrays(target, arrays)
    back = load_arrays(target)
    assert sorted(back) == ["a", "b"]
    np.testing.assert_array_equal(back["a"], arrays["a"])
    np.testing.assert_array_equal(back["b"], arrays["b"])
    # numpy.savez reads a keyword allow_pickle as its flag: the array would be dropped
    with pytest.raises(TypeError, match="allow_pickle"):
        save_arrays(target, {"allow_pickle": np.ones(2), "c": np.zeros(1)})
    assert sorted(load_arrays(target)) == ["a", "b"]  # the previous file is untouched
    with pytest.raises(TypeError, match="dtype object"):
        save_arrays(target, {"o": np.array([None, 1], dtype=object)})


def test_a_compressed_npz_that_inflates_far_beyond_its_size_is_refused(tmp_path):
    """A 4 MB weights.npz that inflates to a 32768 x 32768 matrix ran at 8.7 GB."""
    import numpy as np
    import pytest

    from genrec.errors import DataError
    from genrec.io import load_arrays, save_arrays

    bomb = tmp_path / "weights.npz"
    np.savez_compressed(bomb, B=np.zeros((4000, 4000), np.float32))  # 64 MB in ~60 KB
    with pytest.raises(DataError, match="declares 61 MiB of arrays"):
        load_arrays(bomb)
    honest = tmp_path / "ok.npz"
    save_arrays(honest, {"B": np.ones((300, 300), np.float32)})
    assert load_arrays(honest)["B"].shape == (300, 300)

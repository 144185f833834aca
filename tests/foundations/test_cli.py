"""The ``foundations`` click group, driven with CliRunner."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from genrec.cli.foundations import foundations_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def runner():
    return CliRunner()


def run(runner, args):
    return runner.invoke(foundations_cli, args, catch_exceptions=False)


@pytest.mark.parametrize("command", ["gmm", "vbgmm", "beta"])
def test_help(runner, command):
    result = run(runner, [command, "--help"])
    assert result.exit_code == 0
    assert "--seed" in result.output and "--out" in result.output and "--output" in result.output


def test_gmm_synthetic_writes_plots_and_json(runner, tmp_path):
    out = tmp_path / "plots"
    js = tmp_path / "res.json"
    result = run(
        runner,
        [
            "gmm",
            "-k",
            "3",
            "--n-samples",
            "300",
            "--covariance-type",
            "diag",
            "--seed",
            "1",
            "--out",
            str(out),
            "--output",
            str(js),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "log-likelihood per iteration" in result.output and "BIC" in result.output
    for name in ("gmm_trace.png", "gmm_ellipses.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    payload = json.loads(js.read_text())
    assert payload["params"]["covariance_type"] == "diag"
    assert len(payload["weights"]) == 3 and abs(sum(payload["weights"]) - 1) < 1e-9
    assert len(payload["lower_bounds"]) == payload["n_iter"]
    assert np.all(np.diff(payload["lower_bounds"]) >= -1e-9)
    assert not list(out.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_gmm_plot_failing_late_leaves_the_earlier_plots(runner, tmp_path, monkeypatch):
    """The ellipse plot is drawn after the trace: when it fails, the folder keeps the earlier
    run's pair (no new trace beside an old ellipse plot), and no temp file is left."""
    from genrec.foundations import plots

    out = tmp_path / "plots"
    args = ["gmm", "-k", "2", "--n-samples", "200", "--seed", "1", "--out", str(out)]
    assert run(runner, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "plot_gmm_2d", fail)
    result = run(runner, [*args[:-3], "7", "--out", str(out)])  # another seed: another trace
    assert result.exit_code != 0 and "No space left" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_gmm_from_csv_with_and_without_header(runner, tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-5, 1, (60, 2)), rng.normal(5, 1, (60, 2))])
    with_header = tmp_path / "h.csv"
    with_header.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in X) + "\n")
    without = tmp_path / "n.csv"
    without.write_text("\n".join(f"{a},{b}" for a, b in X) + "\n")
    outs = []
    for path in (with_header, without):
        js = tmp_path / f"{path.stem}.json"
        result = run(runner, ["gmm", "-k", "2", "--csv", str(path), "--output", str(js)])
        assert result.exit_code == 0, result.output
        outs.append(json.loads(js.read_text()))
        assert outs[-1]["n_samples"] == 120
    assert outs[0]["means"] == outs[1]["means"]
    assert sorted(round(m[0]) for m in outs[0]["means"]) == [-5, 5]


def test_vbgmm_prunes_components(runner, tmp_path):
    js = tmp_path / "vb.json"
    result = run(
        runner,
        [
            "vbgmm",
            "-k",
            "8",
            "--true-k",
            "3",
            "--separation",
            "6",
            "--weight-concentration",
            "0.001",
            "--max-iter",
            "500",
            "--out",
            str(tmp_path),
            "--output",
            str(js),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ELBO per iteration" in result.output
    payload = json.loads(js.read_text())
    assert payload["effective_components"] == 3
    assert np.all(np.diff(payload["lower_bounds"]) >= -1e-9 * np.abs(payload["lower_bounds"][1:]))
    assert (tmp_path / "vbgmm_ellipses.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_beta_simulated(runner, tmp_path):
    js = tmp_path / "beta.json"
    result = run(
        runner,
        [
            "beta",
            "--rounds",
            "3",
            "--draws-per-round",
            "8",
            "--steps",
            "400",
            "--out",
            str(tmp_path),
            "--output",
            str(js),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "posterior per round" in result.output
    payload = json.loads(js.read_text())
    assert len(payload["rounds"]) == 3
    for r in payload["rounds"]:
        assert r["kl_closed_form"] < 1e-3
        assert (
            abs(r["kl_start_closed_form"] - r["kl_start_monte_carlo"])
            < 5 * r["kl_start_monte_carlo_se"]
        )
    for name in ("beta_posteriors.png", "beta_trace.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_beta_from_csv_two_columns(runner, tmp_path):
    path = tmp_path / "draws.csv"
    path.write_text("round,outcome\n1,1\n1,0\n1,1\n2,1\n2,1\n")
    js = tmp_path / "b.json"
    result = run(runner, ["beta", "--csv", str(path), "--steps", "300", "--output", str(js)])
    assert result.exit_code == 0, result.output
    rounds = json.loads(js.read_text())["rounds"]
    assert [r["counts"] for r in rounds] == [[2, 1], [4, 1]]
    assert rounds[1]["exact_posterior"] == [5.0, 2.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x,y\n1,2\n3\n", "line 3: expected 2 columns, found 1"),
        ("1,2\n3,abc\n", "line 2: non-numeric value"),
        ("1,2\nnan,3\n", "line 2: NaN or infinite value"),
        ("x,y\n", "has a header but no data rows"),
        ("", "contains no data rows"),
    ],
)
def test_malformed_csv_is_a_one_line_error(runner, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = runner.invoke(foundations_cli, ["gmm", "--csv", str(path)])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_bad_input_errors_are_one_line(runner, tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("1,2\n3,4\n5,6\n")
    cases = [
        (["gmm", "--csv", str(path), "-k", "5"], "n_components=5 is larger than the number"),
        (["gmm", "--csv", str(tmp_path / "missing.csv")], "cannot read"),
        # three collinear points: the default Wishart prior (data covariance) is singular
        (["vbgmm", "--csv", str(path), "-k", "2"], "the default covariance_prior (the data"),
        (["gmm", "--true-k", "50", "--n-samples", "10"], "--true-k 50 is larger than --n-samples"),
    ]
    for args, message in cases:
        result = runner.invoke(foundations_cli, args)
        assert result.exit_code == 1
        assert message in result.output and "Traceback" not in result.output
        assert result.output.count("\n") == 1
    bad = tmp_path / "beta.csv"
    bad.write_text("0\n1\n2\n")
    result = runner.invoke(foundations_cli, ["beta", "--csv", str(bad)])
    assert result.exit_code == 1 and "outcomes other than 0" in result.output
    result = runner.invoke(foundations_cli, ["gmm", "--covariance-type", "banana"])
    assert result.exit_code == 2  # click's own usage error


@pytest.mark.parametrize("command", ["gmm", "vbgmm", "beta"])
@pytest.mark.parametrize("option", ["--out", "--output"])
def test_output_path_under_a_file_fails_before_fitting(runner, tmp_path, command, option):
    (tmp_path / "afile").write_text("x")
    plots = tmp_path / "plots"
    other = ["--output", str(tmp_path / "r.json")] if option == "--out" else ["--out", str(plots)]
    args = [command, option, str(tmp_path / "afile" / "sub"), *other]
    result = runner.invoke(foundations_cli, args + (["--steps", "5"] if command == "beta" else []))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {option} ")
    assert "is a file, not a folder" in result.output
    assert result.output.count("\n") == 1  # nothing fitted or printed before the error
    assert not plots.exists() and not (tmp_path / "r.json").exists()


def test_beta_diverging_learning_rate_is_a_one_line_error(runner):
    result = runner.invoke(foundations_cli, ["beta", "--rounds", "1", "--lr", "1e6"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "diverged" in result.output and "lr" in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["gmm", "--seed", "-1"],
        ["vbgmm", "--seed", "-1"],
        ["beta", "--seed", "-1"],
        ["beta", "--seed", str(2**64 - 1), "--steps", "2"],
    ],
)
def test_out_of_range_seed_is_a_usage_error_naming_the_option(runner, args):
    result = runner.invoke(foundations_cli, args)
    assert result.exit_code == 2 and "--seed" in result.output, result.output

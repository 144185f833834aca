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


# --------------------------------------------------------------------------- what the demos show
def _table_rows(output, title):
    """The cells of the rich table printed under ``title``: (header, rows)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    header, rows = None, []
    for line in lines[start + 1 :]:
        if line.startswith("┃") and header is None:
            header = [c.strip() for c in line.strip("┃").split("┃")]
        elif line.startswith("│"):
            rows.append([c.strip() for c in line.strip("│").split("│")])
        elif line.startswith("└"):
            break
    return header, rows


def test_default_gmm_command_trace_climbs_over_at_least_five_iterations(runner, tmp_path):
    js = tmp_path / "gmm.json"
    result = run(runner, ["gmm", "-k", "3", "--output", str(js)])  # the README's example
    assert result.exit_code == 0, result.output
    bounds = np.array(json.loads(js.read_text())["lower_bounds"])
    assert len(bounds) >= 5 and np.all(np.diff(bounds) > 0)
    assert bounds[-1] - bounds[0] > 1e-2  # ten times the default tol
    header, rows = _table_rows(result.output, "log-likelihood per iteration")
    assert header[-1] == "gain since iteration 1"
    gains = [float(r[-1]) for r in rows]
    assert gains[0] == 0.0 and gains[-1] == pytest.approx(bounds[-1] - bounds[0], abs=1e-6)


def test_random_init_stopping_at_a_symmetric_saddle_warns(runner):
    result = run(runner, ["gmm", "-k", "3", "--init", "random"])
    assert result.exit_code == 0, result.output
    assert "True (at a saddle: see the warning)" in result.output
    warning = " ".join(result.output.split("warning:")[1].split())
    assert "stopped at a saddle" in warning and "components 0, 1, 2 are copies" in warning


def test_default_gmm_command_warns_of_no_saddle(runner):
    result = run(runner, ["gmm", "-k", "3"])
    assert result.exit_code == 0 and "saddle" not in result.output


def test_vbgmm_command_says_which_emptied_components_are_not_drawn(runner, tmp_path):
    js = tmp_path / "vb.json"
    result = run(runner, ["vbgmm", "-k", "8", "--output", str(js)])
    assert result.exit_code == 0, result.output
    payload = json.loads(js.read_text())
    hidden = [k for k, w in enumerate(payload["weights"]) if w < 0.01]
    assert hidden and payload["components_not_drawn"] == hidden
    note = " ".join(result.output.split())
    names = ", ".join(map(str, hidden))
    assert (
        f"{len(hidden)} emptied components (weight < 0.01) are left out of the ellipse plot: "
        f"{names}"
    ) in note


def test_fmt_kl_clips_rounding_below_zero_for_display_only():
    from genrec.cli.foundations_render import fmt_kl

    assert fmt_kl(-2e-15) == "0" and fmt_kl(-2e-15, ".6f") == "0"
    assert fmt_kl(7.9e-16) == "7.9e-16" and fmt_kl(0.1221, ".4f") == "0.1221"


def test_negative_kl_rounding_prints_as_zero(tmp_path):
    import dataclasses
    import io

    from rich.console import Console

    from genrec.cli.foundations_render import print_beta
    from genrec.foundations.demos import run_beta_demo

    demo = run_beta_demo([[1, 0, 1], [1, 1]], steps=40, mc_draws=64)
    rounds = tuple(dataclasses.replace(r, kl=-2e-15) for r in demo.rounds)
    splits = tuple(dataclasses.replace(s, kl_posterior=-2e-15) for s in demo.elbo_splits)
    last = demo.final_trace[-1]
    trace = (*demo.final_trace[:-1], (last[0], last[1], -2e-15))
    demo = dataclasses.replace(demo, rounds=rounds, elbo_splits=splits, final_trace=trace)
    buf = io.StringIO()
    print_beta(Console(file=buf, width=150), demo)
    out = buf.getvalue()
    assert "e-15" not in out  # no -2.0e-15 anywhere
    header, rows = _table_rows(out, "posterior per round")
    assert [r[header.index("KL(q||p)")] for r in rows] == ["0", "0"]
    header, rows = _table_rows(out, "ELBO per step")
    assert rows[-1][-1] == "0"
    header, rows = _table_rows(out, "in its terms")
    assert [r[header.index("KL(q||posterior)")] for r in rows] == ["0", "0"]
    assert demo.payload()["rounds"][0]["kl_closed_form"] == -2e-15  # the results stay exact


def _check_printed_elbo_terms(output, n_terms, log_evidence=True):
    header, rows = _table_rows(output, "in its terms")
    at = header.index("= ELBO")
    assert at == 1 + n_terms and rows
    for row in rows:
        terms = [float(x) for x in row[1:at]]
        assert sum(terms) == pytest.approx(float(row[at]), abs=1e-6 * n_terms)  # printed to 1e-6
        if log_evidence:
            elbo, kl, evidence = (float(x) for x in row[at : at + 3])
            assert elbo + kl == pytest.approx(evidence, abs=2e-6)
    return header, rows


def test_gmm_command_prints_elbo_terms_that_sum_to_the_elbo(runner, tmp_path):
    js = tmp_path / "gmm.json"
    result = run(runner, ["gmm", "-k", "3", "--output", str(js)])
    header, rows = _check_printed_elbo_terms(result.output, 3)
    assert [r[0] for r in rows] == ["posterior p(z|x)", "hard labels"]
    assert float(rows[0][-1]) == pytest.approx(
        json.loads(js.read_text())["log_likelihood"], abs=1e-6
    )


def test_vbgmm_command_prints_elbo_terms_that_sum_to_the_elbo(runner):
    result = run(runner, ["vbgmm", "-k", "4"])
    assert result.exit_code == 0, result.output
    _check_printed_elbo_terms(result.output, 5, log_evidence=False)


def test_beta_command_prints_elbo_terms_that_sum_to_the_elbo(runner):
    result = run(runner, ["beta", "--rounds", "2", "--steps", "30", "--mc-samples", "8"])
    assert result.exit_code == 0, result.output
    header, rows = _check_printed_elbo_terms(result.output, 2)
    assert [r[0] for r in rows] == ["round 1", "round 2"]

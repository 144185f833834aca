"""The demonstrations behind ``genrec foundations``: library functions, checked against closed
forms and the models they wrap."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import betaln

from genrec.errors import ConfigError
from genrec.foundations import (
    BayesianGaussianMixture,
    ConvergenceWarning,
    GaussianMixture,
    kl_beta,
    make_gaussian_mixture,
    simulate_jar,
)
from genrec.foundations.demos import (
    BetaDemo,
    MixtureDemo,
    Points,
    SimulatedJar,
    SyntheticPoints,
    component_summaries,
    fit_capturing_warnings,
    load_points,
    read_jar_csv,
    run_beta_demo,
    run_mixture_demo,
)
from genrec.io import to_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- points
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_samples": 10, "true_k": 50}, "true_k=50 is larger than n_samples=10"),
        ({"n_samples": 0}, "n_samples=0 must be >= 1"),
        ({"n_features": 0}, "n_features=0 must be >= 1"),
        ({"separation": -1.0}, "separation=-1.0 must be >= 0"),
    ],
)
def test_synthetic_points_range_errors_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticPoints(**fields)


def test_load_points_synthetic_is_the_generator_with_the_same_seed():
    points = load_points(
        SyntheticPoints(n_samples=50, true_k=2, n_features=3, separation=4.0, seed=4)
    )
    truth = make_gaussian_mixture(50, 2, 3, separation=4.0, random_state=4)
    np.testing.assert_array_equal(points.X, truth.X)
    np.testing.assert_array_equal(points.info["synthetic"]["truth"]["means"], truth.means)
    assert points.info["synthetic"]["seed"] == 4
    assert points.description == "synthetic: 50 points from 2 Gaussians in 3-D (seed 4)"


def test_load_points_from_csv_and_from_an_array(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b\n1,2\n3,4.5\n")
    points = load_points(path)
    np.testing.assert_array_equal(points.X, [[1.0, 2.0], [3.0, 4.5]])
    assert points.info == {"csv": str(path)} and "2 points, 2 features" in points.description
    X = np.arange(6.0).reshape(3, 2)
    given = load_points(X)
    np.testing.assert_array_equal(given.X, X)
    assert given.info == {"array": [3, 2]}


# --------------------------------------------------------------------------- summaries
def test_component_summaries_sort_by_weight_and_take_each_covariance_layout():
    weights = np.array([0.2, 0.5, 0.3])
    means = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    full = np.stack([np.array([[k + 1.0, 0.5], [0.5, k + 2.0]]) for k in range(3)])
    rows = component_summaries(weights, means, full, "full")
    assert [r.index for r in rows] == [1, 2, 0]
    assert [r.weight for r in rows] == [0.5, 0.3, 0.2]
    np.testing.assert_array_equal(rows[0].mean, [2.0, 3.0])
    np.testing.assert_array_equal(rows[0].spread, [2.0, 3.0])  # diagonal of component 1
    tied = np.array([[7.0, 1.0], [1.0, 8.0]])
    assert all(
        list(r.spread) == [7.0, 8.0] for r in component_summaries(weights, means, tied, "tied")
    )
    diag = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert list(component_summaries(weights, means, diag, "diag")[1].spread) == [5.0, 6.0]
    spherical = np.array([0.1, 0.2, 0.3])
    rows = component_summaries(weights, means, spherical, "spherical")
    assert [r.spread.tolist() for r in rows] == [[0.2], [0.3], [0.1]]


class _Warns:
    """A stand-in model whose fit warns twice: one convergence warning, one other."""

    def fit_predict(self, X):
        warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        return np.zeros(len(X), dtype=int)


def test_fit_capturing_warnings_keeps_convergence_notes_and_reemits_the_rest():
    with pytest.warns(UserWarning, match="something else") as record:
        labels, notes = fit_capturing_warnings(_Warns(), np.zeros((4, 2)))
    assert notes == ("did not converge",)
    assert not [w for w in record if issubclass(w.category, ConvergenceWarning)]
    np.testing.assert_array_equal(labels, [0, 0, 0, 0])


# --------------------------------------------------------------------------- mixtures
def _closed_form_loglik(X, weights, means, covariances):
    dens = sum(
        w * stats.multivariate_normal(m, c).pdf(X) for w, m, c in zip(weights, means, covariances)
    )
    return float(np.sum(np.log(dens)))


def test_gmm_demo_numbers_match_closed_forms():
    data = SyntheticPoints(n_samples=240, true_k=2, n_features=2, separation=4.0, seed=3)
    demo = run_mixture_demo(GaussianMixture(2, random_state=3), data)
    assert isinstance(demo, MixtureDemo) and demo.kind == "gmm"
    m, X = demo.model, demo.points.X
    loglik = _closed_form_loglik(X, m.weights_, m.means_, m.covariances_)
    assert demo.log_likelihood == pytest.approx(loglik, rel=1e-10)
    n_params = (2 - 1) + 2 * 2 + 2 * 3  # weights, means, full 2x2 covariances
    assert demo.bic == pytest.approx(-2 * loglik + n_params * math.log(240), rel=1e-10)
    assert demo.aic == pytest.approx(-2 * loglik + 2 * n_params, rel=1e-10)
    assert demo.elbo is None and demo.effective_components is None
    np.testing.assert_array_equal(demo.labels, m.predict(X))
    assert demo.trace.values == tuple(m.lower_bounds_)
    assert np.all(np.diff(demo.trace.values) >= -1e-12)  # EM never decreases the likelihood
    assert demo.trace.values[-1] == pytest.approx(loglik / 240, rel=1e-8)
    assert [c.index for c in demo.components] == list(np.argsort(-m.weights_))


def test_gmm_demo_reports_a_convergence_warning_as_a_note():
    X = make_gaussian_mixture(200, 3, 2, random_state=0).X
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # none may escape
        demo = run_mixture_demo(GaussianMixture(3, max_iter=1, tol=0.0, random_state=0), X)
    assert len(demo.notes) == 1 and not demo.model.converged_
    assert demo.payload()["warnings"] == list(demo.notes)


def test_vbgmm_demo_counts_effective_components_and_its_elbo_never_decreases():
    data = SyntheticPoints(n_samples=600, true_k=3, separation=6.0, seed=0)
    model = BayesianGaussianMixture(
        8, weight_concentration_prior=1e-3, max_iter=500, random_state=0
    )
    demo = run_mixture_demo(model, data)
    assert demo.kind == "vbgmm" and demo.log_likelihood is None
    assert demo.effective_components == int(np.sum(model.weights_ > 0.01)) == 3
    assert demo.elbo == model.lower_bound_
    values = np.array(demo.trace.values)
    assert np.all(np.diff(values) >= -1e-9 * np.abs(values[1:]))
    payload = demo.payload()
    assert payload["effective_components"] == 3 and "weight_concentration" in payload


def test_mixture_payload_is_strict_json_and_describes_the_fit(tmp_path):
    demo = run_mixture_demo(
        GaussianMixture(2, covariance_type="diag", random_state=1),
        SyntheticPoints(n_samples=100, true_k=2, seed=1),
    )
    payload = json.loads(to_json(demo.payload()))
    assert payload["command"] == "gmm" and payload["params"]["covariance_type"] == "diag"
    assert payload["n_samples"] == 100 and len(payload["labels"]) == 100
    assert payload["lower_bounds"] == list(demo.trace.values)
    assert payload["data"]["synthetic"]["true_k"] == 2
    assert abs(sum(payload["weights"]) - 1) < 1e-12


def test_mixture_plots_are_drawn_only_when_asked(monkeypatch):
    from genrec.foundations import plots

    calls = []
    real = plots.plot_trace
    monkeypatch.setattr(plots, "plot_trace", lambda *a, **k: (calls.append(a), real(*a, **k)))
    demo = run_mixture_demo(
        GaussianMixture(2, random_state=0), SyntheticPoints(n_samples=60, true_k=2, seed=0)
    )
    assert calls == []
    files = demo.plot_files()
    assert list(files) == ["gmm_trace.png", "gmm_ellipses.png"]
    assert all(b[:8] == PNG_MAGIC for b in files.values()) and len(calls) == 1


def test_run_mixture_demo_takes_loaded_points_and_refuses_other_models():
    points = Points(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]), "four", {})
    demo = run_mixture_demo(GaussianMixture(2, random_state=0), points)
    assert demo.points is points
    with pytest.raises(TypeError, match="GaussianMixture or a BayesianGaussianMixture"):
        run_mixture_demo(object(), points)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the jar
def test_read_jar_csv_one_column_is_cut_into_rounds(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1\n0\n1\n1\n1\n0\n0\n")
    rounds = read_jar_csv(path, 3)
    assert [r.tolist() for r in rounds] == [[1, 0, 1], [1, 1, 0], [0]]
    assert all(r.dtype == np.int64 for r in rounds)


def test_read_jar_csv_two_columns_keep_rounds_in_order_of_first_appearance(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("round,outcome\n7,1\n7,0\n2,1\n7,1\n2,0\n")
    assert [r.tolist() for r in read_jar_csv(path, 10)] == [[1, 0, 1], [1, 0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3\n", "expected 1 column"),
        ("0\n1\n2\n", "round 1 has outcomes other than 0"),
    ],
)
def test_read_jar_csv_errors(tmp_path, content, message):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_jar_csv(path, 10)


def test_simulated_jar_range_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"rate=1.5 must be in \[0, 1\]"):
        SimulatedJar(rate=1.5)
    with pytest.raises(ConfigError, match="n_rounds=0 must be >= 1"):
        SimulatedJar(n_rounds=0)


def _log_evidence(a0, b0, c, v):
    return betaln(a0 + c, b0 + v) - betaln(a0, b0)


def test_beta_demo_posteriors_and_kls_match_the_closed_forms():
    demo = run_beta_demo(
        SimulatedJar(rate=0.6, n_rounds=3, draws_per_round=8, seed=2),
        prior_a=2.0,
        prior_b=3.0,
        steps=300,
        seed=2,
    )
    assert isinstance(demo, BetaDemo)
    rounds = simulate_jar(0.6, 3, 8, random_state=2)
    c = v = 0
    q0 = (2.0, 3.0)
    for r, draws in zip(demo.rounds, rounds):
        np.testing.assert_array_equal(r.draws, draws)
        c, v = c + int(draws.sum()), v + int(draws.size - draws.sum())
        assert r.counts == (c, v)
        assert r.exact_posterior == (2.0 + c, 3.0 + v)
        assert r.log_evidence == pytest.approx(_log_evidence(2.0, 3.0, c, v), rel=1e-12)
        assert r.kl == pytest.approx(
            kl_beta(*r.variational_posterior, *r.exact_posterior), abs=1e-12
        )
        assert r.elbo == pytest.approx(r.log_evidence - r.kl, abs=1e-9)
        assert r.kl_start == pytest.approx(kl_beta(*q0, *r.exact_posterior), abs=1e-12)
        assert abs(r.kl_start_mc - r.kl_start) < 5 * r.kl_start_mc_se
        assert len(r.elbo_trace) == 300
        q0 = r.variational_posterior


def test_beta_demo_final_trace_is_the_last_rounds_elbo_gap():
    demo = run_beta_demo([[1, 0, 1, 1], [1, 1]], steps=30, seed=0)
    last = demo.rounds[-1]
    assert [s for s, _, _ in demo.final_trace] == [1, 2, 3, 6, 11, 21, 30]
    for step, value, gap in demo.final_trace:
        assert value == last.elbo_trace[step - 1]
        assert gap == pytest.approx(last.log_evidence - value, abs=1e-15)
    assert demo.description == "2 given rounds"


def test_beta_demo_is_reproducible_and_its_payload_strict_json(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("round,outcome\n1,1\n1,0\n1,1\n2,1\n2,1\n")
    a = run_beta_demo(path, steps=50, seed=5, estimator="score")
    b = run_beta_demo(path, steps=50, seed=5, estimator="score")
    pa, pb = a.payload(), b.payload()
    pa.pop("created"), pb.pop("created")
    assert to_json(pa) == to_json(pb)
    payload = json.loads(to_json(a.payload()))
    assert [r["counts"] for r in payload["rounds"]] == [[2, 1], [4, 1]]
    assert payload["rounds"][1]["exact_posterior"] == [5.0, 2.0]
    assert payload["data"] == f"{path} (2 rounds)" and payload["estimator"] == "score"
    files = a.plot_files()
    assert list(files) == ["beta_posteriors.png", "beta_trace.png"]
    assert all(v[:8] == PNG_MAGIC for v in files.values())


def test_the_foundations_package_imports_no_command_line_library():
    import subprocess
    import sys

    code = (
        "import sys, genrec.foundations, genrec.foundations.demos; "
        "print(sorted(m for m in ('click', 'rich') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- the demos' story
def _drawn_figures(monkeypatch, demo):
    """The matplotlib figures ``demo.plot_files()`` renders, in order."""
    from genrec.foundations import plots

    figures = []
    real = plots.save_figure
    monkeypatch.setattr(
        plots, "save_figure", lambda fig, path: (figures.append(fig), real(fig, path))
    )
    demo.plot_files()
    return figures


def test_default_gmm_demo_trace_climbs_over_at_least_five_iterations():
    # what `genrec foundations gmm -k 3` fits: the default data, k-means++ from seed 0
    demo = run_mixture_demo(GaussianMixture(3, random_state=0), SyntheticPoints())
    values = np.array(demo.trace.values)
    assert len(values) >= 5 and demo.model.converged_
    assert np.all(np.diff(values) > 0)  # every iteration gains
    assert values[-1] - values[0] > 10 * demo.model.tol  # a climb, not rounding


def test_trace_plot_shows_the_gain_since_iteration_one_without_an_offset_axis(monkeypatch):
    demo = run_mixture_demo(GaussianMixture(3, random_state=0), SyntheticPoints())
    trace_fig = _drawn_figures(monkeypatch, demo)[0]
    ax = trace_fig.axes[0]
    values = np.array(demo.trace.values)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), values - values[0], atol=1e-15)
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    assert "iteration 1" in ax.get_ylabel()


def test_emptied_vbgmm_components_are_not_drawn_and_the_plot_says_so(monkeypatch):
    from matplotlib.patches import Ellipse

    demo = run_mixture_demo(BayesianGaussianMixture(8, random_state=0), SyntheticPoints())
    weights = demo.model.weights_
    hidden = tuple(int(k) for k in np.flatnonzero(weights < 0.01))
    assert hidden and np.any((weights > 1e-3) & (weights < 0.01))  # emptied but above 1e-3
    assert demo.hidden_components == hidden
    assert demo.payload()["components_not_drawn"] == list(hidden)
    ellipse_ax = _drawn_figures(monkeypatch, demo)[1].axes[0]
    drawn = [p for p in ellipse_ax.patches if isinstance(p, Ellipse)]
    assert len(drawn) == 2 * (len(weights) - len(hidden))  # 1- and 2-sigma per drawn one
    title = ellipse_ax.get_title()
    assert "not drawn" in title and ", ".join(map(str, hidden)) in title


def test_beta_plot_draws_q_above_its_exact_posterior(monkeypatch):
    demo = run_beta_demo([[1, 0, 1], [1, 1]], steps=40, mc_draws=64)
    ax = _drawn_figures(monkeypatch, demo)[0].axes[0]
    lines = ax.lines[1:]  # after the prior: (exact p, q) per round
    assert len(lines) == 4
    for p_line, q_line in zip(lines[::2], lines[1::2]):
        assert q_line.get_zorder() > p_line.get_zorder()
        assert q_line.get_linewidth() < p_line.get_linewidth() and p_line.get_alpha() < 1


def test_a_random_init_that_stops_at_a_symmetric_saddle_is_reported():
    demo = run_mixture_demo(
        GaussianMixture(3, init_params="random", random_state=0), SyntheticPoints()
    )
    assert demo.model.converged_ and demo.saddle is not None
    assert demo.saddle.groups == ((0, 1, 2),)
    payload = demo.payload()
    assert payload["saddle"]["split_bound"] > payload["saddle"]["bound"]
    assert demo.saddle.message() in payload["warnings"]


def test_gmm_demo_elbo_terms_sum_to_the_elbo_and_give_the_log_likelihood():
    demo = run_mixture_demo(GaussianMixture(3, random_state=0), SyntheticPoints())
    posterior, hard = demo.elbo_splits
    for split in demo.elbo_splits:
        assert split.elbo == pytest.approx(sum(v for _, v in split.terms), rel=1e-14)
        assert split.elbo + split.kl_posterior == pytest.approx(demo.log_likelihood, rel=1e-12)
    assert abs(posterior.kl_posterior) < 1e-8 and hard.kl_posterior > 1.0
    assert dict(hard.terms)["H[q(z)]"] == 0.0
    json.loads(to_json(demo.payload()))  # the terms are strict JSON


def test_vbgmm_demo_elbo_terms_sum_to_the_full_elbo():
    demo = run_mixture_demo(BayesianGaussianMixture(3, random_state=0), SyntheticPoints())
    (split,) = demo.elbo_splits
    assert split.log_evidence is None and len(split.terms) == 5
    assert split.elbo == pytest.approx(demo.model.elbo(demo.points.X), rel=1e-12)


def test_beta_demo_elbo_terms_sum_to_each_rounds_elbo():
    demo = run_beta_demo([[1, 0, 1], [1, 1]], steps=40, mc_draws=64)
    for split, r in zip(demo.elbo_splits, demo.rounds):
        assert split.elbo == pytest.approx(r.elbo, rel=1e-12)
        assert split.elbo + split.kl_posterior == pytest.approx(r.log_evidence, rel=1e-12)

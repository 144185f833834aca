"""``genrec foundations gmm|vbgmm|beta``: run the foundations models and show their bounds.

The group is ``foundations_cli`` (a ``click.Group`` named ``foundations``). Bad input is
reported as a one-line ``click.ClickException`` (exit status 1, no traceback).
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.markup import escape

from genrec.io import (  # check_writable raises a ConfigError: reported as the others
    atomic_write_files,
    atomic_write_json,
    check_writable,
)

__all__ = ["foundations_cli", "foundations_group"]

_MAX_DIMS_SHOWN = 6
_TRACE_HEAD = 10


def _console():
    from rich.console import Console

    return Console(width=150, highlight=False)


def _fmt_vec(v: np.ndarray, digits: int = 3) -> str:
    v = np.asarray(v).ravel()
    shown = ", ".join(f"{x:.{digits}f}" for x in v[:_MAX_DIMS_SHOWN])
    more = f", … (+{v.size - _MAX_DIMS_SHOWN})" if v.size > _MAX_DIMS_SHOWN else ""
    return f"[{shown}{more}]"


def _trace_table(values: Sequence[float], title: str, label: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("iteration", justify="right")
    table.add_column(label, justify="right")
    table.add_column("change", justify="right")
    n = len(values)
    rows = list(range(n))
    if n > 2 * _TRACE_HEAD + 5:
        rows = list(range(_TRACE_HEAD)) + [-1] + list(range(n - _TRACE_HEAD, n))
    for i in rows:
        if i < 0:
            hidden = n - 2 * _TRACE_HEAD
            table.add_row("…", f"({hidden} rows not shown: see --output / --out)", "")
            continue
        change = "" if i == 0 else f"{values[i] - values[i - 1]:+.3e}"
        table.add_row(str(i + 1), f"{values[i]:.8f}", change)
    return table


def _load_points(
    csv_path: str | None,
    n_samples: int,
    true_k: int,
    n_features: int,
    separation: float,
    seed: int | None,
) -> tuple[np.ndarray, str, dict]:
    from genrec.foundations.io import read_points_csv
    from genrec.foundations.synthetic import make_gaussian_mixture

    if csv_path is not None:
        X = read_points_csv(csv_path)
        return X, f"{csv_path} ({X.shape[0]} points, {X.shape[1]} features)", {"csv": csv_path}
    if true_k > n_samples:
        raise ValueError(f"--true-k {true_k} is larger than --n-samples {n_samples}: the "
                         f"synthetic data needs at least one point per Gaussian")
    data = make_gaussian_mixture(
        n_samples, true_k, n_features, separation=separation, random_state=seed
    )
    truth = {"weights": data.weights, "means": data.means, "covariances": data.covariances}
    desc = f"synthetic: {n_samples} points from {true_k} Gaussians in {n_features}-D (seed {seed})"
    info = {"true_k": true_k, "separation": separation, "seed": seed, "truth": truth}
    return data.X, desc, {"synthetic": info}


def _fit_quietly(model, X: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Fit; turn a ConvergenceWarning into a note for the table, re-emit other warnings."""
    from genrec.foundations.mixture_base import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        labels = model.fit_predict(X)
    notes = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return labels, notes


def _write_outputs(out_dir: str | None, output: str | None, plots, payload: dict) -> list[str]:
    """Draw every plot (``fn(path)`` each) into a scratch folder, then land them in ``out_dir``
    together (a plot that fails leaves the earlier ones as they were); then the JSON."""
    written = []
    if out_dir is not None:
        with tempfile.TemporaryDirectory() as scratch:
            for name, fn in plots:
                fn(Path(scratch) / name)
            atomic_write_files(out_dir, {name: (Path(scratch) / name).read_bytes()
                                         for name, _ in plots})
        written += [str(Path(out_dir) / name) for name, _ in plots]
    if output is not None:
        atomic_write_json(output, payload)
        written.append(output)
    return written


def _data_options(func):
    options = [
        click.option(
            "--csv",
            "csv_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="CSV of points (one row per point, header optional). Default: synthetic data.",
        ),
        click.option(
            "--n-samples",
            type=click.IntRange(min=2),
            default=600,
            show_default=True,
            help="Synthetic data: number of points.",
        ),
        click.option(
            "--true-k",
            type=click.IntRange(min=1),
            default=3,
            show_default=True,
            help="Synthetic data: number of generating components.",
        ),
        click.option(
            "--n-features",
            type=click.IntRange(min=1),
            default=2,
            show_default=True,
            help="Synthetic data: dimension.",
        ),
        click.option(
            "--separation",
            type=click.FloatRange(min=0.0),
            default=4.0,
            show_default=True,
            help="Synthetic data: minimum distance between means.",
        ),
        click.option(
            "-k",
            "--n-components",
            "n_components",
            type=click.IntRange(min=1),
            default=3,
            show_default=True,
            help="Number of mixture components K.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="random_state of the data generator and of the fit.",
        ),
        click.option("--max-iter", type=click.IntRange(min=1), default=200, show_default=True),
        click.option(
            "--tol",
            type=click.FloatRange(min=0.0),
            default=None,
            help="Convergence threshold on the bound change (default: model default).",
        ),
        click.option(
            "--n-init",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Restarts (the best bound is kept).",
        ),
        click.option(
            "--init",
            "init_params",
            type=click.Choice(["k-means++", "random", "random_from_data"]),
            default="k-means++",
            show_default=True,
            help="Initial responsibilities.",
        ),
        click.option(
            "--out",
            "out_dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder for PNG plots.",
        ),
        click.option(
            "--output",
            type=click.Path(dir_okay=False),
            default=None,
            help="Write the results as JSON to this file.",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def _param_table(title: str, weights, means, covariances, covariance_type: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("k", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("mean")
    table.add_column("covariance diagonal" if covariance_type != "spherical" else "variance")
    order = np.argsort(-np.asarray(weights))
    for k in order:
        if covariance_type == "full":
            cov = np.diag(covariances[k])
        elif covariance_type == "tied":
            cov = np.diag(covariances)
        elif covariance_type == "diag":
            cov = covariances[k]
        else:
            cov = np.atleast_1d(covariances[k])
        table.add_row(str(k), f"{weights[k]:.4f}", _fmt_vec(means[k]), _fmt_vec(cov))
    return table


def _run_mixture(
    kind: str,
    model,
    X: np.ndarray,
    desc: str,
    data_info: dict,
    out_dir,
    output,
    covariance_type: str,
) -> None:
    from genrec.foundations import plots

    console = _console()
    labels, notes = _fit_quietly(model, X)
    bounds = model.lower_bounds_
    console.print(f"[bold]{type(model).__name__}[/bold] on {escape(desc)}")
    title = "fitted parameters (sorted by weight)"
    console.print(
        _param_table(title, model.weights_, model.means_, model.covariances_, covariance_type)
    )
    from rich.table import Table

    summary = Table(title="summary", show_header=False)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("converged", str(model.converged_))
    summary.add_row("iterations", str(model.n_iter_))
    payload: dict[str, Any] = {
        "command": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": data_info,
        "n_samples": X.shape[0],
        "n_features": X.shape[1],
        "params": {k: v for k, v in model.get_params().items() if not isinstance(v, np.ndarray)},
        "converged": model.converged_,
        "n_iter": model.n_iter_,
        "weights": model.weights_,
        "means": model.means_,
        "covariances": model.covariances_,
        "lower_bounds": bounds,
        "labels": labels,
        "warnings": notes,
    }
    if kind == "gmm":
        loglik = model.log_likelihood(X)
        summary.add_row("log-likelihood (total)", f"{loglik:.6f}")
        summary.add_row("log-likelihood per sample", f"{loglik / X.shape[0]:.8f}")
        summary.add_row("BIC", f"{model.bic(X):.4f}")
        summary.add_row("AIC", f"{model.aic(X):.4f}")
        payload.update(log_likelihood=loglik, bic=model.bic(X), aic=model.aic(X))
        trace_label, trace_title = "mean log-likelihood", "log-likelihood per iteration"
    else:
        effective = int(np.sum(model.weights_ > 0.01))
        summary.add_row("ELBO (nats, full)", f"{model.lower_bound_:.6f}")
        summary.add_row("components with weight > 0.01", str(effective))
        payload.update(
            elbo=model.lower_bound_,
            effective_components=effective,
            weight_concentration=model.weight_concentration_,
            degrees_of_freedom=model.degrees_of_freedom_,
            mean_precision=model.mean_precision_,
        )
        trace_label, trace_title = "ELBO", "ELBO per iteration (never decreases)"
    console.print(summary)
    console.print(_trace_table(list(bounds), trace_title, trace_label))
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")

    plot_list = [
        (
            f"{kind}_trace.png",
            lambda p: plots.plot_trace(
                bounds, p, trace_label, f"{type(model).__name__}: {trace_title}"
            ),
        ),
        (
            f"{kind}_ellipses.png",
            lambda p: plots.plot_gmm_2d(
                X,
                labels,
                model.weights_,
                model.means_,
                model.covariances_,
                covariance_type,
                p,
                f"{type(model).__name__}, K={model.n_components}",
            ),
        ),
    ]
    for path in _write_outputs(out_dir, output, plot_list, payload):
        console.print(f"wrote {escape(path)}")


foundations_group = click.Group(
    "foundations",
    help="Probabilistic foundations: EM for Gaussian mixtures, variational Bayes (CAVI), "
    "and the Beta-Bernoulli cookie jar.",
)
foundations_cli = foundations_group


@foundations_group.command("gmm")
@_data_options
@click.option(
    "--covariance-type",
    type=click.Choice(["full", "tied", "diag", "spherical"]),
    default="full",
    show_default=True,
)
@click.option(
    "--reg-covar",
    type=click.FloatRange(min=0.0),
    default=1e-6,
    show_default=True,
    help="Covariance floor added to every diagonal.",
)
def gmm_command(
    csv_path,
    n_samples,
    true_k,
    n_features,
    separation,
    n_components,
    seed,
    max_iter,
    tol,
    n_init,
    init_params,
    out_dir,
    output,
    covariance_type,
    reg_covar,
) -> None:
    """Fit a Gaussian mixture by EM; print parameters and the log-likelihood trace."""
    from genrec.foundations.gmm import GaussianMixture

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        X, desc, info = _load_points(csv_path, n_samples, true_k, n_features, separation, seed)
        model = GaussianMixture(
            n_components,
            covariance_type=covariance_type,
            tol=1e-3 if tol is None else tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            random_state=seed,
        )
        _run_mixture("gmm", model, X, desc, info, out_dir, output, covariance_type)
    except (ValueError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from None


@foundations_group.command("vbgmm")
@_data_options
@click.option(
    "--prior-type",
    type=click.Choice(["dirichlet_process", "dirichlet_distribution"]),
    default="dirichlet_process",
    show_default=True,
    help="Stick-breaking (truncated DP) or Dirichlet prior on the weights.",
)
@click.option(
    "--weight-concentration",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="gamma (DP) or alpha_0 (Dirichlet); default 1/K.",
)
@click.option(
    "--covariance-type",
    type=click.Choice(["full"]),
    default="full",
    show_default=True,
    help="Only 'full' (Normal-Wishart prior).",
)
def vbgmm_command(
    csv_path,
    n_samples,
    true_k,
    n_features,
    separation,
    n_components,
    seed,
    max_iter,
    tol,
    n_init,
    init_params,
    out_dir,
    output,
    prior_type,
    weight_concentration,
    covariance_type,
) -> None:
    """Fit a Bayesian Gaussian mixture by CAVI; print parameters and the ELBO trace.

    Set -k larger than the truth: superfluous components end with weights near zero.
    """
    from genrec.foundations.vbgmm import BayesianGaussianMixture

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        X, desc, info = _load_points(csv_path, n_samples, true_k, n_features, separation, seed)
        model = BayesianGaussianMixture(
            n_components,
            covariance_type=covariance_type,
            tol=1e-3 if tol is None else tol,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weight_concentration_prior_type=prior_type,
            weight_concentration_prior=weight_concentration,
            random_state=seed,
        )
        _run_mixture("vbgmm", model, X, desc, info, out_dir, output, covariance_type)
    except (ValueError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from None


def _rounds_from_csv(path: str, draws_per_round: int) -> list[np.ndarray]:
    from genrec.foundations.io import read_points_csv

    data = read_points_csv(path)
    if data.shape[1] == 1:
        outcomes = data[:, 0]
        groups = [
            outcomes[i : i + draws_per_round] for i in range(0, len(outcomes), draws_per_round)
        ]
    elif data.shape[1] == 2:
        ids = data[:, 0]
        _, first = np.unique(ids, return_index=True)
        groups = [data[ids == ids[i], 1] for i in sorted(first)]
    else:
        raise ValueError(
            f"{path}: expected 1 column (outcomes) or 2 columns (round, outcome); "
            f"found {data.shape[1]}"
        )
    rounds = []
    for r, g in enumerate(groups, start=1):
        if not np.all(np.isin(g, (0.0, 1.0))):
            raise ValueError(
                f"{path}: round {r} has outcomes other than 0 (vanilla) / 1 (chocolate)"
            )
        rounds.append(g.astype(np.int64))
    return rounds


@foundations_group.command("beta")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of draws: one column of 0/1 (split by --draws-per-round) or two columns "
    "round,outcome. Default: simulated jar.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.7,
    show_default=True,
    help="Simulated jar: true fraction of chocolate cookies.",
)
@click.option("--rounds", "n_rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--draws-per-round", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--prior-a", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True
)
@click.option(
    "--prior-b", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True
)
@click.option(
    "--estimator",
    type=click.Choice(["reparam", "score"]),
    default="reparam",
    show_default=True,
    help="Gradient estimator of the variational fit.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=800,
    show_default=True,
    help="Adam steps per round.",
)
@click.option("--mc-samples", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=0.1, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Folder for PNG plots."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the results as JSON to this file.",
)
def beta_command(
    csv_path,
    rate,
    n_rounds,
    draws_per_round,
    prior_a,
    prior_b,
    estimator,
    steps,
    mc_samples,
    lr,
    seed,
    out_dir,
    output,
) -> None:
    """The cookie jar: exact Beta posterior vs. a variational Beta fit, round by round."""
    import torch
    from rich.table import Table

    from genrec.foundations import plots
    from genrec.foundations.beta_bernoulli import (
        BetaBernoulliJar,
        kl_beta_monte_carlo,
        simulate_jar,
    )

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        if csv_path is not None:
            rounds = _rounds_from_csv(csv_path, draws_per_round)
            desc = f"{csv_path} ({len(rounds)} rounds)"
        else:
            rounds = simulate_jar(rate, n_rounds, draws_per_round, random_state=seed)
            desc = f"simulated jar, P(chocolate) = {rate}, {n_rounds} rounds of {draws_per_round}"
        jar = BetaBernoulliJar(
            prior_a,
            prior_b,
            estimator=estimator,
            n_mc_samples=mc_samples,
            n_steps=steps,
            lr=lr,
            random_state=seed,
        ).fit(rounds)
    except (ValueError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from None

    gen = torch.Generator().manual_seed(seed + 1)
    console = _console()
    console.print(
        f"[bold]Beta-Bernoulli jar[/bold]: {escape(desc)}; prior Beta({prior_a:g}, {prior_b:g}); "
        f"estimator {estimator}"
    )
    table = Table(title="posterior per round")
    for col in (
        "round",
        "draws c/v",
        "total c/v",
        "exact p = Beta",
        "fitted q = Beta",
        "KL(q||p)",
        "KL(q0||p)",
        "KL(q0||p) MC",
        "log p(x)",
        "ELBO",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = (
        "q0: the q the round began from (the previous fit, or the prior), against the "
        "new posterior p; Monte-Carlo: 4096 draws from q0, ± one standard error"
    )
    mc_rows = []
    for r, draws in enumerate(rounds):
        (c, v), (ae, be), (aq, bq) = (
            jar.counts_[r],
            jar.exact_posteriors_[r],
            jar.variational_posteriors_[r],
        )
        a_start, b_start = (prior_a, prior_b) if r == 0 else jar.variational_posteriors_[r - 1]
        mc, se = kl_beta_monte_carlo(a_start, b_start, ae, be, 4096, gen)
        mc_rows.append((mc, se))
        table.add_row(
            str(r + 1),
            f"{int(draws.sum())}/{int(draws.size - draws.sum())}",
            f"{c}/{v}",
            f"({ae:.2f}, {be:.2f})",
            f"({aq:.2f}, {bq:.2f})",
            f"{jar.kl_[r]:.1e}",
            f"{jar.kl_before_[r]:.4f}",
            f"{mc:.4f} ± {se:.4f}",
            f"{jar.log_evidence_[r]:.5f}",
            f"{jar.elbo_[r]:.5f}",
        )
    console.print(table)
    last = jar.elbo_traces_[-1]
    step_rows = sorted(
        {0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, len(last) - 1} & set(range(len(last)))
    )
    trace = Table(
        title=f"ELBO per step, last round (exact log evidence {jar.log_evidence_[-1]:.6f})"
    )
    trace.add_column("step", justify="right")
    trace.add_column("ELBO", justify="right")
    trace.add_column("log evidence - ELBO = KL", justify="right")
    for s in step_rows:
        trace.add_row(str(s + 1), f"{last[s]:.8f}", f"{jar.log_evidence_[-1] - last[s]:.3e}")
    console.print(trace)

    payload = {
        "command": "beta",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": desc,
        "prior": [prior_a, prior_b],
        "estimator": estimator,
        "rounds": [
            {
                "draws": rounds[r],
                "counts": jar.counts_[r],
                "exact_posterior": jar.exact_posteriors_[r],
                "variational_posterior": jar.variational_posteriors_[r],
                "kl_closed_form": jar.kl_[r],
                "kl_start_closed_form": jar.kl_before_[r],
                "kl_start_monte_carlo": mc_rows[r][0],
                "kl_start_monte_carlo_se": mc_rows[r][1],
                "log_evidence": jar.log_evidence_[r],
                "elbo": jar.elbo_[r],
                "elbo_trace": jar.elbo_traces_[r],
            }
            for r in range(len(rounds))
        ],
    }
    all_trace = [x for tr in jar.elbo_traces_ for x in tr]
    plot_list = [
        (
            "beta_posteriors.png",
            lambda p: plots.plot_jar_posteriors(
                jar.exact_posteriors_,
                jar.variational_posteriors_,
                jar.kl_,
                jar.counts_,
                p,
                (prior_a, prior_b),
                kl_before=jar.kl_before_,
            ),
        ),
        (
            "beta_trace.png",
            lambda p: plots.plot_trace(
                all_trace, p, "ELBO (closed form)", "ELBO per step (rounds one after another)"
            ),
        ),
    ]
    try:
        for path in _write_outputs(out_dir, output, plot_list, payload):
            console.print(f"wrote {escape(path)}")
    except (ValueError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg or type(exc).__name__

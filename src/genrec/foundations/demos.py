"""The foundations demonstrations as library code: what ``genrec foundations gmm|vbgmm|beta``
runs, usable from Python.

:func:`run_mixture_demo` fits a :class:`~genrec.foundations.gmm.GaussianMixture` (EM) or a
:class:`~genrec.foundations.vbgmm.BayesianGaussianMixture` (CAVI) to points read from a CSV
or drawn from a known mixture (:class:`SyntheticPoints`), and returns a :class:`MixtureDemo`:
the fitted model, the bound per iteration, per-component summaries, the JSON payload and,
on request, the plots as PNG bytes. :func:`run_beta_demo` does the same for the
Beta-Bernoulli cookie jar (:class:`SimulatedJar` or a CSV of draws) and returns a
:class:`BetaDemo`.

>>> from genrec.foundations import GaussianMixture
>>> demo = run_mixture_demo(GaussianMixture(2, random_state=0),
...                         SyntheticPoints(n_samples=200, true_k=2, seed=0))
>>> demo.kind, len(demo.components), demo.model.converged_
('gmm', 2, True)

Nothing here writes files: ``payload()`` is plain data for :func:`genrec.io.atomic_write_json`
and ``plot_files()`` a ``{name: bytes}`` mapping for :func:`genrec.io.atomic_write_files`.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from genrec.errors import ConfigError
from genrec.foundations.gmm import GaussianMixture
from genrec.foundations.mixture_base import BaseMixture, ConvergenceWarning
from genrec.foundations.vbgmm import BayesianGaussianMixture

if TYPE_CHECKING:
    from genrec.foundations.beta_bernoulli import BetaBernoulliJar

__all__ = [
    "SyntheticPoints", "Points", "load_points", "ComponentSummary", "component_summaries",
    "fit_capturing_warnings", "Trace", "MixtureDemo", "run_mixture_demo",
    "SimulatedJar", "read_jar_csv", "BetaRound", "BetaDemo", "run_beta_demo",
]

EFFECTIVE_WEIGHT = 0.01  # a Bayesian mixture's component "counts" above this weight
BETA_TRACE_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # 0-based, plus the last


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _png(draw: Callable[[Path], None]) -> bytes:
    """PNG bytes of a plot function that writes to a path (``plots.plot_*``)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "plot.png"
        draw(path)
        return path.read_bytes()


# --------------------------------------------------------------------------- mixture data
@dataclass(frozen=True)
class SyntheticPoints:
    """Points drawn from a known Gaussian mixture (:func:`make_gaussian_mixture`)."""

    n_samples: int = 600  # number of points
    true_k: int = 3  # number of generating Gaussians
    n_features: int = 2  # dimension d
    separation: float = 4.0  # minimum distance between the means
    seed: int | None = 0  # random_state of the generator

    def __post_init__(self) -> None:
        for name in ("n_samples", "true_k", "n_features"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not float(self.separation) >= 0.0:
            raise ConfigError(f"separation={self.separation} must be >= 0")
        if self.true_k > self.n_samples:
            raise ConfigError(f"true_k={self.true_k} is larger than n_samples={self.n_samples}: "
                              f"the synthetic data needs at least one point per Gaussian")


@dataclass(frozen=True)
class Points:
    """Points to fit, with a one-line description and what produced them.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
    description : str
    info : dict
        ``{"csv": path}``, ``{"array": shape}`` or ``{"synthetic": {true_k, separation, seed,
        truth: {weights, means, covariances}}}`` (the JSON payload's ``data`` field).
    """

    X: np.ndarray
    description: str
    info: dict[str, Any]


Mixture = GaussianMixture | BayesianGaussianMixture
PointsSource = str | os.PathLike[str] | SyntheticPoints | np.ndarray


def load_points(source: PointsSource) -> Points:
    """Read points from a CSV (:func:`~genrec.foundations.io.read_points_csv`), draw them
    from a :class:`SyntheticPoints` mixture, or take an array as it is.

    Parameters
    ----------
    source : str, PathLike, SyntheticPoints or ndarray of shape (n_samples, n_features)

    Returns
    -------
    Points

    Raises
    ------
    ValueError
        An unreadable or malformed CSV (the message names the line).
    """
    from genrec.foundations.io import read_points_csv
    from genrec.foundations.synthetic import make_gaussian_mixture

    if isinstance(source, SyntheticPoints):
        s = source
        data = make_gaussian_mixture(s.n_samples, s.true_k, s.n_features,
                                     separation=s.separation, random_state=s.seed)
        truth = {"weights": data.weights, "means": data.means, "covariances": data.covariances}
        desc = (f"synthetic: {s.n_samples} points from {s.true_k} Gaussians in "
                f"{s.n_features}-D (seed {s.seed})")
        info = {"true_k": s.true_k, "separation": s.separation, "seed": s.seed, "truth": truth}
        return Points(data.X, desc, {"synthetic": info})
    if isinstance(source, np.ndarray):
        X = np.asarray(source, dtype=np.float64)
        shape = "x".join(str(n) for n in X.shape)
        return Points(X, f"an array of shape ({shape})", {"array": list(X.shape)})
    X = read_points_csv(source)
    return Points(X, f"{source} ({X.shape[0]} points, {X.shape[1]} features)",
                  {"csv": str(source)})


# --------------------------------------------------------------------------- mixture fit
@dataclass(frozen=True)
class ComponentSummary:
    """One fitted component: its index, weight, mean and spread.

    ``spread`` is the covariance diagonal, shape (n_features,), or for ``spherical``
    covariances the variance, shape (1,).
    """

    index: int
    weight: float
    mean: np.ndarray
    spread: np.ndarray


def component_summaries(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray,
                        covariance_type: str) -> tuple[ComponentSummary, ...]:
    """Per-component summaries, heaviest component first.

    Parameters
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    covariances : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag or (K,) spherical.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    tuple of ComponentSummary, sorted by decreasing weight (ties keep index order)
    """
    w = np.asarray(weights)
    rows = []
    for k in np.argsort(-w, kind="stable"):
        if covariance_type == "full":
            spread = np.diag(covariances[k])
        elif covariance_type == "tied":
            spread = np.diag(covariances)
        elif covariance_type == "diag":
            spread = np.asarray(covariances[k])
        else:
            spread = np.atleast_1d(covariances[k])
        rows.append(ComponentSummary(int(k), float(w[k]), np.asarray(means[k]), spread))
    return tuple(rows)


def fit_capturing_warnings(model: BaseMixture, X: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """``model.fit_predict(X)``, with each :class:`ConvergenceWarning` returned as a note
    instead of shown; other warnings are re-emitted.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
    notes : tuple of str
        The convergence warnings' messages, in order.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        labels = model.fit_predict(X)
    notes = []
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return labels, tuple(notes)


@dataclass(frozen=True)
class Trace:
    """A bound per iteration (or step), with the label and title it is shown under."""

    title: str
    label: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class MixtureDemo:
    """A fitted mixture and everything ``genrec foundations gmm|vbgmm`` shows of it.

    Attributes
    ----------
    kind : {'gmm', 'vbgmm'}
    model : GaussianMixture or BayesianGaussianMixture, fitted
    points : Points
    labels : ndarray of shape (n_samples,)
    notes : tuple of str
        Convergence warnings of the fit.
    components : tuple of ComponentSummary, heaviest first
    trace : Trace
        ``model.lower_bounds_``: mean log-likelihood (EM) or ELBO (CAVI) per iteration.
    created : str
        UTC time of the fit (ISO 8601).
    log_likelihood, bic, aic : float or None
        Total log-likelihood and criteria of a ``gmm``; None for a ``vbgmm``.
    elbo : float or None
        The full ELBO (nats) of a ``vbgmm``; None for a ``gmm``.
    effective_components : int or None
        Components of a ``vbgmm`` with weight above 0.01.
    """

    kind: str
    model: Mixture
    points: Points
    labels: np.ndarray
    notes: tuple[str, ...]
    components: tuple[ComponentSummary, ...]
    trace: Trace
    created: str
    log_likelihood: float | None = None
    bic: float | None = None
    aic: float | None = None
    elbo: float | None = None
    effective_components: int | None = None

    def payload(self) -> dict[str, Any]:
        """The results as plain data (arrays included), for :func:`genrec.io.atomic_write_json`."""
        m, X = self.model, self.points.X
        out: dict[str, Any] = {
            "command": self.kind,
            "created": self.created,
            "data": self.points.info,
            "n_samples": X.shape[0],
            "n_features": X.shape[1],
            "params": {k: v for k, v in m.get_params().items() if not isinstance(v, np.ndarray)},
            "converged": m.converged_,
            "n_iter": m.n_iter_,
            "weights": m.weights_,
            "means": m.means_,
            "covariances": m.covariances_,
            "lower_bounds": m.lower_bounds_,
            "labels": self.labels,
            "warnings": list(self.notes),
        }
        if isinstance(m, GaussianMixture):
            out.update(log_likelihood=self.log_likelihood, bic=self.bic, aic=self.aic)
        elif isinstance(m, BayesianGaussianMixture):
            out.update(elbo=self.elbo, effective_components=self.effective_components,
                       weight_concentration=m.weight_concentration_,
                       degrees_of_freedom=m.degrees_of_freedom_,
                       mean_precision=m.mean_precision_)
        return out

    def plot_files(self) -> dict[str, bytes]:
        """``{kind}_trace.png`` (the bound per iteration) and ``{kind}_ellipses.png`` (points
        coloured by component, 1- and 2-sigma ellipses), as PNG bytes, drawn in that order."""
        from genrec.foundations import plots

        m, name = self.model, type(self.model).__name__
        cov_type = str(m.get_params()["covariance_type"])
        return {
            f"{self.kind}_trace.png": _png(lambda p: plots.plot_trace(
                list(self.trace.values), p, self.trace.label, f"{name}: {self.trace.title}")),
            f"{self.kind}_ellipses.png": _png(lambda p: plots.plot_gmm_2d(
                self.points.X, self.labels, m.weights_, m.means_, m.covariances_, cov_type, p,
                f"{name}, K={m.n_components}")),
        }


def run_mixture_demo(model: Mixture, data: PointsSource | Points) -> MixtureDemo:
    """Fit ``model`` to ``data`` and collect what the ``gmm`` / ``vbgmm`` commands show.

    Parameters
    ----------
    model : GaussianMixture or BayesianGaussianMixture
        Unfitted (it is fitted in place).
    data : str, PathLike, SyntheticPoints, ndarray of shape (n_samples, n_features) or Points
        See :func:`load_points`.

    Returns
    -------
    MixtureDemo

    Raises
    ------
    ValueError
        Malformed data or parameters (e.g. more components than points, a degenerate
        covariance); the message is one line naming the parameter.
    """
    if isinstance(model, GaussianMixture):
        kind = "gmm"
    elif isinstance(model, BayesianGaussianMixture):
        kind = "vbgmm"
    else:
        raise TypeError(f"model must be a GaussianMixture or a BayesianGaussianMixture; "
                        f"got {type(model).__name__}")
    points = data if isinstance(data, Points) else load_points(data)
    X = points.X
    labels, notes = fit_capturing_warnings(model, X)
    cov_type = str(model.get_params()["covariance_type"])
    components = component_summaries(model.weights_, model.means_, model.covariances_, cov_type)
    bounds = tuple(float(b) for b in model.lower_bounds_)
    if isinstance(model, GaussianMixture):
        loglik = float(model.log_likelihood(X))
        return MixtureDemo(kind, model, points, labels, notes, components,
                           Trace("log-likelihood per iteration", "mean log-likelihood", bounds),
                           _now(), log_likelihood=loglik, bic=float(model.bic(X)),
                           aic=float(model.aic(X)))
    return MixtureDemo(kind, model, points, labels, notes, components,
                       Trace("ELBO per iteration (never decreases)", "ELBO", bounds), _now(),
                       elbo=float(model.lower_bound_),
                       effective_components=int(np.sum(model.weights_ > EFFECTIVE_WEIGHT)))


# --------------------------------------------------------------------------- the cookie jar
@dataclass(frozen=True)
class SimulatedJar:
    """A simulated jar (:func:`~genrec.foundations.beta_bernoulli.simulate_jar`)."""

    rate: float = 0.7  # true fraction of chocolate cookies
    n_rounds: int = 5  # rounds of draws
    draws_per_round: int = 10  # cookies drawn per round
    seed: int | None = 0  # random_state of the simulation

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ConfigError(f"rate={self.rate} must be in [0, 1]")
        for name in ("n_rounds", "draws_per_round"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")


def read_jar_csv(path: str | os.PathLike[str], draws_per_round: int) -> list[np.ndarray]:
    """Rounds of draws from a CSV: one column of 0/1 outcomes, cut into rounds of
    ``draws_per_round`` (the last may be shorter), or two columns ``round,outcome``
    (rounds in order of first appearance).

    Returns
    -------
    list of ndarray of int64, one per round, values 0 (vanilla) or 1 (chocolate)

    Raises
    ------
    ValueError
        A malformed CSV, another number of columns, or an outcome other than 0/1.
    """
    from genrec.foundations.io import read_points_csv

    if int(draws_per_round) < 1:
        raise ConfigError(f"draws_per_round={draws_per_round} must be >= 1")
    data = read_points_csv(path)
    if data.shape[1] == 1:
        outcomes = data[:, 0]
        groups = [outcomes[i : i + draws_per_round]
                  for i in range(0, len(outcomes), draws_per_round)]
    elif data.shape[1] == 2:
        ids = data[:, 0]
        _, first = np.unique(ids, return_index=True)
        groups = [data[ids == ids[i], 1] for i in sorted(first)]
    else:
        raise ValueError(f"{path}: expected 1 column (outcomes) or 2 columns (round, outcome); "
                         f"found {data.shape[1]}")
    rounds = []
    for r, g in enumerate(groups, start=1):
        if not np.all(np.isin(g, (0.0, 1.0))):
            raise ValueError(f"{path}: round {r} has outcomes other than 0 (vanilla) / 1 "
                             f"(chocolate)")
        rounds.append(g.astype(np.int64))
    return rounds


@dataclass(frozen=True)
class BetaRound:
    """One round of the jar: the draws, the exact and the fitted posterior, the KLs.

    ``kl_start*`` compare the q the round began from (the previous fit, or the prior) with
    the round's exact posterior: in closed form and by Monte Carlo (with its standard error).
    """

    draws: np.ndarray  # (n_draws,) 0/1
    counts: tuple[int, int]  # chocolate, vanilla so far
    exact_posterior: tuple[float, float]  # Beta(a, b)
    variational_posterior: tuple[float, float]  # fitted q = Beta(a, b)
    kl: float  # KL(q || p), closed form
    kl_start: float  # KL(q0 || p), closed form
    kl_start_mc: float
    kl_start_mc_se: float
    log_evidence: float
    elbo: float
    elbo_trace: tuple[float, ...]  # per step


@dataclass(frozen=True)
class BetaDemo:
    """The fitted jar and everything ``genrec foundations beta`` shows of it.

    Attributes
    ----------
    description : str
    prior : (float, float)
    estimator : {'reparam', 'score'}
    jar : BetaBernoulliJar, fitted
    rounds : tuple of BetaRound
    final_trace : tuple of (step, ELBO, log evidence - ELBO)
        Selected steps (1-based) of the last round's fit, the last step included.
    mc_draws : int
        Draws of each Monte-Carlo KL.
    created : str
    """

    description: str
    prior: tuple[float, float]
    estimator: str
    jar: BetaBernoulliJar
    rounds: tuple[BetaRound, ...]
    final_trace: tuple[tuple[int, float, float], ...]
    mc_draws: int
    created: str

    def payload(self) -> dict[str, Any]:
        """The results as plain data, for :func:`genrec.io.atomic_write_json`."""
        return {
            "command": "beta",
            "created": self.created,
            "data": self.description,
            "prior": list(self.prior),
            "estimator": self.estimator,
            "rounds": [
                {
                    "draws": r.draws,
                    "counts": list(r.counts),
                    "exact_posterior": list(r.exact_posterior),
                    "variational_posterior": list(r.variational_posterior),
                    "kl_closed_form": r.kl,
                    "kl_start_closed_form": r.kl_start,
                    "kl_start_monte_carlo": r.kl_start_mc,
                    "kl_start_monte_carlo_se": r.kl_start_mc_se,
                    "log_evidence": r.log_evidence,
                    "elbo": r.elbo,
                    "elbo_trace": list(r.elbo_trace),
                }
                for r in self.rounds
            ],
        }

    def plot_files(self) -> dict[str, bytes]:
        """``beta_posteriors.png`` (densities per round, KL beside them) and
        ``beta_trace.png`` (the ELBO per step, rounds one after another), as PNG bytes."""
        from genrec.foundations import plots

        rs = self.rounds
        all_trace = [x for r in rs for x in r.elbo_trace]
        return {
            "beta_posteriors.png": _png(lambda p: plots.plot_jar_posteriors(
                [r.exact_posterior for r in rs], [r.variational_posterior for r in rs],
                [r.kl for r in rs], [r.counts for r in rs], p, self.prior,
                kl_before=[r.kl_start for r in rs])),
            "beta_trace.png": _png(lambda p: plots.plot_trace(
                all_trace, p, "ELBO (closed form)", "ELBO per step (rounds one after another)")),
        }


JarSource = str | os.PathLike[str] | SimulatedJar | Sequence[Sequence[int]]


def run_beta_demo(data: JarSource, *, prior_a: float = 1.0, prior_b: float = 1.0,
                  estimator: str = "reparam", steps: int = 800, mc_samples: int = 64,
                  lr: float = 0.1, seed: int = 0, draws_per_round: int = 10,
                  mc_draws: int = 4096) -> BetaDemo:
    """Fit the Beta-Bernoulli jar round by round and compare each fit with the exact posterior.

    Parameters
    ----------
    data : str, PathLike, SimulatedJar or sequence of 0/1 sequences
        A CSV of draws (see :func:`read_jar_csv`), a simulated jar, or the rounds themselves.
    prior_a, prior_b : float
        The Beta prior.
    estimator : {'reparam', 'score'}
        Gradient estimator of the variational fit.
    steps : int
        Adam steps per round.
    mc_samples : int
        Monte-Carlo samples per gradient step.
    lr : float
        Adam's learning rate.
    seed : int
        random_state of the fit; the Monte-Carlo KLs use ``seed + 1``.
    draws_per_round : int
        Round length of a one-column CSV.
    mc_draws : int
        Draws of each Monte-Carlo KL estimate.

    Returns
    -------
    BetaDemo

    Raises
    ------
    ValueError
        A malformed CSV, invalid parameters, or a fit that diverged (lower ``lr``).
    """
    import torch

    from genrec.foundations.beta_bernoulli import (
        BetaBernoulliJar,
        kl_beta_monte_carlo,
        simulate_jar,
    )

    rounds: list[np.ndarray]
    if isinstance(data, SimulatedJar):
        rounds = simulate_jar(data.rate, data.n_rounds, data.draws_per_round,
                              random_state=data.seed)
        desc = (f"simulated jar, P(chocolate) = {data.rate}, {data.n_rounds} rounds of "
                f"{data.draws_per_round}")
    elif isinstance(data, (str, os.PathLike)):
        rounds = read_jar_csv(data, draws_per_round)
        desc = f"{data} ({len(rounds)} rounds)"
    else:
        rounds = [np.asarray(r) for r in data]
        desc = f"{len(rounds)} given rounds"
    jar = BetaBernoulliJar(prior_a, prior_b, estimator=estimator, n_mc_samples=mc_samples,
                           n_steps=steps, lr=lr, random_state=seed).fit(cast("list[Any]", rounds))
    gen = torch.Generator().manual_seed(seed + 1)
    out = []
    for r, draws in enumerate(rounds):
        ae, be = jar.exact_posteriors_[r]
        a0, b0 = (prior_a, prior_b) if r == 0 else jar.variational_posteriors_[r - 1]
        mc, se = kl_beta_monte_carlo(a0, b0, ae, be, mc_draws, gen)
        c, v = jar.counts_[r]
        aq, bq = jar.variational_posteriors_[r]
        out.append(BetaRound(
            np.asarray(draws), (int(c), int(v)), (float(ae), float(be)), (float(aq), float(bq)),
            float(jar.kl_[r]), float(jar.kl_before_[r]), float(mc), float(se),
            float(jar.log_evidence_[r]), float(jar.elbo_[r]),
            tuple(float(x) for x in jar.elbo_traces_[r])))
    last, evidence = out[-1].elbo_trace, out[-1].log_evidence
    steps_shown = sorted({*BETA_TRACE_STEPS, len(last) - 1} & set(range(len(last))))
    final = tuple((s + 1, last[s], evidence - last[s]) for s in steps_shown)
    return BetaDemo(desc, (float(prior_a), float(prior_b)), estimator, jar, tuple(out), final,
                    mc_draws, _now())

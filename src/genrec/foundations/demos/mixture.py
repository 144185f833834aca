"""The mixture demonstration: points (a CSV or a known mixture), a fitted GaussianMixture or
BayesianGaussianMixture, and what ``genrec foundations gmm|vbgmm`` shows of it."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrec.errors import ConfigError
from genrec.foundations.demos._common import ElboSplit, _now, _png
from genrec.foundations.gmm import GaussianMixture
from genrec.foundations.mixture_base import BaseMixture, ConvergenceWarning
from genrec.foundations.saddle import Saddle, find_saddle
from genrec.foundations.vbgmm import BayesianGaussianMixture

# A component "counts" from this weight on; lighter ones are emptied (a Bayesian mixture's
# superfluous components keep only the prior's broad covariance) and are not drawn.
EFFECTIVE_WEIGHT = 0.01


# --------------------------------------------------------------------------- mixture data
@dataclass(frozen=True)
class SyntheticPoints:
    """Points drawn from a known Gaussian mixture (:func:`make_gaussian_mixture`)."""

    n_samples: int = 600  # number of points
    true_k: int = 3  # number of generating Gaussians
    n_features: int = 2  # dimension d
    # minimum distance between the means: 1.5 overlaps the Gaussians (spreads 0.55 to 1.2),
    # so EM needs several iterations to pull them apart (9 from k-means++ at seed 0)
    separation: float = 1.5
    seed: int | None = 0  # random_state of the generator

    def __post_init__(self) -> None:
        for name in ("n_samples", "true_k", "n_features"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not float(self.separation) >= 0.0:
            raise ConfigError(f"separation={self.separation} must be >= 0")
        if self.true_k > self.n_samples:
            raise ConfigError(
                f"true_k={self.true_k} is larger than n_samples={self.n_samples}: "
                f"the synthetic data needs at least one point per Gaussian"
            )


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
        data = make_gaussian_mixture(
            s.n_samples, s.true_k, s.n_features, separation=s.separation, random_state=s.seed
        )
        truth = {"weights": data.weights, "means": data.means, "covariances": data.covariances}
        desc = (
            f"synthetic: {s.n_samples} points from {s.true_k} Gaussians in "
            f"{s.n_features}-D (seed {s.seed})"
        )
        info = {"true_k": s.true_k, "separation": s.separation, "seed": s.seed, "truth": truth}
        return Points(data.X, desc, {"synthetic": info})
    if isinstance(source, np.ndarray):
        X = np.asarray(source, dtype=np.float64)
        shape = "x".join(str(n) for n in X.shape)
        return Points(X, f"an array of shape ({shape})", {"array": list(X.shape)})
    X = read_points_csv(source)
    return Points(X, f"{source} ({X.shape[0]} points, {X.shape[1]} features)", {"csv": str(source)})


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


def component_summaries(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> tuple[ComponentSummary, ...]:
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
    saddle : Saddle or None
        Set when the fit stopped at a saddle (:func:`~genrec.foundations.saddle.find_saddle`).
    elbo_splits : tuple of ElboSplit
        The ELBO in its terms at the fitted parameters: for a ``gmm`` with q the posterior
        (KL 0, ELBO = log p(X)) and with q the hard labels (KL > 0); for a ``vbgmm`` with
        the final q, the KLs of q(pi) and q(mu, Lambda) to their priors included.
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
    saddle: Saddle | None = None
    elbo_splits: tuple[ElboSplit, ...] = ()

    @property
    def hidden_components(self) -> tuple[int, ...]:
        """Components with weight below :data:`EFFECTIVE_WEIGHT`: emptied, not drawn."""
        return tuple(int(k) for k in np.flatnonzero(self.model.weights_ < EFFECTIVE_WEIGHT))

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
            "warnings": list(self.notes) + ([] if self.saddle is None else [self.saddle.message()]),
            "saddle": None
            if self.saddle is None
            else {
                "groups": [list(g) for g in self.saddle.groups],
                "overlap": self.saddle.overlap,
                "bound": self.saddle.bound,
                "split_bound": self.saddle.split_bound,
            },
            "elbo_terms": [split.payload() for split in self.elbo_splits],
            "components_not_drawn": list(self.hidden_components),
        }
        if isinstance(m, GaussianMixture):
            out.update(log_likelihood=self.log_likelihood, bic=self.bic, aic=self.aic)
        elif isinstance(m, BayesianGaussianMixture):
            out.update(
                elbo=self.elbo,
                effective_components=self.effective_components,
                weight_concentration=m.weight_concentration_,
                degrees_of_freedom=m.degrees_of_freedom_,
                mean_precision=m.mean_precision_,
            )
        return out

    def plot_files(self) -> dict[str, bytes]:
        """``{kind}_trace.png`` (the gain of the bound since iteration 1) and
        ``{kind}_ellipses.png`` (points coloured by component, 1- and 2-sigma ellipses; the
        components lighter than :data:`EFFECTIVE_WEIGHT` are left out, as the title says), as
        PNG bytes, drawn in that order."""
        from genrec.foundations import plots

        m, name = self.model, type(self.model).__name__
        cov_type = str(m.get_params()["covariance_type"])
        return {
            f"{self.kind}_trace.png": _png(
                lambda p: plots.plot_trace(
                    list(self.trace.values),
                    p,
                    self.trace.label,
                    f"{name}: {self.trace.title}",
                    relative=True,
                )
            ),
            f"{self.kind}_ellipses.png": _png(
                lambda p: plots.plot_gmm_2d(
                    self.points.X,
                    self.labels,
                    m.weights_,
                    m.means_,
                    m.covariances_,
                    cov_type,
                    p,
                    f"{name}, K={m.n_components}",
                    min_weight=EFFECTIVE_WEIGHT,
                )
            ),
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
        raise TypeError(
            f"model must be a GaussianMixture or a BayesianGaussianMixture; "
            f"got {type(model).__name__}"
        )
    points = data if isinstance(data, Points) else load_points(data)
    X = points.X
    labels, notes = fit_capturing_warnings(model, X)
    cov_type = str(model.get_params()["covariance_type"])
    components = component_summaries(model.weights_, model.means_, model.covariances_, cov_type)
    bounds = tuple(float(b) for b in model.lower_bounds_)
    saddle = find_saddle(model, X)
    if isinstance(model, GaussianMixture):
        loglik = float(model.log_likelihood(X))
        return MixtureDemo(
            kind,
            model,
            points,
            labels,
            notes,
            components,
            Trace("log-likelihood per iteration", "mean log-likelihood", bounds),
            _now(),
            log_likelihood=loglik,
            bic=float(model.bic(X)),
            aic=float(model.aic(X)),
            saddle=saddle,
            elbo_splits=gmm_elbo_splits(model, X, labels),
        )
    return MixtureDemo(
        kind,
        model,
        points,
        labels,
        notes,
        components,
        Trace("ELBO per iteration (never decreases)", "ELBO", bounds),
        _now(),
        elbo=float(model.lower_bound_),
        effective_components=int(np.sum(model.weights_ > EFFECTIVE_WEIGHT)),
        saddle=saddle,
        elbo_splits=(vbgmm_elbo_split(model, X),),
    )


def gmm_elbo_splits(
    model: GaussianMixture, X: np.ndarray, labels: np.ndarray
) -> tuple[ElboSplit, ElboSplit]:
    """The ELBO of a fitted ``GaussianMixture`` in its terms, for q = the posterior (the
    E-step: KL 0, so ELBO = log p(X)) and for q = the hard labels (one-hot: no entropy, a
    positive KL); each with log p(X) = ELBO + KL(q || p(z | X))."""
    loglik = float(model.log_likelihood(X))
    one_hot = np.zeros((X.shape[0], model.n_components))  # (n, K)
    one_hot[np.arange(X.shape[0]), labels] = 1.0
    splits = []
    for name, q in (("posterior p(z|x)", model.predict_proba(X)), ("hard labels", one_hot)):
        t = model.elbo_terms(X, q)
        terms = (
            ("E_q[log p(x|z)]", t.expected_log_likelihood),
            ("E_q[log p(z)]", t.expected_log_prior),
            ("H[q(z)]", t.entropy),
        )
        splits.append(ElboSplit(name, terms, model.kl_posterior(X, q), loglik))
    return splits[0], splits[1]


def vbgmm_elbo_split(model: BayesianGaussianMixture, X: np.ndarray) -> ElboSplit:
    """The full ELBO of a fitted ``BayesianGaussianMixture`` in its terms, at the final
    q(z) (the posterior of the fitted q(pi) q(mu, Lambda)); log p(X) is not known."""
    t = model.elbo_terms(X)
    terms = (
        ("E_q[log p(x|z,mu,Lambda)]", t.expected_log_likelihood),
        ("E_q[log p(z|pi)]", t.expected_log_prior),
        ("H[q(z)]", t.entropy),
        ("-KL(q(pi)||p(pi))", -float(model.weights_kl())),
        ("-KL(q(mu,Lambda)||p(mu,Lambda))", -float(np.sum(model.components_kl()))),
    )
    return ElboSplit("fitted q", terms)

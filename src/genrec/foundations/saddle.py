r"""Saddle points of EM and CAVI on mixtures: components that are copies of each other, and
whether moving them apart raises the bound.

EM and CAVI stop when the bound changes by less than ``tol``. From a nearly symmetric start
(``init_params='random'``: every component starts from almost the same responsibilities) the
components stay almost copies of one another, each iteration gains almost nothing, and the fit
stops "converged" at a point that is stationary but not a maximum. Exact copies are a fixed
point of EM (identical parameters give identical responsibilities, which give identical
parameters), and the bound rises along the direction that moves them apart: a saddle.

:func:`find_saddle` reports one only when both of these hold:

1. **Copies.** Two components (each of weight at least ``min_weight``) are copies when the
   Bhattacharyya coefficient of their Gaussians is at least ``overlap``
   (:data:`COPY_OVERLAP` = 0.99; 1 means identical),

   .. math::

       \mathrm{BC} = \int\sqrt{\mathcal N(x\mid\mu_j,\Sigma_j)\,\mathcal N(x\mid\mu_k,\Sigma_k)}\,dx
       = e^{-D_B},\quad
       D_B = \tfrac18\Delta^\top\bar\Sigma^{-1}\Delta
       + \tfrac12\log\frac{|\bar\Sigma|}{\sqrt{|\Sigma_j||\Sigma_k|}},

   with :math:`\Delta=\mu_j-\mu_k` and :math:`\bar\Sigma=(\Sigma_j+\Sigma_k)/2`. Copies are
   grouped transitively.
2. **Moving them apart raises the bound.** In each group the points' combined responsibility
   is cut along the group's principal axis (the top eigenvector of its responsibility-weighted
   covariance) into as many slices of equal mass as the group has components, one slice per
   component; the other components keep their responsibilities. The model is refitted from
   these responsibilities with its own settings (one restart). EM and CAVI never lower their
   bound, so a refit that ends above the fit's bound by more than
   ``max(tol, 1e-8 * max(1, |bound|))`` shows that the fit stopped below a point it could
   have reached; the copies then mark a saddle.

The perturbation is a finite move (a hard split), not an infinitesimal one: it answers "does
separating the copies lead EM uphill?", which is what a user needs to know. Copies that the
split does not improve (for example more components than the data need) are not reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from genrec.foundations.gaussian import full_covariances
from genrec.foundations.mixture_base import ConvergenceWarning

if TYPE_CHECKING:
    from genrec.foundations.gmm import GaussianMixture
    from genrec.foundations.vbgmm import BayesianGaussianMixture

__all__ = [
    "COPY_OVERLAP",
    "Saddle",
    "bhattacharyya_coefficient",
    "copy_groups",
    "split_responsibilities",
    "find_saddle",
]

COPY_OVERLAP = 0.99  # Bhattacharyya coefficient from which two components are copies


def bhattacharyya_coefficient(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    r""":math:`\int\sqrt{\mathcal N(x\mid\mu_a,\Sigma_a)\mathcal N(x\mid\mu_b,\Sigma_b)}\,dx`,
    in (0, 1], 1 exactly when the two Gaussians are equal (closed form above)."""
    ma, mb = np.atleast_1d(mean_a), np.atleast_1d(mean_b)
    ca, cb = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    avg = 0.5 * (ca + cb)  # (d, d)
    diff = ma - mb  # (d,)
    _, logdet_avg = np.linalg.slogdet(avg)
    _, logdet_a = np.linalg.slogdet(ca)
    _, logdet_b = np.linalg.slogdet(cb)
    distance = 0.125 * float(diff @ np.linalg.solve(avg, diff)) + 0.5 * (
        logdet_avg - 0.5 * (logdet_a + logdet_b)
    )
    return float(np.exp(-max(distance, 0.0)))


def copy_groups(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    *,
    overlap: float = COPY_OVERLAP,
    min_weight: float = 0.01,
) -> tuple[tuple[tuple[int, ...], ...], float]:
    """Groups of two or more components that are copies (transitively), and the smallest
    coefficient of the pairs that joined them (1.0 when there are none).

    Parameters
    ----------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    covariances : ndarray of shape (K, d, d)
    overlap : float
        Bhattacharyya coefficient from which two components are copies.
    min_weight : float
        Components lighter than this (emptied ones) are left out.
    """
    K = len(weights)
    parent = list(range(K))

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    smallest = 1.0
    live = [k for k in range(K) if weights[k] >= min_weight]
    for i, j in ((a, b) for n, a in enumerate(live) for b in live[n + 1 :]):
        bc = bhattacharyya_coefficient(means[i], covariances[i], means[j], covariances[j])
        if bc >= overlap:
            parent[root(j)] = root(i)
            smallest = min(smallest, bc)
    members: dict[int, list[int]] = {}
    for k in live:
        members.setdefault(root(k), []).append(k)
    groups = tuple(tuple(g) for g in members.values() if len(g) > 1)
    return groups, smallest


def split_responsibilities(
    X: np.ndarray, resp: np.ndarray, groups: tuple[tuple[int, ...], ...]
) -> np.ndarray:
    """Responsibilities with each group's combined mass cut along its principal axis into
    equal-mass slices, one per component of the group (shape (n, K), rows sum to one)."""
    out = np.array(resp, dtype=np.float64)  # (n, K)
    for group in groups:
        cols = list(group)
        mass = out[:, cols].sum(axis=1)  # (n,)
        centre = mass @ X / mass.sum()  # (d,)
        centred = X - centre
        scatter = (centred * mass[:, None]).T @ centred  # (d, d)
        axis = np.linalg.eigh(scatter)[1][:, -1]  # (d,) top eigenvector
        order = np.argsort(centred @ axis, kind="stable")
        before = np.cumsum(mass[order]) - mass[order]  # mass below each point
        slot = np.minimum((before / mass.sum() * len(cols)).astype(int), len(cols) - 1)
        out[:, cols] = 0.0
        out[order, np.asarray(cols)[slot]] = mass[order]
    return out


@dataclass(frozen=True)
class Saddle:
    """Where a mixture fit stopped at a saddle (see the module docstring).

    Attributes
    ----------
    groups : tuple of tuple of int
        Components that are copies of each other.
    overlap : float
        The smallest Bhattacharyya coefficient that joined them.
    bound : float
        The fit's final bound (``lower_bound_``).
    split_bound : float
        The bound the refit from the split responsibilities reached.
    """

    groups: tuple[tuple[int, ...], ...]
    overlap: float
    bound: float
    split_bound: float

    def message(self) -> str:
        """One line: what was found, and what to change (settings, not options)."""
        copies = "; ".join(", ".join(str(k) for k in g) for g in self.groups)
        return (
            f"the fit stopped at a saddle, not a maximum: components {copies} are copies of "
            f"each other (Bhattacharyya overlap >= {self.overlap:.4f}), and splitting them and "
            f"refitting raises the bound from {self.bound:.6f} to {self.split_bound:.6f}; use "
            "init_params='k-means++' or more restarts (n_init)"
        )


def _full_covariances_of(model: GaussianMixture | BayesianGaussianMixture) -> np.ndarray:
    K, d = model.means_.shape
    cov_type = str(model.get_params()["covariance_type"])
    return full_covariances(model.covariances_, cov_type, K, d)


def find_saddle(
    model: GaussianMixture | BayesianGaussianMixture,
    X: Any,
    *,
    overlap: float = COPY_OVERLAP,
    min_weight: float = 0.01,
) -> Saddle | None:
    """Check a fitted ``GaussianMixture`` or ``BayesianGaussianMixture`` for a saddle.

    Parameters
    ----------
    model : fitted mixture
        Left as it is (the refit is made on a copy built from ``get_params()``).
    X : array-like of shape (n_samples, n_features)
        The data it was fitted to.
    overlap, min_weight : float
        See :func:`copy_groups`.

    Returns
    -------
    Saddle or None
        None when no components are copies, or when splitting them does not raise the bound.
    """
    resp = model.predict_proba(X)  # (n, K), checks that the model is fitted
    X = np.asarray(X, dtype=np.float64)
    groups, smallest = copy_groups(
        model.weights_,
        model.means_,
        _full_covariances_of(model),
        overlap=overlap,
        min_weight=min_weight,
    )
    if not groups:
        return None
    params = model.get_params()
    params.update(resp_init=split_responsibilities(X, resp, groups), n_init=1)
    for name in ("weights_init", "means_init", "precisions_init"):
        if name in params:
            params[name] = None
    refit = type(model)(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refit.fit(X)
    bound = float(model.lower_bound_)
    margin = max(float(model.tol), 1e-8 * max(1.0, abs(bound)))
    if not refit.lower_bound_ > bound + margin:
        return None
    return Saddle(groups, smallest, bound, float(refit.lower_bound_))

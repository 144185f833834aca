"""k-means++ seeding (Arthur and Vassilvitskii, 2007): the centres from which the mixtures of
:mod:`genrec.foundations.mixture_base` take their ``init="kmeans"`` responsibilities.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kmeans_plusplus"]


def _sq_dists(X: np.ndarray, sq_norms: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of C (m, d) and X (n, d), shape (m, n)."""
    d = np.sum(C * C, axis=1)[:, None] - 2.0 * (C @ X.T) + sq_norms[None, :]
    return np.maximum(d, 0.0)


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int, rng: np.random.Generator, n_local_trials: int | None = None
) -> np.ndarray:
    r"""Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007).

    The first centre is a uniform sample; each next one is chosen among ``n_local_trials``
    candidates drawn with probability :math:`\propto D(x)^2` (squared distance to the
    nearest chosen centre), keeping the candidate that most reduces
    :math:`\sum_n D(x_n)^2`.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_clusters : int
    rng : numpy.random.Generator
    n_local_trials : int, optional
        Defaults to ``2 + int(log K)``.

    Returns
    -------
    indices : ndarray of shape (n_clusters,)
        Row indices of the chosen centres.
    """
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    sq_norms = np.sum(X * X, axis=1)
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = rng.integers(n)
    closest = _sq_dists(X, sq_norms, X[indices[:1]])[0]
    potential = closest.sum()
    for c in range(1, n_clusters):
        if potential <= 0:  # all remaining points coincide with a centre
            indices[c] = rng.integers(n)
            continue
        draws = rng.random(n_local_trials) * potential
        cand = np.searchsorted(np.cumsum(closest), draws)
        cand = np.minimum(cand, n - 1)
        cand_d = np.minimum(closest[None, :], _sq_dists(X, sq_norms, X[cand]))
        pots = cand_d.sum(axis=1)
        best = int(np.argmin(pots))
        indices[c] = cand[best]
        closest = cand_d[best]
        potential = pots[best]
    return indices

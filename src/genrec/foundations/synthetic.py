"""Synthetic data sets with known parameters (for the CLI, the tests and the benchmark)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MixtureSample", "make_gaussian_mixture"]


@dataclass
class MixtureSample:
    """Points drawn from a known Gaussian mixture.

    Attributes
    ----------
    X : ndarray of shape (n, d)
    labels : ndarray of shape (n,)
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    covariances : ndarray of shape (K, d, d)
    """

    X: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


def make_gaussian_mixture(
    n_samples: int,
    n_components: int,
    n_features: int = 2,
    *,
    separation: float = 6.0,
    weight_concentration: float = 10.0,
    random_state: Any = None,
) -> MixtureSample:
    """Sample a mixture with well-separated components.

    Means are drawn uniformly in a box and accepted only if every pair is at least
    ``separation`` apart; covariances are random rotations of eigenvalues in [0.3, 1.5];
    weights are ``Dirichlet(weight_concentration)``.

    Parameters
    ----------
    n_samples, n_components, n_features : int
    separation : float
        Minimum Euclidean distance between means.
    weight_concentration : float
        Larger values give more equal weights.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    MixtureSample
    """
    n, K, d = int(n_samples), int(n_components), int(n_features)
    if n < 1 or K < 1 or d < 1:
        raise ValueError("n_samples, n_components and n_features must be >= 1")
    if K > n:
        raise ValueError(f"n_components={K} is larger than n_samples={n}")
    rng = np.random.default_rng(random_state)
    half = separation * max(1.0, K ** (1.0 / d))
    means = np.empty((K, d))
    k = 0
    attempts = 0
    while k < K:
        cand = rng.uniform(-half, half, size=d)
        if k == 0 or np.min(np.linalg.norm(means[:k] - cand, axis=1)) >= separation:
            means[k] = cand
            k += 1
        attempts += 1
        if attempts % 1000 == 0:
            half *= 1.5
    covs = np.empty((K, d, d))
    for k in range(K):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        ev = rng.uniform(0.3, 1.5, size=d)
        covs[k] = (q * ev) @ q.T
    weights = rng.dirichlet(np.full(K, weight_concentration))
    counts = rng.multinomial(n, weights)
    X = np.empty((n, d))
    labels = np.repeat(np.arange(K), counts)
    start = 0
    for k, m in enumerate(counts):
        L = np.linalg.cholesky(covs[k])
        X[start : start + m] = means[k] + rng.normal(size=(m, d)) @ L.T
        start += m
    perm = rng.permutation(n)
    return MixtureSample(X[perm], labels[perm], weights, means, covs)

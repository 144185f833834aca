"""Clustering users in latent space: K-Means or genrec's own Gaussian mixture (EM).

Embeddings are standardized and projected on their first ``pca_dim`` principal components
before clustering: full-covariance mixtures in 200 dimensions need far more users per
component than a data set has, and the leading components carry the taste structure.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from genrec._optional import require
from genrec.errors import ConfigError
from genrec.foundations import GaussianMixture

__all__ = ["Clustering", "reduce_dim", "fit_clusters", "select_k", "code_clusters"]


@dataclass
class Clustering:
    """Cluster assignment of n users.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
    proba : ndarray, shape (n,)
        Probability of the assigned cluster (GMM responsibilities; 1.0 for K-Means).
    k : int
    method : "gmm", "kmeans" or "codes" (a model's discrete codes: :func:`code_clusters`)
    silhouette : float
        Silhouette score in the clustering space (sampled on at most 5,000 users).
    bic : float or None
        GMM only.
    """

    labels: np.ndarray
    proba: np.ndarray
    k: int
    method: str
    silhouette: float
    bic: float | None


def reduce_dim(Z: np.ndarray, dim: int | None = 16, seed: int = 0) -> np.ndarray:
    """Standardize the columns of Z (n, d) and keep the first ``dim`` principal components."""
    Z = np.asarray(Z, dtype=np.float64)
    if dim is not None and dim < 1:
        raise ConfigError(f"the number of principal components must be >= 1, got {dim}")
    if not np.isfinite(Z).all():
        raise ConfigError("embeddings contain NaN or infinite values; the model is not usable")
    mean, sd = Z.mean(axis=0), Z.std(axis=0)
    varies = sd > 1e-10 * (1.0 + np.abs(mean))  # below: rounding noise of a constant column
    if len(Z) > 1 and not varies.any():
        raise ConfigError(
            "every user has the same embedding, so there is nothing to cluster "
            "(from a model: an untrained or collapsed encoder); train the model "
            "longer, or use the svd embedding (embedding='svd')"
        )
    Zs = np.where(varies, (Z - mean) / np.where(varies, sd, 1.0), 0.0)
    if dim is None or dim >= min(Zs.shape):
        return Zs
    PCA = require("sklearn.decomposition", "analysis", "Reducing embeddings by PCA").PCA
    return PCA(n_components=dim, random_state=seed).fit_transform(Zs)


def _silhouette(Y: np.ndarray, labels: np.ndarray, seed: int) -> float:
    n = len(Y)
    sample = min(n, 5000)
    if not 2 <= len(np.unique(labels)) < sample:  # undefined: one cluster, or one per point
        return float("nan")
    silhouette_score = require(
        "sklearn.metrics", "analysis", "The silhouette score"
    ).silhouette_score
    return float(silhouette_score(Y, labels, sample_size=sample, random_state=seed))


def fit_clusters(
    Y: np.ndarray, k: int, method: Literal["gmm", "kmeans"] = "gmm", seed: int = 0
) -> Clustering:
    """Cluster the rows of Y (n, d) into k groups."""
    n = len(Y)
    if not 1 <= k <= n:
        raise ConfigError(f"k = {k} clusters for {n} users; choose 1 <= k <= {n}")
    if method == "kmeans":
        KMeans = require("sklearn.cluster", "analysis", "K-Means clustering").KMeans
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(Y)
        labels = km.labels_.astype(np.int64)
        return Clustering(labels, np.ones(n), k, method, _silhouette(Y, labels, seed), None)
    if method == "gmm":
        gmm = GaussianMixture(
            k, covariance_type="full", n_init=3, reg_covar=1e-4, max_iter=200, random_state=seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: the best restart is kept
            gmm.fit(Y)
        resp = gmm.predict_proba(Y)
        labels = resp.argmax(1).astype(np.int64)
        return Clustering(
            labels, resp.max(1), k, method, _silhouette(Y, labels, seed), float(gmm.bic(Y))
        )
    raise ConfigError(f"clustering method must be gmm or kmeans, got {method!r}")


def code_clusters(Y: np.ndarray, codes: np.ndarray, seed: int = 0) -> Clustering:
    """The users' discrete codes (n,) as the clusters (a VQ-VAE's taste types): cluster 0 the
    most common code, 1 the next, ... (ties: the lower code first); the silhouette of those
    clusters in ``Y`` (n, d), the clustering space of the other methods."""
    codes = np.asarray(codes).reshape(len(codes), -1)[:, 0]
    values, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    order = np.lexsort((values, -counts))  # by size, then by code
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    labels = rank[inverse.reshape(-1)]
    return Clustering(
        labels, np.ones(len(labels)), len(values), "codes", _silhouette(Y, labels, seed), None
    )


def select_k(
    Y: np.ndarray,
    ks: Sequence[int],
    method: Literal["gmm", "kmeans"] = "gmm",
    criterion: Literal["bic", "silhouette"] = "bic",
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> tuple[Clustering, list[dict]]:
    """Fit every k in ``ks``; keep the lowest BIC (GMM) or the highest silhouette."""
    if criterion == "bic" and method != "gmm":
        raise ConfigError("BIC needs a likelihood: use method 'gmm', or criterion 'silhouette'")
    rows, fits = [], []
    for k in ks:
        c = fit_clusters(Y, k, method, seed)
        fits.append(c)
        rows.append({"k": k, "silhouette": c.silhouette, "bic": c.bic})
        if on_step is not None:
            on_step(k)
    if criterion == "bic":
        bics = [np.inf if c.bic is None else c.bic for c in fits]  # "bic" needs gmm: all set
        best = min(range(len(fits)), key=lambda j: bics[j])
    else:
        best = max(range(len(fits)), key=lambda j: np.nan_to_num(fits[j].silhouette, nan=-2))
    return fits[best], rows

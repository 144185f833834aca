"""User (and item) embeddings from a trained model, or a truncated SVD as the comparison point."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from genrec._optional import require
from genrec.data import Sequences
from genrec.errors import DataError
from genrec.models.base import Recommender

__all__ = ["model_user_embeddings", "svd_embeddings"]


def model_user_embeddings(
    model: Recommender, X: sp.csr_matrix | Sequences, users: np.ndarray | None = None
) -> np.ndarray:
    """The model's user embeddings of the history rows ``X`` (B, I) -> (B, K), float64
    (``X`` the users' ordered histories, a :class:`~genrec.data.Sequences`, for a sequential
    model).

    ``Recommender.user_embeddings`` (the encoder means of the VAE family, the user factors
    of BPR-MF and biased MF, ...: docs/analysis.md lists them); ``users`` are the rows' indices
    in the training matrix, which models that do not fold in need. A model without user
    embeddings raises a ConfigError: use :func:`svd_embeddings` instead.
    """
    Z = np.asarray(model.user_embeddings(X, users=users), dtype=np.float64)
    n = X.n_users if isinstance(X, Sequences) else X.shape[0]
    if Z.ndim != 2 or Z.shape[0] != n:
        raise DataError(f"user_embeddings returned shape {Z.shape} for {n} users")
    return Z


def svd_embeddings(X: sp.csr_matrix, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD of the binarized interactions: user factors U S (U, d), item factors V (I, d).

    Rows are L2-normalized first so heavy users do not dominate the components.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    X.data = np.ones_like(X.data)
    norms = np.sqrt(np.asarray(X.sum(axis=1)).ravel())
    Xn = sp.diags(1.0 / np.maximum(norms, 1.0)) @ X
    d = max(1, min(dim, min(X.shape) - 1))
    TruncatedSVD = require(
        "sklearn.decomposition", "analysis", "A truncated SVD of the interactions"
    ).TruncatedSVD
    svd = TruncatedSVD(n_components=d, random_state=seed, algorithm="randomized", n_iter=7)
    users = svd.fit_transform(Xn)  # (U, d) = U S
    return users, svd.components_.T  # (I, d)

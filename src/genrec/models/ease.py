"""EASE: Embarrassingly Shallow Autoencoders (Steck, WWW 2019).

An item x item linear model B scores a user's history x (1 x I) as ``x B``. It solves

    min_B ||X - X B||_F^2 + lambda ||B||_F^2   subject to diag(B) = 0

whose closed form, with P = (X^T X + lambda I)^{-1}, is

    B_ij = -P_ij / P_jj  (i != j),   B_jj = 0.

We form the Gram matrix G = X^T X from the sparse X, add lambda to its diagonal, invert it by
Cholesky in float64 (G + lambda I is symmetric positive definite for lambda > 0), and keep B
in float32 for scoring. Scores come from the given history rows, so users never seen in
training get recommendations without refitting (fold-in).

Memory: the dense I x I matrices dominate. Fitting holds about three of them in float64
(G, its Cholesky factor, P) plus B in float32: roughly ``28 * I**2`` bytes, e.g. 0.22 GB for
2,810 items, 11 GB for 20,000 items, 200+ GB beyond 85,000 items. Items without a training
interaction (a k-core filter drops their interactions, the id space keeps them) have zero rows
and columns in B, so the solve runs over the others alone; B is then scattered into the full
I x I (another ``4 * I**2`` bytes). ``fit`` checks this against ``max_memory_gb`` (default:
the machine's available memory) before allocating anything.
Each of the two dense steps (the Gram matrix, the inverse) logs one line with its time.

Departures from the paper: none in the model. The paper's ``lambda`` is ``l2`` here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from typing_extensions import Self

from genrec.errors import DivergenceError, MemoryLimitError
from genrec.models._sparse import sparse_matmul
from genrec.models.base import ArraySpec, Capabilities, Recommender, as_csr

__all__ = [
    "EASE",
    "EASEConfig",
    "ease_weights",
    "ease_memory_bytes",
    "ease_max_items",
    "gram_matrix",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EASEConfig:
    l2: float = 500.0  # lambda, the L2 weight on B (the paper tunes 100..1000s on validation)
    max_memory_gb: float | None = None  # refuse to fit above this; None = available memory
    seed: int = 0  # unused (closed form); kept so every config has a seed

    def __post_init__(self) -> None:
        if not 0 < self.l2 < math.inf:
            raise ValueError(
                f"l2 must be > 0 and finite (got {self.l2}); it keeps X^T X + l2 I invertible"
            )
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise ValueError(f"max_memory_gb must be > 0 or None, got {self.max_memory_gb}")


def ease_memory_bytes(n_items: int, n_all: int | None = None) -> int:
    """Approximate peak bytes EASE needs to fit on ``n_items`` items with training
    interactions (see module docstring), of ``n_all`` in the id space (None: the same):
    the solve over the first, plus the float32 B over all of them."""
    extra = 0 if n_all is None or n_all == n_items else 4 * n_all * n_all
    return 28 * n_items * n_items + extra


def ease_max_items(limit_bytes: float, n_all: int | None = None) -> int:
    """The most items with training interactions EASE fits in ``limit_bytes`` (the inverse
    of :func:`ease_memory_bytes`): of ``n_all`` in the id space, when given; 0 when not even
    B over all of them fits."""
    if n_all is not None and ease_memory_bytes(n_all) <= limit_bytes:
        return n_all
    rest = int(limit_bytes) - (0 if n_all is None else 4 * n_all * n_all)
    if rest < 0:
        return 0
    n = math.isqrt(rest // 28)
    return n + 1 if 28 * (n + 1) ** 2 <= rest else n


def _available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gram_matrix(X, block_cols: int | None = None) -> torch.Tensor:
    """G = X^T X as a dense float64 tensor (I, I), built a block of columns at a time.

    Each block G[:, j0:j1] = X^T X[:, j0:j1] is a sparse-sparse product in float64 (exact sums
    for counts). Besides G, memory holds two float64 copies of X (by rows and by columns) and
    one block of about 16 MB, whatever the number of users. On ML-1M this is three times
    faster than multiplying by a densified X.

    Parameters
    ----------
    X : CSR (U, I)
    block_cols : columns per block; None sizes blocks to about 16 MB
    """
    X = as_csr(X).astype(np.float64)
    n_items = X.shape[1]
    step = block_cols or max(1, 2**24 // (12 * max(n_items, 1)))
    XT, Xc = X.T.tocsr(), X.tocsc()  # (I, U), (U, I) by columns
    G = np.empty((n_items, n_items))
    for j in range(0, n_items, step):
        G[:, j : j + step] = (XT @ Xc[:, j : j + step]).toarray()  # (I, b)
    return torch.from_numpy(G)


def ease_weights(G: torch.Tensor, l2: float) -> torch.Tensor:
    """Closed-form EASE weights from the Gram matrix.

    Parameters
    ----------
    G : Tensor, shape (I, I), float64
        X^T X. Not modified.
    l2 : float
        lambda > 0.

    Returns
    -------
    B : Tensor, shape (I, I), float64, with a zero diagonal.

    Raises
    ------
    DivergenceError
        When G + lambda I is singular to working precision (a lambda far below the item
        counts, on a G of rank below I: more items than users, duplicate items) or B is not
        finite.
    """
    A = G.clone()
    A.diagonal().add_(l2)  # (I, I) G + lambda I
    L, info = torch.linalg.cholesky_ex(A)  # (I, I) lower; info > 0: not positive definite
    if int(info) > 0:
        raise DivergenceError(
            f"EASE: X^T X + l2 I is singular to working precision at l2 = {l2:g} (its "
            f"Cholesky factorization fails at item {int(info) - 1}); raise l2 (the paper "
            f"tunes 100 to 1000s)"
        )
    P = torch.cholesky_inverse(L)  # (I, I) (G + lambda I)^{-1}
    B = P / (-P.diagonal())  # (I, I) B_ij = -P_ij / P_jj (column j scaled)
    B.fill_diagonal_(0.0)
    if not bool(torch.isfinite(B).all()):
        raise DivergenceError(
            f"EASE: the weights are not finite at l2 = {l2:g} (X^T X + l2 I is "
            f"ill-conditioned or the data overflow); raise l2"
        )
    return B


class EASE(Recommender):
    """EASE (Steck 2019): closed-form item-item linear autoencoder.

    Attributes
    ----------
    B_ : Tensor, shape (n_items, n_items), float32
        The item-item weights, zero diagonal.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]])
    >>> model = EASE(l2=1.0).fit(X)
    >>> model.recommend(None, sp.csr_matrix([[1, 0, 0]]), k=1)[0].tolist()
    [[1]]
    """

    name = "ease"
    config_class = EASEConfig
    fitted_attributes = ("n_items_", "B_")
    capabilities = Capabilities()
    B_: torch.Tensor  # (I, I) item-item weights

    def __init__(self, config: EASEConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)

    def fit(self, X: Any, *, valid: Any = None, context: Any = None) -> Self:
        X = as_csr(X)
        n_items = X.shape[1]
        # items without a training interaction have zero rows and columns in B (G is block
        # diagonal there), so the dense solve runs over the others alone: k-core filtering
        # (protocol.item_k) shrinks it even though the id space keeps every item
        active = np.flatnonzero(np.bincount(X.indices, minlength=n_items))  # (A,)
        whole = len(active) == n_items
        need = ease_memory_bytes(len(active), None if whole else n_items)
        limit = (
            self.config.max_memory_gb * 2**30
            if self.config.max_memory_gb is not None
            else _available_memory_bytes()
        )
        if limit is not None and need > limit:
            which = "" if whole else f" with training interactions (of {n_items})"
            raise MemoryLimitError(
                f"EASE on {len(active)} items{which} needs about {need / 2**30:.1f} GiB (dense "
                f"item x item matrices) but only {limit / 2**30:.1f} GiB is allowed; filter "
                f"rare items (k-core) or use a factorized model",
                max_items=ease_max_items(limit, n_items),
            )
        # the two dense steps take about a minute at 20,000 items: one log line each, with
        # its time (the trainer's convention: a line per evaluation, shown without a terminal)
        t0 = time.perf_counter()
        G = gram_matrix(X if whole else X[:, active])  # (A, A) float64
        t1 = time.perf_counter()
        log.info(
            "ease: Gram matrix X^T X of %d items (%d interactions) %.2fs",
            len(active),
            X.nnz,
            t1 - t0,
        )
        B = ease_weights(G, self.config.l2).float() if len(active) else G.float()  # (A, A)
        del G
        if whole:
            self.B_ = B.contiguous()  # (I, I), row-major
        else:
            self.B_ = torch.zeros((n_items, n_items), dtype=torch.float32)  # (I, I)
            idx = torch.from_numpy(active)
            self.B_[idx.unsqueeze(1), idx] = B
        log.info(
            "ease: weights, (X^T X + l2 I)^-1 at l2=%g %.2fs",
            self.config.l2,
            time.perf_counter() - t1,
        )
        self.n_items_ = n_items
        return self

    def score(self, users, X_users) -> torch.Tensor:
        users, X = self._check_users(users, X_users)
        return sparse_matmul(X, self.B_)  # (B, I) = x B

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"B": self.B_.numpy()}

    def state_arrays(self) -> dict[str, ArraySpec]:
        return {"B": ArraySpec((self.n_items_, self.n_items_))}  # (I, I)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.B_ = torch.from_numpy(state["B"].astype(np.float32))

"""The factorization machine's arithmetic (Rendle, ICDM 2010), apart from the model class.

Pure functions of tensors and sparse matrices, used by :class:`genrec.models.fm.FM` and
tested against the definitions: the design matrix of (user, item) pairs and its padded-row
form, the pairwise term by its definition (:func:`fm_pairwise_naive`, a reference) and by
Rendle's O(K n_nz) identity (:func:`fm_pairwise`), the prediction for sparse and padded rows,
and the per-feature L2 penalty. Dimensions as in :mod:`genrec.models.fm`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from genrec.data.features import SideFeatures
from genrec.models._shallow import gather_rows, lookup
from genrec.models._sparse import sparse_matmul

__all__ = [
    "fm_feature_blocks",
    "design_matrix",
    "padded_rows",
    "fm_pairwise_naive",
    "fm_pairwise",
    "fm_predict",
    "fm_padded",
    "fm_penalty",
    "fm_row_parts",
]


# ----------------------------------------------------------------------------- features
def fm_feature_blocks(
    n_users: int, n_items: int, side: SideFeatures | None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Each user's and each item's part of the design matrix, in the full feature space.

    Returns ``user_block`` (U, F) = [one-hot user | 0 | user side | 0] and ``item_block``
    (I, F) = [0 | one-hot item | 0 | item side], with F = U + I + Fu + Fi. A design row is
    ``user_block[u] + item_block[i]`` (the two never share a column).
    """
    Fu = 0 if side is None else side.user.shape[1]
    Fi = 0 if side is None else side.item.shape[1]
    eye_u = sp.identity(n_users, np.float32, format="csr")
    eye_i = sp.identity(n_items, np.float32, format="csr")
    us = side.user if side is not None else sp.csr_matrix((n_users, 0), dtype=np.float32)
    its = side.item if side is not None else sp.csr_matrix((n_items, 0), dtype=np.float32)
    ub = sp.hstack(
        [eye_u, sp.csr_matrix((n_users, n_items)), us, sp.csr_matrix((n_users, Fi))],
        format="csr",
        dtype=np.float32,
    )
    ib = sp.hstack(
        [sp.csr_matrix((n_items, n_users)), eye_i, sp.csr_matrix((n_items, Fu)), its],
        format="csr",
        dtype=np.float32,
    )
    return ub, ib


def design_matrix(
    users: np.ndarray, items: np.ndarray, user_block: sp.csr_matrix, item_block: sp.csr_matrix
) -> sp.csr_matrix:
    """The sparse design matrix (n, F): row k is x for the pair (users[k], items[k]).

    An unknown user or item (index -1 or out of range) contributes an empty part.
    """
    u, ku = lookup(users, user_block.shape[0])
    i, ki = lookup(items, item_block.shape[0])
    Xu = sp.diags(ku.astype(np.float32)) @ user_block[u]  # (n, F)
    Xi = sp.diags(ki.astype(np.float32)) @ item_block[i]  # (n, F)
    X = sp.csr_matrix(Xu + Xi, dtype=np.float32)
    X.eliminate_zeros()
    return X


def padded_rows(block: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR rows as padded (index, value) arrays (R+1, L); the extra last row is empty.

    Padding entries have index 0 and value 0, so they add nothing to sums weighted by value.
    """
    block = sp.csr_matrix(block)
    counts = np.diff(block.indptr)
    L = max(int(counts.max()) if len(counts) else 0, 1)
    R = block.shape[0]
    idx = np.zeros((R + 1, L), np.int64)
    val = np.zeros((R + 1, L), block.dtype if block.dtype.kind == "f" else np.float32)
    pos = np.arange(L)[None, :] < counts[:, None]  # (R, L)
    idx[:R][pos] = block.indices
    val[:R][pos] = block.data
    return torch.from_numpy(idx), torch.from_numpy(val)


# ----------------------------------------------------------------------------- math
def fm_pairwise_naive(X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """The pairwise term by its definition, sum_{j<l} <v_j, v_l> x_j x_l; X dense (n, F).

    O(n F^2 K): a reference for tests only.
    """
    G = V @ V.T  # (F, F) <v_j, v_l>
    full = torch.einsum("nj,jl,nl->n", X, G, X)  # sum over all (j, l)
    diag = (X * X) @ G.diagonal()  # (n,) the j == l terms
    return 0.5 * (full - diag)


def fm_pairwise(X: sp.csr_matrix, V: torch.Tensor) -> torch.Tensor:
    """The pairwise term by Rendle's O(K n_nz) identity, X a sparse design matrix (n, F)."""
    XV = sparse_matmul(X, V)  # (n, K) sum_j x_j v_jf
    X2 = X.multiply(X).tocsr()
    X2V2 = sparse_matmul(X2, V * V)  # (n, K) sum_j x_j^2 v_jf^2
    return 0.5 * (XV * XV - X2V2).sum(1)  # (n,)


def fm_predict(
    X: sp.csr_matrix, w0: torch.Tensor, w: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """y_hat = w0 + x . w + pairwise for every row of the design matrix X (n, F)."""
    return w0 + sparse_matmul(X, w[:, None])[:, 0] + fm_pairwise(X, V)  # (n,)


def fm_padded(
    idx: torch.Tensor, val: torch.Tensor, w0: torch.Tensor, w: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """y_hat for padded rows (B, L) of (feature index, value): the identity, batched."""
    Vx = gather_rows(V, idx) * val[..., None]  # (B, L, K) x_j v_j
    s = Vx.sum(1)  # (B, K)
    pair = 0.5 * (s * s - (Vx * Vx).sum(1)).sum(1)  # (B,)
    return w0 + (gather_rows(w, idx) * val).sum(1) + pair  # (B,)


def fm_penalty(
    idx: torch.Tensor, val: torch.Tensor, w: torch.Tensor, V: torch.Tensor, l2_w: float, l2_v: float
) -> torch.Tensor:
    """sum over padded rows (B, L) of lambda_w w_j^2 + lambda_v ||v_j||^2 for each feature j the
    row uses (x_j != 0; padding has value 0)."""
    used = (val != 0).float()  # (B, L)
    return (
        l2_w * (gather_rows(w, idx) ** 2 * used).sum()
        + l2_v * ((gather_rows(V, idx) ** 2).sum(-1) * used).sum()
    )


def fm_row_parts(
    idx: torch.Tensor, val: torch.Tensor, w: torch.Tensor, V: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums a = sum_j x_j v_j (R, K) and the row's own terms (R,) (linear + pairwise)."""
    Vx = gather_rows(V, idx) * val[..., None]  # (R, L, K)
    a = Vx.sum(1)  # (R, K)
    own = (gather_rows(w, idx) * val).sum(1) + 0.5 * (a * a - (Vx * Vx).sum(1)).sum(1)  # (R,)
    return a, own

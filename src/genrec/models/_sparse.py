"""Small helpers shared by models: CSR rows densified, and a sparse-times-dense product."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F


def csr_to_dense(X: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """Densify a (batch of) CSR rows into a float32 tensor (B, I)."""
    X = sp.csr_matrix(X)
    out = torch.zeros(X.shape, dtype=torch.float32)
    if X.nnz:
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        out[torch.from_numpy(rows), torch.from_numpy(X.indices.astype(np.int64))] = (
            torch.from_numpy(X.data.astype(np.float32))
        )
    return out.to(device)


def sparse_matmul(X: sp.csr_matrix, W: torch.Tensor) -> torch.Tensor:
    """``X @ W`` for a CSR matrix X (B, I) and a dense tensor W (I, D), multi-threaded.

    Row u of the product is the sum of W's rows at u's stored columns, weighted by the stored
    values: one ``embedding_bag`` (on CPU several times faster than ``torch.sparse.mm``, and
    with a backward to W). Values of 1 (implicit feedback) skip the weighting.
    """
    X = sp.csr_matrix(X)
    if X.nnz == 0:
        return torch.zeros((X.shape[0], W.shape[1]), dtype=W.dtype, device=W.device)
    indptr = torch.from_numpy(X.indptr.astype(np.int64)).to(W.device)  # (B + 1,)
    indices = torch.from_numpy(X.indices.astype(np.int64)).to(W.device)  # (nnz,)
    weights = None
    if not (X.data == 1).all():
        weights = torch.from_numpy(np.asarray(X.data)).to(W.device, W.dtype)  # (nnz,)
    # rows of W are gathered: a transposed (column-major) W would be read with a stride
    return F.embedding_bag(
        indices,
        W.contiguous(),
        indptr,
        mode="sum",
        per_sample_weights=weights,
        include_last_offset=True,
    )  # (B, D)

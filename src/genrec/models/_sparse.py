"""Small helpers shared by models: scipy CSR <-> torch tensors."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def csr_to_torch(X: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """A torch sparse CSR tensor sharing nothing with ``X`` (float32)."""
    X = sp.csr_matrix(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(X.indptr.astype(np.int64)),
            torch.from_numpy(X.indices.astype(np.int64)),
            torch.from_numpy(X.data.astype(np.float32)),
            size=X.shape,
            device=device,
        )


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
    """``X @ W`` for a CSR matrix X (B, I) and a dense tensor W (I, D), multi-threaded."""
    if X.nnz == 0:
        return torch.zeros((X.shape[0], W.shape[1]), dtype=W.dtype, device=W.device)
    return torch.sparse.mm(csr_to_torch(X, W.device).to(W.dtype), W)

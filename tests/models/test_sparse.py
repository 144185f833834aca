"""genrec.models._sparse: the CSR x dense product the models score with."""

import numpy as np
import scipy.sparse as sp
import torch

from genrec.models._sparse import csr_to_dense, sparse_matmul


def _csr(rng, shape, values):
    X = sp.random(*shape, density=0.3, format="csr", random_state=rng, dtype=np.float64)
    if values == "ones":
        X.data[:] = 1.0
    empty = sp.csr_matrix((1, shape[1]))
    return sp.vstack([empty, X[1:], empty, empty]).tocsr()  # empty first and last rows


def test_sparse_matmul_equals_the_dense_product():
    rng = np.random.default_rng(0)
    for values in ("ones", "weighted"):
        X = _csr(rng, (9, 7), values)
        for W in (
            torch.randn(7, 5, dtype=torch.float64),
            torch.randn(5, 7, dtype=torch.float64).T,  # column-major
            torch.randn(7, 1, dtype=torch.float64),
        ):
            got = sparse_matmul(X, W)
            assert got.shape == (11, W.shape[1]) and got.dtype == torch.float64
            torch.testing.assert_close(got, torch.from_numpy(X.toarray()) @ W)
            assert not got[0].any() and not got[-2:].any()
        W32 = torch.randn(7, 4)
        torch.testing.assert_close(sparse_matmul(X, W32), csr_to_dense(X) @ W32)


def test_sparse_matmul_of_nothing_and_its_gradient():
    W = torch.randn(6, 3, requires_grad=True)
    assert sparse_matmul(sp.csr_matrix((4, 6)), W).shape == (4, 3)
    X = sp.csr_matrix(np.array([[0, 2.0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0]]))
    sparse_matmul(X, W).sum().backward()
    # d/dW of sum(X W) is X's column sums, repeated along W's columns
    expect = torch.from_numpy(X.sum(0).A1.astype(np.float32))[:, None].expand(6, 3)
    torch.testing.assert_close(W.grad, expect)

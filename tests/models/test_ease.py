import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DivergenceError
from genrec.models import EASE, Popularity
from genrec.models.ease import ease_memory_bytes, ease_weights, gram_matrix
from genrec.testing import RecommenderConformance


class TestEASE(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return EASE(l2=1.0, seed=seed)


class TestPopularity(RecommenderConformance):
    personalized = False

    def make_model(self, seed: int = 0):
        return Popularity(seed=seed)


def _random_binary(rng, U=30, I=12, p=0.3):
    return sp.csr_matrix((rng.random((U, I)) < p).astype(np.float32))


def test_ease_weights_match_constrained_least_squares():
    """B solves min ||X - XB||^2 + l ||B||^2 s.t. diag(B) = 0, column by column."""
    rng = np.random.default_rng(0)
    X = _random_binary(rng).toarray().astype(np.float64)
    lam = 3.0
    B = ease_weights(torch.from_numpy(X.T @ X), lam).numpy()
    I = X.shape[1]
    for j in range(I):
        others = [i for i in range(I) if i != j]
        A = X[:, others]
        # ridge regression of column j on the other columns
        w = np.linalg.solve(A.T @ A + lam * np.eye(I - 1), A.T @ X[:, j])
        np.testing.assert_allclose(B[others, j], w, rtol=1e-8, atol=1e-10)
        assert B[j, j] == 0.0


def test_gram_matrix_blocks_equal_direct_product():
    rng = np.random.default_rng(1)
    X = _random_binary(rng, U=50)
    direct = (X.T @ X).toarray()
    for block_cols in (7, None):  # several blocks with a ragged last one; one block
        G = gram_matrix(X, block_cols=block_cols)
        assert G.dtype == torch.float64
        np.testing.assert_allclose(G.numpy(), direct)


def test_ease_scores_are_history_times_B():
    rng = np.random.default_rng(2)
    X = _random_binary(rng)
    m = EASE(l2=2.0).fit(X)
    np.testing.assert_allclose(
        np.asarray(m.score(None, X)), X.toarray() @ m.B_.numpy(), rtol=1e-5, atol=1e-6
    )


def test_ease_refuses_catalogue_above_memory_limit():
    cols = np.arange(20000)
    X = sp.csr_matrix((np.ones(20000, np.float32), (cols % 3, cols)), shape=(3, 20000))
    with pytest.raises(ConfigError, match=r"EASE on 20000 items needs about 10\.4 GiB"):
        EASE(max_memory_gb=1.0).fit(X)
    assert ease_memory_bytes(2810) < 0.25 * 2**30


def test_ease_rejects_nonpositive_l2():
    with pytest.raises(ConfigError, match="l2 must be > 0"):
        EASE(l2=0.0)


def test_unknown_config_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key lamda"):
        EASE(lamda=3.0)


def test_popularity_ranks_by_count():
    X = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]], np.float32))
    items, _ = Popularity().fit(X).recommend(None, sp.csr_matrix((1, 4), dtype=np.float32), k=4)
    assert items[0].tolist() == [1, 2, 0, 3]


@pytest.mark.parametrize(
    "kw",
    [
        dict(l2=float("inf")),
        dict(max_memory_gb=float("nan")),
        dict(max_memory_gb=-1.0),
        dict(max_memory_gb=0.0),
    ],
)
def test_non_finite_l2_and_bad_memory_limits_are_refused(kw):
    # before: l2=inf fitted NaN weights silently; a NaN memory limit disabled the check
    with pytest.raises(ConfigError):
        EASE(**kw)


@pytest.mark.parametrize("dup", [False, True])
def test_ease_with_a_vanishing_l2_on_a_singular_gram_matrix_is_a_divergence_error(dup):
    # issue 28, defect 9: l2=1e-30 on X^T X of rank < I (more items than users, or two
    # identical items) was a LinAlgError traceback from the Cholesky factorization
    rng = np.random.default_rng(0)
    X = (rng.random((10, 40)) < 0.3).astype(np.float32)
    if dup:
        X = np.vstack([X] * 6)  # 60 users: rank from the duplicate item alone
        X[:, 1] = X[:, 0]
    X = sp.csr_matrix(X)
    with pytest.raises(
        DivergenceError, match=r"singular to working precision at l2 = 1e-30.*raise l2"
    ):
        EASE(l2=1e-30).fit(X)
    # a small l2 the factorization can still take is fitted as before: the closed form
    B = EASE(l2=1e-6).fit(X).B_.double()
    A = torch.from_numpy((X.T @ X).toarray()).double() + 1e-6 * torch.eye(40, dtype=torch.float64)
    P = torch.linalg.inv(A)
    want = -P / P.diagonal()
    want.fill_diagonal_(0.0)
    torch.testing.assert_close(B, want, atol=1e-4, rtol=1e-3)

"""The model contract across the registry: fold-in refusals and the embedding methods.

Every registered model is fitted once (the tiny configs of test_registry.py) on a small
checkerboard; each test states what the contract promises for every model and checks it.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from benchmarks.golden import build_model, one_thread

from genrec.data import Sequences
from genrec.errors import ConfigError, DataError
from genrec.models import BPRMF, MODELS, Recommender
from genrec.testing import checkerboard, in_random_order
from tests.models.test_registry import TINY

#: name -> (has user embeddings, has item embeddings): the table of docs/analysis.md
EMBEDDINGS: dict[str, tuple[bool, bool]] = {
    "popularity": (False, False),
    "ease": (False, False),
    "gaussian-vae": (True, True),
    "mult-vae": (True, True),
    "mult-dae": (True, True),
    "vq-vae": (True, True),
    "recvae": (True, True),
    "cdae": (True, True),
    "diffrec": (False, False),
    "ldiffrec": (True, False),
    "biased-mf": (True, True),
    "bpr-mf": (True, True),
    "fm": (True, True),
    "autorec": (False, True),  # the tiny config is I-AutoRec (variant "item")
    "transition": (False, True),  # an item's row: its next-item distribution
    "gru4rec": (True, True),  # the sequential networks: the state that scores the next item
    "bert4rec": (True, True),
    "hstu": (True, True),
    "sasrec": (True, True),
    "tiger": (True, True),  # the encoder's mean output; an item's mean code embedding
    "p5": (True, True),  # the encoder's mean output over the prompt; an item's mean token
}

#: models whose scores are user . item embedding plus a per-user and a per-item term
DOT_PRODUCT = {"bpr-mf", "biased-mf", "fm", "cdae", "recvae", "gru4rec", "hstu", "sasrec"}


def _data() -> sp.csr_matrix:
    X, _ = checkerboard(n_groups=2, users_per_group=8, items_per_group=6)
    return X


def _input(name: str) -> sp.csr_matrix | Sequences:
    """The checkerboard as the model reads it: ordered histories for a sequential model."""
    return in_random_order(_data()) if MODELS[name].capabilities.sequential else _data()


def _rows(X: sp.csr_matrix | Sequences, rows) -> sp.csr_matrix | Sequences:
    return X.take(rows) if isinstance(X, Sequences) else X[rows]


@cache
def _fitted(name: str) -> Recommender:
    with one_thread():
        return build_model(name, TINY[name]).fit(_input(name))


def _np(a) -> np.ndarray:
    return a.detach().cpu().float().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def test_every_registered_model_has_an_embeddings_entry():
    assert set(EMBEDDINGS) == set(MODELS)


def test_bprmf_recommend_none_for_new_histories_is_refused_not_one_list_for_all():
    # BPR-MF cannot fold in: recommend(None, X_new) gave every row the same list (the mean
    # user factor), and an unknown user index was scored the same way
    X = _data()
    m = BPRMF(n_factors=4, train={"epochs": 3, "device": "cpu"}).fit(X)
    with pytest.raises(ConfigError, match="bpr-mf cannot score or embed users unseen"):
        m.recommend(None, X[:3], k=2)
    with pytest.raises(DataError, match=r"user index 16 is not a training user .* \[0, 16\)"):
        m.recommend(np.array([0, 16]), X[:2], k=2)
    with pytest.raises(DataError, match="user index -1 is not a training user"):
        m.score(np.array([-1]), X[:1])
    top, _ = m.recommend(np.arange(X.shape[0]), X, k=2)  # training users still work
    assert top.shape == (X.shape[0], 2) and (top >= 0).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_without_fold_in_refuse_new_users_in_score_and_recommend(name):
    m = _fitted(name)
    X = _input(name)
    n, n_items = _data().shape
    if m.folds_in():
        assert type(m).capabilities.folds_in or name == "autorec"
        assert _np(m.score(None, _rows(X, slice(0, 2)))).shape == (2, n_items)  # histories only
        return
    assert m.n_users_ == n
    for call in (m.score, lambda u, x: m.recommend(u, x, k=2)):
        with pytest.raises(ConfigError, match=f"model {name} cannot score or embed users"):
            call(None, X[:2])
        for bad in (n, n + 5, -1):
            with pytest.raises(DataError, match=f"user index {bad} is not a training user"):
                call(np.array([0, bad]), X[:2])
    assert _np(m.score(np.array([0, n - 1]), X[[0, n - 1]])).shape == (2, n_items)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_user_and_item_embeddings_follow_the_contract_for_every_model(name):
    m = _fitted(name)
    X = _input(name)
    n, n_items = _data().shape
    users = np.arange(n)
    has_users, has_items = EMBEDDINGS[name]
    if has_users:
        Z = m.user_embeddings(X, users=users)
        assert Z.dtype == np.float32 and Z.ndim == 2 and Z.shape[0] == n
        assert np.isfinite(Z).all()
        part = m.user_embeddings(_rows(X, slice(3, 5)), users=users[3:5])  # rows of the whole
        np.testing.assert_allclose(part, Z[3:5], rtol=1e-5, atol=1e-6)
        if not m.folds_in():
            with pytest.raises(ConfigError, match="cannot score or embed users unseen"):
                m.user_embeddings(_rows(X, slice(0, 2)))
    else:
        with pytest.raises(ConfigError, match=f"model {name} has no user embeddings"):
            m.user_embeddings(X, users=users)
    if has_items:
        V = m.item_embeddings()
        assert V.dtype == np.float32 and V.ndim == 2 and V.shape[0] == n_items
        assert np.isfinite(V).all()
    else:
        with pytest.raises(ConfigError, match=f"model {name} has no item embeddings"):
            m.item_embeddings()


@pytest.mark.parametrize("name", sorted(DOT_PRODUCT))
def test_scores_of_factor_models_are_user_dot_item_embeddings(name):
    # S = U V^T + a_u + c_i, so double-centering S leaves the centred U V^T exactly
    m = _fitted(name)
    X = _input(name)
    users = np.arange(_data().shape[0])
    S = _np(m.score(users, X)).astype(np.float64)
    U = m.user_embeddings(X, users=users).astype(np.float64)
    V = m.item_embeddings().astype(np.float64)
    S_c = S - S.mean(0) - S.mean(1, keepdims=True) + S.mean()
    UV = (U - U.mean(0)) @ (V - V.mean(0)).T
    np.testing.assert_allclose(S_c, UV, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(UV).max()))


def test_mult_vae_item_embeddings_are_the_output_rows_of_its_decoder():
    # item i's logit is its row . the last hidden activation of the decoder + a bias
    m = _fitted("mult-vae")
    X = _data()
    net = m.module_
    with torch.no_grad():
        h = torch.from_numpy(m.user_embeddings(X))  # (U, K) encoder means
        for i, layer in enumerate(net.decoder[:-1]):
            h = layer(h) if i == 0 else layer(torch.tanh(h))
        last = torch.tanh(h) if len(net.decoder) > 1 else h  # (U, D)
        logits = last @ torch.from_numpy(m.item_embeddings()).T + net.decoder[-1].bias
    np.testing.assert_allclose(_np(m.score(None, X)), logits.numpy(), rtol=1e-4, atol=1e-4)


def test_autorec_item_embeddings_are_the_codes_of_the_item_columns():
    m = _fitted("autorec")
    X = _data()
    net = m.net_
    R = torch.from_numpy(X.T.toarray())  # (I, U): I-AutoRec encodes item columns
    with torch.no_grad():
        codes = net.f(R @ net.encode.weight.T + net.encode.bias)  # (I, H)
        recon = net.g(codes @ net.decode.weight.T + net.decode.bias)  # (I, U)
    np.testing.assert_allclose(m.item_embeddings(), codes.numpy(), rtol=1e-5, atol=1e-6)
    users = np.arange(X.shape[0])
    np.testing.assert_allclose(_np(m.score(users, X)), recon.T.numpy(), rtol=1e-4, atol=1e-5)

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from genrec.errors import ConfigError, DataError
from genrec.models import CDAE, get_model_class
from genrec.models.base import Recommender
from genrec.models.cdae import cdae_loss
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import Batch, Phase, StepContext

TINY = dict(latent_dim=16, corruption=0.2, l2=1e-3)
FAST = dict(batch_size=8, epochs=30, lr=3e-2, device="cpu")


def tiny(**train):
    """The tiny model's settings, with ``train`` over the fast trainer settings."""
    return {**TINY, "train": {**FAST, **train}}


class TestCDAE(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return CDAE(**tiny(seed=seed))


def test_registered_and_paper_defaults():
    assert get_model_class("cdae") is CDAE
    c = CDAE().config
    assert (c.latent_dim, c.hidden_activation, c.corruption) == (50, "sigmoid", 0.2)
    assert not CDAE.capabilities.folds_in


@pytest.mark.parametrize(
    "bad", [dict(corruption=1.0), dict(latent_dim=0), dict(l2=-1.0), dict(hidden_activation="gelu")]
)
def test_bad_config_values_raise(bad):
    with pytest.raises(ConfigError):
        CDAE(**bad)


def test_loss_equals_dense_binary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    X = sp.random(6, 9, density=0.4, format="csr", random_state=1, dtype=np.float32)
    X.data[:] = 1
    logits = torch.randn(6, 9, generator=g)
    dense = torch.from_numpy(X.toarray())
    expected = F.binary_cross_entropy_with_logits(logits, dense, reduction="sum") / 6
    torch.testing.assert_close(cdae_loss(logits, Batch.from_csr(X)), expected)


def test_network_forward_matches_the_formula():
    X, _ = checkerboard()
    m = CDAE(**tiny(epochs=1)).fit(X)
    net = m.module_
    users = np.array([0, 5, 13])
    x = torch.from_numpy(X[users].toarray())
    W, b = net.input.weight, net.input.bias  # (I, K), (K,)
    V = net.user_node.weight[torch.from_numpy(users)]  # (3, K)
    z = torch.sigmoid(x @ W + V + b)
    expected = z @ net.output.weight.T + net.output.bias
    torch.testing.assert_close(m.score(users, X[users]), expected.detach())
    # the user embedding is z_u, user node included; the item embeddings W'_i
    emb = m.user_embeddings(X[users], users=users)
    torch.testing.assert_close(torch.from_numpy(emb), z.detach())
    torch.testing.assert_close(torch.from_numpy(m.item_embeddings()), net.output.weight.detach())


def test_l2_penalty_once_per_epoch_for_shared_weights():
    X, _ = checkerboard()
    m = CDAE(**{**tiny(epochs=1), "corruption": 0.0, "l2": 0.3}).fit(X)
    net = m.module_
    users = torch.arange(6)
    batch = Batch.from_csr(X[:6], users)
    ctx = StepContext(
        0, 0, Phase(), torch.Generator().manual_seed(0), torch.device("cpu"), "fp32", X
    )
    out = m.train_step(batch, ctx)
    shared = sum(p.pow(2).sum() for n, p in net.named_parameters() if not n.startswith("user_node"))
    nodes = net.user_node.weight[:6].pow(2).sum()
    pen = 0.5 * 0.3 * (6 / X.shape[0] * shared + nodes) / 6
    torch.testing.assert_close(out["loss"], out["recon"] + pen)


def test_user_node_matters_and_bad_user_indices_raise():
    X, _ = checkerboard()
    m = CDAE(**tiny()).fit(X)
    users = np.arange(X.shape[0])
    net = m.module_
    with torch.no_grad():  # the same histories without the user node
        z0 = torch.sigmoid(torch.from_numpy(X.toarray()) @ net.input.weight + net.input.bias)
        no_node = (z0 @ net.output.weight.T + net.output.bias).numpy()
    assert not np.allclose(np.asarray(m.score(users, X)), no_node)
    with pytest.raises(DataError, match="is not a training user"):
        m.score(np.array([X.shape[0]]), X[:1])
    with pytest.raises(ConfigError, match="cannot score or embed users unseen"):
        m.score(None, X[:1])


def test_save_load_keeps_user_count(tmp_path):
    X, _ = checkerboard()
    m = CDAE(**tiny(epochs=2)).fit(X)
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.n_users_ == X.shape[0]


def test_targets_outside_zero_one_are_refused():
    X, _ = checkerboard()
    X = X.copy()
    X.data[:] = 3.0  # ratings or counts: the logistic loss would fall without bound
    with pytest.raises(DataError, match="0/1 targets"):
        CDAE(**tiny()).fit(X)
    X.data[:] = 0.5  # soft targets are fine
    CDAE(**tiny(epochs=1)).fit(X)

"""L-DiffRec: conformance, item clustering, the clustered VAE, the loss weights."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError
from genrec.models import LDiffRec, MultVAE, get_model_class
from genrec.models.ldiffrec import (
    ClusteredVAE,
    autoencoder_item_embeddings,
    cluster_items,
    split_sizes,
    svd_item_embeddings,
)
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import Batch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: one thread avoids OpenMP spin-waits on this shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(seed: int = 0, train: dict | None = None, **kw) -> LDiffRec:
    # lamda tiny: on this toy data the reweighted diffusion loss (~1e4) would swamp the
    # reconstruction term (~30 nats); on real data the authors' 0.05 balances them
    cfg = dict(
        latent_dim=8,
        embedding_dim=4,
        diffusion={"dims": (16,)},
        vae_lr=1e-2,
        lamda=1e-4,
        lamda_min=1e-4,
    )
    cfg.update(kw)
    train = {
        "epochs": 40,
        "batch_size": 8,
        "lr": 1e-2,
        "device": "cpu",
        "seed": seed,
        **(train or {}),
    }
    return LDiffRec(**cfg, train=train)


class TestLDiffRec(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return tiny(seed)

    @pytest.mark.slow
    def test_same_seed_same_scores(self):
        super().test_same_seed_same_scores()


def test_svd_kmeans_clusters_recover_the_blocks():
    X, _ = checkerboard(n_groups=3)
    labels = cluster_items(svd_item_embeddings(X, 4, seed=0), 3, seed=0)
    assert labels.tolist() == [0] * 12 + [1] * 12 + [2] * 12  # canonical numbering
    assert (cluster_items(np.zeros((5, 2)), 1) == 0).all()


def test_split_sizes_follows_the_authors_rule():
    assert split_sizes(300, np.array([100, 200])) == [100, 200]
    assert split_sizes(10, np.array([1, 1, 1])) == [3, 3, 4]
    assert split_sizes(4, np.array([1, 1000, 1000])) == [1, 1, 2]  # at least one unit each
    with pytest.raises(ConfigError, match="cannot split"):
        split_sizes(4, np.array([1, 1000, 1]))


def test_clustered_vae_maps_each_slice_to_its_own_latent_and_back():
    cluster = np.array([1, 0, 1, 0, 0, 1])  # items 1, 3, 4 in cluster 0
    vae = ClusteredVAE(cluster, latent_dim=4, hidden=(), generator=torch.Generator())
    assert vae.item_sizes == [3, 3] and vae.latent_sizes == [2, 2]
    assert vae.local_index.tolist() == [0, 0, 1, 1, 2, 2]

    def enc(rows):
        b = Batch.from_csr(sp.csr_matrix(np.array(rows, np.float32)))
        return vae.encode(b.indptr, b.indices, b.values)

    mu0, _ = enc([[0, 0, 0, 0, 0, 0]])
    mu, _ = enc([[1, 0, 0, 0, 0, 0]])  # an item of cluster 1 only
    assert torch.equal(mu[:, :2], mu0[:, :2])  # cluster 0's latent does not see item 0
    assert not torch.equal(mu[:, 2:], mu0[:, 2:])
    # the sparse first layer equals the dense product with the cluster's slice
    x = np.array([[1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 0, 0]], np.float32)
    mu, logvar = enc(x)
    w0, b0 = vae.inputs[0].weight, vae.inputs[0].bias  # (3, 4): cluster 0, 2 K_0 outputs
    dense0 = torch.from_numpy(x[:, cluster == 0]) @ w0 + b0
    torch.testing.assert_close(mu[:, :2], dense0[:, :2])
    torch.testing.assert_close(logvar[:, :2], dense0[:, 2:])
    z = torch.zeros((1, 4))
    z[0, 2:] = 1.0  # move cluster 1's latent only
    diff = vae.decode(z) - vae.decode(torch.zeros((1, 4)))
    assert (diff[0, cluster == 0] == 0).all() and (diff[0, cluster == 1] != 0).all()


def test_shared_decoder_reads_the_whole_latent():
    cluster = np.array([1, 0, 1, 0, 0, 1])
    vae = ClusteredVAE(cluster, 4, (), torch.Generator(), shared_decoder=True)
    assert len(vae.decoders) == 1 and vae.decoders[0][0].weight.shape == (6, 4)
    z = torch.zeros((1, 4))
    z[0, 2:] = 1.0
    diff = vae.decode(z) - vae.decode(torch.zeros((1, 4)))
    assert (diff != 0).all()  # cluster 1's latent moves every item
    X, _ = checkerboard()
    m = tiny(train={"epochs": 2}, shared_decoder=True).fit(X)
    assert m.score(None, X).shape == X.shape


def test_lamda_schedule_and_loss_parts():
    m = tiny(lamda=0.05, lamda_min=0.005, lamda_anneal_epochs=10)
    assert m.lamda_at(0) == pytest.approx(0.05)
    assert m.lamda_at(5) == pytest.approx(0.025)
    assert m.lamda_at(20) == pytest.approx(0.005)
    X, _ = checkerboard()
    m = tiny(train={"epochs": 2}).fit(X)
    rec = m.history_[-1]
    for key in ("diff", "recon", "kl", "beta", "lamda"):
        assert key in rec
    assert rec["loss"] == pytest.approx(
        rec["lamda"] * rec["diff"] + rec["recon"] + rec["beta"] * rec["kl"], rel=0.05
    )


def test_item_embeddings_from_a_trained_mult_vae():
    X, withheld = checkerboard()
    vae = MultVAE(
        hidden_dims=(8,), latent_dim=4, train={"epochs": 2, "batch_size": 8, "device": "cpu"}
    ).fit(X)
    emb = autoencoder_item_embeddings(vae)
    assert emb.shape == (X.shape[1], 8)
    m = tiny(train={"epochs": 2}).fit(X, item_embeddings=emb)
    assert m.item_cluster_.shape == (X.shape[1],)
    with pytest.raises(ConfigError, match="rows"):
        tiny().fit(X, item_embeddings=emb[:3])


def test_user_embeddings_and_registry():
    X, _ = checkerboard()
    m = tiny(train={"epochs": 1}).fit(X)
    assert m.user_embeddings(X).shape == (X.shape[0], 8)
    assert get_model_class("ldiffrec") is LDiffRec
    with pytest.raises(ConfigError):
        LDiffRec(n_clusters=4, latent_dim=3)


# ---------------------------------------------------------------- degenerate data (QA)


def test_fewer_distinct_item_embeddings_than_clusters_is_a_clear_error():
    with pytest.raises(ConfigError, match="distinct"):
        cluster_items(np.ones((6, 3)), 2)
    X = sp.csr_matrix(np.ones((1, 6), np.float32))  # one user: every item looks the same
    with pytest.raises(ConfigError, match="distinct"):
        tiny(train={"epochs": 1}).fit(X)
    with pytest.raises(ConfigError, match="distinct"):  # no interactions at all
        tiny(train={"epochs": 1}).fit(sp.csr_matrix((4, 6), dtype=np.float32))


def test_tiny_shapes_give_model_errors_not_scikit_learn_ones():
    one_item = sp.csr_matrix(np.ones((3, 1), np.float32))
    with pytest.raises(ConfigError, match="n_clusters=2 but only 1 items"):
        tiny(train={"epochs": 1}).fit(one_item)
    m = tiny(train={"epochs": 1}, n_clusters=1).fit(one_item)  # no SVD needed
    assert m.item_cluster_.tolist() == [0]
    with pytest.raises(DataError, match="0 x 6"):
        tiny(train={"epochs": 1}).fit(sp.csr_matrix((0, 6), dtype=np.float32))


def test_item_embeddings_are_validated():
    X, _ = checkerboard()
    for bad in (np.arange(X.shape[1], dtype=float), np.ones((X.shape[1] - 1, 2))):
        with pytest.raises(ConfigError, match="item_embeddings must be"):
            tiny(train={"epochs": 1}).fit(X, item_embeddings=bad)
    with pytest.raises(DataError, match="NaN"):
        tiny(train={"epochs": 1}).fit(X, item_embeddings=np.full((X.shape[1], 2), np.nan))


@pytest.mark.parametrize(
    "kw",
    [
        dict(lamda=float("nan")),
        dict(lamda_min=float("nan")),
        dict(lamda=float("inf")),
        dict(vae_anneal_cap=float("nan")),
        dict(vae_lr=float("inf")),
        dict(train={"seed": -1}),
        dict(train={"seed": 2**32}),
    ],
)
def test_config_refuses_non_finite_weights_and_seeds_scikit_learn_cannot_take(kw):
    with pytest.raises(ConfigError):
        tiny(**kw)

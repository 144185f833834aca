import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError
from genrec.models import MultVAE, get_model_class
from genrec.models.mult_vae import mult_vae_loss
from genrec.models.nn_blocks import gaussian_kl_to_std_normal, multinomial_log_lik
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import Batch

TINY = dict(hidden_dims=(32,), latent_dim=8)
FAST = dict(batch_size=8, epochs=12, lr=1e-2, device="cpu")


def tiny(**train):
    """The tiny model's settings, with ``train`` over the fast trainer settings."""
    return {**TINY, "train": {**FAST, **train}}


class TestMultVAE(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return MultVAE(**tiny(seed=seed))


def test_registered_under_its_cli_name():
    assert get_model_class("mult-vae") is MultVAE
    assert MultVAE.capabilities.trainer


def test_paper_defaults():
    c = MultVAE().config
    assert (c.hidden_dims, c.latent_dim, c.dropout) == ((600,), 200, 0.5)
    assert (c.anneal_cap, c.total_anneal_steps, c.noise_scale) == (0.2, 200_000, 1.0)
    t = c.train
    assert (t.lr, t.batch_size, t.epochs, t.optimizer, t.patience) == (1e-3, 500, 200, "adam", None)
    assert (t.device, t.precision) == ("auto", "fp32")


@pytest.mark.parametrize(
    "bad",
    [
        dict(dropout=1.0),
        dict(latent_dim=0),
        dict(hidden_dims=()),
        dict(total_anneal_steps=0),
        dict(train={"precision": "fp16"}),
        dict(train={"select_metric": "ndcg"}),
        dict(train={"device": "tpu"}),
    ],
)
def test_bad_config_values_raise(bad):
    with pytest.raises(ConfigError):
        MultVAE(**bad)


def test_loss_is_recon_plus_beta_kl():
    X = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 1, 1]], np.float32))
    batch = Batch.from_csr(X)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, generator=g)
    mu, logvar = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    out = mult_vae_loss(logits, batch, mu, logvar, beta=0.3)
    recon = -multinomial_log_lik(logits, torch.from_numpy(X.toarray())).mean()
    kl = gaussian_kl_to_std_normal(mu, logvar).mean()
    torch.testing.assert_close(out["recon"], recon)
    torch.testing.assert_close(out["loss"], recon + 0.3 * kl)


def test_beta_is_annealed_per_step_in_the_log():
    X, _ = checkerboard()
    m = MultVAE(**tiny(epochs=3), total_anneal_steps=10, anneal_cap=0.2).fit(X)
    # 24 users / 8 = 3 steps per epoch; epoch mean of beta over steps (0,1,2), (3,4,5), ...
    betas = [r["beta"] for r in m.history_]
    np.testing.assert_allclose(betas, [0.1, 0.2, 0.2])


def test_fold_in_unseen_user_and_embeddings():
    X, withheld = checkerboard()
    m = MultVAE(**tiny(seed=1)).fit(X)
    new = sp.csr_matrix(X[[0]].toarray())  # a "new" user with user 0's history
    items, _ = m.recommend(None, new, k=1)
    assert items[0, 0] == withheld[0]
    emb = m.user_embeddings(X)
    assert emb.shape == (X.shape[0], 8) and emb.dtype == np.float32
    # the embeddings are the encoder means: the same users get the same means
    np.testing.assert_allclose(emb[:1], m.user_embeddings(new), rtol=1e-6, atol=1e-6)
    assert m.user_embeddings(X[:0]).shape == (0, 8)  # no users: still K columns


def test_bf16_training_runs_and_ranks():
    X, withheld = checkerboard()
    m = MultVAE(**tiny(seed=0, precision="bf16")).fit(X)
    assert all(np.isfinite(r["loss"]) for r in m.history_)
    assert m.module_.input.weight.dtype == torch.float32  # fp32 master weights
    items, _ = m.recommend(np.arange(X.shape[0]), X, k=1)
    assert (items[:, 0] == withheld).mean() >= 0.9


def test_nan_settings_and_negative_training_values_are_refused():
    for bad in ("anneal_cap", "noise_scale"):
        with pytest.raises(ConfigError, match=bad):
            MultVAE(**{bad: float("nan")})
    X, _ = checkerboard()
    X = X.copy()
    X.data[0] = -1.0  # the multinomial "loss" would fall without bound
    with pytest.raises(DataError, match="negative"):
        MultVAE(**tiny()).fit(X)

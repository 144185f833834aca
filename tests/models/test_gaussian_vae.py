import math

import numpy as np
import torch
from torch.distributions import Normal

from genrec.models import GaussianVAE, get_model_class
from genrec.models.gaussian_vae import gaussian_recon_loss
from genrec.testing import RecommenderConformance, checkerboard

TINY = dict(hidden_dims=(32,), latent_dim=8)
FAST = dict(batch_size=8, epochs=15, lr=1e-2, device="cpu")


def tiny(**train):
    """The tiny model's settings, with ``train`` over the fast trainer settings."""
    return {**TINY, "train": {**FAST, **train}}


class TestGaussianVAE(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return GaussianVAE(**tiny(seed=seed))


def test_registered_and_textbook_shape():
    assert get_model_class("gaussian-vae") is GaussianVAE
    c = GaussianVAE().config
    assert (c.hidden_dims, c.latent_dim, c.beta) == ((512,), 256, 1.0)
    X, _ = checkerboard()
    m = GaussianVAE(**tiny(epochs=1)).fit(X)
    assert m.module_.act is torch.relu
    shapes = [tuple(p.shape) for p in m.module_.parameters()]
    assert shapes == [(24, 32), (32,), (16, 32), (16,), (32, 8), (32,), (24, 32), (24,)]


def test_recon_loss_is_gaussian_nll_without_the_constant():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 7, generator=g) < 0.4).double()
    x_hat = torch.randn(3, 7, generator=g, dtype=torch.float64)
    nll = -Normal(x_hat, torch.ones_like(x_hat)).log_prob(x).sum(-1)
    const = 0.5 * 7 * math.log(2 * math.pi)
    torch.testing.assert_close(gaussian_recon_loss(x_hat, x), nll - const)


def test_history_logs_recon_and_kl():
    X, _ = checkerboard()
    m = GaussianVAE(**tiny(epochs=2)).fit(X)
    for r in m.history_:
        assert np.isclose(r["loss"], r["recon"] + r["kl"])

import numpy as np
import torch

from genrec.models import MultDAE, get_model_class
from genrec.models.mult_dae import weight_l2
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import Batch, Phase, StepContext

TINY = dict(latent_dim=16)
FAST = dict(batch_size=8, epochs=12, lr=1e-2, device="cpu")


def tiny(**train):
    """The tiny model's settings, with ``train`` over the fast trainer settings."""
    return {**TINY, "train": {**FAST, **train}}


class TestMultDAE(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return MultDAE(**tiny(seed=seed))


def test_registered_and_paper_defaults():
    assert get_model_class("mult-dae") is MultDAE
    c = MultDAE().config
    assert (c.hidden_dims, c.latent_dim, c.dropout) == ((), 200, 0.5)
    assert c.l2 == 0.01 / 500


def test_network_is_items_code_items():
    X, _ = checkerboard()
    m = MultDAE(**tiny(epochs=1)).fit(X)
    shapes = [tuple(p.shape) for p in m.module_.parameters()]
    assert shapes == [(24, 16), (16,), (24, 16), (24,)]  # I x K sparse input, then K -> I
    assert m.user_embeddings(X).shape == (24, 16)


def test_weight_l2_sums_weight_matrices_only():
    X, _ = checkerboard()
    m = MultDAE(**tiny(epochs=1)).fit(X)
    net = m.module_
    expected = net.input.weight.pow(2).sum() + net.decoder[0].weight.pow(2).sum()
    torch.testing.assert_close(weight_l2(net), expected)


def test_loss_adds_the_l2_penalty_and_no_kl():
    X, _ = checkerboard()
    m = MultDAE(**tiny(epochs=1), l2=0.5, dropout=0.0).fit(X)
    ctx = StepContext(
        0, 0, Phase(), torch.Generator().manual_seed(0), torch.device("cpu"), "fp32", X
    )
    out = m.train_step(Batch.from_csr(X), ctx)
    torch.testing.assert_close(out["loss"], out["recon"] + 0.5 * weight_l2(m.module_))
    assert set(out) == {"loss", "recon"}
    assert np.isfinite(float(out["loss"].detach()))

import numpy as np
import pytest
import torch
from scipy.stats import norm

from genrec.errors import ConfigError, DataError
from genrec.models import RecVAE, get_model_class
from genrec.models.recvae import composite_prior_log_density, swish
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import Batch, Phase, StepContext

TINY = dict(hidden_dim=32, latent_dim=8)
FAST = dict(batch_size=8, epochs=4, lr=1e-2, device="cpu")


def tiny(**train):
    """The tiny model's settings, with ``train`` over the fast trainer settings."""
    return {**TINY, "train": {**FAST, **train}}


class TestRecVAE(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return RecVAE(**tiny(seed=seed))


def test_registered_and_paper_defaults():
    assert get_model_class("recvae") is RecVAE
    c = RecVAE().config
    assert (c.hidden_dim, c.latent_dim, c.gamma) == (600, 200, 0.005)
    assert (c.train.lr, c.train.epochs, c.train.batch_size, c.train.patience) == (
        5e-4,
        50,
        500,
        None,
    )
    assert (c.n_enc_epochs, c.n_dec_epochs, c.dropout, c.ln_eps) == (3, 1, 0.5, 0.1)
    np.testing.assert_allclose(c.prior_weights, (3 / 20, 3 / 4, 1 / 10))
    with pytest.raises(ConfigError, match="prior_weights"):
        RecVAE(prior_weights=(0.5, 0.5, 0.5))


def test_swish():
    x = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(swish(x), x / (1 + torch.exp(-x)))


def test_composite_prior_equals_hand_computed_mixture():
    rng = np.random.default_rng(0)
    z, mu = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    logvar = rng.normal(size=(3, 4))
    w = (0.15, 0.75, 0.1)
    hand = (
        w[0] * norm.pdf(z, 0, 1)
        + w[1] * norm.pdf(z, mu, np.exp(0.5 * logvar))
        + w[2] * norm.pdf(z, 0, np.exp(0.5 * 10.0))
    )
    got = composite_prior_log_density(*(torch.from_numpy(a) for a in (z, mu, logvar)), w, 10.0)
    np.testing.assert_allclose(got.numpy(), np.log(hand), rtol=1e-10)


def _fitted(epochs=1, **kw):
    X, _ = checkerboard()
    return X, RecVAE(**tiny(epochs=epochs), **kw).fit(X)


def test_phases_update_only_their_half():
    X, m = _fitted()
    net = m.module_
    enc0 = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    dec0 = {k: v.clone() for k, v in net.decoder.state_dict().items()}
    opts = m.build_optimizers(m.train_config())
    gen = torch.Generator().manual_seed(0)
    net.train()
    for phase in m.phases():
        ctx = StepContext(0, 0, phase, gen, torch.device("cpu"), "fp32", X)
        m.on_phase_start(phase, ctx)
        batch = Batch.from_csr(X[:8], torch.arange(8))
        net.zero_grad(set_to_none=True)
        m.train_step(batch, ctx)["loss"].backward()
        opts[phase.optimizer].step()
        enc_same = all(torch.equal(v, enc0[k]) for k, v in net.encoder.state_dict().items())
        dec_same = all(torch.equal(v, dec0[k]) for k, v in net.decoder.state_dict().items())
        if phase.name == "encoder":
            assert not enc_same and dec_same
            assert all(p.grad is None for p in net.decoder.parameters())
        else:
            assert not dec_same
            assert all(p.grad is None for p in net.encoder.parameters())
        enc0 = {k: v.clone() for k, v in net.encoder.state_dict().items()}
        dec0 = {k: v.clone() for k, v in net.decoder.state_dict().items()}


def test_old_posterior_is_the_encoder_at_the_start_of_the_encoder_phase():
    X, m = _fitted()
    ctx = StepContext(
        0, 0, Phase("encoder", 1, "encoder"), torch.Generator(), torch.device("cpu"), "fp32", X
    )
    m.on_phase_start(ctx.phase, ctx)
    mu, logvar = m._old_posterior
    np.testing.assert_allclose(mu.numpy(), m.user_embeddings(X), rtol=1e-6, atol=1e-6)
    assert logvar.shape == mu.shape == (X.shape[0], 8)


def test_decoder_phase_posterior_is_reused_as_the_next_old_posterior():
    X, m = _fitted()
    net, cpu = m.module_, torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    dec = Phase("decoder", 1, "decoder")
    m.on_phase_start(dec, StepContext(0, 0, dec, gen, cpu, "fp32", X))
    epoch, (mu, logvar) = m._decoder_posterior
    assert epoch == 0
    np.testing.assert_allclose(mu.numpy(), m.user_embeddings(X), rtol=1e-6, atol=1e-6)
    # the decoder's batch uses the cached rows: same as running the frozen encoder on it
    batch = Batch.from_csr(X[[5, 0, 9]], torch.tensor([5, 0, 9]))
    with torch.no_grad():
        want_mu, want_logvar = net.encoder(*m._input(batch, None))
    torch.testing.assert_close(mu[batch.users], want_mu, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logvar[batch.users], want_logvar, rtol=1e-6, atol=1e-6)
    enc = Phase("encoder", 1, "encoder")
    m.on_phase_start(enc, StepContext(0, 1, enc, gen, cpu, "fp32", X))  # the next epoch
    assert m._old_posterior[0] is mu and m._decoder_posterior is None
    # not the epoch right after: recomputed from the encoder
    m._decoder_posterior = (0, (mu + 1.0, logvar))
    m.on_phase_start(enc, StepContext(0, 5, enc, gen, cpu, "fp32", X))
    torch.testing.assert_close(m._old_posterior[0], mu)
    # a new network (each fit builds one) forgets the cache
    m._decoder_posterior = (-1, (mu + 1.0, logvar))
    m._build_module(X.shape[1], gen)
    assert m._decoder_posterior is None and m._old_posterior is None


def test_kl_weight_is_gamma_times_user_interactions():
    X, m = _fitted(gamma=0.01)
    rows = [r for r in m.history_]
    n_u = np.asarray(X.sum(1)).ravel()
    np.testing.assert_allclose(rows[0]["encoder_beta"], 0.01 * n_u.mean(), rtol=1e-6)
    assert "encoder_kl" in rows[0] and "decoder_recon" in rows[0]
    assert np.isclose(rows[0]["decoder_loss"], rows[0]["decoder_recon"])


class TestRecVAEJoint(RecommenderConformance):
    def make_model(self, seed: int = 0):
        # one pass per epoch instead of four: four times the epochs
        return RecVAE(alternating=False, **tiny(seed=seed, epochs=16))


def test_joint_pass_updates_both_halves_with_the_full_loss():
    X, m = _fitted(alternating=False, gamma=0.01)
    assert [(p.name, p.passes, p.optimizer) for p in m.phases()] == [("joint", 1, "joint")]
    opts = m.build_optimizers(m.train_config())
    assert list(opts) == ["joint"]
    assert {id(p) for g in opts["joint"].param_groups for p in g["params"]} == {
        id(p) for p in m.module_.parameters()
    }
    net = m.module_
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    phase = m.phases()[0]
    ctx = StepContext(0, 0, phase, torch.Generator().manual_seed(0), torch.device("cpu"), "fp32", X)
    m.on_phase_start(phase, ctx)
    out = m.train_step(Batch.from_csr(X[:8], torch.arange(8)), ctx)
    assert float(out["kl"]) != 0.0 and float(out["loss"].detach()) > float(out["recon"])
    net.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is not None for p in net.parameters())
    opts["joint"].step()
    for name, v in net.state_dict().items():
        if name.endswith("weight") and "lns" not in name:
            assert not torch.equal(v, before[name]), name
    # the log has no phase prefix and carries the KL weight
    row = m.history_[0]
    np.testing.assert_allclose(row["beta"], 0.01 * np.asarray(X.sum(1)).mean(), rtol=1e-6)
    assert "kl" in row and "encoder_kl" not in row


def test_joint_training_refuses_phase_counts():
    with pytest.raises(ConfigError, match="alternating"):
        RecVAE(alternating=False, n_enc_epochs=2)


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(beta=0.2), "beta"),  # gamma > 0 would silently ignore it
        (dict(gamma=0.0, beta=-1.0), "beta"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(ln_eps=0.0), "ln_eps"),
        (dict(wide_logvar=float("nan")), "wide_logvar"),
    ],
)
def test_config_refuses_ignored_or_invalid_kl_settings(bad, field):
    with pytest.raises(ConfigError, match=field):
        RecVAE(**bad)
    assert RecVAE(gamma=0.0, beta=0.2).config.beta == 0.2


def test_a_zero_prior_weight_drops_its_component():
    rng = np.random.default_rng(1)
    z, mu, logvar = (torch.from_numpy(rng.normal(size=(3, 4))) for _ in range(3))
    got = composite_prior_log_density(z, mu, logvar, (0.25, 0.75, 0.0), 10.0)
    hand = 0.25 * norm.pdf(z, 0, 1) + 0.75 * norm.pdf(z, mu, np.exp(0.5 * logvar.numpy()))
    np.testing.assert_allclose(got.numpy(), np.log(hand), rtol=1e-10)
    X, m = _fitted(prior_weights=(0.25, 0.75, 0.0))  # trains (was: math domain error)
    assert np.isfinite(m.history_[0]["encoder_loss"])


def test_fit_drops_the_training_caches_and_unfreezes_the_network():
    X, m = _fitted()
    assert m._old_posterior is None and m._decoder_posterior is None  # 2 x (U, K) each
    assert all(p.requires_grad for p in m.module_.parameters())


def test_negative_training_values_are_refused():
    X, _ = checkerboard()
    X = X.copy()
    X.data[0] = -1.0
    with pytest.raises(DataError, match="negative"):
        RecVAE(**tiny()).fit(X)

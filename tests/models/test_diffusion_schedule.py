"""The diffusion schedule: closed forms, the forward process, the posterior, the reverse loop."""

import math

import numpy as np
import pytest
import torch

from genrec.models.diffrec import reverse_diffusion
from genrec.models.diffusion_schedule import (
    DiffusionSchedule,
    cosine_betas,
    linear_variance_betas,
    make_betas,
    schedule_tables,
)

# a schedule with visible noise (DiffRec's ML-1M one has 1 - abar ~ 1e-5)
NOISY = dict(name="linear-var", steps=10, noise_scale=0.5, noise_min=0.1, noise_max=0.9)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: one thread avoids OpenMP spin-waits on this shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _loop_linear_var(steps, noise_scale, noise_min, noise_max):
    """DiffRec's betas_from_linear_variance, written as its loop."""
    variance = np.linspace(noise_scale * noise_min, noise_scale * noise_max, steps)
    abar = 1 - variance
    betas = [1 - abar[0]]
    for i in range(1, steps):
        betas.append(min(1 - abar[i] / abar[i - 1], 0.999))
    return np.array(betas)


def test_linear_var_betas_match_the_reference_loop():
    ref = _loop_linear_var(40, 0.005, 0.005, 0.01)
    np.testing.assert_allclose(
        make_betas("linear-var", 40, 0.005, 0.005, 0.01, None), ref, rtol=1e-12
    )
    # the cumulative product recovers the linear variance exactly (no first_beta override)
    abar = np.cumprod(1 - linear_variance_betas(np.linspace(0.1, 0.4, 7)))
    np.testing.assert_allclose(1 - abar, np.linspace(0.1, 0.4, 7), rtol=1e-12)


def test_first_beta_overrides_beta_zero_and_feeds_every_table():
    betas = make_betas("linear-var", 5, 0.5, 0.01, 0.02, first_beta=1e-5)
    assert betas[0] == 1e-5
    np.testing.assert_allclose(betas[1:], _loop_linear_var(5, 0.5, 0.01, 0.02)[1:])
    sched = DiffusionSchedule("linear-var", 5, 0.5, 0.01, 0.02, first_beta=1e-5)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), np.cumprod(1 - betas))


def test_linear_and_cosine_schedules():
    np.testing.assert_allclose(
        make_betas("linear", 4, 0.1, 0.1, 0.4, None), [0.01, 0.02, 0.03, 0.04]
    )
    betas = cosine_betas(50)
    abar = np.cumprod(1 - betas)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = np.array([f((t + 1) / 50) / f(0) for t in range(50)])
    np.testing.assert_allclose(abar[:-1], expected[:-1], rtol=1e-10)  # last is clipped
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_betas("quadratic", 4, 0.1, 0.1, 0.4)


def test_posterior_coefficients_at_t0_return_x0():
    tab = schedule_tables(make_betas(**NOISY))
    assert tab["posterior_mean_coef1"][0] == pytest.approx(1.0)
    assert tab["posterior_mean_coef2"][0] == 0.0
    assert tab["posterior_variance"][0] == 0.0
    assert np.isfinite(tab["posterior_log_variance_clipped"]).all()


@pytest.mark.parametrize("t", [0, 4, 9])
def test_q_sample_moments_match_closed_form(t):
    sched = DiffusionSchedule(**NOISY)
    n = 200_000
    x0 = torch.tensor([[1.0, 0.0, -2.0, 0.5]], dtype=torch.float64).expand(n, 4)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = sched.q_sample(x0, torch.full((n,), t), noise)  # (n, 4)
    abar = sched.alphas_cumprod[t].item()
    mean_err = xt.mean(0) - math.sqrt(abar) * x0[0]
    var = xt.var(0)
    se_mean = math.sqrt((1 - abar) / n)
    assert (mean_err.abs() < 5 * se_mean).all()
    se_var = (1 - abar) * math.sqrt(2 / (n - 1))
    assert ((var - (1 - abar)).abs() < 5 * se_var).all()


@pytest.mark.parametrize("t", [1, 3, 9])
def test_posterior_equals_bayes_on_a_1d_gaussian(t):
    """q(x_{t-1} | x_t, x_0) by Bayes: prior N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) times the
    one-step likelihood N(x_t; sqrt(alpha_t) x_{t-1}, beta_t), normalised on a fine grid."""
    sched = DiffusionSchedule(**NOISY)
    x0, xt = 0.7, -0.3
    abar_prev = sched.alphas_cumprod[t - 1].item()
    alpha, beta = sched.alphas[t].item(), sched.betas[t].item()
    grid = np.linspace(-8, 8, 400_001)
    log_p = -((grid - math.sqrt(abar_prev) * x0) ** 2) / (2 * (1 - abar_prev)) - (
        xt - math.sqrt(alpha) * grid
    ) ** 2 / (2 * beta)
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    bayes_mean = (w * grid).sum()
    bayes_var = (w * (grid - bayes_mean) ** 2).sum()
    # the same by the conjugate formulas (precisions add)
    prec = 1 / (1 - abar_prev) + alpha / beta
    conj_mean = (math.sqrt(abar_prev) * x0 / (1 - abar_prev) + math.sqrt(alpha) * xt / beta) / prec
    mean, var, _ = sched.posterior_mean_variance(
        torch.tensor([[x0]], dtype=torch.float64),
        torch.tensor([[xt]], dtype=torch.float64),
        torch.tensor([t]),
    )
    assert mean.item() == pytest.approx(bayes_mean, abs=1e-6)
    assert mean.item() == pytest.approx(conj_mean, rel=1e-10)
    assert var.item() == pytest.approx(bayes_var, rel=1e-4)
    assert var.item() == pytest.approx(1 / prec, rel=1e-10)


def test_reverse_loop_with_zero_noise_returns_the_denoisers_x0():
    """T deterministic reverse steps with a denoiser predicting a fixed x0 end exactly at x0,
    whatever the start; and the result is always the last call's prediction (t = 0)."""
    sched = DiffusionSchedule(**NOISY)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((3, 6), generator=g, dtype=torch.float64)
    start = torch.randn((3, 6), generator=g, dtype=torch.float64)
    calls = []

    def oracle(x, t):
        calls.append(int(t[0]))
        return x0

    out = reverse_diffusion(sched, oracle, start)
    assert calls == list(range(NOISY["steps"] - 1, -1, -1))
    torch.testing.assert_close(out, x0)

    last = {}

    def some_net(x, t):
        last["out"] = torch.tanh(x + t[:, None])
        return last["out"]

    out = reverse_diffusion(sched, some_net, start)
    torch.testing.assert_close(out, last["out"])


def test_step_adds_posterior_noise_except_at_t0():
    sched = DiffusionSchedule(**NOISY)
    x_t = torch.zeros((4, 3), dtype=torch.float64)
    pred = torch.ones((4, 3), dtype=torch.float64)
    mean = sched.step(pred, 5, x_t)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    noisy = sched.step(pred, 5, x_t, g1, sampling_noise=True)
    torch.testing.assert_close(noisy, sched.step(pred, 5, x_t, g2, sampling_noise=True))
    sd = math.exp(0.5 * sched.posterior_log_variance_clipped[5].item())
    z = (noisy - mean) / sd
    expected = torch.randn((4, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(sched.step(pred, 0, x_t, g1, sampling_noise=True), pred)


def test_eps_prediction_inverts_q_sample():
    sched = DiffusionSchedule(**NOISY, prediction="eps")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((5, 4), generator=g, dtype=torch.float64)
    noise = torch.randn((5, 4), generator=g, dtype=torch.float64)
    t = torch.tensor([0, 2, 4, 6, 9])
    xt = sched.q_sample(x0, t, noise)
    torch.testing.assert_close(sched.predict_x0(noise, xt, t), x0)


def test_loss_weights():
    sched = DiffusionSchedule(**NOISY)
    t = torch.arange(10)
    w = sched.loss_weight(t)
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    assert w[0] == 1.0
    torch.testing.assert_close(w[1:], snr[:-1] - snr[1:])
    assert (w > 0).all()
    eps = DiffusionSchedule(**NOISY, prediction="eps").loss_weight(t)
    assert eps[0] == 1.0 and torch.isfinite(eps).all()


def test_tables_are_float64_buffers_that_move_but_are_not_saved():
    sched = DiffusionSchedule(**NOISY)
    assert sched.betas.dtype == torch.float64
    assert list(sched.state_dict()) == []
    assert len(list(sched.parameters())) == 0
    moved = torch.nn.Sequential(sched).to("meta")
    assert moved[0].alphas_cumprod.device.type == "meta"

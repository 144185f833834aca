"""DiffRec: conformance, the denoiser, the loss, importance sampling, resume."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError
from genrec.models import DiffRec, get_model_class
from genrec.models.denoiser import Denoiser, timestep_embedding
from genrec.models.diffrec import (
    TimestepSampler,
    diffusion_loss,
    importance_probs,
    update_loss_history,
)
from genrec.models.diffusion_schedule import DiffusionSchedule
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import FitContext


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: one thread avoids OpenMP spin-waits on this shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(seed: int = 0, train: dict | None = None, diffusion: dict | None = None, **kw) -> DiffRec:
    """A tiny DiffRec; ``train`` and ``diffusion`` go over the tiny tables' values."""
    diffusion = {
        "dims": (32,),
        "steps": 5,
        "noise_scale": 0.1,
        "noise_min": 0.01,
        "noise_max": 0.1,
        **(diffusion or {}),
    }
    train = {
        "epochs": 20,
        "batch_size": 8,
        "lr": 1e-2,
        "device": "cpu",
        "seed": seed,
        **(train or {}),
    }
    return DiffRec(**kw, diffusion=diffusion, train=train)


class TestDiffRec(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return tiny(seed)


# ---------------------------------------------------------------- denoiser


def test_timestep_embedding_values():
    t = torch.tensor([0, 3])
    e = timestep_embedding(t, 6)  # half = 3 frequencies 10000^(-k/3)
    freqs = torch.tensor([10000.0 ** (-k / 3) for k in range(3)])
    torch.testing.assert_close(e[1], torch.cat([torch.cos(3 * freqs), torch.sin(3 * freqs)]))
    torch.testing.assert_close(e[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    odd = timestep_embedding(t, 5)
    assert odd.shape == (2, 5) and (odd[:, -1] == 0).all()


def test_denoiser_layout_and_init():
    g = torch.Generator().manual_seed(0)
    net = Denoiser(500, (200, 600), 10, g)
    shapes = [tuple(l.weight.shape) for l in [*net.in_layers, *net.out_layers]]
    assert shapes == [(600, 510), (200, 600), (600, 200), (500, 600)]  # (out, in)
    w = net.in_layers[0].weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (510 + 600)), rel=0.02)
    assert net.in_layers[0].bias.std().item() == pytest.approx(0.001, rel=0.2)
    same = Denoiser(500, (200, 600), 10, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same.out_layers[1].weight, net.out_layers[1].weight)


def test_denoiser_dropout_only_in_training_and_from_the_generator():
    net = Denoiser(20, (8,), 4, torch.Generator().manual_seed(0))
    x, t = torch.ones((3, 20)), torch.tensor([0, 1, 2])
    net.eval()
    torch.testing.assert_close(net(x, t), net(x, t))
    net.train()
    a = net(x, t, torch.Generator().manual_seed(5))
    b = net(x, t, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="generator"):
        net(x, t)


# ---------------------------------------------------------------- loss


def test_diffusion_loss_is_weighted_mse_and_zero_for_a_perfect_denoiser():
    sched = DiffusionSchedule("linear-var", 5, 0.5, 0.01, 0.1)
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand((6, 7), generator=g) < 0.3).float()
    noise = torch.randn((6, 7), generator=g)
    t = torch.tensor([0, 1, 2, 3, 4, 4])
    perfect = lambda x, t, gen=None: x0  # noqa: E731
    loss, pred = diffusion_loss(sched, perfect, x0, t, noise, reweight=True)
    assert torch.equal(loss, torch.zeros(6)) and torch.equal(pred, x0)
    zero = lambda x, t, gen=None: torch.zeros_like(x)  # noqa: E731
    mse = x0.pow(2).mean(-1)
    plain, _ = diffusion_loss(sched, zero, x0, t, noise, reweight=False)
    torch.testing.assert_close(plain, mse)
    weighted, _ = diffusion_loss(sched, zero, x0, t, noise, reweight=True)
    torch.testing.assert_close(weighted, sched.loss_weight(t).float() * mse)


# ---------------------------------------------------------------- importance sampling


def _sequential_history(history, count, t, losses):
    """DiffRec's per-element loop (the readable reference)."""
    history, count = history.clone(), count.clone()
    H = history.shape[1]
    for ti, li in zip(t.tolist(), losses.tolist()):
        if count[ti] == H:
            history[ti, :-1] = history[ti, 1:].clone()
            history[ti, -1] = li
        else:
            history[ti, count[ti]] = li
            count[ti] += 1
    return history, count


def test_vectorised_history_update_equals_the_loop():
    g = torch.Generator().manual_seed(0)
    T, H = 6, 4
    hist, count = torch.zeros(T, H, dtype=torch.float64), torch.zeros(T, dtype=torch.long)
    ref_h, ref_c = hist.clone(), count.clone()
    for _ in range(12):  # partial fills, overflow within a batch, full FIFOs
        n = int(torch.randint(1, 15, (1,), generator=g))
        t = torch.randint(0, T, (n,), generator=g)
        losses = torch.rand(n, generator=g, dtype=torch.float64)
        hist, count = update_loss_history(hist, count, t, losses)
        ref_h, ref_c = _sequential_history(ref_h, ref_c, t, losses)
        torch.testing.assert_close(hist, ref_h)
        assert torch.equal(count, ref_c)


def test_importance_sampler_is_uniform_until_every_history_fills():
    s = TimestepSampler(steps=4, history_per_step=2)
    g = torch.Generator().manual_seed(0)
    for t in (0, 0, 1, 1, 2, 2, 3):  # step 3 has one entry: not full yet
        s.record(torch.tensor([t]), torch.tensor([10.0 if t == 0 else 1.0]))
    assert not s.full
    t, pt = s.sample(20_000, g)
    assert torch.equal(pt, torch.ones_like(pt))
    freq = torch.bincount(t, minlength=4).double() / len(t)
    assert (freq - 0.25).abs().max() < 0.02
    s.record(torch.tensor([3]), torch.tensor([1.0]))
    assert s.full
    t, pt = s.sample(40_000, g)
    p = importance_probs(s.lt_history, 0.001)
    torch.testing.assert_close(
        p, torch.tensor([10.0, 1, 1, 1], dtype=torch.float64) / 13 * 0.999 + 0.001 / 4
    )
    freq = torch.bincount(t, minlength=4).double() / len(t)
    assert (freq - p).abs().max() < 0.01
    torch.testing.assert_close(pt, p[t] * 4)
    t, pt = s.sample(100, g, method="uniform")
    assert torch.equal(pt, torch.ones_like(pt))


def test_loss_history_is_module_state_and_fills_during_training():
    X, _ = checkerboard()
    m = tiny(train={"epochs": 3}, diffusion={"steps": 3, "history_per_step": 2}).fit(X)
    state = m.module_.state_dict()
    assert "sampler.lt_history" in state and "sampler.lt_count" in state
    assert (state["sampler.lt_count"] == 2).all()
    assert not any(k.startswith("schedule.") for k in state)


# ---------------------------------------------------------------- model-level


def test_resume_matches_an_uninterrupted_run(tmp_path):
    X, _ = checkerboard()
    d = {"steps": 3, "history_per_step": 2}
    full = tiny(train={"epochs": 4}, diffusion=d).fit(X, context=FitContext(run_dir=tmp_path / "a"))
    tiny(train={"epochs": 2}, diffusion=d).fit(X, context=FitContext(run_dir=tmp_path / "b"))
    resumed = tiny(train={"epochs": 4}, diffusion=d).fit(
        X, context=FitContext(run_dir=tmp_path / "b", resume=True)
    )
    a, b = full.module_.state_dict(), resumed.module_.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_inference_settings():
    X, _ = checkerboard()
    m = tiny(train={"epochs": 2})
    m.fit(X)
    calls = []
    orig = m.module_.denoiser.forward
    m.module_.denoiser.forward = lambda x, t, g=None: calls.append(1) or orig(x, t, g)
    m.score(None, X[:3])
    assert len(calls) == 5  # all T reverse steps (the authors' code)
    calls.clear()
    m.config = dataclasses.replace(
        m.config,
        diffusion=dataclasses.replace(m.config.diffusion, reverse_steps=2, sampling_steps=3),
    )
    a = np.asarray(m.score(None, X[:3]))
    assert len(calls) == 2
    np.testing.assert_array_equal(a, np.asarray(m.score(None, X[:3])))  # seeded noise


def test_config_errors_and_registry():
    assert get_model_class("diffrec") is DiffRec
    c = DiffRec().config
    assert (c.train.select_metric, c.train.eval_every, c.train.patience) == ("recall@20", 5, 4)
    assert (c.train.epochs, c.train.batch_size, c.train.lr) == (1000, 400, 1e-3)
    assert (
        c.diffusion.steps,
        c.diffusion.noise_scale,
        c.diffusion.noise_min,
        c.diffusion.noise_max,
        c.diffusion.first_beta,
    ) == (40, 0.005, 0.005, 0.01, 1e-5)
    for bad in (
        dict(diffusion={"sampling_steps": 41}),
        dict(diffusion={"reverse_steps": 0}),
        dict(diffusion={"noise_min": 0.02}),
        dict(diffusion={"noise_schedule": "quad"}),
        dict(diffusion={"dims": ()}),
        dict(diffusion={"mean_type": "v"}),
        dict(diffusion={"emb_size": 0}),
        dict(train={"epochs": 0}),
    ):
        with pytest.raises(ConfigError):
            DiffRec(**bad)


def test_eps_prediction_trains():
    X, _ = checkerboard()
    m = tiny(diffusion={"mean_type": "eps"}, train={"epochs": 3}).fit(X)
    assert all(np.isfinite(r["loss"]) for r in m.history_)
    assert np.isfinite(np.asarray(m.score(None, X))).all()


# ---------------------------------------------------------------- edges found in QA


def test_timestep_embedding_of_size_one_and_a_model_using_it():
    e = timestep_embedding(torch.tensor([0, 3, 7]), 1)  # no frequency: one zero column
    assert e.shape == (3, 1) and (e == 0).all()
    X, _ = checkerboard()
    m = tiny(diffusion={"emb_size": 1}, train={"epochs": 2}).fit(X)
    assert torch.isfinite(torch.as_tensor(m.score(None, X[:2]))).all()


def test_linear_var_with_equal_noise_bounds_is_refused_at_construction():
    with pytest.raises(ConfigError, match="noise_min < noise_max"):
        tiny(diffusion={"noise_min": 0.05, "noise_max": 0.05})
    tiny(diffusion={"noise_min": 0.05, "noise_max": 0.05, "steps": 1})  # one step: no growth
    tiny(
        diffusion={"noise_schedule": "linear", "noise_min": 0.05, "noise_max": 0.05}
    )  # constant betas are fine

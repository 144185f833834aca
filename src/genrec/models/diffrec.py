"""DiffRec: diffusion recommender models (Wang, Xu, Feng, Lin, He, Chua; SIGIR 2023).

Each user's interaction vector x_0 (1 x I, 0/1) is the data of a Gaussian diffusion with T
steps (the schedule: :mod:`genrec.models.diffusion_schedule`):

    forward   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,          eps ~ N(0, I)
    reverse   p(x_{t-1} | x_t) = N(c1_t xhat_0(x_t, t) + c2_t x_t, var_t I)

and a denoiser MLP (:mod:`genrec.models.denoiser`) predicts xhat_0 from [x_t, emb(t)] (or the
noise). Training draws one t per user and minimises, averaged over the batch,

    L = w_t * mean_i (x_0 - xhat_0(x_t, t))_i^2 / (T p_t)

with p_t the probability t was drawn with (1 / T while t is drawn uniformly, so T p_t = 1).
The denoiser's and diffusion settings below are fields of ``config.diffusion``
(:class:`~genrec.models.diffusion_schedule.DiffusionConfig`, shared with L-DiffRec), the
trainer's of ``config.train``.

* ``reweight``: w_t = SNR(t-1) - SNR(t) (1 at t = 0), the ELBO's weight of step t for x0
  prediction, SNR = abar / (1 - abar); without it w_t = 1.
* ``timestep_sampling="importance"``: the last ``history_per_step`` (10) values of w_t * mse
  are kept per step; until every step has that many, t ~ U{0..T-1} (T p_t = 1); afterwards
  t ~ p with p_t proportional to sqrt(mean(history_t^2)), mixed with ``uniform_prob`` (0.001)
  of the uniform distribution, and the loss is divided by p_t * T. The history is part of the
  module state (registered buffers), so checkpoints and resumed runs are exact.

Inference (DiffRec's scheme): start from the history itself (``sampling_steps = 0``) or from
q_sample(history, sampling_steps - 1); run the reverse steps from t = ``reverse_steps`` - 1 down
to 0 taking the posterior mean (``sampling_noise`` False: no noise); rank by the result.

Departures from the paper, and quirks of the authors' code kept as named fields:

* ``reverse_steps`` (None = all T): the authors' ``p_sample`` runs all T reverse steps
  whatever ``sampling_steps`` is (even from the un-noised history); the paper reads as if the
  reverse process starts at ``sampling_steps``. None reproduces the code.
* ``first_beta`` = 1e-5: the code's ``beta_fixed`` replaces beta_0 (not in the paper).
* ``train.eval_every`` = 5 and ``train.patience`` = 4: the code validates every 5 epochs and
  stops 20 epochs after the best one; the best epoch is chosen on validation Recall@20.
* Optimizer: the code uses AdamW with weight decay 0, which is Adam: ``train.optimizer="adam"``.
* The released ``main.py`` parses ``--reweight`` with ``type=bool`` (any non-empty value, "0"
  included, is True) and its ``reweight=False`` branch uses an undefined variable, while the
  released checkpoints' names (``reweight0`` for ML-1M noisy) suggest they came from another
  version of the script. Here ``reweight=False`` does what it says.

Dimension letters: B users in a batch, I items, T diffusion steps, H history length per step.

References
----------
Wang, Xu, Feng, Lin, He, Chua. Diffusion Recommender Model. SIGIR 2023.
https://arxiv.org/abs/2304.04971 ; code: https://github.com/YiyanXu/DiffRec
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from genrec.config import check_ranges
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.denoiser import Denoiser
from genrec.models.diffusion_schedule import DiffusionConfig, DiffusionSchedule
from genrec.models.torch_base import TorchRecommender
from genrec.train import Batch, StepContext, TrainConfig
from genrec.train.distributed import gather_pending
from genrec.train.noise import UserNoise

__all__ = [
    "DiffRec",
    "DiffRecConfig",
    "DiffRecNet",
    "TimestepSampler",
    "importance_probs",
    "update_loss_history",
    "diffusion_loss",
    "reverse_diffusion",
]


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class DiffRecConfig:
    """Defaults: the authors' published ML-1M (clean) settings."""

    # denoiser [I+E -> 600 -> 200 -> 600 -> I] with a time embedding of 10 and input dropout
    # 0.5; T = 40 steps, linear-var betas in 0.005 x [0.005, 0.01], x_0 prediction,
    # reweighted, importance-sampled t; inference from the history through all T steps
    diffusion: DiffusionConfig = field(
        default_factory=lambda: DiffusionConfig(
            dims=(200, 600),
            emb_size=10,
            dropout=0.5,
            steps=40,
            noise_scale=0.005,
            noise_min=0.005,
            noise_max=0.01,
        )
    )
    # Adam lr 1e-3 (the code's AdamW with weight decay 0), batches of 400 users, at most
    # 1000 epochs, validation Recall@20 every 5 epochs, stopping 4 x 5 = 20 epochs after the
    # best (the code); the seed draws weights, shuffling, timesteps, noise and dropout
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=1000,
            batch_size=400,
            lr=1e-3,
            patience=4,
            select_metric="recall@20",
            eval_every=5,
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)


# ---------------------------------------------------------------- importance sampling of t


def importance_probs(history: torch.Tensor, uniform_prob: float) -> torch.Tensor:
    """p_t proportional to sqrt(mean_h history[t, h]^2), mixed with ``uniform_prob`` of the
    uniform distribution; (T,) from the (T, H) loss history."""
    rms = history.pow(2).mean(dim=-1).sqrt()  # (T,)
    p = rms / rms.sum()
    return p * (1.0 - uniform_prob) + uniform_prob / len(p)  # (T,)


def update_loss_history(
    history: torch.Tensor, count: torch.Tensor, t: torch.Tensor, losses: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``losses`` (B,) at steps ``t`` (B,) to per-step FIFOs of length H, in batch order.

    Same result as DiffRec's per-element loop (write at ``count[t]`` until full, then shift left
    and write last), without the loop: row t's kept entries are the last min(H, count_t + n_t)
    of [old entries, new entries]. Returns new (history (T, H), count (T,)).
    """
    T, H = history.shape
    B = t.shape[0]
    dev = history.device
    t = t.to(dev)
    n_new = torch.bincount(t, minlength=T)  # (T,)
    order = torch.argsort(t, stable=True)  # (B,)
    first = torch.cumsum(n_new, 0) - n_new  # (T,) start of each step's run in ``order``
    rank = torch.empty_like(t)
    rank[order] = torch.arange(B, device=dev) - first[t[order]]  # (B,) index within its step
    combined = torch.zeros((T, H + B), dtype=history.dtype, device=dev)  # (T, H + B)
    combined[:, :H] = history
    combined[t, count[t] + rank] = losses.to(device=dev, dtype=history.dtype)
    total = count + n_new  # (T,)
    new_count = total.clamp(max=H)  # (T,)
    pos = (total - new_count)[:, None] + torch.arange(H, device=dev)[None]  # (T, H)
    kept = combined.gather(1, pos)  # (T, H)
    valid = torch.arange(H, device=dev)[None] < new_count[:, None]  # (T, H)
    return torch.where(valid, kept, torch.zeros_like(kept)), new_count


class TimestepSampler(nn.Module):
    """Draws training timesteps; holds the loss history as buffers (saved and checkpointed).

    Buffers: ``lt_history`` (T, H) float64, ``lt_count`` (T,) int64.
    """

    lt_history: torch.Tensor
    lt_count: torch.Tensor

    def __init__(self, steps: int, history_per_step: int = 10):
        super().__init__()
        self.steps = steps
        self.register_buffer(
            "lt_history", torch.zeros(steps, history_per_step, dtype=torch.float64)
        )
        self.register_buffer("lt_count", torch.zeros(steps, dtype=torch.long))
        # a distributed run (set by the trainer): record keeps the step's pairs for share_step
        self.defer = False
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def arrays(prefix: str, steps: int, history_per_step: int) -> dict[str, ArraySpec]:
        """The buffers, each name after ``prefix``: lt_history (T, H) float, lt_count (T,)."""
        return {
            f"{prefix}lt_history": ArraySpec((steps, history_per_step)),
            f"{prefix}lt_count": ArraySpec((steps,), "i"),
        }

    @property
    def full(self) -> bool:
        """True once every step has a full history (importance sampling is then used)."""
        return bool((self.lt_count == self.lt_history.shape[1]).all())

    def sample(
        self,
        n: int,
        generator: torch.Generator | UserNoise,
        method: str = "importance",
        uniform_prob: float = 0.001,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` timesteps (n,) and their p_t * T (n,) float64 (ones while uniform). With
        keyed noise each user's step is the inverse CDF of its keyed uniform."""
        dev = self.lt_history.device
        uniform = method == "uniform" or not self.full
        if isinstance(generator, UserNoise):
            u = generator.uniform(1, "timestep")[:, 0].to(dev, torch.float64)  # (n,)
            if uniform:
                t = (u * self.steps).long().clamp_(max=self.steps - 1)
                return t, torch.ones(n, dtype=torch.float64, device=dev)
            p = importance_probs(self.lt_history, uniform_prob)  # (T,)
            cdf = torch.cumsum(p.to(dev, torch.float64), 0)
            t = torch.searchsorted(cdf, u * cdf[-1]).clamp_(max=self.steps - 1)
            return t, p[t] * self.steps
        if uniform:
            t = torch.randint(0, self.steps, (n,), generator=generator, device=generator.device)
            return t.to(dev), torch.ones(n, dtype=torch.float64, device=dev)
        p = importance_probs(self.lt_history, uniform_prob)  # (T,)
        t = torch.multinomial(p.to(generator.device), n, replacement=True, generator=generator).to(
            dev
        )  # (n,)
        return t, p[t] * self.steps

    @torch.no_grad()
    def record(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append the per-user losses (B,) of steps ``t`` (B,) to the history (in place).
        With :attr:`defer` (a distributed run): keep them for :meth:`share_step` instead."""
        if self.defer:
            self._pending = (t.detach(), losses.detach())
        else:
            self._append(t, losses.detach())

    def _append(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        hist, count = update_loss_history(self.lt_history, self.lt_count, t, losses)
        self.lt_history.copy_(hist)
        self.lt_count.copy_(count)

    @torch.no_grad()
    def share_step(self, gather: Callable[[np.ndarray], np.ndarray]) -> None:
        """Record every process's (step, loss) pairs of the training step just done, in the
        global batch's row order, so that every process keeps the history one process
        would. ``gather`` takes this process's pairs (n, 2) and returns all of them (N, 2);
        a distributed trainer calls it on every rank after every step."""
        pending, self._pending = self._pending, None
        rows = gather_pending(gather, pending, 2).to(self.lt_history.device)  # (N, 2)
        if len(rows):
            self._append(rows[:, 0].long(), rows[:, 1])


# ---------------------------------------------------------------- loss and sampling loop

Denoise = Callable[..., torch.Tensor]


def gaussian_noise(like: torch.Tensor, generator: torch.Generator | UserNoise) -> torch.Tensor:
    """Standard normal noise shaped as ``like`` (B, D), from the generator or keyed by user."""
    if isinstance(generator, UserNoise):
        return generator.normal(like.shape[1], "noise").to(like)
    return torch.randn(like.shape, generator=generator, device=generator.device).to(like)


def diffusion_loss(
    schedule: DiffusionSchedule,
    denoise: Denoise,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    reweight: bool,
    generator: torch.Generator | UserNoise | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row training loss w_t * mse (B,) float32 and the predicted x_0 (B, D).

    ``denoise(x_t, t, generator)`` is the network; ``noise`` (B, D) is drawn by the caller.
    With eps prediction and ``reweight``, step 0's loss is the x_0 error / 2 (DiffRec's code).
    """
    x_t = schedule.q_sample(x0, t, noise)  # (B, D)
    out = denoise(x_t, t, generator).float()  # (B, D)
    target = x0 if schedule.prediction == "x0" else noise
    mse = (target.float() - out).pow(2).mean(dim=-1)  # (B,)
    pred_x0 = schedule.predict_x0(out, x_t.float(), t)  # (B, D)
    if not reweight:
        return mse, pred_x0
    w = schedule.loss_weight(t).to(mse.dtype)  # (B,)
    if schedule.prediction == "eps":
        first = (x0.float() - pred_x0).pow(2).mean(dim=-1) / 2.0  # (B,)
        mse = torch.where(t == 0, first, mse)
    return w * mse, pred_x0


def reverse_diffusion(
    schedule: DiffusionSchedule,
    denoise: Denoise,
    x_start: torch.Tensor,
    sampling_steps: int = 0,
    reverse_steps: int | None = None,
    generator: torch.Generator | None = None,
    sampling_noise: bool = False,
) -> torch.Tensor:
    """DiffRec's inference: noise ``x_start`` (B, D) to step ``sampling_steps`` (0: keep it),
    then ``reverse_steps`` (None = T) reverse steps from t = reverse_steps - 1 down to 0."""
    x = x_start
    if sampling_steps > 0:
        if generator is None:
            raise ValueError("sampling_steps > 0 needs a torch.Generator for the noise")
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x)
        x = schedule.q_sample(x, sampling_steps - 1, noise)  # (B, D)
    n = schedule.steps if reverse_steps is None else reverse_steps
    for i in reversed(range(n)):
        t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)  # (B,)
        x = schedule.step(denoise(x, t), t, x, generator, sampling_noise)  # (B, D)
    return x


# ---------------------------------------------------------------- network and model


class DiffRecNet(nn.Module):
    """The denoiser, the schedule (no state saved) and the timestep sampler (its history)."""

    def __init__(self, n_items: int, c: DiffRecConfig, generator: torch.Generator):
        super().__init__()
        d = c.diffusion
        self.denoiser = Denoiser(n_items, tuple(d.dims), d.emb_size, generator, d.dropout, d.norm)
        self.schedule = DiffusionSchedule.from_config(d)
        self.sampler = TimestepSampler(d.steps, d.history_per_step)


def inference_generator(
    d: DiffusionConfig, seed: int, device: torch.device
) -> torch.Generator | None:
    """The generator of inference noise (only when ``d`` asks for noise), seeded from the
    training seed and reseeded per call: the same rows in the same batch always get the same
    scores."""
    if d.sampling_steps == 0 and not d.sampling_noise:
        return None
    return torch.Generator(device=device).manual_seed(seed + 2)


class DiffRec(TorchRecommender):
    """DiffRec (Wang et al. 2023): a Gaussian diffusion over each user's interaction vector.

    Scores are the output of the reverse process started from the user's history, so any
    history folds in. With ``sampling_steps > 0`` or ``sampling_noise`` the inference noise is
    drawn from a generator seeded by ``seed`` at each scoring batch: reproducible, but a
    user's scores then depend on the other users in the batch.

    Attributes
    ----------
    module_ : DiffRecNet
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = DiffRec(diffusion={"dims": (16,), "steps": 5},
    ...             train={"epochs": 2, "batch_size": 25, "device": "cpu"}).fit(X)
    >>> m.recommend(None, X[:2], k=3)[0].shape
    (2, 3)
    """

    name = "diffrec"
    module_: DiffRecNet
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    keyed_noise: ClassVar[bool] = (
        True  # steps, noise and dropout keyed by user (see docs/scaling.md for the sampler)
    )
    config_class = DiffRecConfig

    def _build_module(self, n_items: int, generator: torch.Generator) -> DiffRecNet:
        return DiffRecNet(n_items, self.config, generator)

    def state_arrays(self) -> dict[str, ArraySpec]:
        d = self.config.diffusion
        return Denoiser.arrays(
            "denoiser.", self.n_items_, tuple(d.dims), d.emb_size
        ) | TimestepSampler.arrays("sampler.", d.steps, d.history_per_step)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        c, net = self.config.diffusion, self.module_
        x0 = batch.dense()  # (B, I)
        rng = ctx.rng_for(batch.users)
        t, pt = net.sampler.sample(len(batch), rng, c.timestep_sampling, c.uniform_prob)
        noise = gaussian_noise(x0, rng)  # (B, I)
        per_user, _ = diffusion_loss(
            net.schedule, net.denoiser, x0, t, noise, c.reweight, rng
        )  # (B,)
        net.sampler.record(t, per_user)
        loss = (per_user / pt.to(per_user.dtype)).mean()
        return {"loss": loss}

    def _scores(self, batch: Batch) -> torch.Tensor:
        c, net = self.config.diffusion, self.module_
        x = batch.dense()  # (B, I)
        gen = inference_generator(c, self.config.train.seed, x.device)
        return reverse_diffusion(
            net.schedule, net.denoiser, x, c.sampling_steps, c.reverse_steps, gen, c.sampling_noise
        )  # (B, I)

"""The Gaussian diffusion schedule used by DiffRec and L-DiffRec (diffusers-style: no learning).

Forward process (Ho et al. 2020), with alpha_t = 1 - beta_t and abar_t = prod_{s <= t} alpha_s:

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
    q_sample(x0, t, noise) = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise        (noise passed in)

Posterior of one reverse step (Bayes on two Gaussians):

    q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, var_t I)
    c1_t  = beta_t sqrt(abar_{t-1}) / (1 - abar_t)
    c2_t  = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)
    var_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

Indexing: t = 0 .. T-1 indexes the T noising steps (t = 0 makes the paper's x_1 from x_0), and
abar_{-1} = 1. So at t = 0 the posterior is exact: c1 = 1, c2 = 0, var = 0, and the last reverse
step returns the predicted x_0 itself.

Beta schedules (``make_betas``), ``s`` = noise_scale:

* ``"linear-var"`` (DiffRec): the *variance* 1 - abar_t is linear in t,
  v = linspace(s * noise_min, s * noise_max, T), abar = 1 - v; beta_0 = v_0 and
  beta_t = min(1 - abar_t / abar_{t-1}, 0.999).
* ``"linear"``: beta = linspace(s * noise_min, s * noise_max, T) (Ho et al.).
* ``"cosine"`` (Nichol & Dhariwal 2021): abar(u) = cos((u + 0.008) / 1.008 * pi / 2)^2,
  beta_t = min(1 - abar((t + 1) / T) / abar(t / T), 0.999); ignores noise_scale/min/max.

``first_beta``: DiffRec's code replaces beta_0 by 1e-5 after building any schedule (its
``beta_fixed``, after Sohl-Dickstein et al. 2015, section 2.4.1) and derives every table from the
modified betas; ``None`` keeps the schedule's own beta_0.

:class:`DiffusionConfig` holds these settings and the rest of the diffusion model that
DiffRec and L-DiffRec share (the denoiser's sizes, how the training step t is drawn, the loss
weights, inference); each model nests one, with its own defaults, as ``config.diffusion``.

All tables are float64 (as in DiffRec); a step's coefficients are gathered in float64 and cast
to the dtype of ``x``. :class:`DiffusionSchedule` is an ``nn.Module`` only so that its tables
(non-persistent buffers) move with the model's ``.to(device)``; it has no parameters, nothing
in it changes after construction, and it is rebuilt from the config on load.

Dimension letters: B rows in a batch, D the dimension of x (items, or latent size), T steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from torch import nn

from genrec.config import Range, check_ranges

__all__ = [
    "DiffusionConfig",
    "SCHEDULES",
    "make_betas",
    "linear_variance_betas",
    "cosine_betas",
    "schedule_tables",
    "DiffusionSchedule",
]

SCHEDULES = ("linear-var", "linear", "cosine")
MAX_BETA = 0.999


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class DiffusionConfig:
    """The diffusion model DiffRec and L-DiffRec share: the denoiser's network, the schedule,
    how the training step t is drawn and weighted, and inference. Defaults: DiffRec's ML-1M
    run."""

    # denoiser hidden sizes (DiffRec --dims; mirrored in)
    dims: Annotated[tuple[int, ...], Range(ge=1, min_len=1)] = (200, 600)
    emb_size: Annotated[int, Range(ge=1)] = 10  # E, time-embedding size
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # input dropout of the denoiser
    norm: bool = False  # L2-normalise x_t in the denoiser
    mean_type: Literal["x0", "eps"] = "x0"  # the denoiser predicts x_0 or the noise
    noise_schedule: Literal["linear-var", "linear", "cosine"] = "linear-var"
    steps: Annotated[int, Range(ge=1)] = 40  # T, diffusion steps
    noise_scale: float = 0.005  # s: the beta range is [s * noise_min, s * noise_max]
    noise_min: float = 0.005
    noise_max: float = 0.01
    # beta_0 override of the authors' code; None = off
    first_beta: Annotated[float | None, Range(gt=0, lt=1)] = 1e-5
    reweight: bool = True  # weight step t's MSE by SNR(t-1) - SNR(t)
    timestep_sampling: Literal["importance", "uniform"] = "importance"  # how t is drawn
    # losses kept per step for importance sampling
    history_per_step: Annotated[int, Range(ge=1)] = 10
    # uniform share mixed into the importance distribution
    uniform_prob: Annotated[float, Range(ge=0, le=1)] = 0.001
    # inference: noise the history (DiffRec) or mu (L-DiffRec) to this step (0 = not at all)
    sampling_steps: Annotated[int, Range(ge=0)] = 0
    sampling_noise: bool = False  # inference: add the posterior noise in reverse steps
    # inference: reverse steps run; None = all T (the authors' code)
    reverse_steps: Annotated[int | None, Range(ge=1)] = None

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.noise_schedule != "cosine":
            if not (self.noise_scale > 0 and self.noise_min > 0 and self.noise_max > 0):
                raise ValueError(
                    f"noise_scale, noise_min and noise_max must be > 0, got "
                    f"{self.noise_scale}, {self.noise_min}, {self.noise_max}"
                )
            if self.noise_min > self.noise_max:
                raise ValueError(
                    f"noise_min ({self.noise_min}) must be <= noise_max ({self.noise_max})"
                )
            if self.noise_scale * self.noise_max >= 1:
                raise ValueError(
                    f"noise_scale * noise_max must be < 1, got {self.noise_scale * self.noise_max}"
                )
        if (
            self.noise_schedule == "linear-var"
            and self.steps > 1
            and self.noise_min >= self.noise_max
        ):
            raise ValueError(
                f"noise_schedule linear-var needs noise_min < noise_max when steps "
                f"> 1 (the variance must grow: equal values give beta_t = 0 for "
                f"t >= 1), got {self.noise_min} and {self.noise_max}; the linear "
                f"schedule allows constant betas"
            )
        # the betas themselves (T floats), so that a bad schedule is refused here, not at fit
        make_betas(
            self.noise_schedule,
            self.steps,
            self.noise_scale,
            self.noise_min,
            self.noise_max,
            self.first_beta,
        )
        if self.sampling_steps > self.steps:
            raise ValueError(
                f"sampling_steps must be in [0, steps={self.steps}], got {self.sampling_steps}"
            )
        if self.reverse_steps is not None and self.reverse_steps > self.steps:
            raise ValueError(
                f"reverse_steps must be in [1, steps={self.steps}] or None, "
                f"got {self.reverse_steps}"
            )


# ---------------------------------------------------------------- betas (pure, float64 numpy)


def linear_variance_betas(variance: np.ndarray, max_beta: float = MAX_BETA) -> np.ndarray:
    """Betas whose cumulative product gives abar_t = 1 - variance_t (DiffRec's linear-var).

    beta_0 = variance_0, beta_t = min(1 - abar_t / abar_{t-1}, max_beta); (T,) float64.
    """
    abar = 1.0 - np.asarray(variance, dtype=np.float64)  # (T,)
    betas = np.empty_like(abar)
    betas[0] = 1.0 - abar[0]
    betas[1:] = np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)
    return betas


def cosine_betas(steps: int, max_beta: float = MAX_BETA) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule, (T,) float64."""

    def abar(u: np.ndarray) -> np.ndarray:
        return np.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    u = np.arange(steps, dtype=np.float64)
    return np.minimum(1.0 - abar((u + 1) / steps) / abar(u / steps), max_beta)


def make_betas(
    name: str,
    steps: int,
    noise_scale: float,
    noise_min: float,
    noise_max: float,
    first_beta: float | None = 1e-5,
) -> np.ndarray:
    """The (T,) float64 betas of schedule ``name`` (see the module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    start, end = noise_scale * noise_min, noise_scale * noise_max
    if name == "linear-var":
        betas = linear_variance_betas(np.linspace(start, end, steps, dtype=np.float64))
    elif name == "linear":
        betas = np.linspace(start, end, steps, dtype=np.float64)
    elif name == "cosine":
        betas = cosine_betas(steps)
    else:
        raise ValueError(f"unknown noise schedule {name!r}; use one of {', '.join(SCHEDULES)}")
    if first_beta is not None:
        betas[0] = first_beta
    if not ((betas > 0).all() and (betas <= 1).all()):
        raise ValueError(
            f"schedule {name!r} gives betas outside (0, 1]: min {betas.min():.3g}, "
            f"max {betas.max():.3g}; check noise_scale, noise_min, noise_max"
        )
    return betas


def schedule_tables(betas: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-step table the diffusion uses, from the betas; each (T,) float64."""
    betas = np.asarray(betas, dtype=np.float64)
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)  # (T,)
    abar_prev = np.concatenate([[1.0], abar[:-1]])  # (T,) abar_{t-1}, abar_{-1} = 1
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)  # (T,); 0 at t = 0
    # DiffRec/improved-DDPM: log var with the t = 0 entry (0) replaced by the t = 1 one
    clipped = np.concatenate([post_var[1:2], post_var[1:]]) if len(betas) > 1 else post_var
    with np.errstate(divide="ignore"):
        log_var = np.log(clipped)
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": np.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - abar),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / abar),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / abar - 1.0),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": log_var,
        "posterior_mean_coef1": betas * np.sqrt(abar_prev) / (1.0 - abar),
        "posterior_mean_coef2": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
    }


# ---------------------------------------------------------------- the schedule object


class DiffusionSchedule(nn.Module):
    """Betas, cumulative products and posterior coefficients of a T-step Gaussian diffusion.

    Parameters
    ----------
    name : {"linear-var", "linear", "cosine"}
    steps : T
    noise_scale, noise_min, noise_max : the beta range (see :func:`make_betas`)
    first_beta : beta_0 override (DiffRec: 1e-5), or None
    prediction : {"x0", "eps"}
        What the denoiser predicts: the clean x_0 (DiffRec's default) or the noise.

    Attributes
    ----------
    steps : int
    betas, alphas_cumprod, posterior_variance, posterior_mean_coef1, ... : Tensor (T,) float64
    """

    # buffers made by register_buffer from schedule_tables
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    betas: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    posterior_variance: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor

    def __init__(
        self,
        name: str,
        steps: int,
        noise_scale: float,
        noise_min: float,
        noise_max: float,
        first_beta: float | None = 1e-5,
        prediction: Literal["x0", "eps"] = "x0",
    ):
        super().__init__()
        if prediction not in ("x0", "eps"):
            raise ValueError(f"prediction must be x0 or eps, got {prediction!r}")
        self.name = name
        self.steps = steps
        self.prediction = prediction
        betas = make_betas(name, steps, noise_scale, noise_min, noise_max, first_beta)
        for key, table in schedule_tables(betas).items():
            self.register_buffer(key, torch.from_numpy(table), persistent=False)

    @classmethod
    def from_config(cls, c: DiffusionConfig) -> DiffusionSchedule:
        """The schedule of a :class:`DiffusionConfig`."""
        return cls(
            c.noise_schedule,
            c.steps,
            c.noise_scale,
            c.noise_min,
            c.noise_max,
            c.first_beta,
            c.mean_type,
        )

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] as (B, 1) in x's dtype and device (float64 gather, then cast)."""
        return table[t.to(table.device)].to(device=x.device, dtype=x.dtype).unsqueeze(-1)

    def _steps_tensor(self, t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if isinstance(t, int):
            return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (B,)
        return t

    # ------------------------------------------------------------ forward process
    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor
    ) -> torch.Tensor:
        """A draw of x_t ~ q(x_t | x_0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

        Parameters
        ----------
        x0 : (B, D)
        t : LongTensor (B,) or int
        noise : (B, D) standard normal, drawn by the caller
        """
        t = self._steps_tensor(t, x0)
        return (
            self._at(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )  # (B, D)

    # ------------------------------------------------------------ reverse process
    def posterior_mean_variance(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean (B, D), variance (B, 1) and clipped log-variance (B, 1) of q(x_{t-1}|x_t, x_0)."""
        t = self._steps_tensor(t, x_t)
        mean = (
            self._at(self.posterior_mean_coef1, t, x_t) * x0
            + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        )  # (B, D)
        return (
            mean,
            self._at(self.posterior_variance, t, x_t),
            self._at(self.posterior_log_variance_clipped, t, x_t),
        )

    def predict_x0(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """x_0 from the denoiser's output: itself (x0 prediction), or from the noise
        (x0 = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps)."""
        if self.prediction == "x0":
            return model_output
        t = self._steps_tensor(t, x_t)
        return (
            self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * model_output
        )  # (B, D)

    def step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
        sampling_noise: bool = False,
    ) -> torch.Tensor:
        """One reverse step x_t -> x_{t-1}: the posterior mean at the predicted x_0, plus
        sqrt(var) * N(0, I) from ``generator`` when ``sampling_noise`` (never at t = 0)."""
        t = self._steps_tensor(t, x_t)
        x0 = self.predict_x0(model_output, x_t, t)  # (B, D)
        mean, _, log_var = self.posterior_mean_variance(x0, x_t, t)
        if not sampling_noise:
            return mean
        if generator is None:
            raise ValueError("sampling_noise needs a torch.Generator")
        noise = torch.randn(x_t.shape, generator=generator, device=generator.device)
        noise = noise.to(device=x_t.device, dtype=x_t.dtype)  # (B, D)
        nonzero = (t != 0).to(x_t.dtype).unsqueeze(-1)  # (B, 1)
        return mean + nonzero * torch.exp(0.5 * log_var) * noise  # (B, D)

    # ------------------------------------------------------------ loss weights
    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), (B,) float64."""
        a = self.alphas_cumprod[t.to(self.alphas_cumprod.device)]
        return a / (1.0 - a)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """DiffRec's per-step weight of the MSE (its ``reweight``), (B,) float64, 1 at t = 0.

        x0 prediction: SNR(t - 1) - SNR(t); eps prediction:
        (1 - abar_t) / ((1 - abar_{t-1})^2 (1 - beta_t)).
        """
        t = t.to(self.alphas_cumprod.device)
        if self.prediction == "x0":
            w = self.snr((t - 1).clamp_min(0)) - self.snr(t)
        else:
            prev = self.alphas_cumprod_prev[t]
            w = (1 - self.alphas_cumprod[t]) / ((1 - prev) ** 2 * (1 - self.betas[t]))
        return torch.where(t == 0, torch.ones_like(w), w)  # (B,)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, steps={self.steps}, prediction={self.prediction!r}"

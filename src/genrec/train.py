"""The training loop shared by gradient-trained models.

One plain loop (nanoGPT style), written once:

    for epoch:
        for phase in model.phases():            # one phase by default; RecVAE has two
            model.on_phase_start(phase, ctx)     # optional hook
            for pass in range(phase.passes):
                for users in shuffled batches:   # torch.randperm on an explicit generator
                    batch = Batch.from_csr(X[users])        # CSR rows, densified on demand
                    out = model.train_step(batch, ctx)      # {"loss": tensor, parts...}
                    zero_grad; out["loss"].backward(); clip; optimizers[phase.optimizer].step()
        validate (evaluate_ranking on ``valid``), keep the best weights, count patience
        append one JSON line to run_dir/train_log.jsonl, checkpoint run_dir/checkpoint/
    load the best weights

What a model supplies (see :class:`genrec.models.torch_base.TorchRecommender`):

* ``module_``: the ``nn.Module`` whose ``state_dict`` is trained, checkpointed and kept-best;
* ``train_step(batch, ctx) -> dict``: the loss (a scalar tensor under ``"loss"``) and any
  numbers to log (``"recon"``, ``"kl"``, ``"beta"``...); ``ctx`` (:class:`StepContext`) holds
  the global step, the epoch, the phase and the ``torch.Generator`` for all noise;
* ``score(users, X)``: used by the evaluator on the validation task;
* optionally ``phases()``, ``build_optimizers(config)`` and ``on_phase_start(phase, ctx)``.

Reproducibility: all randomness comes from two generators seeded from ``TrainConfig.seed``
(one for shuffling, on the CPU; one for the model's noise, on the training device); nothing
global is seeded. Resuming: each epoch ends with an atomic checkpoint holding the weights,
the optimizer states, both generator states, the step and epoch counters, the best weights,
the early-stopping state, the log records and the training matrix's shape and entry count
(a resume on other data is refused); ``resume=True`` continues from it and ends
with the same weights as an uninterrupted run (on CPU, bit for bit).

Weight averaging: with ``ema_decay`` an exponential moving average of the weights
(:class:`WeightAverage`) is updated after every step; it is what validation scores and what
is kept as the best weights (and checkpointed with the rest).

Precision: ``"bf16"`` runs ``train_step`` under ``torch.autocast`` (bfloat16 matmuls on CPU
or CUDA, float32 master weights); models keep their losses in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import pickle
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genrec.config import valid_device_name
from genrec.errors import ConfigError, DataError
from genrec.io import atomic_write_bytes, atomic_write_text, to_json

__all__ = [
    "TrainConfig",
    "Phase",
    "StepContext",
    "Batch",
    "LinearAnneal",
    "Constant",
    "Trainable",
    "TrainResult",
    "Trainer",
    "WeightAverage",
    "make_optimizer",
    "autocast",
    "CHECKPOINT_FORMAT",
]

logger = logging.getLogger("genrec.train")

CHECKPOINT_FORMAT = "genrec-checkpoint/1"
LOG_NAME = "train_log.jsonl"
CHECKPOINT_NAME = "checkpoint/state.pt"


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the fields a model config shares with the trainer, same names).

    Build it from a model config with :meth:`from_config`, which picks these fields by name.
    """

    epochs: int = 100  # maximum number of epochs
    batch_size: int = 500  # users per batch
    lr: float = 1e-3  # learning rate
    weight_decay: float = 0.0  # optimizer weight decay (L2 for adam/sgd, decoupled for adamw)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    grad_clip: float | None = None  # clip the global gradient norm to this; None = no clipping
    ema_decay: float | None = None  # validate/keep an exponential moving average of the weights
    patience: int | None = 20  # validations without improvement before stopping; None = never
    select_metric: str = "ndcg@20"  # validation metric that picks the best epoch ("recall@20")
    eval_every: int = 1  # validate every this many epochs (and after the last)
    eval_batch_size: int = 2048  # users scored at once during validation
    device: str = "auto"  # auto | cpu | cuda[:N]
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast matmuls, fp32 weights
    seed: int = 0  # seeds the shuffling and noise generators

    def __post_init__(self) -> None:
        for name, kind in _FIELD_TYPES.items():  # a config built directly, unconverted
            v = getattr(self, name)
            if not (v is None and name in _OPTIONAL) and (
                    isinstance(v, bool) or not isinstance(v, kind)):
                what = "an integer" if kind is Integral else "a number"
                raise ValueError(f"{name} must be {what}"
                                 f"{' or None' if name in _OPTIONAL else ''}, got {v!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be >= 0 and finite, got {self.weight_decay}")
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ValueError(f"grad_clip must be > 0 and finite, or None, got {self.grad_clip}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        parse_metric(self.select_metric)
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if not valid_device_name(self.device):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if not -SEED_LIMIT < self.seed < SEED_LIMIT:  # torch seeds are 64-bit; seed + 2 is used
            raise ValueError(f"seed must be an integer with |seed| < 2**62, got {self.seed}")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> TrainConfig:
        """The TrainConfig fields found (by name) in a model config, plus ``overrides``."""
        names = [f.name for f in dataclasses.fields(cls)]
        values = {n: getattr(config, n) for n in names if hasattr(config, n)}
        values.update(overrides)
        return cls(**values)


SEED_LIMIT = 2**62
_FIELD_TYPES = {"epochs": Integral, "batch_size": Integral, "eval_every": Integral,
                "eval_batch_size": Integral, "seed": Integral, "patience": Integral,
                "lr": Real, "weight_decay": Real, "grad_clip": Real, "ema_decay": Real}
_OPTIONAL = ("patience", "grad_clip", "ema_decay")


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@20"`` -> ("ndcg", 20); a ValueError for anything else."""
    from genrec.metrics import RANKING_METRICS

    metric, _, k = name.partition("@")
    if metric not in RANKING_METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"select_metric must look like ndcg@20 or recall@20 (metrics: "
                         f"{', '.join(sorted(RANKING_METRICS))}), got {name!r}")
    return metric, int(k)


@dataclass(frozen=True)
class Phase:
    """A part of an epoch: ``passes`` passes over the users, stepping one optimizer."""

    name: str = "train"
    passes: int = 1
    optimizer: str = "main"  # key into the model's build_optimizers() dict


# ---------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class LinearAnneal:
    """beta(step) = min(cap, step / total_steps) (Liang et al.'s KL annealing).

    ``step`` counts the updates done before this one (0 at the first batch), so the cap is
    first reached at step ``ceil(cap * total_steps)``.
    """

    cap: float
    total_steps: int

    def __post_init__(self) -> None:
        if self.cap < 0:
            raise ValueError(f"anneal cap must be >= 0, got {self.cap}")
        if self.total_steps < 1:
            raise ValueError(f"total_anneal_steps must be >= 1, got {self.total_steps}")

    def __call__(self, step: int) -> float:
        return min(self.cap, step / self.total_steps)

    @property
    def cap_step(self) -> int:
        """The first step at which beta equals the cap."""
        return math.ceil(self.cap * self.total_steps)


@dataclass(frozen=True)
class Constant:
    """beta(step) = value."""

    value: float

    def __call__(self, step: int) -> float:
        return self.value


# ---------------------------------------------------------------------------- weight averaging


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's state_dict (best weights, averages, swaps)."""
    return {n: t.detach().clone() for n, t in module.state_dict().items()}


class WeightAverage:
    """An exponential moving average of a module's weights (Polyak-Ruppert averaging).

    After the t-th optimizer update (t = 1, 2, ...) the average is the mean of the weights
    w_1..w_t after each update, w_s weighted by decay^(t - s) (normalised, as Adam corrects
    its moments' bias), so the random initial weights get no share. As a recurrence::

        avg_t = d_t * avg_(t-1) + (1 - d_t) * w_t,    d_t = 1 - (1 - decay) / (1 - decay^t)

    (d_1 = 0: the first average is w_1; d_t falls towards ``decay`` as t grows). Every
    floating-point tensor of the ``state_dict`` is averaged; other buffers are copied.
    The average only changes what is validated and kept: training steps use the raw weights.
    """

    def __init__(self, module: nn.Module, decay: float, updates: int = 0,
                 shadow: dict[str, torch.Tensor] | None = None):
        self.decay = decay
        self.updates = updates
        self.shadow = _snapshot(module) if shadow is None else shadow  # given: a checkpoint's

    def rate(self) -> float:
        """d_t for the next update."""
        t = self.updates + 1
        return 1.0 - (1.0 - self.decay) / (1.0 - self.decay**t)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.rate()
        for name, w in module.state_dict().items():
            avg = self.shadow[name]
            if avg.dtype.is_floating_point:
                avg.lerp_(w.to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(w)
        self.updates += 1

    @contextlib.contextmanager
    def swapped_in(self, module: nn.Module) -> Iterator[None]:
        """Within the block the module holds the averaged weights; the raw ones come back."""
        raw = _snapshot(module)
        module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            module.load_state_dict(raw)


# ---------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """A batch of user rows (B users, I items) as CSR parts on the training device.

    Attributes
    ----------
    users : LongTensor (B,) or None
        Row indices into the training matrix (None when scoring new users).
    indptr : LongTensor (B + 1,); indices : LongTensor (N,); values : FloatTensor (N,)
        The rows, CSR.
    n_items : int
    """

    users: torch.Tensor | None
    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    n_items: int

    @classmethod
    def from_csr(cls, X: sp.csr_matrix, users: torch.Tensor | None = None,
                 device: torch.device | str = "cpu") -> Batch:
        X = sp.csr_matrix(X)
        return cls(
            users,
            torch.from_numpy(X.indptr.astype(np.int64)).to(device),
            torch.from_numpy(X.indices.astype(np.int64)).to(device),
            torch.from_numpy(X.data.astype(np.float32, copy=False)).to(device),
            X.shape[1],
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def dense(self) -> torch.Tensor:
        """The rows as a dense float32 tensor (B, I), built now (per batch only)."""
        from genrec.models.nn_blocks import row_ids

        out = torch.zeros((len(self), self.n_items), device=self.values.device)  # (B, I)
        out[row_ids(self.indptr), self.indices] = self.values
        return out

    def row_sums(self) -> torch.Tensor:
        """sum_i x_ui per row, (B,) float32 (the number of interactions for 0/1 data)."""
        from genrec.models.nn_blocks import row_ids

        out = torch.zeros(len(self), device=self.values.device)
        return out.index_add(0, row_ids(self.indptr), self.values)


@dataclass
class StepContext:
    """What a ``train_step`` may need besides the batch."""

    step: int  # updates done before this one (global, over all phases and epochs)
    epoch: int  # 0-based
    phase: Phase
    generator: torch.Generator  # all of the model's noise, on the training device
    device: torch.device
    precision: str
    X: sp.csr_matrix  # the training matrix (for per-user quantities computed per phase)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls in hardware: on CPU, oneDNN's bf16 check
    (AVX512 with BF16/AMX, as on recent Xeons); on CUDA, compute capability 8 or more (Ampere
    on; ``torch.cuda.is_bf16_supported`` also counts emulation as support).
    Without it autocast still works, emulated, and is far slower than float32."""
    try:
        if device.type == "cuda":  # Ampere (compute capability 8) and later; not emulation
            return torch.cuda.get_device_capability(device)[0] >= 8
        if device.type == "cpu":
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a different build: do not guess
        return True
    return True


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` for ``precision == "bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- the model side


class Trainable(Protocol):
    """What :class:`Trainer` needs from a model (TorchRecommender implements all of it)."""

    module_: nn.Module

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]: ...

    def score(self, users: np.ndarray | None, X_users: Any) -> Any: ...


_FUSED_ADAM_CPU = torch.torch_version.TorchVersion(torch.__version__) >= (2, 4)  # CPU kernel


def make_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over ``params`` (tensors or groups).

    Adam and AdamW use the fused kernel where the parameters allow it (CPU or CUDA float
    tensors): the same update, an order of magnitude faster than the per-tensor loop on CPU.
    """
    params = list(params)
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        devices = ("cpu", "cuda") if _FUSED_ADAM_CPU else ("cuda",)
        fused = all(p.dtype.is_floating_point and p.device.type in devices for p in tensors)
        return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigError(f"unknown optimizer {config.optimizer!r}; use adam, adamw or sgd")


# ---------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    """What a run did; ``history`` holds one record per epoch (as in the JSONL log)."""

    best_epoch: int | None  # 1-based epoch whose weights were kept (None: no validation)
    best_metric: float | None
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(repr=False, default_factory=list)


@dataclass
class _State:
    """Everything that changes during training (and goes into a checkpoint)."""

    epoch: int = 0  # epochs completed
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    ema: WeightAverage | None = None


# ---------------------------------------------------------------------------- the trainer


class Trainer:
    """Train a :class:`Trainable` model.

    Parameters
    ----------
    config : TrainConfig
    run_dir : folder for ``train_log.jsonl`` and ``checkpoint/``; None writes nothing
    progress : show a rich progress bar on stderr (only when stderr is a terminal)
    """

    def __init__(self, config: TrainConfig, *, run_dir: str | Path | None = None,
                 progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress

    # -------------------------------------------------------------- public
    def fit(self, model: Trainable, X: sp.csr_matrix, valid: Any = None, *,
            resume: bool = False) -> TrainResult:
        """Train ``model.module_`` on X (CSR, n_users x n_items); keep the best weights.

        ``valid`` (a RankingTask) is evaluated every ``eval_every`` epochs with
        :func:`genrec.evaluate.evaluate_ranking`; ``resume`` continues from
        ``run_dir/checkpoint`` (or starts over when no epoch was checkpointed yet).
        """
        from genrec.evaluate import RankingTask

        cfg = self.config
        X = sp.csr_matrix(X, dtype=np.float32)
        if X.shape[0] == 0:
            raise DataError("cannot train on a matrix with no users")
        if valid is not None and not isinstance(valid, RankingTask):
            raise ConfigError(f"{type(model).__name__} ranks items and validates on a ranking "
                              f"task, got {type(valid).__name__}; use a ranking protocol "
                              f"(diffrec, strong or loo)")
        if valid is not None and valid.inputs.shape[1] != X.shape[1]:
            raise DataError(f"the validation task {valid.name!r} has {valid.inputs.shape[1]} "
                            f"item columns but the training matrix has {X.shape[1]}")
        if valid is not None and valid.truth.nnz == 0:
            raise DataError(f"the validation task {valid.name!r} has no held-out items, so "
                            f"there is nothing to choose the epoch on; give the validation "
                            f"split some interactions, or train without it (valid=None)")
        data = [int(X.shape[0]), int(X.shape[1]), int(X.nnz)]  # checked on resume
        module = model.module_
        device = next(module.parameters()).device
        phases = tuple(getattr(model, "phases", lambda: (Phase(),))())
        optimizers = self._build_optimizers(model)
        for ph in phases:
            if ph.optimizer not in optimizers:
                raise ConfigError(f"phase {ph.name!r} uses optimizer {ph.optimizer!r}, "
                                  f"not among {sorted(optimizers)}")
        if cfg.precision == "bf16" and not native_bf16(device):
            logger.warning("precision bf16: this %s has no bfloat16 instructions, so autocast "
                           "is emulated and much slower than fp32; use precision fp32 here",
                           device.type.upper())
        shuffle_gen = torch.Generator().manual_seed(cfg.seed)
        noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        state = _State()
        if cfg.ema_decay is not None:
            state.ema = WeightAverage(module, cfg.ema_decay)
        if resume:
            if self.run_dir is None:
                raise ConfigError("resume needs a run directory (run_dir)")
            if (self.run_dir / CHECKPOINT_NAME).is_file():
                state = self._load_checkpoint(module, optimizers, shuffle_gen, noise_gen,
                                              device, data)
            else:  # killed before the first checkpoint: the same seed redoes the same run
                logger.warning("%s: no checkpoint yet; training from the start",
                               self.run_dir / CHECKPOINT_NAME)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / LOG_NAME,
                              "".join(to_json(r, indent=None) for r in state.history))

        n_batches = sum(ph.passes for ph in phases) * math.ceil(X.shape[0] / cfg.batch_size)
        with self._progress_bar(n_batches, state.epoch) as bar:
            while state.epoch < cfg.epochs and not state.stopped_early:
                t0 = time.perf_counter()
                numbers = self.train_epoch(model, X, phases, optimizers, state, shuffle_gen,
                                           noise_gen, device, bar)
                t_train = time.perf_counter() - t0
                record: dict[str, Any] = {"epoch": state.epoch + 1, "step": state.step,
                                          **numbers, "train_seconds": t_train}
                if valid is not None and self._validate_now(state.epoch):
                    self._validate(model, valid, state, record)
                state.epoch += 1
                record["seconds"] = time.perf_counter() - t0
                state.history.append(record)
                self._log(record, bar)
                if self.run_dir is not None:
                    self._save_checkpoint(module, optimizers, shuffle_gen, noise_gen, state,
                                          data)
        if state.best_weights is not None:
            module.load_state_dict(state.best_weights)
        elif state.ema is not None:  # no validation: the average of the last weights
            module.load_state_dict(state.ema.shadow)
        module.eval()
        return TrainResult(state.best_epoch, state.best_metric, state.epoch,
                           state.stopped_early, state.history)

    def train_epoch(self, model: Trainable, X: sp.csr_matrix, phases: tuple[Phase, ...],
                    optimizers: dict[str, torch.optim.Optimizer], state: _State,
                    shuffle_gen: torch.Generator, noise_gen: torch.Generator,
                    device: torch.device, bar: Any = None) -> dict[str, float]:
        """One epoch: every phase's passes over shuffled user batches. Returns mean numbers
        per logged key (weighted by batch size), prefixed by the phase name when there are
        several phases."""
        cfg = self.config
        module = model.module_
        module.train()
        params = [p for p in module.parameters()]
        out: dict[str, float] = {}
        for phase in phases:
            ctx = StepContext(state.step, state.epoch, phase, noise_gen, device, cfg.precision,
                              X)
            hook = getattr(model, "on_phase_start", None)
            if hook is not None:
                hook(phase, ctx)
            opt = optimizers[phase.optimizer]
            sums: dict[str, float] = {}
            n_seen = 0
            for _ in range(phase.passes):
                for users in self._batches(X.shape[0], shuffle_gen):
                    batch = Batch.from_csr(X[users.numpy()], users, device)
                    ctx.step = state.step
                    with autocast(device, cfg.precision):
                        parts = model.train_step(batch, ctx)
                    loss = parts["loss"]
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"loss is {loss.item()} at epoch {state.epoch + 1}, step "
                            f"{state.step}: lower lr or set grad_clip")
                    module.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(
                            [p for p in params if p.grad is not None], cfg.grad_clip)
                    opt.step()
                    if state.ema is not None:
                        state.ema.update(module)
                    state.step += 1
                    b = len(batch)
                    n_seen += b
                    for k, v in parts.items():
                        v = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                        sums[k] = sums.get(k, 0.0) + b * v
                    if bar is not None:
                        bar.advance(loss=sums["loss"] / n_seen)
            prefix = "" if len(phases) == 1 else f"{phase.name}_"
            out.update({prefix + k: v / max(n_seen, 1) for k, v in sums.items()})
        return out

    # -------------------------------------------------------------- pieces
    def _build_optimizers(self, model: Trainable) -> dict[str, torch.optim.Optimizer]:
        build = getattr(model, "build_optimizers", None)
        if build is not None:
            return dict(build(self.config))
        return {"main": make_optimizer(model.module_.parameters(), self.config)}

    def _batches(self, n: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        perm = torch.randperm(n, generator=gen)  # (n,)
        for start in range(0, n, self.config.batch_size):
            yield perm[start : start + self.config.batch_size]

    def _validate_now(self, epoch: int) -> bool:
        return (epoch + 1) % self.config.eval_every == 0 or epoch + 1 == self.config.epochs

    def _validate(self, model: Trainable, valid: Any, state: _State,
                  record: dict[str, Any]) -> None:
        from genrec.evaluate import evaluate_ranking

        cfg = self.config
        name, k = parse_metric(cfg.select_metric)
        ks = sorted({10, 20, k})
        metrics = tuple(dict.fromkeys(["recall", "ndcg", name]))
        module = model.module_
        module.eval()
        # with ema_decay, the averaged weights are the ones validated and kept
        with state.ema.swapped_in(module) if state.ema is not None else contextlib.nullcontext():
            res = evaluate_ranking(model, valid, ks=ks, metrics=metrics,
                                   batch_size=cfg.eval_batch_size)
            value = res.metrics[cfg.select_metric]
            better = state.best_metric is None or value > state.best_metric
            if better:
                state.best_weights = _snapshot(module)
        record["valid"] = {m: v for m, v in res.metrics.items() if not m.startswith("coverage")}
        record["eval_seconds"] = res.seconds
        if better:
            state.best_metric, state.best_epoch, state.bad_evals = value, state.epoch + 1, 0
        else:
            state.bad_evals += 1
            if cfg.patience is not None and state.bad_evals >= cfg.patience:
                state.stopped_early = True
        record["best_epoch"] = state.best_epoch
        record["best_" + cfg.select_metric] = state.best_metric

    def _log(self, record: dict[str, Any], bar: Any) -> None:
        sel = self.config.select_metric
        parts = [f"epoch {record['epoch']}/{self.config.epochs}"]
        for k, v in record.items():
            if k.endswith("loss") and isinstance(v, float):
                parts.append(f"{k} {v:.4g}")
        if "valid" in record:
            parts.append(f"valid {sel} {record['valid'][sel]:.4f} (best {record['best_' + sel]:.4f}"
                         f" @ {record['best_epoch']})")
        parts.append(f"{record['seconds']:.2f}s")
        logger.info("  ".join(parts))
        if bar is not None:
            bar.epoch_done(record, sel)
        if self.run_dir is not None:
            with open(self.run_dir / LOG_NAME, "a") as f:
                f.write(to_json(record, indent=None))

    def _progress_bar(self, n_batches: int, start_epoch: int) -> _Bar:
        enabled = self.progress and sys.stderr.isatty()
        return _Bar(self.config.epochs, n_batches, enabled, start_epoch)

    # -------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, module: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                         shuffle_gen: torch.Generator, noise_gen: torch.Generator,
                         state: _State, data: list[int]) -> None:
        assert self.run_dir is not None
        payload = {
            "format": CHECKPOINT_FORMAT,
            "train_config": json.dumps(dataclasses.asdict(self.config)),
            "data": data,  # users, items, stored entries of the training matrix
            "module": module.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "shuffle_generator": shuffle_gen.get_state(),
            "noise_generator": noise_gen.get_state(),
            "epoch": state.epoch,
            "step": state.step,
            "best_metric": state.best_metric,
            "best_epoch": state.best_epoch,
            "bad_evals": state.bad_evals,
            "stopped_early": state.stopped_early,
            "best_weights": state.best_weights,
            "history": json.dumps(state.history),
            "ema": None if state.ema is None else state.ema.shadow,
            "ema_updates": 0 if state.ema is None else state.ema.updates,
        }
        atomic_write_bytes(self.run_dir / CHECKPOINT_NAME, lambda f: torch.save(payload, f))

    def _load_checkpoint(self, module: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                         shuffle_gen: torch.Generator, noise_gen: torch.Generator,
                         device: torch.device, data: list[int]) -> _State:
        path = self.run_dir / CHECKPOINT_NAME
        try:
            ck = torch.load(path, map_location=device, weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
            raise DataError(f"{path}: the checkpoint is unreadable ({type(e).__name__}); delete "
                            f"it to restart that run from the beginning") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            fmt = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
            raise DataError(f"{path}: unsupported checkpoint format {fmt!r}")
        saved = json.loads(ck["train_config"])
        mine = dataclasses.asdict(self.config)
        free = ("epochs", "patience", "device", "eval_batch_size")  # may change on resume
        differ = [k for k in mine if k not in free and saved.get(k) != mine[k]]
        if differ:
            raise ConfigError(f"{path}: the checkpoint was trained with different "
                              f"{', '.join(differ)}; resume with the same settings")
        saved_data = ck.get("data")
        if saved_data is not None and list(saved_data) != data:
            u, i, n = saved_data
            raise DataError(f"{path}: the checkpoint was trained on {u} users x {i} items "
                            f"({n} entries), this data has {data[0]} x {data[1]} ({data[2]}); "
                            f"resume with the same training data")
        module.load_state_dict(ck["module"])
        if set(ck["optimizers"]) != set(optimizers):
            raise DataError(f"{path}: checkpoint optimizers {sorted(ck['optimizers'])} do not "
                            f"match the model's {sorted(optimizers)}")
        for k, o in optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        shuffle_gen.set_state(ck["shuffle_generator"].cpu())
        noise_state = ck["noise_generator"].cpu()
        if noise_state.numel() == noise_gen.get_state().numel():
            noise_gen.set_state(noise_state)
        else:  # written on another device type (CPU and CUDA generator states differ)
            logger.warning("%s: the checkpoint's noise generator is from another device type; "
                           "continuing with a fresh one (the run will not repeat an "
                           "uninterrupted one exactly)", path)
            noise_gen.manual_seed(self.config.seed + 1 + int(ck["step"]))
        ema = None
        if self.config.ema_decay is not None:
            if ck.get("ema") is None:
                raise ConfigError(f"{path}: the checkpoint was written without ema_decay; "
                                  "resume with the configuration it was trained with")
            ema = WeightAverage(module, self.config.ema_decay, ck["ema_updates"], ck["ema"])
        logger.info("resuming from %s after epoch %d (step %d)", path, ck["epoch"], ck["step"])
        return _State(epoch=ck["epoch"], step=ck["step"], best_metric=ck["best_metric"],
                      best_epoch=ck["best_epoch"], bad_evals=ck["bad_evals"],
                      best_weights=ck["best_weights"], history=json.loads(ck["history"]),
                      stopped_early=self._still_stopped(ck), ema=ema)

    def _still_stopped(self, ck: dict) -> bool:
        """A run that stopped early stays stopped, unless resumed with more patience than
        its validations without gain."""
        patience = self.config.patience
        return bool(ck["stopped_early"]) and patience is not None and ck["bad_evals"] >= patience


class _Bar:
    """A transient rich progress bar on stderr with the live numbers (or nothing)."""

    def __init__(self, epochs: int, batches_per_epoch: int, enabled: bool, start_epoch: int):
        self.enabled = enabled
        self.start_epoch = start_epoch
        self.batches_per_epoch = batches_per_epoch
        self.epochs = epochs
        self._progress = None
        self._task = None
        self._loss = float("nan")
        self._valid = ""

    def __enter__(self) -> _Bar | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=True,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(f"epoch {self.start_epoch + 1}/{self.epochs}",
                                             total=self.batches_per_epoch, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance(self, loss: float) -> None:
        self._loss = loss
        self._progress.update(self._task, advance=1,
                              info=f"loss {loss:.4g}{self._valid}")

    def epoch_done(self, record: dict[str, Any], sel: str) -> None:
        if "valid" in record:
            self._valid = f"  {sel} {record['valid'][sel]:.4f} best {record['best_' + sel]:.4f}"
        nxt = min(record["epoch"] + 1, self.epochs)
        self._progress.reset(self._task, total=self.batches_per_epoch,
                             description=f"epoch {nxt}/{self.epochs}",
                             info=f"loss {self._loss:.4g}{self._valid}")

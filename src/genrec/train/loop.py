"""The training loop shared by gradient-trained models.

One plain loop (nanoGPT style), written once:

    for epoch:
        lr = lr0 * lr_decay ** epoch                 # when lr_decay < 1
        for phase in model.phases():                 # one phase by default; RecVAE has two
            model.on_phase_start(phase, ctx)          # optional hook
            for pass in range(phase.passes):
                for batch in model.batches(X, bctx):  # default: shuffled user rows (Batch)
                    out = model.train_step(batch, ctx)            # {"loss": tensor, parts...}
                    zero_grad; out["loss"].backward(); clip; optimizers[phase.optimizer].step()
                    callbacks.on_batch(...)
        validate (a RankingTask: evaluate_ranking; a RatingTask: RMSE of model.predict),
        keep the best weights, count patience
        append one JSON line to run_dir/train_log.jsonl, checkpoint run_dir/checkpoint/
        callbacks.on_epoch_end(record)
    load the best weights

What a model supplies (see :class:`genrec.models.torch_base.TorchRecommender`):

* ``module_``: the ``nn.Module`` whose ``state_dict`` is trained, checkpointed and kept-best;
* ``train_step(batch, ctx) -> dict``: the loss (a scalar tensor under ``"loss"``) and any
  numbers to log (``"recon"``, ``"kl"``, ``"beta"``...); ``ctx`` (:class:`StepContext`) holds
  the global step, the epoch, the phase and the ``torch.Generator`` for all noise;
* ``score(users, X)`` (ranking validation) or ``predict(users, items)`` (rating validation);
* optionally ``batches(X, ctx)`` (see :mod:`genrec.train.batches`; ``batch_rows(X)`` then
  says how many rows a pass has, for progress), ``phases()``, ``build_optimizers(config)``
  and ``on_phase_start(phase, ctx)``.

Reproducibility: all randomness comes from two generators seeded from ``TrainConfig.seed``
(one for shuffling and sampling batches, on the CPU; one for the model's noise, on the
training device); nothing global is seeded. Resuming: each epoch ends with an atomic
checkpoint (:mod:`genrec.train.checkpoint`) holding the weights, the optimizer states, both
generator states, the step and epoch counters, the best weights, the early-stopping state,
the log records, the training matrix's shape and entry count and the caller's fingerprint
(a resume on other data or another run is refused); ``resume=True`` continues from it and
ends with the same weights as an uninterrupted run (on CPU, bit for bit).

Weight averaging: with ``ema_decay`` an exponential moving average of the weights
(:class:`~genrec.train.averaging.WeightAverage`) is updated after every step; it is what
validation scores and what is kept as the best weights (and checkpointed with the rest).

Precision: ``"bf16"`` runs ``train_step`` under ``torch.autocast`` (bfloat16 matmuls on CPU
or CUDA, float32 master weights); models keep their losses in float32.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genrec.data.sequences import Sequences
from genrec.errors import ConfigError, DataError, DistributedError, DivergenceError
from genrec.io import append_text, atomic_write_text, to_json

from .averaging import WeightAverage, snapshot
from .batches import BatchContext, Chunked, user_batches
from .callbacks import Callback, FitContext
from .checkpoint import CHECKPOINT_NAME, LOG_NAME
from .config import Phase, TrainConfig, parse_metric
from .distributed import DataParallel, current, epoch_seed
from .noise import KeyedNoise, UserNoise, WindowNoise
from .optim import autocast, make_optimizer, native_bf16
from .schedules import exponential_lr, set_epoch_lr
from .state import TrainState, load_state, save_state

__all__ = ["Trainer", "Trainable", "TrainResult", "StepContext"]

logger = logging.getLogger("genrec.train")
T = TypeVar("T")

#: what a divergence error asks for, with the learning rate in use
_LOWER_LR = "lower train.lr (now {:g}) or set train.grad_clip"


_NO_KEYS = (
    "keyed noise (train.noise keyed, or a distributed run) needs the batch's users, and this "
    "batch has none: set the users of the batches the model's hook makes, or train in one "
    "process with train.noise stream"
)


@dataclass
class StepContext:
    """What a ``train_step`` may need besides the batch."""

    step: int  # updates done before this one (global, over all phases and epochs)
    epoch: int  # 0-based
    phase: Phase
    generator: torch.Generator  # all of the model's noise, on the training device
    device: torch.device
    precision: str
    X: Any  # the training matrix (CSR) or, for a sequential model, its Sequences
    noise_seed: int | None = None  # keyed noise (train.noise): its seed; None: the generator
    processes: int = 1  # the run's processes (data parallel: the world size)

    def rng_for(self, users: torch.Tensor | None) -> torch.Generator | UserNoise:
        """Where a model draws the noise of this step's batch of ``users`` (B,): the
        trainer's generator, or with keyed noise a :class:`~genrec.train.noise.UserNoise`
        that draws by (seed, step, user), the same whatever batch or process holds a user."""
        if self.noise_seed is None:
            return self.generator
        if users is None:
            raise ConfigError(_NO_KEYS)
        return UserNoise(KeyedNoise(self.noise_seed, self.step), users.to(self.device))

    def windows_rng(self, keys: torch.Tensor | None) -> torch.Generator | WindowNoise:
        """Where a sequence model draws the noise of this step's windows, one per row of
        ``keys`` (B,) (users, or examples): the trainer's generator, or with keyed noise a
        fresh :class:`~genrec.train.noise.WindowNoise` (keyed by seed, step, row and
        position from the window's end)."""
        if self.noise_seed is None:
            return self.generator
        if keys is None:
            raise ConfigError(_NO_KEYS)
        return WindowNoise(KeyedNoise(self.noise_seed, self.step), keys.to(self.device))


class Trainable(Protocol):
    """What :class:`Trainer` needs from a model (TorchRecommender implements all of it)."""

    module_: nn.Module

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]: ...

    def score(self, users: np.ndarray | None, X_users: Any) -> Any: ...


@dataclass
class TrainResult:
    """What a run did; ``history`` holds one record per epoch (as in the JSONL log)."""

    best_epoch: int | None  # 1-based epoch whose weights were kept (None: no validation)
    best_metric: float | None
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(repr=False, default_factory=list)


class Trainer:
    """Train a :class:`Trainable` model.

    Parameters
    ----------
    config : TrainConfig
    run_dir : folder for ``train_log.jsonl`` and ``checkpoint/``; None writes nothing
    callbacks : :class:`~genrec.train.callbacks.Callback` objects (a progress bar...)
    fingerprint : what identifies the run, stored in the checkpoint and compared on resume
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        fingerprint: Mapping[str, Any] | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = tuple(callbacks)
        self.fingerprint = fingerprint
        self.dp: DataParallel | None = None  # set by fit: the process group, if any

    @property
    def world_size(self) -> int:
        return 1 if self.dp is None else self.dp.world

    @property
    def global_batch(self) -> int:
        """Rows a step trains on over all processes (batch_size per process)."""
        return self.config.batch_size * self.world_size

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (rank 0 of a distributed run)."""
        return self.run_dir is not None and (self.dp is None or self.dp.is_main)

    @classmethod
    def from_context(cls, config: TrainConfig, context: FitContext | None) -> Trainer:
        c = context if context is not None else FitContext()
        return cls(config, run_dir=c.run_dir, callbacks=c.callbacks, fingerprint=c.fingerprint)

    # -------------------------------------------------------------- public
    def fit(
        self, model: Trainable, X: Any, valid: Any = None, *, resume: bool = False
    ) -> TrainResult:
        """Train ``model.module_`` on X (CSR, n_users x n_items); keep the best weights.

        ``valid`` (a RankingTask, or a RatingTask for a model with ``predict``) is evaluated
        every ``eval_every`` epochs; ``resume`` continues from ``run_dir/checkpoint`` (or
        starts over when no epoch was checkpointed yet).
        """
        cfg = self.config
        self.dp = dp = current()
        if not isinstance(X, Sequences):  # a sequential model trains on ordered histories
            X = sp.csr_matrix(X, dtype=np.float32)
        data = _data_shape(X)  # checked on resume
        if data[0] == 0:
            raise DataError("cannot train on a matrix with no users")
        self._check_valid(model, X, valid)
        module = model.module_
        device = next(module.parameters()).device
        phases = tuple(getattr(model, "phases", lambda: (Phase(),))())
        optimizers = self._build_optimizers(model)
        for ph in phases:
            if ph.optimizer not in optimizers:
                raise ConfigError(
                    f"phase {ph.name!r} uses optimizer {ph.optimizer!r}, "
                    f"not among {sorted(optimizers)}"
                )
        if cfg.precision == "bf16" and not native_bf16(device):
            logger.warning(
                "precision bf16: this %s has no bfloat16 instructions, so autocast "
                "is emulated and much slower than fp32; use precision fp32 here",
                device.type.upper(),
            )
        hook = getattr(model, "batches", None) or user_batches
        noise_seed = self._noise_seed(model)
        callbacks = self.callbacks if dp is None or dp.is_main else ()
        shuffle_gen = torch.Generator().manual_seed(cfg.seed)
        noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        state = TrainState()
        if cfg.ema_decay is not None:
            state.ema = WeightAverage(module, cfg.ema_decay)
        if resume:
            if self.run_dir is None:
                raise ConfigError("resume needs a run directory (run_dir)")
            if (self.run_dir / CHECKPOINT_NAME).is_file():
                state = load_state(
                    self, module, optimizers, shuffle_gen, noise_gen, device, data, hook
                )
            else:  # killed before the first checkpoint: the same seed redoes the same run
                logger.warning(
                    "%s: no checkpoint yet; training from the start", self.run_dir / CHECKPOINT_NAME
                )
        if dp is not None:  # every rank has read the same checkpoint before rank 0 writes one
            here = [state.epoch, state.step]
            main = dp.broadcast_json(here, "starting the run")
            if dp.sum_numbers({"differ": float(here != main)}, "starting the run")["differ"]:
                raise DistributedError(
                    f"{dp.where()}: the processes resumed from different checkpoints (this "
                    f"one at epoch {here[0]}, rank 0 at epoch {main[0]} or another rank "
                    f"elsewhere); every process must read rank 0's run folder (one machine, "
                    f"or a shared file system)"
                )
        if self.writes:
            assert self.run_dir is not None
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.run_dir / LOG_NAME, "".join(to_json(r, indent=None) for r in state.history)
            )
        rows = getattr(model, "batch_rows", lambda X: data[0])(X)
        n_batches = sum(ph.passes for ph in phases) * math.ceil(rows / self.global_batch)
        select = None if valid is None else self._selection(valid)[0]
        started: list[Any] = []  # the callbacks whose on_train_begin ran: each is ended
        try:
            for cb in callbacks:
                cb.on_train_begin(epochs=cfg.epochs, start_epoch=state.epoch, select=select)
                started.append(cb)
            while state.epoch < cfg.epochs and not state.stopped_early:
                for cb in callbacks:
                    cb.on_epoch_begin(state.epoch, n_batches)
                t0 = time.perf_counter()
                if dp is not None:
                    dp.take_seconds()  # the epoch's collectives only (not the validation's)
                numbers = self.train_epoch(
                    model, X, phases, optimizers, state, shuffle_gen, noise_gen, device, hook,
                    noise_seed, callbacks,
                )  # fmt: skip
                t_train = time.perf_counter() - t0
                record: dict[str, Any] = {
                    "epoch": state.epoch + 1,
                    "step": state.step,
                    **numbers,
                    "train_seconds": t_train,
                }
                if dp is not None:  # of train_seconds: the collectives, waiting included
                    record["allreduce_seconds"] = dp.take_seconds()
                if valid is not None and self._validate_now(state.epoch):
                    self._validate(model, valid, state, record)
                state.epoch += 1
                record["seconds"] = time.perf_counter() - t0
                state.history.append(record)
                self._log(record, select)
                if self.writes:
                    save_state(self, module, optimizers, shuffle_gen, noise_gen, state, data, hook)
                for cb in callbacks:
                    cb.on_epoch_end(record)
        except BaseException as e:
            for cb in started:
                cb.on_train_error(e)
            raise
        finally:
            for cb in started:
                cb.on_train_end()
        if state.best_weights is not None:
            module.load_state_dict(state.best_weights)
        elif state.ema is not None:  # no validation: the average of the last weights
            module.load_state_dict(state.ema.shadow)
        module.eval()
        if valid is None:  # weights can be finite and still overflow every score
            from genrec.evaluate import check_scores

            b = min(data[0], 64)
            head = X.take(slice(0, b)) if isinstance(X, Sequences) else X[:b]
            self._reporting_divergence(
                lambda: check_scores(model.score(np.arange(b), head), model, "training"),
                "training",
                state.epoch,
                state.step,
            )
        return TrainResult(
            state.best_epoch, state.best_metric, state.epoch, state.stopped_early, state.history
        )

    def train_epoch(
        self,
        model: Trainable,
        X: sp.csr_matrix,
        phases: tuple[Phase, ...],
        optimizers: dict[str, torch.optim.Optimizer],
        state: TrainState,
        shuffle_gen: torch.Generator,
        noise_gen: torch.Generator,
        device: torch.device,
        hook: Any = user_batches,
        noise_seed: int | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> dict[str, float]:
        """One epoch: every phase's passes over the hook's batches. Returns mean numbers
        per logged key (weighted by batch size), prefixed by the phase name when there are
        several phases."""
        cfg = self.config
        dp = self.dp
        if callbacks is None:
            callbacks = self.callbacks
        module = model.module_
        module.train()
        params = [p for p in module.parameters()]
        # submodules with state that each step extends from its rows (the timestep
        # sampler's loss history, codebooks): in a distributed run each defers its update
        # to share_step, where every rank adds every rank's rows
        sharers: list[Any] = [m for m in module.modules() if hasattr(m, "share_step")]
        for m in sharers:
            m.defer = dp is not None
        mean_loss = getattr(model, "loss_reduction", "mean") != "sum"
        if cfg.lr_decay != 1.0:
            set_epoch_lr(optimizers.values(), exponential_lr(cfg.lr_decay, state.epoch))
        if dp is not None:  # per-rank noise, the same after a resume
            noise_gen.manual_seed(epoch_seed(cfg.seed, state.epoch, dp.rank))
        out: dict[str, float] = {}
        for phase in phases:
            ctx = StepContext(
                state.step,
                state.epoch,
                phase,
                noise_gen,
                device,
                cfg.precision,
                X,
                noise_seed,
                1 if dp is None else dp.world,
            )
            on_phase_start = getattr(model, "on_phase_start", None)
            if on_phase_start is not None:
                on_phase_start(phase, ctx)
            opt = optimizers[phase.optimizer]
            sums: dict[str, float] = {}
            n_seen = 0  # rows this process trained on
            n_rows = 0  # rows of the global batches
            for _ in range(phase.passes):
                bctx = BatchContext(shuffle_gen, self.global_batch, device, state.epoch, noise_seed)
                for batch, n_global, share in self._batches(hook(X, bctx), model):
                    ctx.step = state.step
                    module.zero_grad(set_to_none=True)
                    parts: dict[str, Any] = {}
                    if batch is not None:
                        with autocast(device, cfg.precision):
                            parts = model.train_step(batch, ctx)
                    loss = self._backward(parts, batch, share, params, state, mean_loss)
                    if dp is not None and sharers:  # state a step adds on every rank alike
                        where = f"sharing the state of epoch {state.epoch + 1}, step {state.step}"
                        for m in sharers:
                            m.share_step(partial(dp.gather_rows, n=n_global, what=where))
                    if not math.isfinite(loss):
                        raise DivergenceError(
                            f"loss is {loss} at epoch {state.epoch + 1}, step "
                            f"{state.step}: training diverged; {_LOWER_LR.format(cfg.lr)}"
                        )
                    if cfg.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(
                            [p for p in params if p.grad is not None], cfg.grad_clip
                        )
                    opt.step()
                    if state.ema is not None:
                        state.ema.update(module)
                    state.step += 1
                    b = 0 if batch is None else len(batch)
                    n_seen += b
                    n_rows += n_global
                    for k, v in parts.items():
                        if dp is not None and k == "loss":
                            continue
                        v = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                        sums[k] = sums.get(k, 0.0) + b * v
                    if dp is not None:  # the global batch's loss, counted once (rank 0)
                        sums["loss"] = sums.get("loss", 0.0) + (
                            n_global * loss if dp.is_main else 0.0
                        )
                    for cb in callbacks:
                        cb.on_batch(state.step - 1, sums.get("loss", 0.0) / max(n_rows, 1))
            if dp is not None:  # the epoch's means over every rank's rows
                keys = dp.broadcast_json(sorted(sums), "the epoch's numbers")
                total = dp.sum_numbers(
                    {**{k: sums.get(k, 0.0) for k in keys}, " rows": float(n_seen)},
                    "the epoch's numbers",
                )
                n_seen = int(total.pop(" rows"))
                sums = total
            prefix = "" if len(phases) == 1 else f"{phase.name}_"
            out.update({prefix + k: v / max(n_seen, 1) for k, v in sums.items()})
        # the last step's update is seen by no loss: a step to inf or NaN stops here, not as
        # NaN scores in the validation or a saved model that cannot score
        bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise DivergenceError(
                f"weights {', '.join(bad[:3])} are not finite after epoch {state.epoch + 1}, "
                f"step {state.step}: training diverged; {_LOWER_LR.format(cfg.lr)}"
            )
        return out

    # -------------------------------------------------------------- pieces
    def _noise_seed(self, model: Trainable) -> int | None:
        """The seed of keyed noise (``train.noise``), or None: noise from the generator."""
        mode = self.config.noise
        keyed = bool(getattr(model, "keyed_noise", False))
        name = type(model).__name__
        if mode == "keyed" and not keyed:
            raise ConfigError(
                f"{name} draws its training noise from one generator stream and has no "
                f"keyed noise; set train.noise to stream or auto"
            )
        if mode == "keyed" or (mode == "auto" and keyed and self.dp is not None):
            return self.config.seed
        if self.dp is not None and self.dp.is_main and not keyed and mode == "auto":
            logger.warning(
                "%s draws its training noise per process (it has no keyed noise): this run "
                "depends on its number of processes (%d)",
                name,
                self.dp.world,
            )
        return None

    def _batches(self, batches: Any, model: Trainable) -> Any:
        """(batch, rows in the global batch, this rank's share of the global batch's loss
        terms (None in one process)): the hook's batches in one process; this rank's shard
        of each global batch (None where it is empty) in a distributed run."""
        if self.dp is None:
            return ((b, len(b), None) for b in batches)
        if not isinstance(batches, Chunked):
            raise ConfigError(
                f"a batches hook that returns {type(batches).__name__} cannot be split "
                f"across processes; return a genrec.train.Chunked, or train in one process"
            )
        return self.dp.shards(batches, getattr(model, "loss_terms", len))

    def _backward(
        self,
        parts: dict[str, Any],
        batch: Any,
        share: float | None,
        params: list[nn.Parameter],
        state: TrainState,
        mean_loss: bool,
    ) -> float:
        """Backpropagate the step's loss; in a distributed run, weighted by this rank's
        ``share`` of the global batch's loss terms (the model's ``loss_terms``: rows, or a
        sequence model's positions), with the gradients summed over the ranks. Returns the
        (global) loss, which every rank checks the same way."""
        if self.dp is None:
            loss = parts["loss"]
            value = float(loss.detach())
            if math.isfinite(value):
                loss.backward()
            return value
        mine = None
        if batch is not None:
            mine = parts["loss"]
            if mean_loss:  # the global batch's mean: each rank's mean by its share
                mine = mine * (share or 0.0)
            mine.backward()
        where = f"summing the gradients of epoch {state.epoch + 1}, step {state.step}"
        return self.dp.reduce_gradients(params, None if mine is None else mine.detach(), where)

    def _check_valid(self, model: Trainable, X: Any, valid: Any) -> None:
        from genrec.evaluate import RankingTask, RatingTask

        if valid is None:
            return
        if isinstance(valid, RatingTask) and hasattr(model, "predict"):
            if len(valid.ratings) == 0:
                raise DataError(
                    f"the validation task {valid.name!r} has no ratings, so "
                    f"there is nothing to choose the epoch on; train without it "
                    f"(valid=None)"
                )
            return
        if not isinstance(valid, RankingTask):
            raise ConfigError(
                f"{type(model).__name__} ranks items and validates on a ranking "
                f"task, got {type(valid).__name__}; use a ranking protocol "
                f"(diffrec, strong or loo)"
            )
        if valid.inputs.shape[1] != _data_shape(X)[1]:
            raise DataError(
                f"the validation task {valid.name!r} has {valid.inputs.shape[1]} "
                f"item columns but the training matrix has {_data_shape(X)[1]}"
            )
        if valid.truth.nnz == 0:
            raise DataError(
                f"the validation task {valid.name!r} has no held-out items, so "
                f"there is nothing to choose the epoch on; give the validation "
                f"split some interactions, or train without it (valid=None)"
            )

    def _selection(self, valid: Any) -> tuple[str, bool]:
        """(name of the selecting number, higher is better)."""
        from genrec.evaluate import RatingTask

        if isinstance(valid, RatingTask):
            return "rmse", False
        return self.config.select_metric, True

    def _build_optimizers(self, model: Trainable) -> dict[str, torch.optim.Optimizer]:
        build = getattr(model, "build_optimizers", None)
        if build is not None:
            return dict(build(self.config))
        return {"main": make_optimizer(model.module_.parameters(), self.config)}

    def _validate_now(self, epoch: int) -> bool:
        return (epoch + 1) % self.config.eval_every == 0 or epoch + 1 == self.config.epochs

    def _evaluate(self, model: Trainable, valid: Any) -> tuple[dict[str, float], float]:
        """The validation numbers and the seconds they took."""
        from genrec.evaluate import RatingTask, evaluate_ranking, evaluate_rating

        cfg = self.config
        if isinstance(valid, RatingTask):  # RMSE and MAE; non-finite predictions refused
            rating = evaluate_rating(model, valid)
            return rating.metrics, rating.seconds
        name, k = parse_metric(cfg.select_metric)
        ks = sorted({10, 20, k})
        metrics = tuple(dict.fromkeys(["recall", "ndcg", name]))
        res = evaluate_ranking(
            model, valid, ks=ks, metrics=metrics, batch_size=cfg.eval_batch_size, shard=self.dp
        )
        return ({m: v for m, v in res.metrics.items() if not m.startswith("coverage")}, res.seconds)

    def _validate(
        self, model: Trainable, valid: Any, state: TrainState, record: dict[str, Any]
    ) -> None:
        cfg = self.config
        sel, higher = self._selection(valid)
        module = model.module_
        module.eval()
        # with ema_decay, the averaged weights are the ones validated and kept
        with state.ema.swapped_in(module) if state.ema is not None else contextlib.nullcontext():
            numbers, seconds = self._reporting_divergence(
                lambda: self._evaluate(model, valid), valid.name, state.epoch + 1, state.step
            )
            value = numbers[sel]
            better = not math.isnan(value) and (
                state.best_metric is None
                or (value > state.best_metric if higher else value < state.best_metric)
            )
            if better:
                state.best_weights = snapshot(module)
        record["valid"] = numbers
        record["eval_seconds"] = seconds
        if better:
            state.best_metric, state.best_epoch, state.bad_evals = value, state.epoch + 1, 0
        else:
            state.bad_evals += 1
            if cfg.patience is not None and state.bad_evals >= cfg.patience:
                state.stopped_early = True
        record["best_epoch"] = state.best_epoch
        record["best_" + sel] = state.best_metric

    def _reporting_divergence(
        self, scoring: Callable[[], T], what: str, epoch: int, step: int
    ) -> T:
        """``scoring()``, with NaN or infinite scores reported as a divergence of training
        (:func:`genrec.evaluate.check_scores` cannot know which setting to change)."""
        try:
            return scoring()
        except DivergenceError:
            raise DivergenceError(
                f"the model gives NaN or infinite scores on {what!r} after epoch {epoch}, "
                f"step {step}: training diverged; {_LOWER_LR.format(self.config.lr)}"
            ) from None

    def _log(self, record: dict[str, Any], sel: str | None) -> None:
        parts = [f"epoch {record['epoch']}/{self.config.epochs}"]
        for k, v in record.items():
            if k.endswith("loss") and isinstance(v, float):
                parts.append(f"{k} {v:.4g}")
        if "valid" in record and sel is not None:
            best = record["best_" + sel]
            parts.append(
                f"valid {sel} {record['valid'][sel]:.4f} (best "
                f"{float('nan') if best is None else best:.4f} @ "
                f"{record['best_epoch']})"
            )
        parts.append(f"{record['seconds']:.2f}s")
        if self.dp is None or self.dp.is_main:
            logger.info("  ".join(parts))
        if self.writes:
            assert self.run_dir is not None
            append_text(self.run_dir / LOG_NAME, to_json(record, indent=None))


def _data_shape(X: sp.csr_matrix | Sequences) -> list[int]:
    """[rows, item columns, stored entries] of the training data (matrix or sequences)."""
    if isinstance(X, Sequences):
        return [X.n_users, X.n_items, X.n_events]
    return [int(X.shape[0]), int(X.shape[1]), int(X.nnz)]

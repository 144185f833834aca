"""The state of a training run and its checkpoint (used by :class:`genrec.train.loop.Trainer`).

:class:`TrainState` is everything that changes while training; :func:`save_state` writes it,
with the weights, the optimizer and generator states and the batches hook's own state, to
``run_dir/checkpoint`` (:mod:`genrec.train.checkpoint`) after every epoch, and
:func:`load_state` reads it back on resume after checking that the checkpoint belongs to this
configuration, data and run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from genrec.errors import ConfigError, DataError

from .averaging import WeightAverage
from .checkpoint import (
    CHECKPOINT_NAME,
    check_checkpoint,
    fingerprint_json,
    read_checkpoint,
    write_checkpoint,
)
from .config import TrainConfig

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["TrainState", "save_state", "load_state"]

logger = logging.getLogger("genrec.train")


@dataclass
class TrainState:
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


def save_state(
    trainer: Trainer,
    module: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    shuffle_gen: torch.Generator,
    noise_gen: torch.Generator,
    state: TrainState,
    data: list[int],
    hook: Any,
) -> None:
    """Write ``trainer.run_dir/checkpoint`` atomically: the state after an epoch."""
    assert trainer.run_dir is not None
    hook_state = getattr(hook, "state_dict", None)
    payload = {
        "train_config": json.dumps(dataclasses.asdict(trainer.config)),
        "fingerprint": fingerprint_json(trainer.fingerprint),
        "data": data,  # users, items, stored entries of the training matrix
        "module": module.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "shuffle_generator": shuffle_gen.get_state(),
        "noise_generator": noise_gen.get_state(),
        "world_size": trainer.world_size,  # a distributed run resumes with as many processes
        "batches": None if hook_state is None else hook_state(),
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
    write_checkpoint(trainer.run_dir / CHECKPOINT_NAME, payload)


def load_state(
    trainer: Trainer,
    module: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    shuffle_gen: torch.Generator,
    noise_gen: torch.Generator,
    device: torch.device,
    data: list[int],
    hook: Any,
) -> TrainState:
    """Read ``trainer.run_dir/checkpoint`` into ``module``, ``optimizers``, the generators
    and the batches hook (after checking it belongs to this configuration, data and run);
    the :class:`TrainState` to continue from."""
    assert trainer.run_dir is not None
    path = trainer.run_dir / CHECKPOINT_NAME
    ck = read_checkpoint(path, device)
    check_checkpoint(path, ck, trainer.config, data, trainer.fingerprint, trainer.world_size)
    module.load_state_dict(ck["module"])
    if set(ck["optimizers"]) != set(optimizers):
        raise DataError(
            f"{path}: checkpoint optimizers {sorted(ck['optimizers'])} do not "
            f"match the model's {sorted(optimizers)}"
        )
    for k, o in optimizers.items():
        o.load_state_dict(ck["optimizers"][k])
    shuffle_gen.set_state(ck["shuffle_generator"].cpu())
    noise_state = ck["noise_generator"].cpu()
    if noise_state.numel() == noise_gen.get_state().numel():
        noise_gen.set_state(noise_state)
    else:  # written on another device type (CPU and CUDA generator states differ)
        logger.warning(
            "%s: the checkpoint's noise generator is from another device type; "
            "continuing with a fresh one (the run will not repeat an "
            "uninterrupted one exactly)",
            path,
        )
        noise_gen.manual_seed(trainer.config.seed + 1 + int(ck["step"]))
    if ck.get("batches") is not None and hasattr(hook, "load_state_dict"):
        hook.load_state_dict(ck["batches"])
    ema = None
    if trainer.config.ema_decay is not None:
        if ck.get("ema") is None:
            raise ConfigError(
                f"{path}: the checkpoint was written without ema_decay; "
                "resume with the configuration it was trained with"
            )
        ema = WeightAverage(module, trainer.config.ema_decay, ck["ema_updates"], ck["ema"])
    logger.info("resuming from %s after epoch %d (step %d)", path, ck["epoch"], ck["step"])
    return TrainState(
        epoch=ck["epoch"],
        step=ck["step"],
        best_metric=ck["best_metric"],
        best_epoch=ck["best_epoch"],
        bad_evals=ck["bad_evals"],
        best_weights=ck["best_weights"],
        history=json.loads(ck["history"]),
        stopped_early=_still_stopped(trainer.config, ck),
        ema=ema,
    )


def _still_stopped(config: TrainConfig, ck: dict) -> bool:
    """A run that stopped early stays stopped, unless resumed with more patience than
    its validations without gain."""
    patience = config.patience
    return bool(ck["stopped_early"]) and patience is not None and ck["bad_evals"] >= patience

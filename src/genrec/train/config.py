"""The trainer's settings: :class:`TrainConfig`, the validation metric's name, phases."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

from genrec.config import valid_device_name

__all__ = ["TrainConfig", "Phase", "parse_metric", "SEED_LIMIT"]

SEED_LIMIT = 2**62


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the fields a model config shares with the trainer, same names).

    Build it from a model config with :meth:`from_config`, which picks these fields by name,
    or nest it in a model config as ``train: TrainConfig``.
    """

    epochs: int = 100  # maximum number of epochs
    batch_size: int = 500  # users (or triples, for the factor models) per batch
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
    lr_decay: float = 1.0  # the learning rate is multiplied by this after each epoch
    # training noise: "stream" (one seeded generator), "keyed" (by seed, step and user, the
    # same however users fall on processes), "auto" (keyed in a distributed run)
    noise: Literal["auto", "stream", "keyed"] = "auto"

    def __post_init__(self) -> None:
        for name, kind in _FIELD_TYPES.items():  # a config built directly, unconverted
            v = getattr(self, name)
            if not (v is None and name in _OPTIONAL) and (
                isinstance(v, bool) or not isinstance(v, kind)
            ):
                what = "an integer" if kind is Integral else "a number"
                raise ValueError(
                    f"{name} must be {what}{' or None' if name in _OPTIONAL else ''}, got {v!r}"
                )
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
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.noise not in ("auto", "stream", "keyed"):
            raise ValueError(f"noise must be auto, stream or keyed, got {self.noise!r}")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> TrainConfig:
        """The TrainConfig fields found (by name) in a model config, plus ``overrides``."""
        names = [f.name for f in dataclasses.fields(cls)]
        values = {n: getattr(config, n) for n in names if hasattr(config, n)}
        values.update(overrides)
        return cls(**values)


_FIELD_TYPES = {
    "epochs": Integral,
    "batch_size": Integral,
    "eval_every": Integral,
    "eval_batch_size": Integral,
    "seed": Integral,
    "patience": Integral,
    "lr": Real,
    "weight_decay": Real,
    "grad_clip": Real,
    "ema_decay": Real,
    "lr_decay": Real,
}
_OPTIONAL = ("patience", "grad_clip", "ema_decay")


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@20"`` -> ("ndcg", 20); a ValueError for anything else."""
    from genrec.metrics import RANKING_METRICS

    metric, _, k = name.partition("@")
    if metric not in RANKING_METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(
            f"select_metric must look like ndcg@20 or recall@20 (metrics: "
            f"{', '.join(sorted(RANKING_METRICS))}), got {name!r}"
        )
    return metric, int(k)


@dataclass(frozen=True)
class Phase:
    """A part of an epoch: ``passes`` passes over the batches, stepping one optimizer."""

    name: str = "train"
    passes: int = 1
    optimizer: str = "main"  # key into the model's build_optimizers() dict

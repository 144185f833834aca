"""The one training engine of the gradient-trained models (see :mod:`genrec.train.loop`).

Modules: ``config`` (TrainConfig, Phase, metric names), ``batches`` (the batches hook and
the batch types), ``loop`` (Trainer), ``checkpoint`` (the checkpoint format), ``averaging``
(WeightAverage), ``schedules`` (loss-weight and learning-rate schedules), ``optim``
(optimizers, bf16), ``callbacks`` (Callback, FitContext). This package imports nothing
from :mod:`genrec.models`.
"""

from .averaging import WeightAverage
from .batches import (
    Batch,
    BatchContext,
    BatchHook,
    Chunked,
    Ratings,
    Triples,
    row_ids,
    user_batches,
)
from .callbacks import Callback, FitContext
from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, LOG_NAME
from .config import SEED_LIMIT, Phase, TrainConfig, parse_metric
from .loop import StepContext, Trainable, Trainer, TrainResult
from .optim import autocast, make_optimizer, native_bf16
from .schedules import Constant, LinearAnneal, exponential_lr, set_epoch_lr

__all__ = [
    "TrainConfig",
    "Phase",
    "StepContext",
    "Batch",
    "BatchContext",
    "BatchHook",
    "Chunked",
    "Triples",
    "Ratings",
    "user_batches",
    "row_ids",
    "LinearAnneal",
    "Constant",
    "exponential_lr",
    "set_epoch_lr",
    "Trainable",
    "TrainResult",
    "Trainer",
    "WeightAverage",
    "Callback",
    "FitContext",
    "make_optimizer",
    "autocast",
    "native_bf16",
    "parse_metric",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "SEED_LIMIT",
]

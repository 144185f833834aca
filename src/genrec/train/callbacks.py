"""Callbacks: what the trainer tells the outside while it runs, and :class:`FitContext`,
what a caller gives ``fit`` besides the data.

The trainer calls, in order: ``on_train_begin`` once, then per epoch ``on_epoch_begin``,
``on_batch`` after every update and ``on_epoch_end`` with the epoch's log record (after the
record is logged and checkpointed, so a callback that raises, KeyboardInterrupt included,
leaves a run that resumes from that epoch), then ``on_train_error`` with the exception when
training stops with one, and ``on_train_end`` last, also after an error. The last two are
called for every callback whose ``on_train_begin`` returned. Every method does nothing by
default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Callback", "FitContext"]


class Callback:
    """Hooks into the training loop (subclass and override what you need)."""

    def on_train_begin(self, *, epochs: int, start_epoch: int, select: str | None) -> None:
        """Training starts at 0-based ``start_epoch`` (> 0 on resume) of ``epochs``;
        ``select`` names the validation number records carry (None: no validation)."""

    def on_epoch_begin(self, epoch: int, n_batches: int | None) -> None:
        """0-based ``epoch`` starts; ``n_batches`` updates (None when the hook cannot say)."""

    def on_batch(self, step: int, loss: float) -> None:
        """After update ``step`` (0-based); ``loss`` is the running mean of the epoch."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """The epoch's record: as in train_log.jsonl (``epoch`` is 1-based)."""

    def on_train_error(self, error: BaseException) -> None:
        """Training stopped with ``error`` (KeyboardInterrupt included); on_train_end follows."""

    def on_train_end(self) -> None:
        """Training is over (finished, stopped early or interrupted)."""


@dataclass(frozen=True)
class FitContext:
    """What ``Recommender.fit(X, *, valid=None, context=None)`` takes besides the data.

    Attributes
    ----------
    run_dir : folder for train_log.jsonl and checkpoint/ (None writes nothing)
    resume : continue from run_dir's checkpoint (same config, data and fingerprint)
    callbacks : called by the trainer (a progress bar, an interrupt...)
    fingerprint : what identifies the run (model class, full config, data checksum,
        protocol); written into the checkpoint and compared on resume
    side : side features for the models that take them (the FM's SideFeatures)
    """

    run_dir: Path | None = None
    resume: bool = False
    callbacks: Sequence[Callback] = ()
    fingerprint: Mapping[str, Any] | None = None
    side: Any = None

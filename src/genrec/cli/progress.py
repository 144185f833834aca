"""Training progress on stderr (:class:`genrec.train.Callback` s): a rich progress bar when
stderr is a terminal, a log line a minute inside long epochs otherwise. The command line
passes one to ``fit``; library code never shows one unless asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from genrec.train import Callback

__all__ = ["RichProgress", "LogProgress"]

log = logging.getLogger("genrec.train")


class RichProgress(Callback):
    """A transient progress bar: batches of the current epoch, the running loss and the
    latest validation number."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._epochs = 0
        self._select: str | None = None
        self._loss = float("nan")
        self._valid = ""

    def on_train_begin(self, *, epochs: int, start_epoch: int, select: str | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._epochs, self._select = epochs, select
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(
            f"epoch {start_epoch + 1}/{epochs}", total=None, info=""
        )

    def on_epoch_begin(self, epoch: int, n_batches: int | None) -> None:
        self._progress.reset(
            self._task,
            total=n_batches,
            description=f"epoch {epoch + 1}/{self._epochs}",
            info=f"loss {self._loss:.4g}{self._valid}",
        )

    def on_batch(self, step: int, loss: float) -> None:
        self._loss = loss
        self._progress.update(self._task, advance=1, info=f"loss {loss:.4g}{self._valid}")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        sel = self._select
        if "valid" in record and sel is not None and record.get("best_" + sel) is not None:
            self._valid = f"  {sel} {record['valid'][sel]:.4f} best {record['best_' + sel]:.4f}"

    def on_train_end(self) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None


class LogProgress(Callback):
    """Without a terminal: a log line inside an epoch every ``every`` seconds (batches done
    of the epoch's, the running loss, the seconds so far), so an epoch of minutes is not
    silent between its start and its "epoch N/E" line. ``clock``: seconds, monotonic."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._every, self._clock = every, clock
        self._epochs = 0
        self._epoch = 0
        self._n_batches: int | None = None
        self._start = self._last = 0.0
        self._done = 0

    def on_train_begin(self, *, epochs: int, start_epoch: int, select: str | None) -> None:
        self._epochs = epochs

    def on_epoch_begin(self, epoch: int, n_batches: int | None) -> None:
        self._epoch, self._n_batches = epoch, n_batches
        self._start = self._last = self._clock()
        self._done = 0

    def on_batch(self, step: int, loss: float) -> None:
        self._done += 1
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        of = f"/{self._n_batches}" if self._n_batches else ""
        log.info(
            "epoch %d/%d  batch %d%s  loss %.4g  %.0fs so far",
            self._epoch + 1,
            self._epochs,
            self._done,
            of,
            loss,
            now - self._start,
        )

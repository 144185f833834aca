"""What both demonstrations share: the time stamp and rendering a plot to PNG bytes."""

from __future__ import annotations

import datetime as _dt
import tempfile
from collections.abc import Callable
from pathlib import Path


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _png(draw: Callable[[Path], None]) -> bytes:
    """PNG bytes of a plot function that writes to a path (``plots.plot_*``)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "plot.png"
        draw(path)
        return path.read_bytes()

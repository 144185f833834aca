"""What both demonstrations share: the time stamp, rendering a plot to PNG bytes, and the
ELBO split into its terms."""

from __future__ import annotations

import datetime as _dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _png(draw: Callable[[Path], None]) -> bytes:
    """PNG bytes of a plot function that writes to a path (``plots.plot_*``)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "plot.png"
        draw(path)
        return path.read_bytes()


@dataclass(frozen=True)
class ElboSplit:
    """The ELBO of one q in its terms, and where the demo knows it, the identity
    log p(x) = ELBO + KL(q || exact posterior).

    Attributes
    ----------
    q : str
        Which q (e.g. ``"posterior p(z | x)"``, ``"round 2"``).
    terms : tuple of (name, value)
        Signed terms, in nats; they sum to ``elbo`` (a KL enters with its minus sign).
    kl_posterior, log_evidence : float or None
        KL(q || exact posterior) and log p(x); None where there is no exact posterior.
    """

    q: str
    terms: tuple[tuple[str, float], ...]
    kl_posterior: float | None = None
    log_evidence: float | None = None

    @property
    def elbo(self) -> float:
        return float(sum(value for _, value in self.terms))

    def payload(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "terms": dict(self.terms),
            "elbo": self.elbo,
            "kl_posterior": self.kl_posterior,
            "log_evidence": self.log_evidence,
        }

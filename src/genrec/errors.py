"""User-facing errors.

Every problem caused by the user's input (a malformed file, an unknown config key, a model
that was never fitted) raises a subclass of :class:`GenrecError` whose message is one line
naming the file, line or field and the fix. The CLI prints that line and exits non-zero,
without a traceback.
"""

from __future__ import annotations


class GenrecError(Exception):
    """Base class of the errors genrec reports to a user as one line."""


class DataError(GenrecError, ValueError):
    """A data file or data set is malformed, missing or empty."""


class ConfigError(GenrecError, ValueError):
    """A configuration key or value is unknown or out of range."""


class MemoryLimitError(ConfigError):
    """A fit would need more memory than allowed (EASE's dense item x item matrices): the
    message says how much; ``max_items`` is the largest catalogue that fits, so a caller that
    knows the data can name the filter that gets there (the runner: ``protocol.item_k``)."""

    def __init__(self, message: str, *, max_items: int):
        super().__init__(message)
        self.max_items = max_items


class CorruptFileError(DataError):
    """A saved file's bytes differ from the SHA-256 recorded for them (flipped bits, a
    truncated or edited copy); the message names the file."""


class WriteError(GenrecError, OSError):
    """A file could not be written: no space left on the device, an exceeded disk quota or
    a read-only file system. An ``OSError`` too (its ``errno`` the original one); the
    message names the file."""


class DivergenceError(GenrecError, FloatingPointError):
    """Training produced a non-finite loss, weights or scores, or a closed-form solve was
    singular to working precision; the message names the setting to change (a lower
    ``train.lr``, ``train.grad_clip``, a larger ``l2``)."""


class DistributedError(GenrecError, RuntimeError):
    """A collective of a distributed run failed: a peer died, hung or disagreed."""


class NotFittedError(GenrecError, RuntimeError, ValueError, AttributeError):
    """A model was used before ``fit`` (or ``load``).

    Also a ``ValueError`` and an ``AttributeError``, as scikit-learn's ``NotFittedError`` is,
    so ``except ValueError`` around an unfitted :mod:`genrec.foundations` mixture still
    catches it."""


class MissingExtraError(GenrecError, ImportError):
    """A feature needs an optional package that is not installed (``genrec[extra]``)."""


def check_is_fitted(obj: object, attributes: tuple[str, ...]) -> None:
    """Raise :class:`NotFittedError` unless every fitted attribute is set on ``obj``."""
    missing = [a for a in attributes if getattr(obj, a, None) is None]
    if missing:
        name = type(obj).__name__
        raise NotFittedError(
            f"{name} is not fitted yet (missing {', '.join(missing)}): call fit(X) or "
            f"{name}.load(path) first"
        )

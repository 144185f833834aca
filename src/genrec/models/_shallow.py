"""Helpers shared by the shallow models (biased MF, BPR-MF, FM, AutoRec).

Rating triples from a CSR matrix, safe lookup of possibly unknown indices, the rating range,
uniform negative sampling for BPR objectives, a keep-best tracker for early stopping (AutoRec),
rows cut into length-sorted blocks (biased MF's batched ALS solves), and the pieces BPR-MF, FM
and biased MF share to train through :class:`genrec.train.Trainer`: the nested ``train`` config
(:func:`as_train_config`, :func:`upgrade_flat_config`) and :func:`train_module`. Each is a few
lines; they live here so the model files do not copy them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError
from genrec.train import FitContext, TrainConfig, Trainer, TrainResult

__all__ = [
    "rating_triples",
    "gather_rows",
    "lookup",
    "fit_rating_range",
    "check_rating_range",
    "NegativeSampler",
    "sample_negatives",
    "KeepBest",
    "as_train_config",
    "upgrade_flat_config",
    "train_module",
    "row_blocks",
]


def rating_triples(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, ratings) of the stored entries of ``X``, row-major, shape (n,) each."""
    X = sp.csr_matrix(X)
    users = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
    return users, X.indices.astype(np.int64), X.data.astype(np.float32)


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an integer index of any shape: rows of ``table`` (N, ...) gathered
    into shape ``index.shape + table.shape[1:]``.

    Built on ``index_select``, whose backward (``index_add_``) sums repeated indices in a fixed
    order on CPU. Plain ``table[index]`` is not reproducible there: its backward accumulates
    with atomic adds across threads once the batch is large, so two runs with the same seed
    and more than one thread can differ in the last bits.
    """
    picked = table.index_select(0, index.reshape(-1))  # (index.numel(), ...)
    return picked.view(*index.shape, *table.shape[1:])


def lookup(index: np.ndarray | torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (safe index, known mask): -1 or out of range is unknown (safe 0).
    Indices must be whole numbers (2.0 is index 2; 2.5 is an error, not index 2)."""
    raw = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index).reshape(-1)
    if raw.dtype.kind not in "iub":
        try:
            as_float = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"user and item indices must be integers, got {raw[:3]!r}") from None
        if not (np.isfinite(as_float) & (as_float == np.round(as_float))).all():
            raise ValueError(
                "user and item indices must be whole numbers; got a fractional or non-finite index"
            )
    idx = raw.astype(np.int64)
    known = (idx >= 0) & (idx < n)
    return np.where(known, idx, 0), known


def fit_rating_range(ratings: np.ndarray, given: tuple[float, float] | None) -> tuple[float, float]:
    """The range predictions are clipped to: ``given``, or the training min and max."""
    if given is not None:
        lo, hi = float(given[0]), float(given[1])
    elif len(ratings):
        lo, hi = float(ratings.min()), float(ratings.max())
    else:
        raise DataError("cannot fit a rating model on an empty training matrix")
    return lo, hi


def check_rating_range(value: tuple[float, float] | None) -> None:
    """Config check shared by the rating models' ``__post_init__``."""
    if value is not None and (len(value) != 2 or not value[0] < value[1]):
        raise ValueError(f"rating_range must be (low, high) with low < high, got {value}")


class NegativeSampler:
    """Draws, for each given user, one item uniformly among the items the user has not got.

    Rejection sampling, vectorized: draw uniformly, redraw the draws that hit a training
    item (found by binary search in the sorted (user, item) keys, built once). A user who
    has every item keeps a (positive) draw after ``max_rounds``.

    Parameters
    ----------
    X : csr_matrix (U, I)
        The training interactions.
    """

    def __init__(self, X: sp.csr_matrix, max_rounds: int = 100):
        X = sp.csr_matrix(X)
        self.n_items = X.shape[1]
        rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        self.keys = np.sort(rows * self.n_items + X.indices)  # (nnz,)
        self.max_rounds = max_rounds

    def _draw(self, rng: np.random.Generator | torch.Generator, n: int) -> np.ndarray:
        if isinstance(rng, torch.Generator):
            return torch.randint(0, self.n_items, (n,), generator=rng).numpy()
        return rng.integers(0, self.n_items, size=n)

    def __call__(self, users: np.ndarray, rng: np.random.Generator | torch.Generator) -> np.ndarray:
        """Items (n,) int64 for ``users`` (n,), drawn from ``rng`` (NumPy or a CPU torch
        generator, such as the trainer's)."""
        users = np.asarray(users, dtype=np.int64)
        out = self._draw(rng, len(users))  # (n,)
        todo = np.arange(len(users))
        keys = self.keys
        for _ in range(self.max_rounds):
            if not len(todo) or not len(keys):
                break
            k = users[todo] * self.n_items + out[todo]
            pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
            todo = todo[keys[pos] == k]
            out[todo] = self._draw(rng, len(todo))
        return out.astype(np.int64)


def sample_negatives(
    X: sp.csr_matrix, users: np.ndarray, rng: np.random.Generator | torch.Generator
) -> np.ndarray:
    """One negative item per entry of ``users`` (see :class:`NegativeSampler`)."""
    return NegativeSampler(X)(users, rng)


@dataclass
class KeepBest:
    """Keep-best early stopping: remember the best validation value and a copy of the state.

    ``higher_is_better`` for ranking metrics, False for RMSE. ``patience`` is the number of
    evaluations without improvement before ``update`` returns True (0 = never stop).
    """

    higher_is_better: bool
    patience: int
    best: float = float("nan")
    best_epoch: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    _bad: int = 0

    def update(
        self, epoch: int, value: float, snapshot: Callable[[], dict[str, torch.Tensor]]
    ) -> bool:
        """Record ``value`` at ``epoch``; return True when training should stop."""
        self.history.append(float(value))
        better = np.isnan(self.best) or (
            value > self.best if self.higher_is_better else value < self.best
        )
        if better and np.isfinite(value):
            self.best, self.best_epoch, self._bad = float(value), epoch, 0
            self.state = {k: v.detach().clone() for k, v in snapshot().items()}
            return False
        self._bad += 1
        return self.patience > 0 and self._bad >= self.patience


# ------------------------------------------------------------------ training via the Trainer
#: flat keys of the configs before ``train`` was nested, and their names in TrainConfig
FLAT_TRAIN_KEYS = {
    "lr": "lr",
    "lr_decay": "lr_decay",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "eval_every": "eval_every",
    "patience": "patience",
    "optimizer": "optimizer",
    "valid_metric": "select_metric",
    "seed": "seed",
    "device": "device",
}


def as_train_config(config: Any, where: str) -> TrainConfig:
    """A model config's ``train`` field as a TrainConfig. A dict (as read back from a
    model.json, or given as ``train={...}``) is built over the model's own default train
    config (its ``default_factory``), so unnamed keys keep the model's defaults; a
    ConfigError names a bad key."""
    value = config.train
    if isinstance(value, TrainConfig):
        return value
    if isinstance(value, dict):
        from genrec.config import build_config

        spec = next(f for f in dataclasses.fields(config) if f.name == "train")
        factory = spec.default_factory
        assert callable(factory)  # every model config's train field has a default_factory
        base = factory()
        return build_config(TrainConfig, value, base=base, where=f"{where}.train")
    raise ConfigError(
        f"{where}.train must be a TrainConfig or a table of its keys, got {type(value).__name__}"
    )


def upgrade_flat_config(values: dict[str, Any]) -> dict[str, Any]:
    """Map a model.json config written before ``train`` was nested onto the nested form:
    ``lr``, ``epochs``, ``batch_size``, ``seed``, ``device``, ... go under ``train``,
    ``valid_metric`` becomes ``train.select_metric`` and ``patience`` 0 ("never") None.
    Keys already nested are kept; a config without flat keys comes back unchanged."""
    flat = {k: v for k, v in values.items() if k in FLAT_TRAIN_KEYS}
    if not flat:
        return dict(values)
    out = {k: v for k, v in values.items() if k not in FLAT_TRAIN_KEYS}
    train = dict(out.get("train") or {})
    for old, v in flat.items():
        if old == "patience" and v == 0:
            v = None
        train.setdefault(FLAT_TRAIN_KEYS[old], v)
    out["train"] = train
    return out


def train_module(
    model: Any,
    module: torch.nn.Module,
    X: sp.csr_matrix,
    valid: Any,
    context: FitContext | None,
    config: TrainConfig,
) -> TrainResult:
    """Set ``model.module_`` and train it with the Trainer (``module_`` is None again when
    training fails or is interrupted)."""
    model.module_ = module
    try:
        return Trainer.from_context(config, context).fit(
            model, X, valid, resume=context is not None and context.resume
        )
    except BaseException:
        model.module_ = None
        raise


def row_blocks(counts: np.ndarray, width: int, budget: int) -> list[np.ndarray]:
    """Rows sorted by length, cut into blocks of at most ``budget`` padded entries."""
    order = np.argsort(counts, kind="stable")
    c = counts[order]
    blocks, start, n = [], 0, len(order)
    while start < n:
        cost = (np.arange(1, n - start + 1) * np.maximum(c[start:], 1)) * width  # rising
        stop = start + max(1, int(np.searchsorted(cost, budget, side="right")))
        blocks.append(order[start:stop])
        start = stop
    return blocks

"""What the trainer iterates over: the batches hook and the batch types.

The hook
--------
A model may define ``batches(X, ctx) -> Iterable[batch]``: one pass over the training
data, drawn with ``ctx.generator`` (the trainer's seeded CPU generator, checkpointed with
the run, so a resumed run draws the same batches). Without it the trainer uses
:func:`user_batches`: shuffled user rows as :class:`Batch`. The factor models yield
:class:`Triples` (BPR: user, positive, negative) or :class:`Ratings` (user, item, rating);
a sequence model yields its own batch type. The trainer needs only ``len(batch)`` (the
weight of the batch's numbers in the epoch means) and hands each batch to
``model.train_step(batch, step_ctx)``. An iterable with ``len`` (such as :class:`Chunked`)
tells progress callbacks how many batches a pass has.

A hook that keeps state of its own besides the generator can expose ``state_dict()`` and
``load_state_dict(d)`` (tensors, numbers, strings); the trainer checkpoints it.

Dimensions: B rows in a batch, I items, N stored entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp
import torch

from .noise import KeyedNoise, WindowNoise

__all__ = [
    "Batch",
    "Triples",
    "Ratings",
    "BatchContext",
    "BatchHook",
    "Chunked",
    "user_batches",
    "row_ids",
]

T = TypeVar("T")


def row_ids(indptr: torch.Tensor) -> torch.Tensor:
    """The row of every stored entry of a CSR matrix: (N,) int64 from indptr (B + 1,)."""
    counts = indptr[1:] - indptr[:-1]  # (B,)
    return torch.repeat_interleave(torch.arange(len(counts), device=indptr.device), counts)


@dataclass
class Batch:
    """A batch of user rows (B users, I items) as CSR parts on the training device.

    Attributes
    ----------
    users : LongTensor (B,) or None
        Row indices into the training matrix (None when scoring new users).
    indptr : LongTensor (B + 1,); indices : LongTensor (N,); values : FloatTensor (N,)
        The rows, CSR.
    n_items : int
    """

    users: torch.Tensor | None
    indptr: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    n_items: int

    @classmethod
    def from_csr(
        cls, X: sp.csr_matrix, users: torch.Tensor | None = None, device: torch.device | str = "cpu"
    ) -> Batch:
        X = sp.csr_matrix(X)
        return cls(
            users,
            torch.from_numpy(X.indptr.astype(np.int64)).to(device),
            torch.from_numpy(X.indices.astype(np.int64)).to(device),
            torch.from_numpy(X.data.astype(np.float32, copy=False)).to(device),
            X.shape[1],
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def dense(self) -> torch.Tensor:
        """The rows as a dense float32 tensor (B, I), built now (per batch only)."""
        out = torch.zeros((len(self), self.n_items), device=self.values.device)  # (B, I)
        out[row_ids(self.indptr), self.indices] = self.values
        return out

    def row_sums(self) -> torch.Tensor:
        """sum_i x_ui per row, (B,) float32 (the number of interactions for 0/1 data)."""
        out = torch.zeros(len(self), device=self.values.device)
        return out.index_add(0, row_ids(self.indptr), self.values)


@dataclass
class Triples:
    """BPR triples: users (B,), their positive items (B,), sampled negative items (B,)."""

    users: torch.Tensor
    items: torch.Tensor
    negatives: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Ratings:
    """Observed ratings: users (B,), items (B,), ratings (B,) float32."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class BatchContext:
    """What a batches hook gets besides the training matrix."""

    generator: torch.Generator  # the trainer's shuffling generator (CPU, checkpointed)
    batch_size: int
    device: torch.device  # the training device (batches go there)
    epoch: int  # 0-based
    noise_seed: int | None = None  # keyed noise (train.noise): its seed; None: the generator

    def windows_rng(self, keys: torch.Tensor) -> torch.Generator | WindowNoise:
        """Where a hook draws the noise of the windows it makes, one per row of ``keys``
        (B,) (BERT4Rec's masks): the shuffling generator, or with keyed noise a
        :class:`~genrec.train.noise.WindowNoise` keyed by (seed, epoch, row, position from
        the window's end), the same whatever batch or process makes the row."""
        if self.noise_seed is None:
            return self.generator
        # the epoch in the step's place, apart from the steps' draws by a salt of its own
        return WindowNoise(KeyedNoise(self.noise_seed, self.epoch), keys, prefix="hook")


class BatchHook(Protocol):
    """``hook(X, ctx)``: the batches of one pass over the training matrix X (U, I)."""

    def __call__(self, X: sp.csr_matrix, ctx: BatchContext) -> Any: ...


class Chunked(Generic[T]):
    """Consecutive slices of ``order`` (n,) of ``size`` rows, each made into a batch by
    ``make(slice)`` when iterated; ``len`` is the number of batches."""

    def __init__(self, order: torch.Tensor, size: int, make: Callable[[torch.Tensor, int], T]):
        self.order, self.size, self.make = order, size, make

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.size)

    def __iter__(self) -> Iterator[T]:
        for start in range(0, len(self.order), self.size):
            yield self.make(self.order[start : start + self.size], start)


def user_batches(X: sp.csr_matrix, ctx: BatchContext) -> Chunked[Batch]:
    """The default hook: the user rows in a random order (``torch.randperm`` on the
    generator), ``batch_size`` rows per :class:`Batch`."""
    perm = torch.randperm(X.shape[0], generator=ctx.generator)  # (U,)
    return Chunked(
        perm, ctx.batch_size, lambda users, _: Batch.from_csr(X[users.numpy()], users, ctx.device)
    )

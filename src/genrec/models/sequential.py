"""The base of sequential models: fitted on and scored from ordered histories.

A sequential model reads a user as the items in consumption order
(:class:`genrec.data.Sequences`), not as a set: ``fit(seqs)`` takes every user's training
sequence and ``score(users, seqs)`` one sequence per scored user, the next item's scores
over all items. A CSR matrix has no order, so it is refused (``as_sequences`` says how to
build the sequences). Every sequential model folds in: a new user's ordered items are
scored as a training user's would be.

:class:`SequentialRecommender` holds the contract's checks (``check_task`` asks for tasks
that carry sequences: protocol ``seq-loo``); :class:`TorchSequentialRecommender` is the
base of the networks the trainer runs: training and scoring batches are
:class:`SeqBatch` windows of the last ``max_len`` items, left-padded with 0 (items are
shifted by one, so item ``i`` is token ``i + 1``). A history longer than ``max_len`` keeps
its most recent ``max_len`` items.

Dimensions: B users in a batch, L = max_len positions, I items, D model width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec.data.sequences import Sequences
from genrec.errors import ConfigError, DataError
from genrec.models.base import Recommender
from genrec.models.torch_base import SCORE_BATCH, TorchRecommender
from genrec.train import BatchContext, Chunked

__all__ = [
    "as_sequences",
    "SequentialRecommender",
    "TorchSequentialRecommender",
    "SeqBatch",
    "PAD",
    "SCORE_GROUP",
    "trim_padding",
    "length_sorted_order",
    "next_item_examples",
    "window_index",
]

PAD = 0  # the padding token; item i is token i + 1
SCORE_GROUP = 256  # windows run through the network at once when scoring, by length


def as_sequences(X: Any, n_items: int | None = None, what: str = "X") -> Sequences:
    """``X`` as :class:`Sequences`: Sequences as they are, or one list of item indices per
    user (oldest first). A matrix has no order, so it is a ConfigError naming the fix."""
    if isinstance(X, Sequences):
        seqs = X
    elif sp.issparse(X) or isinstance(X, (np.ndarray, torch.Tensor)):
        raise ConfigError(
            f"{what}: a sequential model reads each user's items in order, and a matrix has "
            f"none; pass genrec.data.Sequences (Sequences.from_lists([[i1, i2, ...], ...], "
            f"n_items)) or the lists of item indices, oldest first"
        )
    elif isinstance(X, Sequence):
        if n_items is None:
            raise ConfigError(f"{what}: lists of items need the item count (n_items)")
        try:
            seqs = Sequences.from_lists([list(map(int, row)) for row in X], n_items)
        except (TypeError, ValueError) as e:
            raise DataError(
                f"{what}: each history must be item indices in [0, {n_items}) ({e})"
            ) from None
    else:
        raise ConfigError(f"{what}: expected Sequences or lists of item indices, got {X!r}")
    if n_items is not None and seqs.n_items != n_items:
        raise DataError(
            f"{what}: sequences over {seqs.n_items} items, and the model has {n_items}; "
            f"use the id space the model was trained in"
        )
    return seqs


class SequentialRecommender(Recommender):
    """A model of ordered histories (see the module docstring); ``capabilities.sequential``."""

    @classmethod
    def check_task(cls, task: Any) -> None:
        super().check_task(task)
        from genrec.evaluate import RankingTask

        if isinstance(task, RankingTask) and task.sequences is None:
            raise ConfigError(
                f"model {cls.name} reads each user's items in order, and the task "
                f"{task.name!r} has no order (its protocol scores item sets); use protocol "
                f"seq-loo"
            )

    def _check_users(self, users: np.ndarray | None, X_users: Any) -> tuple[Any, Any]:
        """(users, Sequences) checked against the fitted model."""
        self._check_fitted()
        seqs = as_sequences(X_users, self.n_items_, what="X_users")
        if users is not None:
            users = np.asarray(users, dtype=np.int64).reshape(-1)
            if len(users) != seqs.n_users:
                raise DataError(f"{len(users)} user indices but {seqs.n_users} histories")
        return users, seqs


@dataclass
class SeqBatch:
    """Left-padded windows of B sequences (tokens: item + 1, 0 = padding).

    ``inputs`` (B, L) the items read; ``targets`` (B, L) the item to predict at each
    position (0 where there is none), training batches only; ``users`` (B,) or None;
    ``times`` (B, L) float64 the inputs' timestamps (0 at padding), where the sequences
    have times, else None; ``keys`` (B,) the rows' keys of keyed noise where a user has
    several rows in an epoch (TIGER's examples), else None (the users key them).
    """

    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    users: torch.Tensor | None = None
    times: torch.Tensor | None = None
    keys: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def noise_keys(self) -> torch.Tensor | None:
        """What keys each row's keyed noise: ``keys``, or the users."""
        return self.users if self.keys is None else self.keys


def length_sorted_order(
    order: torch.Tensor, lengths: np.ndarray, size: int, pool: int, generator: torch.Generator
) -> torch.Tensor:
    """``order`` (n,) regrouped into batches of similar length: cut into pools of ``pool``
    batches of ``size``, each pool sorted by history length (stable) and cut into batches,
    and the full batches shuffled (on ``generator``); a last, short batch stays last."""
    o = order.numpy()
    span = size * pool
    parts = [o[s : s + span] for s in range(0, len(o), span)]
    sorted_ = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in parts])
    n_full = len(sorted_) // size
    shuffled = torch.randperm(n_full, generator=generator).numpy()
    full = sorted_[: n_full * size].reshape(n_full, size)[shuffled].reshape(-1)
    return torch.from_numpy(np.concatenate([full, sorted_[n_full * size :]]))


def next_item_examples(X: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(rows (N,), ends (N,)): every next item of every sequence as one example, its user row
    and its index in ``X.items`` (each item after a sequence's first), users in order."""
    cnt = np.maximum(X.lengths - 1, 0)  # (U,) targets per user
    rows = np.repeat(np.arange(X.n_users), cnt)
    start = np.repeat(np.cumsum(cnt) - cnt, cnt)  # each user's first example
    return rows, np.repeat(X.offsets[:-1] + 1, cnt) + np.arange(len(rows)) - start


def tokens(seqs: Sequences, max_len: int) -> np.ndarray:
    """(B, max_len) int64 tokens of each sequence's last ``max_len`` items (left-padded)."""
    return seqs.padded(max_len, pad=-1) + 1


def window_times(seqs: Sequences, max_len: int) -> torch.Tensor | None:
    """(B, max_len) float64 timestamps aligned with :func:`tokens` (0 at padding), or None
    when the sequences have no times."""
    if seqs.times is None:
        return None
    idx, valid = window_index(seqs, seqs.offsets[1:], np.arange(seqs.n_users), max_len)
    t = seqs.times[idx] if len(seqs.times) else np.zeros(idx.shape)
    return torch.from_numpy(np.where(valid, t, 0.0))


def window_index(
    seqs: Sequences, ends: np.ndarray, rows: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B, length) indices into ``seqs.items`` of the ``length`` positions before
    ``ends[b]`` (clipped at 0), and (B, length) whether each lies in row ``rows[b]``'s
    sequence: the windows of items (or times) that end before a position."""
    idx = ends[:, None] - length + np.arange(length)[None, :]
    return np.clip(idx, 0, None), idx >= seqs.offsets[rows][:, None]


def trim_padding(tokens: torch.Tensor, *others: torch.Tensor | None) -> tuple[Any, ...]:
    """``tokens`` (B, L) and the arrays aligned with it (B, L, ...; None stays None) without
    the leading columns that are padding in every row; the last column always stays. A
    network whose positions count from a row's first item or from the window's end gives
    the same outputs at the real positions, for less work."""
    real = (tokens != PAD).any(0)  # (L,)
    first = int(real.float().argmax()) if bool(real.any()) else tokens.shape[1] - 1
    return tuple(None if t is None else t[:, first:] for t in (tokens, *others))


class TorchSequentialRecommender(SequentialRecommender, TorchRecommender):
    """A sequential network trained by the trainer. A subclass supplies ``_build_module``
    (a module whose forward maps token windows (B, L) to hidden states (B, L, D) and whose
    ``item_table()`` is the item output embeddings (I, D)) and ``train_step(SeqBatch,
    ctx)``; scores are the last position's hidden state against the item embeddings, unless
    it overrides ``_scores``. Its config has ``max_len``.

    Scoring runs the windows in groups of :data:`SCORE_GROUP` of similar length, each group
    without its all-padding columns (:func:`trim_padding`): most histories are far shorter
    than ``max_len``, and the network's work grows with the window. The outputs are those of
    the full windows: a module's positions must count from the row's first item or from the
    window's end (as every network here does), never from the window's start."""

    def _max_len(self) -> int:
        return int(self.config.max_len)

    def _train_data(self, X: Any) -> tuple[Any, int]:
        seqs = as_sequences(X)
        if seqs.n_users == 0 or seqs.n_items == 0:
            raise DataError(
                f"cannot train on {seqs.n_users} sequences over {seqs.n_items} items: it "
                f"needs at least one user and one item"
            )
        if not (seqs.lengths >= 2).any():
            raise DataError(
                f"{self.name}: no training sequence has 2 or more items, so there is no next "
                f"item to learn; use data with longer histories"
            )
        return seqs, seqs.n_items

    def batch_rows(self, X: Sequences) -> int:
        """Training rows per epoch: the users with 2 or more items."""
        return int((X.lengths >= 2).sum())

    def loss_terms(self, batch: SeqBatch) -> int:
        """The terms the batch's mean loss averages: its positions with an item read and a
        next item to predict (a distributed run weights each process's mean by them)."""
        assert batch.targets is not None
        return int(((batch.targets != PAD) & (batch.inputs != PAD)).sum())

    def batches(self, X: Sequences, ctx: BatchContext) -> Chunked[SeqBatch]:
        """One pass: the users with a next item to predict in random order, each as its
        last ``max_len + 1`` items (inputs: all but the last; targets: all but the first)."""
        rows = np.flatnonzero(X.lengths >= 2)
        perm = torch.from_numpy(rows)[torch.randperm(len(rows), generator=ctx.generator)]
        L = self._max_len()

        def make(users: torch.Tensor, _: int) -> SeqBatch:
            part = X.take(users.numpy())
            t = torch.from_numpy(tokens(part, L + 1)).to(ctx.device)
            tt = window_times(part, L + 1)
            tt = None if tt is None else tt[:, :-1].to(ctx.device)
            return SeqBatch(t[:, :-1], t[:, 1:], users.to(ctx.device), tt)

        return Chunked(perm, ctx.batch_size, make)

    def _batches(self, X: Any, users: np.ndarray | None = None) -> Iterator[SeqBatch]:
        device = self._device()
        L = self._max_len()
        for start in range(0, X.n_users, SCORE_BATCH):
            part = X.take(slice(start, start + SCORE_BATCH))
            u = None if users is None else torch.from_numpy(users[start : start + SCORE_BATCH])
            tt = window_times(part, L)
            tt = None if tt is None else tt.to(device)
            yield SeqBatch(torch.from_numpy(tokens(part, L)).to(device), None, u, tt)

    def _hidden(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, L, D) of the token windows ``inputs`` (B, L) (``times`` (B, L)
        their timestamps, or None): the module's forward, which reads no times here."""
        return self._module()(inputs)

    def _last_hidden(self, inputs: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        """The last position's hidden states (B, D) of the windows ``inputs`` (B, L); a
        network that can compute them alone, for less work, overrides it."""
        return self._hidden(inputs, times)[:, -1]

    def _last(self, batch: SeqBatch) -> torch.Tensor:
        """The last position's hidden states (B, D): the rows run shortest first in groups
        of :data:`SCORE_GROUP`, each trimmed of its all-padding columns."""
        inputs, times = batch.inputs, batch.times
        order = torch.argsort((inputs != PAD).sum(1), stable=True)  # (B,) shortest first
        out: torch.Tensor | None = None
        for s in range(0, len(order), SCORE_GROUP):
            rows = order[s : s + SCORE_GROUP]
            x, t = trim_padding(inputs[rows], None if times is None else times[rows])
            h = self._last_hidden(x, t)  # (G, D)
            if out is None:
                out = h.new_empty((len(inputs), h.shape[1]))
            out[rows] = h
        assert out is not None, "a scoring batch has at least one row"
        return out

    def _item_table(self) -> torch.Tensor:
        """The item output embeddings (I, D) (token embeddings without the padding row):
        the module's ``item_table()``."""
        module: Any = self._module()  # the subclass's network: it has item_table()
        return module.item_table()

    def _scores(self, batch: Any) -> torch.Tensor:
        return self._last(batch) @ self._item_table().T  # (B, I): the last position reads all

    def _encode(self, batch: Any) -> torch.Tensor:
        return self._last(batch)  # (B, D)

    def user_embeddings(self, X_users: Any, users: np.ndarray | None = None) -> np.ndarray:
        """The hidden state (B, D), float32, that scores each history's next item: the
        user as the model reads them (``X_users`` ordered histories, as for ``score``)."""
        users, seqs = self._check_users(users, X_users)
        self._module().eval()
        with torch.inference_mode():
            if seqs.n_users == 0:  # the width D from one empty history, then no rows
                one = Sequences.from_lists([[]], seqs.n_items)
                return self._encode(next(iter(self._batches(one)))).float().cpu().numpy()[:0]
            out = [self._encode(b).float().cpu() for b in self._batches(seqs, users)]
        return torch.cat(out).numpy()

    def item_embeddings(self) -> np.ndarray:
        self._check_fitted()
        with torch.inference_mode():
            return self._item_table().float().cpu().numpy()

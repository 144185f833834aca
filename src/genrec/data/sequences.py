"""Ordered histories: each user's items in the order they were consumed.

A :class:`Sequences` is a ragged array (per-user ``offsets`` into one ``items`` array, with
optional aligned ``times``) in the id space of the data set's :class:`Interactions`: row
``u`` is the same user and item ``i`` the same column. Unlike the interaction matrix it keeps
order and repeats (an item consumed twice appears twice).

Order. Built from a log with a time column, each user's events are sorted by time with a
stable sort, so events with the same timestamp keep their order in the file. Built from
``user i1 i2 ... in`` lines, or from a log whose rows are in time order
(``data.ordered``), the file order is the order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from genrec.errors import DataError

__all__ = ["Sequences", "SequenceSplit", "sequence_leave_one_out"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Sequences:
    """Each user's items in consumption order.

    Attributes
    ----------
    offsets : ndarray of int64, shape (n_users + 1,)
        User ``u``'s events are ``items[offsets[u]:offsets[u + 1]]``, oldest first.
    items : ndarray of int64, shape (n_events,)
        Item column indices in ``[0, n_items)``.
    n_items : int
    times : ndarray of float64, shape (n_events,), or None
        The timestamp of each event, where the data has them.
    """

    offsets: np.ndarray
    items: np.ndarray
    n_items: int
    times: np.ndarray | None = None

    def __post_init__(self) -> None:
        off = np.asarray(self.offsets, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int64)
        object.__setattr__(self, "offsets", off)
        object.__setattr__(self, "items", items)
        if off.ndim != 1 or len(off) < 1 or off[0] != 0 or off[-1] != len(items):
            raise ValueError("Sequences.offsets must start at 0 and end at len(items)")
        if len(off) > 1 and (np.diff(off) < 0).any():
            raise ValueError("Sequences.offsets must be non-decreasing")
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"Sequences.items must lie in [0, {self.n_items})")
        if self.times is not None:
            t = np.asarray(self.times, dtype=np.float64)
            if t.shape != items.shape:
                raise ValueError("Sequences.times must align with items")
            object.__setattr__(self, "times", t)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lists(
        cls, lists: Sequence[Sequence[int]], n_items: int, times: Sequence | None = None
    ) -> Sequences:
        """One list of item indices per user, oldest first (``times`` aligned, optional)."""
        lengths = np.fromiter((len(x) for x in lists), np.int64, len(lists))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = (
            np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
            if len(lists) and offsets[-1]
            else np.zeros(0, np.int64)
        )
        t = None
        if times is not None:
            t = np.concatenate([np.asarray(x, np.float64) for x in times]) if len(items) else None
            t = np.zeros(0) if t is None else t
        return cls(offsets, items, int(n_items), t)

    @classmethod
    def from_events(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        n_users: int,
        n_items: int,
        times: np.ndarray | None = None,
        source: str = "",
    ) -> Sequences:
        """Events (in file order) grouped by user; sorted by time within a user when
        ``times`` is given (stable: ties keep file order), else kept in file order.

        Ties and a file not in time order are said once (``source`` names the data).
        """
        users = np.asarray(users)  # int32 indices stay int32 (a large log's are)
        if users.dtype != np.int32:
            users = users.astype(np.int64, copy=False)
        items = np.asarray(items)
        if times is None:
            order = np.argsort(users, kind="stable")
        else:
            times = np.asarray(times, dtype=np.float64)
            order = np.lexsort((times, users))  # lexsort is stable: ties keep file order
        u = users[order]
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=n_users), out=offsets[1:])
        ordered_items = items[order].astype(np.int64, copy=False)
        seq = cls(offsets, ordered_items, int(n_items), None if times is None else times[order])
        if times is not None and len(order) > 1:
            st = seq.times
            assert st is not None
            same_user = u[1:] == u[:-1]
            n_tied = int(np.unique(u[1:][same_user & (st[1:] == st[:-1])]).size)
            moved = bool((order[1:] < order[:-1])[same_user].any())
            if n_tied or moved:
                log.info(
                    "%s: %s; each user's items are ordered by time, ties in file order",
                    source or "the log",
                    "; ".join(
                        part
                        for part in (
                            "the rows are not in time order" if moved else "",
                            f"{n_tied} users have items with the same timestamp" if n_tied else "",
                        )
                        if part
                    ),
                )
        return seq

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        """Events per user, int64 (n_users,)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.n_users

    def row(self, u: int) -> np.ndarray:
        """User ``u``'s items, oldest first."""
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def take(self, rows: np.ndarray | slice | Sequence[int]) -> Sequences:
        """The sequences of ``rows`` (indices or a slice), in that order."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.n_users)
            if step == 1:
                a, b = self.offsets[start], self.offsets[max(start, stop)]
                return Sequences(
                    self.offsets[start : max(start, stop) + 1] - a,
                    self.items[a:b],
                    self.n_items,
                    None if self.times is None else self.times[a:b],
                )
            rows = np.arange(start, stop, step)
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # positions of every kept event: each row's start, then consecutive
        starts = np.repeat(self.offsets[rows] - offsets[:-1], lengths)
        pos = starts + np.arange(offsets[-1])
        return Sequences(
            offsets,
            self.items[pos],
            self.n_items,
            None if self.times is None else self.times[pos],
        )

    def to_csr(self) -> sp.csr_matrix:
        """The user x item 0/1 float32 matrix of these sequences (repeats count once)."""
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths)
        m = sp.csr_matrix(
            (np.ones(self.n_events, np.float32), (rows, self.items)),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def padded(self, max_len: int, pad: int) -> np.ndarray:
        """(n_users, max_len) int64: each user's most recent ``max_len`` items, oldest
        first, left-padded with ``pad`` (a history longer than ``max_len`` keeps its end)."""
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        idx = self.offsets[1:, None] - max_len + np.arange(max_len)[None, :]
        valid = idx >= self.offsets[:-1, None]
        if not len(self.items):
            return np.full(idx.shape, pad, dtype=np.int64)
        return np.where(valid, self.items[np.clip(idx, 0, None)], pad).astype(np.int64)

    def heads(self, lengths: np.ndarray) -> Sequences:
        """Each sequence's first ``lengths[u]`` items (at most its length), times kept."""
        lengths = np.minimum(np.asarray(lengths, np.int64), self.lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        keep = np.repeat(self.offsets[:-1] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Sequences(
            offsets,
            self.items[keep],
            self.n_items,
            None if self.times is None else self.times[keep],
        )

    def drop_last(self, k: int = 1) -> Sequences:
        """Each sequence without its last ``k`` items (shorter ones become empty)."""
        return self.heads(np.maximum(self.lengths - k, 0))

    def append(
        self, rows: np.ndarray, items: np.ndarray, times: np.ndarray | None = None
    ) -> Sequences:
        """These sequences with ``items[j]`` added after the last item of row ``rows[j]``
        (rows distinct), at time ``times[j]``; the times are kept when both these sequences
        and ``times`` have them, and dropped otherwise."""
        extra = np.zeros(self.n_users, np.int64)
        extra[rows] = 1
        offsets = np.concatenate([[0], np.cumsum(self.lengths + extra)]).astype(np.int64)
        last = offsets[1:][rows] - 1
        old = np.ones(offsets[-1], bool)
        old[last] = False
        out = np.empty(offsets[-1], np.int64)
        out[old] = self.items
        out[last] = items
        out_t = None
        if self.times is not None and times is not None:
            out_t = np.empty(offsets[-1], np.float64)
            out_t[old] = self.times
            out_t[last] = times
        return Sequences(offsets, out, self.n_items, out_t)

    def length_stats(self) -> dict[str, float]:
        """Sequence-length statistics: min, median, p90, max, mean (users with >= 1 item)."""
        ln = self.lengths[self.lengths > 0]
        if not len(ln):
            return {"min": 0, "median": 0, "p90": 0, "max": 0, "mean": 0.0}
        return {
            "min": int(ln.min()),
            "median": float(np.median(ln)),
            "p90": float(np.percentile(ln, 90)),
            "max": int(ln.max()),
            "mean": float(ln.mean()),
        }

    def k_core(self, user_k: int = 0, item_k: int = 0) -> Sequences:
        """Drop events of items with fewer than ``item_k`` events and of users with fewer
        than ``user_k``, repeatedly until both hold (users keep their rows, maybe empty)."""
        if user_k <= 0 and item_k <= 0:
            return self
        s = self
        while True:
            keep = np.ones(s.n_events, bool)
            if item_k > 0:
                keep &= np.bincount(s.items, minlength=s.n_items)[s.items] >= item_k
            if user_k > 0:
                keep &= np.repeat(s.lengths >= user_k, s.lengths)
            if keep.all():
                return s
            rows = np.repeat(np.arange(s.n_users), s.lengths)[keep]
            offsets = np.zeros(s.n_users + 1, np.int64)
            np.cumsum(np.bincount(rows, minlength=s.n_users), out=offsets[1:])
            s = Sequences(
                offsets, s.items[keep], s.n_items, None if s.times is None else s.times[keep]
            )


@dataclass(frozen=True, eq=False)
class SequenceSplit:
    """The leave-one-out split of ordered histories (protocol ``seq-loo``).

    ``train`` holds every user's events but the last two (all of them for a user with fewer
    than 3); ``users`` are the evaluated users (3 or more events), and for them
    ``valid_target`` is the second-to-last item, ``test_target`` the last.
    """

    train: Sequences
    users: np.ndarray
    valid_target: np.ndarray
    test_target: np.ndarray
    n_short: int  # users with 1 or 2 events: trained on, not evaluated
    valid_time: np.ndarray | None = None  # when the sequences have times: the valid item's

    def valid_inputs(self) -> Sequences:
        """The evaluated users' validation inputs: their training part."""
        return self.train.take(self.users)

    def test_inputs(self) -> Sequences:
        """The evaluated users' test inputs: their training part and the validation item
        (with its time, where the sequences have times)."""
        tr = self.train.take(self.users)
        return tr.append(np.arange(tr.n_users), self.valid_target, self.valid_time)


def sequence_leave_one_out(seqs: Sequences) -> SequenceSplit:
    """Split ``seqs`` leave-one-out: last item test, second-to-last validation (users with 3
    or more events; shorter ones stay whole in training and are not evaluated)."""
    ln = seqs.lengths
    users = np.flatnonzero(ln >= 3).astype(np.int64)
    n_short = int(((ln > 0) & (ln < 3)).sum())
    if not len(users):
        raise DataError(
            "protocol seq-loo evaluates users with 3 or more items, and no user has 3; "
            "use data with longer histories"
        )
    ends = seqs.offsets[1:][users]
    train = seqs.heads(ln - np.where(ln >= 3, 2, 0))  # short users stay whole
    valid_time = None if seqs.times is None else seqs.times[ends - 2].copy()
    return SequenceSplit(
        train,
        users,
        seqs.items[ends - 2].copy(),
        seqs.items[ends - 1].copy(),
        n_short,
        valid_time,
    )

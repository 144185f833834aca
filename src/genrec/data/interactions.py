"""The :class:`Interactions` type: a user x item CSR matrix with its raw-id maps.

One orientation forever: rows are users, columns are items. Values are ratings (explicit
feedback) or 1.0 (implicit feedback). Timestamps, when known, are kept in an array aligned
with ``matrix.data`` (same order), so they survive every row slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from genrec.errors import DataError

__all__ = ["Interactions", "IdMap", "as_id_array", "RATING_LIMIT"]


#: the largest rating magnitude genrec reads: ratings are float32, and the models square
#: them in float32 (losses, RMSE-like objectives), so a rating's square must fit (1.8e19)
RATING_LIMIT = float(np.sqrt(np.finfo(np.float32).max))


def as_id_array(raw_ids: Sequence | np.ndarray) -> np.ndarray:
    """Raw ids as a plain numpy array: integers, or fixed-width unicode (``<U``), never object
    (whole floats such as 1.0 become the integer ids they stand for).

    Object arrays (pandas string columns) would make ``np.savez`` refuse the ids.
    """
    arr = np.asarray(raw_ids)
    if arr.dtype == object:
        arr = np.asarray(arr.tolist()) if len(arr) else arr.astype(str)
        if arr.dtype.kind not in "iufU":
            arr = arr.astype(str)
    if arr.dtype.kind == "f":  # e.g. a Parquet id column stored as float: 1.0 is the id 1
        whole = (
            np.isfinite(arr).all() and (arr == np.round(arr)).all() and (np.abs(arr) < 2**53).all()
        )
        arr = arr.astype(np.int64) if whole else arr.astype(str)
    return arr


def _index_array(a: np.ndarray | Sequence[int]) -> np.ndarray:
    """Row or column indices as int32 when they are int32 already, else int64."""
    arr = np.asarray(a)
    return arr if arr.dtype == np.int32 else arr.astype(np.int64, copy=False)


def factorize_ids(raw: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted unique ids, each entry's index among them), as ``np.unique(raw,
    return_inverse=True)`` gives them; non-negative integer ids of a compact range are
    counted instead of sorted (linear time, int32 indices: a 25M-row log's ids in a tenth
    of the memory)."""
    arr = as_id_array(raw)
    if arr.dtype.kind in "iu" and len(arr) and int(arr.min()) >= 0:
        top = int(arr.max())
        if top < max(4 * len(arr), 1 << 20) and top < 2**31 - 1:
            present = np.zeros(top + 1, dtype=bool)
            present[arr] = True
            uniq = np.flatnonzero(present).astype(arr.dtype)
            lookup = np.cumsum(present, dtype=np.int32) - 1  # (top + 1,)
            return uniq, lookup[arr]
    return np.unique(arr, return_inverse=True)


class IdMap:
    """A bijection between raw ids (as in the source file) and contiguous indices.

    Parameters
    ----------
    raw_ids : array-like, shape (n,)
        The raw id of each index, unique. Integers stay integers, anything else becomes str.
    """

    def __init__(self, raw_ids: Sequence | np.ndarray):
        arr = np.asarray(raw_ids)
        if arr.dtype.kind not in "iu":
            arr = arr.astype(str)
        self.raw = arr
        if len(np.unique(arr)) != len(arr):
            raise DataError("id map: raw ids are not unique")
        self._lookup = {v: i for i, v in enumerate(arr.tolist())}

    def __len__(self) -> int:
        return len(self.raw)

    def _coerce(self, raw: object) -> object:
        if self.raw.dtype.kind in "iu":
            try:
                return int(raw)  # type: ignore[call-overload]
            except (TypeError, ValueError):
                return raw
        return str(raw)

    def get(self, raw: object) -> int | None:
        """Index of ``raw`` (a string such as ``"196"`` matches the integer id 196), or None."""
        return self._lookup.get(self._coerce(raw))

    def index(self, raw: object, what: str = "id") -> int:
        """Index of ``raw``; a :class:`DataError` naming the id if it is unknown."""
        idx = self.get(raw)
        if idx is None:
            raise DataError(f"unknown {what} {raw!r}: it does not occur in the training data")
        return idx

    def indices(self, raws: Sequence[object], what: str = "id") -> np.ndarray:
        return np.array([self.index(r, what) for r in raws], dtype=np.int64)


@dataclass
class Interactions:
    """User x item interactions.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_users, n_items), float32
        Ratings or 1.0; canonical (sorted indices, no duplicates).
    user_ids : ndarray, shape (n_users,)
        Raw id of each row.
    item_ids : ndarray, shape (n_items,)
        Raw id of each column.
    times : ndarray of float64, shape (nnz,), or None
        Timestamp of each stored entry, aligned with ``matrix.data``.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    times: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.user_ids = as_id_array(self.user_ids)
        self.item_ids = as_id_array(self.item_ids)
        m = self.matrix
        if not sp.isspmatrix_csr(m) and not isinstance(m, sp.csr_array):
            raise TypeError("Interactions.matrix must be a scipy CSR matrix")
        if m.shape != (len(self.user_ids), len(self.item_ids)):
            raise ValueError(
                f"matrix shape {m.shape} does not match {len(self.user_ids)} user ids and "
                f"{len(self.item_ids)} item ids"
            )
        if self.times is not None and len(self.times) != m.nnz:
            raise ValueError("times must align with matrix.data")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray | None = None,
        times: np.ndarray | None = None,
        *,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        duplicates: str = "last",
    ) -> Interactions:
        """Build from index arrays (already mapped to 0..n-1).

        Parameters
        ----------
        users, items : ndarray of int, shape (n,)
        ratings : ndarray, shape (n,), optional
            Defaults to 1.0 (implicit feedback).
        times : ndarray, shape (n,), optional
        duplicates : {"last", "first", "max", "error"}
            What to keep when a (user, item) pair occurs more than once: the latest by time
            (file order when there are no times), the earliest, the highest rating, or raise.
        """
        users = _index_array(users)  # int32 indices stay int32: a large log halves its size
        items = _index_array(items)
        n = len(users)
        if ratings is not None:
            given = np.asarray(ratings)
            checked = given if given.dtype == np.float32 else given.astype(np.float64)
            bad = ~(np.abs(checked) <= RATING_LIMIT)  # NaN too
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"ratings[{j}] is {float(checked[j])!r}: ratings must be finite and within "
                    f"+-{RATING_LIMIT:.3g} (they are float32 and their squares must fit)"
                )
            del checked, bad
        r = np.ones(n, np.float32) if ratings is None else np.asarray(ratings, np.float32)
        t = None if times is None else np.asarray(times, np.float64)
        order_key = t if t is not None else np.arange(n, dtype=np.float64)
        n_items = len(item_ids)
        key = users.astype(np.int64) * n_items + items
        # sort by (pair, order) so that duplicates are adjacent with the latest last
        order = np.lexsort((order_key, key))
        key_s = key[order]
        is_last = np.ones(n, bool)
        is_last[:-1] = key_s[1:] != key_s[:-1]
        if not is_last.all():
            if duplicates == "error":
                k = key_s[np.flatnonzero(~is_last)[0]]
                raise DataError(
                    f"duplicate interaction (user {user_ids[k // n_items]}, item "
                    f"{item_ids[k % n_items]}); choose a dedup policy (last, first, max)"
                )
            if duplicates == "first":
                is_first = np.ones(n, bool)
                is_first[1:] = key_s[1:] != key_s[:-1]
                keep = order[is_first]
            elif duplicates == "max":
                order = np.lexsort((r, key))
                key_s = key[order]
                is_last = np.ones(n, bool)
                is_last[:-1] = key_s[1:] != key_s[:-1]
                keep = order[is_last]
            elif duplicates == "last":
                keep = order[is_last]
            else:
                raise ValueError(f"unknown duplicates policy {duplicates!r}")
        else:
            keep = order
        del key, key_s, is_last, order_key  # what a large log needs next: the kept rows
        # keep is sorted by key = row-major order, which is canonical CSR order
        indptr = np.zeros(len(user_ids) + 1, np.int64)
        np.cumsum(np.bincount(users[keep], minlength=len(user_ids)), out=indptr[1:])
        i = items[keep].astype(np.int32, copy=False)
        mat = sp.csr_matrix((r[keep], i, indptr), shape=(len(user_ids), n_items))
        mat.has_sorted_indices = True
        return cls(mat, user_ids, item_ids, None if t is None else t[keep])

    @classmethod
    def from_raw(
        cls,
        users: Sequence | np.ndarray,
        items: Sequence | np.ndarray,
        ratings: np.ndarray | None = None,
        times: np.ndarray | None = None,
        *,
        duplicates: str = "last",
    ) -> Interactions:
        """Build from raw ids; the id maps are the sorted unique raw ids."""
        uid, u = factorize_ids(users)
        iid, i = factorize_ids(items)
        return cls.from_arrays(
            u, i, ratings, times, user_ids=uid, item_ids=iid, duplicates=duplicates
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_users * self.n_items)

    @property
    def user_map(self) -> IdMap:
        return IdMap(self.user_ids)

    @property
    def item_map(self) -> IdMap:
        return IdMap(self.item_ids)

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, values) of the stored entries, in row-major order."""
        m = self.matrix
        users = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        return users, m.indices.astype(np.int64), m.data

    # ------------------------------------------------------------------ transforms
    def select(self, keep: np.ndarray) -> Interactions:
        """Keep the stored entries where the boolean mask ``keep`` (shape (nnz,)) is True."""
        u, i, r = self.coo()
        t = None if self.times is None else self.times[keep]
        return Interactions.from_arrays(
            u[keep], i[keep], r[keep], t, user_ids=self.user_ids, item_ids=self.item_ids
        )

    def binarize(self, threshold: float | None = None) -> Interactions:
        """Implicit feedback: keep entries with value >= ``threshold`` (all if None), set to 1."""
        out = self if threshold is None else self.select(self.matrix.data >= threshold)
        m = out.matrix.copy()
        m.data = np.ones_like(m.data)
        return Interactions(m, out.user_ids, out.item_ids, out.times)

    def with_matrix(self, matrix: sp.csr_matrix) -> Interactions:
        """Same ids, another matrix (times dropped)."""
        return Interactions(sp.csr_matrix(matrix, dtype=np.float32), self.user_ids, self.item_ids)

    def __repr__(self) -> str:
        return (
            f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} "
            f"interactions, density {self.density:.4%}"
            f"{', timestamps' if self.times is not None else ''})"
        )

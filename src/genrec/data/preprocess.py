"""Preprocessing: binarize ratings, iterative k-core filtering.

Filtering keeps the id space of the input (rows and columns of removed users and items stay,
empty); :func:`compact` drops empty rows and columns when a smaller matrix is wanted.
"""

from __future__ import annotations

import numpy as np

from genrec.data.interactions import Interactions
from genrec.errors import DataError

__all__ = ["binarize", "k_core", "compact"]


def binarize(inter: Interactions, threshold: float | None) -> Interactions:
    """Implicit feedback: entries with rating >= ``threshold`` become 1, the rest are dropped.

    ``threshold=None`` keeps every entry (each becomes 1).
    """
    out = inter.binarize(threshold)
    if out.nnz == 0:
        raise DataError(f"no interaction has a rating >= {threshold}; lower the threshold")
    return out


def k_core(
    inter: Interactions, user_k: int = 0, item_k: int = 0, max_rounds: int = 1000
) -> Interactions:
    """Iteratively remove users with < ``user_k`` and items with < ``item_k`` interactions.

    Repeats until every remaining user and item meets its threshold (a fixed point).
    """
    if user_k <= 0 and item_k <= 0:
        return inter
    keep = np.ones(inter.nnz, dtype=bool)
    users, items, _ = inter.coo()
    for _ in range(max_rounds):
        ucount = np.bincount(users[keep], minlength=inter.n_users)
        icount = np.bincount(items[keep], minlength=inter.n_items)
        bad = keep & ((ucount[users] < user_k) | (icount[items] < item_k))
        if not bad.any():
            break
        keep &= ~bad
    if not keep.any():
        raise DataError(
            f"k-core filtering (users >= {user_k}, items >= {item_k}) removed every "
            f"interaction; lower the thresholds"
        )
    return inter.select(keep)


def compact(inter: Interactions) -> Interactions:
    """Drop users and items that have no interaction."""
    users, items, vals = inter.coo()
    ukeep = np.flatnonzero(np.bincount(users, minlength=inter.n_users))
    ikeep = np.flatnonzero(np.bincount(items, minlength=inter.n_items))
    unew = np.full(inter.n_users, -1, np.int64)
    unew[ukeep] = np.arange(len(ukeep))
    inew = np.full(inter.n_items, -1, np.int64)
    inew[ikeep] = np.arange(len(ikeep))
    return Interactions.from_arrays(
        unew[users],
        inew[items],
        vals,
        inter.times,
        user_ids=inter.user_ids[ukeep],
        item_ids=inter.item_ids[ikeep],
    )

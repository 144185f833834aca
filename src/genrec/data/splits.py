"""Splits of an :class:`Interactions` into parts, all seeded and deterministic.

Every split returns parts in the id space of its input (same rows and columns), so masks
and truths line up; every stored interaction lands in exactly one part (tests check that no
part leaks into another).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genrec.data.interactions import Interactions
from genrec.errors import DataError

__all__ = [
    "random_ratio_split",
    "temporal_ratio_split",
    "leave_last_one_out",
    "random_split",
    "strong_generalization_split",
]


def _check_ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) < 2 or (r <= 0).any() or abs(r.sum() - 1.0) > 1e-9:
        raise DataError(f"split ratios must be >= 2 positive numbers summing to 1, got {ratios}")
    return r


def _parts_from_labels(
    inter: Interactions, labels: np.ndarray, names: Sequence[str]
) -> dict[str, Interactions]:
    return {name: inter.select(labels == j) for j, name in enumerate(names)}


def _per_user_labels(order_key: np.ndarray, inter: Interactions, ratios: np.ndarray) -> np.ndarray:
    """Label each entry by its position within its user's ordering (by ``order_key``)."""
    users, _, _ = inter.coo()
    order = np.lexsort((order_key, users))  # grouped by user, then by key
    counts = np.diff(inter.matrix.indptr)
    starts = np.repeat(inter.matrix.indptr[:-1], counts)
    pos = np.empty(inter.nnz, np.int64)
    pos[order] = np.arange(inter.nnz) - starts  # rank within user
    n = counts[users].astype(np.float64)
    # cut points per user: round(cumulative ratio * n), kept within [1, n - 1] so the first
    # and the last part each get an item whenever the user has two or more
    cum = np.cumsum(ratios)[:-1]
    labels = np.zeros(inter.nnz, np.int64)
    for c in cum:
        labels += pos >= np.clip(np.round(c * n), 1, np.maximum(n - 1, 1))
    return labels


def random_ratio_split(
    inter: Interactions,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    names: Sequence[str] = ("train", "valid", "test"),
    seed: int = 0,
) -> dict[str, Interactions]:
    """Per-user random split: each user's interactions are shuffled and cut by ``ratios``."""
    r = _check_ratios(ratios)
    key = np.random.default_rng(seed).random(inter.nnz)
    return _parts_from_labels(inter, _per_user_labels(key, inter, r), names)


def temporal_ratio_split(
    inter: Interactions,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    names: Sequence[str] = ("train", "valid", "test"),
) -> dict[str, Interactions]:
    """Per-user temporal split: each user's earliest interactions train, the latest test.

    Ties in time keep file order (the order of the stored entries).
    """
    if inter.times is None:
        raise DataError(
            "temporal split needs timestamps, and this data set has none; use a random split"
        )
    r = _check_ratios(ratios)
    # lexsort is stable: ties in time keep the order of the stored entries
    return _parts_from_labels(inter, _per_user_labels(inter.times, inter, r), names)


def leave_last_one_out(inter: Interactions, seed: int = 0) -> dict[str, Interactions]:
    """Each user's last interaction is ``test``, the one before ``valid``, the rest ``train``.

    Users with fewer than 3 interactions keep everything in train. Without timestamps the
    order is a seeded shuffle.
    """
    users, _, _ = inter.coo()
    key = inter.times if inter.times is not None else np.random.default_rng(seed).random(inter.nnz)
    order = np.lexsort((key, users))
    counts = np.diff(inter.matrix.indptr)
    starts = np.repeat(inter.matrix.indptr[:-1], counts)
    pos = np.empty(inter.nnz, np.int64)
    pos[order] = np.arange(inter.nnz) - starts
    n = counts[users]
    labels = np.zeros(inter.nnz, np.int64)
    labels[(n >= 3) & (pos == n - 2)] = 1
    labels[(n >= 3) & (pos == n - 1)] = 2
    return _parts_from_labels(inter, labels, ("train", "valid", "test"))


def random_split(
    inter: Interactions,
    ratios: Sequence[float] = (0.9, 0.1),
    names: Sequence[str] = ("train", "test"),
    seed: int = 0,
) -> dict[str, Interactions]:
    """Global random split of the interactions (AutoRec's 90/10 protocol)."""
    r = _check_ratios(ratios)
    perm = np.random.default_rng(seed).permutation(inter.nnz)
    cuts = np.round(np.cumsum(r)[:-1] * inter.nnz).astype(np.int64)
    labels = np.empty(inter.nnz, np.int64)
    for j, part in enumerate(np.split(perm, cuts)):
        labels[part] = j
    return _parts_from_labels(inter, labels, names)


def strong_generalization_split(
    inter: Interactions,
    n_heldout: int | float = 0.1,
    fold_in: float = 0.8,
    seed: int = 0,
) -> dict[str, Interactions]:
    """Liang et al. (2018): held-out users, their histories split fold-in / target.

    ``n_heldout`` users (a count, or a fraction of users with interactions) go to validation
    and as many to test; the rest train with full histories. Each held-out user's items are
    shuffled and split ``fold_in`` / ``1 - fold_in`` (at least one target item).

    Returns parts ``train``, ``valid_in``, ``valid_out``, ``test_in``, ``test_out`` in the
    input's id space (held-out users' rows are empty in ``train``).
    """
    if not 0 < fold_in < 1:
        raise DataError(f"fold_in must be in (0, 1), got {fold_in}")
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(np.diff(inter.matrix.indptr) >= 2)
    n = int(round(n_heldout * len(active))) if isinstance(n_heldout, float) else int(n_heldout)
    most = (len(active) - 1) // 2  # per side, leaving at least one training user
    if most < 1:
        raise DataError(
            f"strong generalization needs at least 3 users with >= 2 "
            f"interactions (one for validation, one for test, one to train), "
            f"found {len(active)}; use more data or another protocol"
        )
    if not 1 <= n <= most:
        given = (
            f"n_heldout {n_heldout} of {len(active)} users is {n}"
            if isinstance(n_heldout, float)
            else f"n_heldout is {n}"
        )
        raise DataError(
            f"strong generalization holds out 1 to {most} users per side of the "
            f"{len(active)} with >= 2 interactions, but {given}; set "
            f"protocol.n_heldout to a count in 1..{most} or a fraction"
        )
    perm = rng.permutation(active)
    valid_users, test_users = perm[:n], perm[n : 2 * n]
    users, _, _ = inter.coo()
    role = np.zeros(inter.n_users, np.int64)  # 0 train, 1 valid, 2 test
    role[valid_users], role[test_users] = 1, 2
    labels_in_out = _per_user_labels(
        rng.random(inter.nnz), inter, np.array([fold_in, 1.0 - fold_in])
    )
    r = role[users]
    labels = np.where(r == 0, 0, 1 + 2 * (r - 1) + labels_in_out)  # 0 train, 1/2 valid, 3/4 test
    return _parts_from_labels(
        inter, labels, ("train", "valid_in", "valid_out", "test_in", "test_out")
    )

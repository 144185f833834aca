"""The checks every sequential Recommender passes (``capabilities.sequential``), and
:func:`check_sequential_recommender` running them all.

The data is :func:`cycles`: every user walks a cycle of items (``i -> i + 1`` within the
user's group of items, wrapping round), starting at a different item, so the next item is
known from the last one alone and any sequential model must rank it first; a set-based
model cannot (every item of the group has been seen as often).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from genrec.data.sequences import Sequences
from genrec.errors import ConfigError, DataError, NotFittedError
from genrec.models.base import Recommender
from genrec.testing._helpers import (
    ModelFactory,
    _folder,
    _raises,
    _run,
    _scores,
    check_scores_are_the_callers,
)

__all__ = [
    "cycles",
    "check_sequential_recommender",
    "check_next_item_ranks_first",
    "check_order_matters",
]


def cycles(
    n_groups: int = 2, users_per_group: int = 16, cycle: int = 12, length: int = 6
) -> tuple[Sequences, np.ndarray]:
    """Users of group g walk the items of block g in a cycle, from their own start.

    User ``j`` of group ``g`` has the ``length`` items ``g * cycle + (j + t) % cycle`` for
    t = 0..length-1; the next one (t = length) is returned as the target.

    Returns
    -------
    seqs : Sequences, n_groups * users_per_group users over n_groups * cycle items
    next_item : ndarray of int64 (n_users,)
    """
    lists, nxt = [], []
    for g in range(n_groups):
        for j in range(users_per_group):
            walk = [g * cycle + (j + t) % cycle for t in range(length + 1)]
            lists.append(walk[:-1])
            nxt.append(walk[-1])
    return Sequences.from_lists(lists, n_groups * cycle), np.asarray(nxt, np.int64)


def check_next_item_ranks_first(fitted: Recommender, seqs: Sequences, nxt: np.ndarray) -> None:
    """Every user's next item on the cycle is the top recommendation."""
    items, _ = fitted.recommend(np.arange(seqs.n_users), seqs, k=1)
    wrong = np.flatnonzero(items[:, 0] != nxt)
    assert len(wrong) <= seqs.n_users // 10, (
        f"{len(wrong)} of {seqs.n_users} users do not get their next item first (users "
        f"{wrong[:5].tolist()}: got {items[wrong[:5], 0].tolist()}, next {nxt[wrong[:5]].tolist()})"
    )


def check_order_matters(fitted: Recommender, seqs: Sequences) -> None:
    """Reversing a history changes its scores (a set-based model would give the same)."""
    rev = Sequences.from_lists([seqs.row(u)[::-1].tolist() for u in range(4)], seqs.n_items)
    a = _scores(fitted, None, seqs.take(np.arange(4)))
    b = _scores(fitted, None, rev)
    assert not np.allclose(a, b), "reversed histories get the same scores: order is ignored"


def check_batch_equals_single(fitted: Recommender, seqs: Sequences) -> None:
    users = np.arange(seqs.n_users)
    batch = _scores(fitted, users, seqs).astype(np.float64)
    single = np.vstack(
        [
            _scores(fitted, users[u : u + 1], seqs.take([u])).astype(np.float64)
            for u in range(0, seqs.n_users, 5)
        ]
    )
    np.testing.assert_allclose(batch[::5], single, rtol=1e-5, atol=1e-5)


def check_save_load(fitted: Recommender, seqs: Sequences) -> None:
    users = np.arange(seqs.n_users)
    with _folder(None) as folder:
        fitted.save(folder / "m")
        loaded = Recommender.load(folder / "m")
    assert type(loaded) is type(fitted), f"loaded a {type(loaded).__name__}"
    assert loaded.config == fitted.config, f"{loaded.config} != {fitted.config}"
    np.testing.assert_array_equal(_scores(fitted, users, seqs), _scores(loaded, users, seqs))


def check_exclude_seen(fitted: Recommender, seqs: Sequences) -> None:
    users = np.arange(seqs.n_users)
    items, _ = fitted.recommend(users, seqs, k=seqs.n_items)
    seen = seqs.to_csr().toarray() > 0
    for u in range(seqs.n_users):
        got = items[u][items[u] >= 0]
        assert not seen[u, got].any(), f"user {u}: seen items ranked"
        assert len(got) == (~seen[u]).sum(), f"user {u}: {len(got)} ranked"


def check_same_seed(make_model: ModelFactory, seqs: Sequences) -> None:
    users = np.arange(seqs.n_users)
    a = _scores(make_model(seed=3).fit(seqs), users, seqs)
    b = _scores(make_model(seed=3).fit(seqs), users, seqs)
    np.testing.assert_array_equal(a, b)


def check_unfitted(make_model: ModelFactory, seqs: Sequences) -> None:
    with _raises(NotFittedError, match="not fitted"):
        make_model().score(np.arange(2), seqs.take([0, 1]))


def check_wrong_inputs(fitted: Recommender, seqs: Sequences) -> None:
    """Sequences over another item count are a DataError; a matrix (no order) a ConfigError
    that says how to build sequences."""
    other = Sequences(seqs.offsets[:3], seqs.items[: seqs.offsets[2]], seqs.n_items + 1)
    with _raises(DataError, match="items"):
        fitted.score(np.arange(2), other)
    with _raises(ConfigError, match="Sequences"):
        fitted.score(np.arange(2), sp.csr_matrix((2, seqs.n_items), dtype=np.float32))


def check_fold_in(fitted: Recommender, seqs: Sequences) -> None:
    np.testing.assert_allclose(
        _scores(fitted, np.arange(seqs.n_users), seqs),
        _scores(fitted, None, seqs),
        rtol=1e-6,
        atol=1e-6,
    )


def check_empty_history(fitted: Recommender, seqs: Sequences) -> None:
    """An empty history gets finite scores (popularity-like), not NaN."""
    s = _scores(fitted, None, Sequences(np.zeros(2, np.int64), np.zeros(0, np.int64), seqs.n_items))
    assert s.shape == (1, seqs.n_items) and np.isfinite(s).all(), "empty history: not finite"


def check_sequential_recommender(make_model: ModelFactory) -> None:
    """Run every sequential check on ``make_model`` (fitted once on :func:`cycles`, seed 0).

    Raises
    ------
    AssertionError
        At the first check that fails, naming it.
    """
    seqs, nxt = cycles()
    fitted = make_model(seed=0).fit(seqs)
    checks: list[tuple[str, Callable[[], None]]] = [
        ("next_item_ranks_first", lambda: check_next_item_ranks_first(fitted, seqs, nxt)),
        ("order_matters", lambda: check_order_matters(fitted, seqs)),
        ("batch_scores_equal_single_user_scores", lambda: check_batch_equals_single(fitted, seqs)),
        ("save_load_gives_identical_scores", lambda: check_save_load(fitted, seqs)),
        ("exclude_seen_excludes", lambda: check_exclude_seen(fitted, seqs)),
        ("scores_are_the_callers", lambda: check_scores_are_the_callers(fitted, None, seqs)),
        ("same_seed_same_scores", lambda: check_same_seed(make_model, seqs)),
        ("unfitted_model_raises_clear_error", lambda: check_unfitted(make_model, seqs)),
        ("wrong_inputs_raise", lambda: check_wrong_inputs(fitted, seqs)),
        ("fold_in_scores_depend_only_on_history", lambda: check_fold_in(fitted, seqs)),
        ("empty_history_scores_finite", lambda: check_empty_history(fitted, seqs)),
    ]
    _run(checks, fitted)

"""The checks every Recommender passes, and :func:`check_recommender` running them all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from genrec.errors import DataError, NotFittedError
from genrec.models.base import Recommender
from genrec.testing._helpers import (
    ModelFactory,
    _folder,
    _raises,
    _run,
    _scores,
    check_scores_are_the_callers,
)
from genrec.testing.data import checkerboard


# ----------------------------------------------------------------------------- Recommender
def check_withheld_item_ranks_first(
    fitted: Recommender, X: sp.csr_matrix, withheld: np.ndarray
) -> None:
    """Every user's withheld item is the top recommendation.

    Parameters
    ----------
    fitted : Recommender
        A model fitted on ``X``.
    X : csr_matrix, shape (n_users, n_items)
        The :func:`checkerboard` (or :func:`rating_checkerboard`) matrix.
    withheld : ndarray of int, shape (n_users,)
        Each user's withheld item.
    """
    items, _ = fitted.recommend(np.arange(X.shape[0]), X, k=1)
    wrong = np.flatnonzero(items[:, 0] != withheld)
    assert len(wrong) == 0, (
        f"{len(wrong)} of {X.shape[0]} users do not get their withheld "
        f"item first (users {wrong[:5].tolist()}: got "
        f"{items[wrong[:5], 0].tolist()}, withheld "
        f"{withheld[wrong[:5]].tolist()})"
    )


def check_batch_scores_equal_single_user_scores(fitted: Recommender, X: sp.csr_matrix) -> None:
    """Scoring all users at once equals scoring them one at a time (every 5th user).

    Parameters
    ----------
    fitted : Recommender
    X : csr_matrix, shape (n_users, n_items)
        The matrix ``fitted`` was fitted on.
    """
    users = np.arange(X.shape[0])
    batch = _scores(fitted, users, X).astype(np.float64)
    single = np.vstack(
        [
            _scores(fitted, users[u : u + 1], X[u]).astype(np.float64)
            for u in range(0, X.shape[0], 5)
        ]
    )
    np.testing.assert_allclose(batch[::5], single, rtol=1e-5, atol=1e-5)


def check_save_load_gives_identical_scores(
    fitted: Recommender, X: sp.csr_matrix, path: str | Path | None = None
) -> None:
    """``Recommender.load`` of a saved model gives the same class, config and scores.

    Parameters
    ----------
    fitted : Recommender
    X : csr_matrix, shape (n_users, n_items)
    path : path, optional
        Folder to save into (a temporary one by default).
    """
    users = np.arange(X.shape[0])
    with _folder(path) as folder:
        fitted.save(folder / "m")
        loaded = Recommender.load(folder / "m")
    assert type(loaded) is type(fitted), f"loaded a {type(loaded).__name__}"
    assert loaded.config == fitted.config, f"{loaded.config} != {fitted.config}"
    np.testing.assert_array_equal(_scores(fitted, users, X), _scores(loaded, users, X))


def check_exclude_seen_excludes(fitted: Recommender, X: sp.csr_matrix) -> None:
    """``recommend(..., k=n_items)`` ranks every unseen item and no seen one; with
    ``exclude_seen=False`` every slot holds an item.

    Parameters
    ----------
    fitted : Recommender
    X : csr_matrix, shape (n_users, n_items)
    """
    users = np.arange(X.shape[0])
    k = X.shape[1]
    items, _ = fitted.recommend(users, X, k=k)
    Xd = X.toarray() > 0
    for u in range(X.shape[0]):
        got = items[u][items[u] >= 0]
        assert not Xd[u, got].any(), f"user {u}: seen items {got[Xd[u, got]].tolist()} ranked"
        assert len(got) == (~Xd[u]).sum(), (
            f"user {u}: {len(got)} items ranked, {(~Xd[u]).sum()} unseen"
        )
    items_all, _ = fitted.recommend(users, X, k=k, exclude_seen=False)
    assert (items_all >= 0).all(), "exclude_seen=False left empty (-1) slots"


def check_same_seed_same_scores(make_model: ModelFactory, X: sp.csr_matrix, seed: int = 3) -> None:
    """Two fits with the same seed give identical scores.

    Parameters
    ----------
    make_model : callable
        ``make_model(seed=...)`` returns an unfitted model.
    X : csr_matrix, shape (n_users, n_items)
    seed : int
    """
    users = np.arange(X.shape[0])
    a = _scores(make_model(seed=seed).fit(X), users, X)
    b = _scores(make_model(seed=seed).fit(X), users, X)
    np.testing.assert_array_equal(a, b)


def check_unfitted_model_raises_clear_error(make_model: ModelFactory, X: sp.csr_matrix) -> None:
    """``score`` and ``save`` of an unfitted model raise NotFittedError ("not fitted") and
    write nothing.

    Parameters
    ----------
    make_model : callable
    X : csr_matrix, shape (n_users, n_items)
    """
    model = make_model()
    with _raises(NotFittedError, match="not fitted"):
        model.score(np.arange(2), X[:2])
    with _folder(None) as folder:
        with _raises(NotFittedError):
            model.save(folder / "never-written")
        assert not (folder / "never-written").exists(), "an unfitted save wrote a folder"


def check_wrong_item_count_raises(fitted: Recommender, X: sp.csr_matrix) -> None:
    """Histories with another number of item columns raise DataError ("item columns").

    Parameters
    ----------
    fitted : Recommender
    X : csr_matrix, shape (n_users, n_items)
    """
    with _raises(DataError, match="item columns"):
        fitted.score(np.arange(2), sp.csr_matrix((2, X.shape[1] + 1), dtype=np.float32))


def check_fold_in_scores_depend_only_on_history(fitted: Recommender, X: sp.csr_matrix) -> None:
    """A fold-in model (``folds_in = True``) scores the same with ``users=None``.

    Parameters
    ----------
    fitted : Recommender
        A model whose class has ``folds_in = True``.
    X : csr_matrix, shape (n_users, n_items)
    """
    assert fitted.folds_in(), f"{type(fitted).__name__} does not fold in"
    users = np.arange(X.shape[0])
    np.testing.assert_allclose(
        _scores(fitted, users, X), _scores(fitted, None, X), rtol=1e-6, atol=1e-6
    )


# ----------------------------------------------------------------------------- run them all
def check_recommender(
    make_model: ModelFactory,
    *,
    personalized: bool = True,
    data: tuple[sp.csr_matrix, np.ndarray] | None = None,
) -> None:
    """Run every Recommender check on ``make_model`` (fitted once, with seed 0).

    Parameters
    ----------
    make_model : callable
        ``make_model(seed=...)`` returns an unfitted model; keep training short, a few epochs
        suffice on this data.
    personalized : bool
        False for models that rank every user alike (Popularity): the withheld-item check
        is left out.
    data : (X, withheld), optional
        Defaults to :func:`checkerboard`.

    Raises
    ------
    AssertionError
        At the first check that fails, naming it.
    """
    X, withheld = checkerboard() if data is None else data
    fitted = make_model(seed=0).fit(X)
    _run(_recommender_checks(make_model, fitted, X, withheld, personalized), fitted)


def _recommender_checks(
    make_model: ModelFactory,
    fitted: Recommender,
    X: sp.csr_matrix,
    withheld: np.ndarray,
    personalized: bool,
) -> list[tuple[str, Callable[[], None]]]:
    checks: list[tuple[str, Callable[[], None]]] = []
    if personalized:
        checks.append(
            (
                "withheld_item_ranks_first",
                lambda: check_withheld_item_ranks_first(fitted, X, withheld),
            )
        )
    checks += [
        (
            "batch_scores_equal_single_user_scores",
            lambda: check_batch_scores_equal_single_user_scores(fitted, X),
        ),
        (
            "save_load_gives_identical_scores",
            lambda: check_save_load_gives_identical_scores(fitted, X),
        ),
        ("exclude_seen_excludes", lambda: check_exclude_seen_excludes(fitted, X)),
        (
            "scores_are_the_callers",
            lambda: check_scores_are_the_callers(fitted, np.arange(3), X[:3]),
        ),
        ("same_seed_same_scores", lambda: check_same_seed_same_scores(make_model, X)),
        (
            "unfitted_model_raises_clear_error",
            lambda: check_unfitted_model_raises_clear_error(make_model, X),
        ),
        ("wrong_item_count_raises", lambda: check_wrong_item_count_raises(fitted, X)),
    ]
    if fitted.folds_in():
        checks.append(
            (
                "fold_in_scores_depend_only_on_history",
                lambda: check_fold_in_scores_depend_only_on_history(fitted, X),
            )
        )
    return checks

"""Conformance suites for :class:`~genrec.models.base.Recommender` implementations.

Every model of genrec passes these checks, and so can yours. They need no test runner: each
check is a plain function that raises :class:`AssertionError` (with a message saying what
went wrong), and :func:`check_recommender` / :func:`check_rating_predictor` run them all.
For pytest or unittest, inherit a mixin and implement ``make_model``::

    from genrec.testing import RecommenderConformance

    class TestMyModel(RecommenderConformance):
        def make_model(self, seed: int = 0):
            return MyModel(n_factors=4, epochs=20, seed=seed)

The mixin's ``test_*`` methods take no arguments, so the class works under pytest as it is
and under unittest when combined with :class:`unittest.TestCase`; checks that do not apply
(fold-in for a model with per-user parameters) raise :class:`unittest.SkipTest`, which both
runners report as skipped. The model is fitted once per class and reused (``self.fitted``).

The data is a :func:`checkerboard`: user groups that like their own block of items, with one
"diagonal" item of each user withheld, which any personalized model must rank first. Rating
models run on :func:`rating_checkerboard` (5 in the block, 1 on some other items).

What is checked: the withheld item ranks first (personalized models); batch scores equal
one-user scores; save/load gives identical scores (and predictions); ``exclude_seen``
excludes exactly the seen items; the same seed gives the same scores; an unfitted model and
a wrong item count raise clear errors; fold-in models score from the history alone; and, for
rating predictors, that predictions fit the training ratings, stay in the rating range,
survive unknown users and items and refuse mismatched lengths.

Saved models are rebuilt through the registry (:data:`genrec.models.MODELS`), so a model of
your own must be registered for the save/load checks.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import unittest
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from genrec.errors import DataError, NotFittedError
from genrec.models.base import RatingPredictor, Recommender

__all__ = [
    "checkerboard",
    "rating_checkerboard",
    "RecommenderConformance",
    "RatingConformance",
    "check_recommender",
    "check_rating_predictor",
    "check_withheld_item_ranks_first",
    "check_batch_scores_equal_single_user_scores",
    "check_save_load_gives_identical_scores",
    "check_exclude_seen_excludes",
    "check_same_seed_same_scores",
    "check_unfitted_model_raises_clear_error",
    "check_wrong_item_count_raises",
    "check_fold_in_scores_depend_only_on_history",
    "check_is_rating_predictor",
    "check_predict_fits_the_training_ratings",
    "check_predictions_stay_in_the_rating_range",
    "check_unknown_users_and_items_do_not_crash",
    "check_mismatched_lengths_raise",
    "check_save_load_gives_identical_predictions",
]

ModelFactory = Callable[..., Recommender]  # make_model(seed=...) -> an unfitted model


# ----------------------------------------------------------------------------- data
def checkerboard(n_groups: int = 2, users_per_group: int = 12, items_per_group: int = 12
                 ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Users of group g like the items of block g; each user's "diagonal" item is withheld.

    User ``j`` of group ``g`` has every item of block ``g`` but item
    ``g * items_per_group + j % items_per_group``.

    Parameters
    ----------
    n_groups : int
        Number of user groups (and item blocks).
    users_per_group, items_per_group : int
        Users in each group, items in each block.

    Returns
    -------
    X : csr_matrix of float32, shape (n_groups * users_per_group, n_groups * items_per_group)
        The 0/1 training matrix.
    withheld : ndarray of int64, shape (n_users,)
        The withheld item of each user.
    """
    U, I = n_groups * users_per_group, n_groups * items_per_group
    X = np.zeros((U, I), np.float32)
    withheld = np.zeros(U, np.int64)
    for g in range(n_groups):
        for j in range(users_per_group):
            u = g * users_per_group + j
            X[u, g * items_per_group : (g + 1) * items_per_group] = 1
            withheld[u] = g * items_per_group + (j % items_per_group)
            X[u, withheld[u]] = 0
    return sp.csr_matrix(X), withheld


def rating_checkerboard(n_groups: int = 2, users_per_group: int = 12, items_per_group: int = 12
                        ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Ratings 5 in the user's block (one withheld item per user), 1 on half the other blocks.

    On all-ones implicit data a rating model has nothing to learn (every rating is 1); here
    the withheld in-block item must outrank the unseen other-block items. User ``u`` rates
    other-block item ``j`` 1 when ``u + j`` is even.

    Parameters
    ----------
    n_groups, users_per_group, items_per_group : int
        As in :func:`checkerboard`.

    Returns
    -------
    R : csr_matrix of float32, shape (n_users, n_items)
        The rating matrix (ratings 1 and 5).
    withheld : ndarray of int64, shape (n_users,)
        Each user's withheld item.
    """
    X, withheld = checkerboard(n_groups, users_per_group, items_per_group)
    R = X.toarray() * 5.0
    U, I = R.shape
    for u in range(U):
        g = u // users_per_group
        for j in range(I):
            if j // items_per_group != g and (u + j) % 2 == 0:
                R[u, j] = 1.0
    return sp.csr_matrix(R.astype(np.float32)), withheld


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _raises(exc: type[BaseException], match: str | None = None) -> Iterator[None]:
    """Assert that the block raises ``exc`` whose message contains ``match`` (re.search)."""
    try:
        yield
    except exc as e:
        if match is not None and not re.search(match, str(e)):
            raise AssertionError(f"{type(e).__name__} raised, but its message {str(e)!r} "
                                 f"does not match {match!r}") from e
        return
    raise AssertionError(f"{exc.__name__} was not raised")


def _scores(model: Recommender, users: np.ndarray | None, X: Any) -> np.ndarray:
    """``model.score(users, X)`` as a NumPy array (torch tensors moved to the CPU)."""
    s = model.score(users, X)
    if hasattr(s, "detach"):  # a torch tensor
        s = s.detach().cpu().numpy()
    return np.asarray(s)


@contextlib.contextmanager
def _folder(path: str | Path | None) -> Iterator[Path]:
    """``path``, or a temporary folder removed afterwards."""
    if path is not None:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="genrec-conformance-") as tmp:
        yield Path(tmp)


# ----------------------------------------------------------------------------- Recommender
def check_withheld_item_ranks_first(fitted: Recommender, X: sp.csr_matrix,
                                    withheld: np.ndarray) -> None:
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
    assert len(wrong) == 0, (f"{len(wrong)} of {X.shape[0]} users do not get their withheld "
                             f"item first (users {wrong[:5].tolist()}: got "
                             f"{items[wrong[:5], 0].tolist()}, withheld "
                             f"{withheld[wrong[:5]].tolist()})")


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
    single = np.vstack([_scores(fitted, users[u : u + 1], X[u]).astype(np.float64)
                        for u in range(0, X.shape[0], 5)])
    np.testing.assert_allclose(batch[::5], single, rtol=1e-5, atol=1e-5)


def check_save_load_gives_identical_scores(fitted: Recommender, X: sp.csr_matrix,
                                           path: str | Path | None = None) -> None:
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
        assert len(got) == (~Xd[u]).sum(), (f"user {u}: {len(got)} items ranked, "
                                            f"{(~Xd[u]).sum()} unseen")
    items_all, _ = fitted.recommend(users, X, k=k, exclude_seen=False)
    assert (items_all >= 0).all(), "exclude_seen=False left empty (-1) slots"


def check_same_seed_same_scores(make_model: ModelFactory, X: sp.csr_matrix,
                                seed: int = 3) -> None:
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
    assert type(fitted).folds_in, f"{type(fitted).__name__} does not fold in"
    users = np.arange(X.shape[0])
    np.testing.assert_allclose(_scores(fitted, users, X), _scores(fitted, None, X),
                               rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- RatingPredictor
def check_is_rating_predictor(fitted: Recommender) -> None:
    """The model is a :class:`~genrec.models.base.RatingPredictor`."""
    assert isinstance(fitted, RatingPredictor), f"{type(fitted).__name__} has no predict()"


def check_predict_fits_the_training_ratings(fitted: Recommender, R: sp.csr_matrix) -> None:
    """Training RMSE below 1.0 on :func:`rating_checkerboard` (the global mean gives 2.0).

    Parameters
    ----------
    fitted : RatingPredictor
    R : csr_matrix, shape (n_users, n_items)
        The ratings ``fitted`` was fitted on.
    """
    assert isinstance(fitted, RatingPredictor), f"{type(fitted).__name__} has no predict()"
    c = R.tocoo()
    pred = fitted.predict(c.row, c.col)
    assert pred.shape == (R.nnz,), f"predict returned shape {pred.shape} for {R.nnz} pairs"
    err = float(np.sqrt(np.mean((pred - c.data) ** 2)))
    assert err < 1.0, f"training RMSE {err:.3f}, not below 1.0"


def check_predictions_stay_in_the_rating_range(fitted: Recommender, R: sp.csr_matrix) -> None:
    """Every (user, item) prediction is finite and within [1, 5].

    Parameters
    ----------
    fitted : RatingPredictor
    R : csr_matrix, shape (n_users, n_items)
        Ratings from 1 to 5.
    """
    assert isinstance(fitted, RatingPredictor), f"{type(fitted).__name__} has no predict()"
    U, I = R.shape
    uu, ii = np.meshgrid(np.arange(U), np.arange(I), indexing="ij")
    pred = fitted.predict(uu.ravel(), ii.ravel())
    assert np.isfinite(pred).all(), "non-finite predictions"
    assert pred.min() >= 1.0 and pred.max() <= 5.0, (f"predictions range over "
                                                     f"[{pred.min()}, {pred.max()}]")


def check_unknown_users_and_items_do_not_crash(fitted: Recommender, R: sp.csr_matrix) -> None:
    """Index -1 and out-of-range users and items get finite fallback predictions.

    Parameters
    ----------
    fitted : RatingPredictor
    R : csr_matrix, shape (n_users, n_items)
    """
    assert isinstance(fitted, RatingPredictor), f"{type(fitted).__name__} has no predict()"
    U, I = R.shape
    pred = fitted.predict(np.array([-1, U, U + 100, 0, -1]), np.array([0, 1, -1, I, I + 7]))
    assert pred.shape == (5,), f"predict returned shape {pred.shape} for 5 pairs"
    assert np.isfinite(pred).all(), f"non-finite fallback predictions {pred}"


def check_mismatched_lengths_raise(fitted: Recommender) -> None:
    """``predict`` with 3 users and 2 items raises DataError ("users but")."""
    assert isinstance(fitted, RatingPredictor), f"{type(fitted).__name__} has no predict()"
    with _raises(DataError, match="users but"):
        fitted.predict(np.arange(3), np.arange(2))


def check_save_load_gives_identical_predictions(fitted: Recommender, R: sp.csr_matrix,
                                                path: str | Path | None = None) -> None:
    """A saved and loaded rating model predicts the same, fallbacks included.

    Parameters
    ----------
    fitted : RatingPredictor
    R : csr_matrix, shape (n_users, n_items)
    path : path, optional
        Folder to save into (a temporary one by default).
    """
    assert isinstance(fitted, RatingPredictor), f"{type(fitted).__name__} has no predict()"
    c = R.tocoo()
    with _folder(path) as folder:
        fitted.save(folder / "m")
        loaded = Recommender.load(folder / "m")
    assert isinstance(loaded, RatingPredictor), f"loaded a {type(loaded).__name__}"
    np.testing.assert_array_equal(fitted.predict(c.row, c.col), loaded.predict(c.row, c.col))
    np.testing.assert_array_equal(fitted.predict(np.array([-1, 3]), np.array([2, -1])),
                                  loaded.predict(np.array([-1, 3]), np.array([2, -1])))


# ----------------------------------------------------------------------------- run them all
def check_recommender(make_model: ModelFactory, *, personalized: bool = True,
                      data: tuple[sp.csr_matrix, np.ndarray] | None = None) -> None:
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


def _recommender_checks(make_model: ModelFactory, fitted: Recommender, X: sp.csr_matrix,
                        withheld: np.ndarray, personalized: bool
                        ) -> list[tuple[str, Callable[[], None]]]:
    checks: list[tuple[str, Callable[[], None]]] = []
    if personalized:
        checks.append(("withheld_item_ranks_first",
                       lambda: check_withheld_item_ranks_first(fitted, X, withheld)))
    checks += [
        ("batch_scores_equal_single_user_scores",
         lambda: check_batch_scores_equal_single_user_scores(fitted, X)),
        ("save_load_gives_identical_scores",
         lambda: check_save_load_gives_identical_scores(fitted, X)),
        ("exclude_seen_excludes", lambda: check_exclude_seen_excludes(fitted, X)),
        ("same_seed_same_scores", lambda: check_same_seed_same_scores(make_model, X)),
        ("unfitted_model_raises_clear_error",
         lambda: check_unfitted_model_raises_clear_error(make_model, X)),
        ("wrong_item_count_raises", lambda: check_wrong_item_count_raises(fitted, X)),
    ]
    if type(fitted).folds_in:
        checks.append(("fold_in_scores_depend_only_on_history",
                       lambda: check_fold_in_scores_depend_only_on_history(fitted, X)))
    return checks


def check_rating_predictor(make_model: ModelFactory, *, personalized: bool = True,
                           data: tuple[sp.csr_matrix, np.ndarray] | None = None) -> None:
    """The Recommender checks on :func:`rating_checkerboard`, then the rating checks.

    Parameters
    ----------
    make_model : callable
        ``make_model(seed=...)`` returns an unfitted rating model.
    personalized : bool
        As in :func:`check_recommender`.
    data : (R, withheld), optional
        Defaults to :func:`rating_checkerboard`.

    Raises
    ------
    AssertionError
        At the first check that fails, naming it.
    """
    R, withheld = rating_checkerboard() if data is None else data
    fitted = make_model(seed=0).fit(R)
    _run([
        *_recommender_checks(make_model, fitted, R, withheld, personalized),
        ("is_rating_predictor", lambda: check_is_rating_predictor(fitted)),
        ("predict_fits_the_training_ratings",
         lambda: check_predict_fits_the_training_ratings(fitted, R)),
        ("predictions_stay_in_the_rating_range",
         lambda: check_predictions_stay_in_the_rating_range(fitted, R)),
        ("unknown_users_and_items_do_not_crash",
         lambda: check_unknown_users_and_items_do_not_crash(fitted, R)),
        ("mismatched_lengths_raise", lambda: check_mismatched_lengths_raise(fitted)),
        ("save_load_gives_identical_predictions",
         lambda: check_save_load_gives_identical_predictions(fitted, R)),
    ], fitted)


def _run(checks: list[tuple[str, Callable[[], None]]], model: Recommender) -> None:
    for name, check in checks:
        try:
            check()
        except AssertionError as e:
            raise AssertionError(f"{type(model).__name__} fails check_{name}: {e}") from e


# ----------------------------------------------------------------------------- mixins
class RecommenderConformance:
    """Test-class mixin: inherit it and implement ``make_model(seed)``.

    Works under pytest as it is (name the class ``Test...``) and under unittest combined
    with :class:`unittest.TestCase`. The model is fitted once per class, with seed 0, on
    :meth:`make_data`.

    Attributes
    ----------
    personalized : bool
        Set False for models that rank every user alike (the withheld-item check is
        skipped).
    data : (X, withheld)
        :meth:`make_data`'s matrix and withheld items, built once per class.
    fitted : Recommender
        ``make_model(seed=0).fit(X)``, built once per class.
    """

    personalized: ClassVar[bool] = True
    _conformance_cache: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._conformance_cache = {}  # one per test class, like a class-scoped fixture

    def make_model(self, seed: int = 0) -> Recommender:  # pragma: no cover - abstract
        """An unfitted model; keep training short (a few epochs suffice on this data)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_model(seed)")

    def make_data(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The training matrix and withheld items: :func:`checkerboard`."""
        return checkerboard()

    @property
    def data(self) -> tuple[sp.csr_matrix, np.ndarray]:
        cache = type(self)._conformance_cache
        if "data" not in cache:
            cache["data"] = self.make_data()
        return cache["data"]

    @property
    def fitted(self) -> Recommender:
        cache = type(self)._conformance_cache
        if "fitted" not in cache:
            cache["fitted"] = self.make_model(seed=0).fit(self.data[0])
        return cache["fitted"]

    def test_withheld_item_ranks_first(self) -> None:
        if not self.personalized:
            raise unittest.SkipTest("model is not personalized")
        X, withheld = self.data
        check_withheld_item_ranks_first(self.fitted, X, withheld)

    def test_batch_scores_equal_single_user_scores(self) -> None:
        check_batch_scores_equal_single_user_scores(self.fitted, self.data[0])

    def test_save_load_gives_identical_scores(self) -> None:
        check_save_load_gives_identical_scores(self.fitted, self.data[0])

    def test_exclude_seen_excludes(self) -> None:
        check_exclude_seen_excludes(self.fitted, self.data[0])

    def test_same_seed_same_scores(self) -> None:
        check_same_seed_same_scores(self.make_model, self.data[0])

    def test_unfitted_model_raises_clear_error(self) -> None:
        check_unfitted_model_raises_clear_error(self.make_model, self.data[0])

    def test_wrong_item_count_raises(self) -> None:
        check_wrong_item_count_raises(self.fitted, self.data[0])

    def test_fold_in_scores_depend_only_on_history(self) -> None:
        if not type(self.fitted).folds_in:
            raise unittest.SkipTest("model does not fold in")
        check_fold_in_scores_depend_only_on_history(self.fitted, self.data[0])


class RatingConformance(RecommenderConformance):
    """The Recommender mixin on :func:`rating_checkerboard`, plus the rating checks."""

    def make_data(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The rating matrix and withheld items: :func:`rating_checkerboard`."""
        return rating_checkerboard()

    def test_is_rating_predictor(self) -> None:
        check_is_rating_predictor(self.fitted)

    def test_predict_fits_the_training_ratings(self) -> None:
        check_predict_fits_the_training_ratings(self.fitted, self.data[0])

    def test_predictions_stay_in_the_rating_range(self) -> None:
        check_predictions_stay_in_the_rating_range(self.fitted, self.data[0])

    def test_unknown_users_and_items_do_not_crash(self) -> None:
        check_unknown_users_and_items_do_not_crash(self.fitted, self.data[0])

    def test_mismatched_lengths_raise(self) -> None:
        check_mismatched_lengths_raise(self.fitted)

    def test_save_load_gives_identical_predictions(self) -> None:
        check_save_load_gives_identical_predictions(self.fitted, self.data[0])

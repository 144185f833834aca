"""Test-class mixins: :class:`RecommenderConformance` and :class:`RatingConformance`."""

from __future__ import annotations

import unittest
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from genrec.models.base import Recommender
from genrec.testing.data import (
    checkerboard,
    rating_checkerboard,
)
from genrec.testing.ranking import (
    check_batch_scores_equal_single_user_scores,
    check_exclude_seen_excludes,
    check_fold_in_scores_depend_only_on_history,
    check_same_seed_same_scores,
    check_save_load_gives_identical_scores,
    check_unfitted_model_raises_clear_error,
    check_withheld_item_ranks_first,
    check_wrong_item_count_raises,
)
from genrec.testing.rating import (
    check_is_rating_predictor,
    check_mismatched_lengths_raise,
    check_predict_fits_the_training_ratings,
    check_predictions_stay_in_the_rating_range,
    check_save_load_gives_identical_predictions,
    check_unknown_users_and_items_do_not_crash,
)


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
        if not self.fitted.folds_in():
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

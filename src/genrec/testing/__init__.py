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

Sequential models (``capabilities.sequential``) run :func:`check_sequential_recommender`
on :func:`cycles` instead: users walking cycles of items, whose next item any sequential
model must rank first; it also checks that order matters, that a matrix (no order) is
refused with a message saying how to build sequences, and that an empty history scores.

Saved models are rebuilt through the registry (:data:`genrec.models.MODELS`), so a model of
your own must be registered for the save/load checks.
"""

from __future__ import annotations

from genrec.testing._helpers import ModelFactory as ModelFactory
from genrec.testing._helpers import _folder as _folder
from genrec.testing._helpers import _raises as _raises
from genrec.testing._helpers import _run as _run
from genrec.testing._helpers import _scores as _scores
from genrec.testing._helpers import check_scores_are_the_callers
from genrec.testing.conformance import RatingConformance, RecommenderConformance
from genrec.testing.data import checkerboard, in_random_order, rating_checkerboard
from genrec.testing.ranking import _recommender_checks as _recommender_checks
from genrec.testing.ranking import (
    check_batch_scores_equal_single_user_scores,
    check_exclude_seen_excludes,
    check_fold_in_scores_depend_only_on_history,
    check_recommender,
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
    check_rating_predictor,
    check_save_load_gives_identical_predictions,
    check_unknown_users_and_items_do_not_crash,
)
from genrec.testing.sequential import (
    check_next_item_ranks_first,
    check_order_matters,
    check_sequential_recommender,
    cycles,
)

__all__ = [
    "checkerboard",
    "rating_checkerboard",
    "in_random_order",
    "RecommenderConformance",
    "RatingConformance",
    "check_recommender",
    "check_rating_predictor",
    "check_withheld_item_ranks_first",
    "check_batch_scores_equal_single_user_scores",
    "check_save_load_gives_identical_scores",
    "check_exclude_seen_excludes",
    "check_scores_are_the_callers",
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
    "cycles",
    "check_sequential_recommender",
    "check_next_item_ranks_first",
    "check_order_matters",
]

"""genrec.testing catches models that break the contract, and runs under unittest too."""

from __future__ import annotations

import io
import unittest

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.models import EASE, BiasedMF, Popularity
from genrec.testing import (
    RecommenderConformance,
    _raises,
    check_exclude_seen_excludes,
    check_predictions_stay_in_the_rating_range,
    check_rating_predictor,
    check_recommender,
    check_same_seed_same_scores,
    check_scores_are_the_callers,
    check_unfitted_model_raises_clear_error,
    check_withheld_item_ranks_first,
    checkerboard,
    rating_checkerboard,
)


class _ReversedEASE(EASE):
    """Scores in reverse item order: the withheld item is no longer on top."""

    def score(self, users, X_users):
        return np.ascontiguousarray(np.asarray(super().score(users, X_users))[:, ::-1])


class _UnseededEASE(EASE):
    """Adds noise from a generator that ignores the seed."""

    def score(self, users, X_users):
        s = np.asarray(super().score(users, X_users))
        return s + np.random.default_rng().random(s.shape).astype(np.float32)


class _SeenIncludedEASE(EASE):
    """``recommend`` that forgets to leave out the seen items."""

    def recommend(self, users, X_users, k=10, exclude_seen=True, exclude=None):
        return super().recommend(users, X_users, k=k, exclude_seen=False)


class _EagerPopularity(Popularity):
    """A model that claims to be fitted before ``fit``."""

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.n_items_ = 24
        self.item_scores_ = np.zeros(24)


class _CachingPopularity(Popularity):
    """Returns the array it keeps: the evaluator's masking would write into the model."""

    def score(self, users, X_users):
        users, X = self._check_users(users, X_users)
        if getattr(self, "cache_", None) is None or len(self.cache_) != X.shape[0]:
            self.cache_ = np.tile(self.item_scores_, (X.shape[0], 1))
        return self.cache_


class _ViewPopularity(Popularity):
    """Returns a read-only broadcast view of its item scores."""

    def score(self, users, X_users):
        users, X = self._check_users(users, X_users)
        return np.broadcast_to(self.item_scores_, (X.shape[0], self.n_items_))


class _OvershootingMF(BiasedMF):
    """Predictions one above the rating scale."""

    def predict(self, users, items):
        return super().predict(users, items) + 1.0


def test_checkerboard_layout():
    X, withheld = checkerboard()
    assert X.shape == (24, 24) and X.nnz == 24 * 11
    assert (X.toarray()[np.arange(24), withheld] == 0).all()
    assert withheld.tolist()[:3] == [0, 1, 2] and withheld[12] == 12
    R, w = rating_checkerboard()
    assert set(np.unique(R.data)) == {1.0, 5.0} and (w == withheld).all()
    assert (R.toarray()[:12, :12] > 0).sum() == 12 * 11  # the own block, less the diagonal


def test_a_good_model_passes():
    check_recommender(lambda seed=0: EASE(l2=1.0, seed=seed))


def test_withheld_item_check_catches_a_wrong_ranking():
    X, withheld = checkerboard()
    with pytest.raises(AssertionError, match="24 of 24 users do not get their withheld item"):
        check_withheld_item_ranks_first(_ReversedEASE(l2=1.0).fit(X), X, withheld)
    with pytest.raises(AssertionError, match="_ReversedEASE fails check_withheld_item_ranks"):
        check_recommender(lambda seed=0: _ReversedEASE(l2=1.0, seed=seed))


def test_same_seed_check_catches_hidden_randomness():
    X, _ = checkerboard()
    with pytest.raises(AssertionError):
        check_same_seed_same_scores(lambda seed=0: _UnseededEASE(l2=1.0, seed=seed), X)


def test_exclude_seen_check_catches_seen_items():
    X, _ = checkerboard()
    with pytest.raises(AssertionError, match="seen items"):
        check_exclude_seen_excludes(_SeenIncludedEASE(l2=1.0).fit(X), X)


def test_scores_check_catches_a_model_that_returns_memory_it_keeps():
    X, _ = checkerboard()
    users = np.arange(3)
    check_scores_are_the_callers(Popularity().fit(X), users, X[:3])
    with pytest.raises(AssertionError, match="must return new memory"):
        check_scores_are_the_callers(_CachingPopularity().fit(X), users, X[:3])
    with pytest.raises(AssertionError, match="read-only"):
        check_scores_are_the_callers(_ViewPopularity().fit(X), users, X[:3])


def test_unfitted_check_catches_a_model_that_looks_fitted():
    X, _ = checkerboard()
    with pytest.raises(AssertionError, match="NotFittedError was not raised"):
        check_unfitted_model_raises_clear_error(lambda seed=0: _EagerPopularity(seed=seed), X)


def test_rating_checks():
    check_rating_predictor(
        lambda seed=0: BiasedMF(
            n_factors=4,
            solver="als",
            l2=0.05,
            l2_bias=0.05,
            train={"epochs": 10, "seed": seed, "device": "cpu"},
        )
    )
    R, _ = rating_checkerboard()
    with pytest.raises(AssertionError, match="predictions range over"):
        check_predictions_stay_in_the_rating_range(
            _OvershootingMF(n_factors=2, solver="als", train={"epochs": 2}).fit(R), R
        )
    with pytest.raises(AssertionError, match="has no predict"):
        check_rating_predictor(lambda seed=0: EASE(l2=1.0, seed=seed))


def test_raises_helper():
    with _raises(ValueError, match="b+"):
        raise ValueError("abbc")
    with pytest.raises(AssertionError, match="was not raised"):
        with _raises(ValueError):
            pass
    with pytest.raises(AssertionError, match="does not match"):
        with _raises(ValueError, match="^z"):
            raise ValueError("abc")
    with pytest.raises(KeyError):  # another exception passes through
        with _raises(ValueError):
            raise KeyError("k")


def test_mixin_runs_under_unittest():
    class Case(RecommenderConformance, unittest.TestCase):
        def make_model(self, seed=0):
            return EASE(l2=1.0, seed=seed)

    class BrokenCase(RecommenderConformance, unittest.TestCase):
        def make_model(self, seed=0):
            return _ReversedEASE(l2=1.0, seed=seed)

    loader = unittest.TestLoader()
    ok = unittest.TextTestRunner(stream=io.StringIO()).run(loader.loadTestsFromTestCase(Case))
    assert ok.testsRun == 8 and ok.wasSuccessful() and not ok.skipped
    bad = unittest.TextTestRunner(stream=io.StringIO()).run(
        loader.loadTestsFromTestCase(BrokenCase)
    )
    failed = [t.id().rsplit(".", 1)[-1] for t, _ in bad.failures]
    assert "test_withheld_item_ranks_first" in failed
    assert Case._conformance_cache is not BrokenCase._conformance_cache  # fitted per class
    assert isinstance(Case._conformance_cache["fitted"], EASE)


def test_mixin_skips_what_does_not_apply():
    class Mf(RecommenderConformance, unittest.TestCase):
        personalized = False

        def make_model(self, seed=0):
            return BiasedMF(
                n_factors=2, solver="als", train={"epochs": 2, "seed": seed, "device": "cpu"}
            )

        def make_data(self):
            R, w = rating_checkerboard()
            return sp.csr_matrix(R), w

    result = unittest.TextTestRunner(stream=io.StringIO()).run(
        unittest.TestLoader().loadTestsFromTestCase(Mf)
    )
    skipped = sorted(t.id().rsplit(".", 1)[-1] for t, _ in result.skipped)
    assert skipped == [
        "test_fold_in_scores_depend_only_on_history",
        "test_withheld_item_ranks_first",
    ]
    assert result.wasSuccessful()

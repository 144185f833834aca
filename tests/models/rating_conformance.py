"""Conformance for rating models: the Recommender suite on rated data, plus RatingPredictor checks.

On all-ones implicit data a rating model has nothing to learn (every rating is 1), so the
suite runs on :func:`rating_checkerboard`: users love (5) their own block and dislike (1)
half of the other block. The withheld in-block item must then outrank the unseen other-block
items.

Usage::

    class TestBiasedMF(RatingConformance):
        def make_model(self, seed=0):
            return BiasedMF(n_factors=4, seed=seed)
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.models.base import RatingPredictor, Recommender
from tests.models.conformance import RecommenderConformance, checkerboard


def rating_checkerboard(n_groups: int = 2, users_per_group: int = 12, items_per_group: int = 12
                        ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Ratings 5 in the user's block (one withheld item per user), 1 on half the other blocks.

    Returns the (U, I) rating matrix and each user's withheld item (U,).
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


class RatingConformance(RecommenderConformance):
    """The Recommender suite on rated data, plus prediction checks every rating model meets."""

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        return rating_checkerboard()

    def test_is_rating_predictor(self, fitted):
        assert isinstance(fitted, RatingPredictor)

    def test_predict_fits_the_training_ratings(self, fitted, data):
        X, _ = data
        c = X.tocoo()
        pred = fitted.predict(c.row, c.col)
        assert pred.shape == (X.nnz,)
        assert np.sqrt(np.mean((pred - c.data) ** 2)) < 1.0  # vs 2.0 for the global mean

    def test_predictions_stay_in_the_rating_range(self, fitted, data):
        X, _ = data
        U, I = X.shape
        uu, ii = np.meshgrid(np.arange(U), np.arange(I), indexing="ij")
        pred = fitted.predict(uu.ravel(), ii.ravel())
        assert np.isfinite(pred).all()
        assert pred.min() >= 1.0 and pred.max() <= 5.0

    def test_unknown_users_and_items_do_not_crash(self, fitted, data):
        X, _ = data
        U, I = X.shape
        pred = fitted.predict(np.array([-1, U, U + 100, 0, -1]), np.array([0, 1, -1, I, I + 7]))
        assert pred.shape == (5,)
        assert np.isfinite(pred).all()

    def test_mismatched_lengths_raise(self, fitted):
        from genrec.errors import DataError

        with pytest.raises(DataError, match="users but"):
            fitted.predict(np.arange(3), np.arange(2))

    def test_save_load_gives_identical_predictions(self, fitted, data, tmp_path):
        X, _ = data
        c = X.tocoo()
        fitted.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        np.testing.assert_array_equal(fitted.predict(c.row, c.col),
                                      loaded.predict(c.row, c.col))
        np.testing.assert_array_equal(fitted.predict(np.array([-1, 3]), np.array([2, -1])),
                                      loaded.predict(np.array([-1, 3]), np.array([2, -1])))

"""The shared conformance suite every Recommender inherits.

Usage, in ``tests/models/test_<model>.py``::

    class TestEASE(RecommenderConformance):
        def make_model(self, seed: int = 0):
            return EASE(l2=1.0, seed=seed)

Override ``personalized = False`` for models that rank every user alike (Popularity),
and ``make_model`` so that training is short (a few epochs suffice on this tiny data).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.errors import DataError, NotFittedError
from genrec.models.base import Recommender


def checkerboard(n_groups: int = 2, users_per_group: int = 12, items_per_group: int = 12,
                 ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Users of group g like the items of block g; user u's own "diagonal" item is withheld.

    Returns the (U, I) training matrix and the withheld item of each user (U,).
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


class RecommenderConformance:
    """Inherit and implement ``make_model``."""

    personalized = True

    def make_model(self, seed: int = 0) -> Recommender:  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        return checkerboard()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data):
        X, _ = data
        return cls().make_model(seed=0).fit(X)

    def test_withheld_item_ranks_first(self, fitted, data):
        if not self.personalized:
            pytest.skip("model is not personalized")
        X, withheld = data
        items, _ = fitted.recommend(np.arange(X.shape[0]), X, k=1)
        assert (items[:, 0] == withheld).mean() == 1.0

    def test_batch_scores_equal_single_user_scores(self, fitted, data):
        X, _ = data
        users = np.arange(X.shape[0])
        batch = np.asarray(fitted.score(users, X), dtype=np.float64)
        single = np.vstack([np.asarray(fitted.score(users[u : u + 1], X[u]), dtype=np.float64)
                            for u in range(0, X.shape[0], 5)])
        np.testing.assert_allclose(batch[::5], single, rtol=1e-5, atol=1e-5)

    def test_save_load_gives_identical_scores(self, fitted, data, tmp_path):
        X, _ = data
        users = np.arange(X.shape[0])
        fitted.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        np.testing.assert_array_equal(np.asarray(fitted.score(users, X)),
                                      np.asarray(loaded.score(users, X)))

    def test_exclude_seen_excludes(self, fitted, data):
        X, _ = data
        users = np.arange(X.shape[0])
        k = X.shape[1]
        items, scores = fitted.recommend(users, X, k=k)
        Xd = X.toarray() > 0
        for u in range(X.shape[0]):
            got = items[u][items[u] >= 0]
            assert not Xd[u, got].any()
            assert len(got) == (~Xd[u]).sum()  # everything unseen is ranked, nothing else
        items_all, _ = fitted.recommend(users, X, k=k, exclude_seen=False)
        assert (items_all >= 0).all()

    def test_same_seed_same_scores(self, data):
        X, _ = data
        users = np.arange(X.shape[0])
        a = np.asarray(self.make_model(seed=3).fit(X).score(users, X))
        b = np.asarray(self.make_model(seed=3).fit(X).score(users, X))
        np.testing.assert_array_equal(a, b)

    def test_unfitted_model_raises_clear_error(self, data):
        X, _ = data
        model = self.make_model()
        with pytest.raises(NotFittedError, match="not fitted"):
            model.score(np.arange(2), X[:2])
        with pytest.raises(NotFittedError):
            model.save("/nonexistent/never-written")

    def test_wrong_item_count_raises(self, fitted, data):
        X, _ = data
        with pytest.raises(DataError, match="item columns"):
            fitted.score(np.arange(2), sp.csr_matrix((2, X.shape[1] + 1), dtype=np.float32))

    def test_fold_in_scores_depend_only_on_history(self, fitted, data):
        if not type(fitted).capabilities.folds_in:
            pytest.skip("model does not fold in")
        X, _ = data
        users = np.arange(X.shape[0])
        np.testing.assert_allclose(np.asarray(fitted.score(users, X)),
                                   np.asarray(fitted.score(None, X)), rtol=1e-6, atol=1e-6)

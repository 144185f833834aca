"""The checks every RatingPredictor passes, and :func:`check_rating_predictor` running
them after the Recommender checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from genrec.errors import DataError
from genrec.models.base import RatingPredictor, Recommender
from genrec.testing._helpers import (
    ModelFactory,
    _folder,
    _raises,
    _run,
)
from genrec.testing.data import rating_checkerboard
from genrec.testing.ranking import _recommender_checks


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
    assert pred.min() >= 1.0 and pred.max() <= 5.0, (
        f"predictions range over [{pred.min()}, {pred.max()}]"
    )


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


def check_save_load_gives_identical_predictions(
    fitted: Recommender, R: sp.csr_matrix, path: str | Path | None = None
) -> None:
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
    np.testing.assert_array_equal(
        fitted.predict(np.array([-1, 3]), np.array([2, -1])),
        loaded.predict(np.array([-1, 3]), np.array([2, -1])),
    )


def check_rating_predictor(
    make_model: ModelFactory,
    *,
    personalized: bool = True,
    data: tuple[sp.csr_matrix, np.ndarray] | None = None,
) -> None:
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
    _run(
        [
            *_recommender_checks(make_model, fitted, R, withheld, personalized),
            ("is_rating_predictor", lambda: check_is_rating_predictor(fitted)),
            (
                "predict_fits_the_training_ratings",
                lambda: check_predict_fits_the_training_ratings(fitted, R),
            ),
            (
                "predictions_stay_in_the_rating_range",
                lambda: check_predictions_stay_in_the_rating_range(fitted, R),
            ),
            (
                "unknown_users_and_items_do_not_crash",
                lambda: check_unknown_users_and_items_do_not_crash(fitted, R),
            ),
            ("mismatched_lengths_raise", lambda: check_mismatched_lengths_raise(fitted)),
            (
                "save_load_gives_identical_predictions",
                lambda: check_save_load_gives_identical_predictions(fitted, R),
            ),
        ],
        fitted,
    )

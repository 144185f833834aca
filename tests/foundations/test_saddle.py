"""Saddle detection of mixture fits: the Bhattacharyya coefficient against integration, the
copy groups, the split, and fits that do and do not stop at a saddle."""

import numpy as np
import pytest
from scipy import integrate, stats

from genrec.foundations import BayesianGaussianMixture, GaussianMixture
from genrec.foundations.saddle import (
    Saddle,
    bhattacharyya_coefficient,
    copy_groups,
    find_saddle,
    split_responsibilities,
)


def _two_blobs(n=100, gap=3.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(-gap, 1.0, (n, 2)), rng.normal(gap, 1.0, (n, 2))])


@pytest.mark.parametrize(("m1", "s1", "m2", "s2"), [(0.0, 1.0, 0.0, 1.0), (0.3, 0.7, -1.1, 2.0)])
def test_bhattacharyya_coefficient_1d_matches_quadrature(m1, s1, m2, s2):
    value, _ = integrate.quad(
        lambda x: np.sqrt(stats.norm.pdf(x, m1, s1) * stats.norm.pdf(x, m2, s2)), -40, 40
    )
    got = bhattacharyya_coefficient(np.array([m1]), np.array([[s1**2]]), [m2], [[s2**2]])
    assert got == pytest.approx(value, rel=1e-8)


def test_bhattacharyya_coefficient_2d_matches_a_grid_sum():
    ma, ca = np.array([0.5, -0.2]), np.array([[1.0, 0.4], [0.4, 0.8]])
    mb, cb = np.array([-0.3, 0.6]), np.array([[0.6, -0.1], [-0.1, 1.5]])
    grid = np.linspace(-9, 9, 901)
    xx, yy = np.meshgrid(grid, grid)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    pa = stats.multivariate_normal(ma, ca).pdf(pts)
    pb = stats.multivariate_normal(mb, cb).pdf(pts)
    brute = np.sum(np.sqrt(pa * pb)) * (grid[1] - grid[0]) ** 2
    assert bhattacharyya_coefficient(ma, ca, mb, cb) == pytest.approx(brute, rel=1e-6)
    assert bhattacharyya_coefficient(ma, ca, ma, ca) == pytest.approx(1.0, abs=1e-15)


def test_copy_groups_join_transitively_and_leave_out_emptied_components():
    cov = np.broadcast_to(np.eye(2), (5, 2, 2))
    means = np.array([[0.0, 0.0], [0.05, 0.0], [0.1, 0.0], [5.0, 5.0], [0.0, 0.02]])
    weights = np.array([0.3, 0.3, 0.2, 0.195, 0.005])  # component 4 is emptied
    groups, smallest = copy_groups(weights, means, cov)
    assert groups == ((0, 1, 2),)
    assert smallest == pytest.approx(np.exp(-(0.1**2) / 8), rel=1e-12)  # the 0-2 pair


def test_copy_groups_with_a_strict_overlap_keep_only_the_close_pairs():
    cov = np.broadcast_to(np.eye(2), (3, 2, 2))
    means = np.array([[0.0, 0.0], [0.05, 0.0], [0.5, 0.0]])
    groups, _ = copy_groups(np.full(3, 1 / 3), means, cov, overlap=0.999)
    assert groups == ((0, 1),)  # exp(-0.05^2/8) >= 0.999 > exp(-0.45^2/8)


def test_split_responsibilities_cuts_the_group_mass_along_its_axis():
    X = np.column_stack([np.arange(10.0), np.zeros(10)])  # principal axis: feature 0
    resp = np.column_stack([np.full(10, 0.4), np.full(10, 0.4), np.full(10, 0.2)])
    out = split_responsibilities(X, resp, ((0, 1),))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_array_equal(out[:, 2], resp[:, 2])  # outside the group: untouched
    left, right = out[:, 0] > 0, out[:, 1] > 0
    assert left.sum() == right.sum() == 5 and not np.any(left & right)
    # one slice holds the points below the median along feature 0, the other those above
    assert {tuple(np.flatnonzero(left)), tuple(np.flatnonzero(right))} == {
        (0, 1, 2, 3, 4),
        (5, 6, 7, 8, 9),
    }


def test_a_constructed_em_saddle_is_found():
    X = _two_blobs()
    gm = GaussianMixture(2, resp_init=np.full((len(X), 2), 0.5)).fit(X)
    assert gm.converged_  # EM cannot leave the symmetric point: it reports convergence
    np.testing.assert_allclose(gm.means_[0], gm.means_[1])
    saddle = find_saddle(gm, X)
    assert isinstance(saddle, Saddle) and saddle.groups == ((0, 1),)
    assert saddle.bound == gm.lower_bound_
    assert saddle.split_bound > gm.lower_bound_ + 0.5  # the two blobs, found by the split
    assert "saddle" in saddle.message() and "n_init" in saddle.message()


def test_a_constructed_cavi_saddle_is_found():
    X = _two_blobs()
    vb = BayesianGaussianMixture(
        2,
        weight_concentration_prior_type="dirichlet_distribution",  # symmetric in k
        resp_init=np.full((len(X), 2), 0.5),
    ).fit(X)
    assert vb.converged_
    np.testing.assert_allclose(vb.means_[0], vb.means_[1])
    saddle = find_saddle(vb, X)
    assert saddle is not None and saddle.split_bound > vb.lower_bound_ + 10.0


def test_a_k_means_plus_plus_fit_of_separated_blobs_is_no_saddle():
    X = _two_blobs()
    assert find_saddle(GaussianMixture(2, random_state=0).fit(X), X) is None


def test_copies_that_splitting_does_not_improve_are_no_saddle():
    X = np.random.default_rng(1).normal(size=(5000, 2))  # one Gaussian: two copies fit it
    gm = GaussianMixture(2, resp_init=np.full((5000, 2), 0.5)).fit(X)
    assert copy_groups(gm.weights_, gm.means_, gm.covariances_)[0] == ((0, 1),)
    assert find_saddle(gm, X) is None

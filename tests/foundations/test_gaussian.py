"""Unit tests of the Gaussian building blocks against scipy / numpy / scikit-learn."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp as scipy_logsumexp
from sklearn.mixture import _gaussian_mixture as skgm

from genrec.foundations.gaussian import (
    COVARIANCE_TYPES,
    DegenerateCovarianceError,
    compute_precision_cholesky,
    covariances_from_precision_cholesky,
    estimate_gaussian_parameters,
    estimate_log_resp,
    log_det_cholesky,
    log_gaussian_prob,
    logsumexp,
    n_covariance_parameters,
    precision_cholesky_from_precisions,
    precisions_from_precision_cholesky,
)


def random_spd(rng, d, scale=1.0):
    A = rng.normal(size=(d, d))
    return scale * (A @ A.T / d + 0.5 * np.eye(d))


def random_covariances(rng, covariance_type, K, d):
    if covariance_type == "full":
        return np.stack([random_spd(rng, d) for _ in range(K)])
    if covariance_type == "tied":
        return random_spd(rng, d)
    if covariance_type == "diag":
        return rng.uniform(0.3, 2.0, size=(K, d))
    return rng.uniform(0.3, 2.0, size=K)


def as_full(cov, covariance_type, K, d):
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (K, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_gaussian_prob_matches_scipy(covariance_type):
    rng = np.random.default_rng(0)
    # n = 600 spans several E-step blocks (block size 256) including a partial one.
    n, d, K = 600, 3, 4
    X = rng.normal(size=(n, d)) * 2
    means = rng.normal(size=(K, d))
    cov = random_covariances(rng, covariance_type, K, d)
    chol = compute_precision_cholesky(cov, covariance_type)
    got = log_gaussian_prob(X, means, chol, covariance_type)
    full = as_full(cov, covariance_type, K, d)
    expected = np.column_stack(
        [stats.multivariate_normal(means[k], full[k]).logpdf(X) for k in range(K)]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_cholesky_factorises_the_inverse(covariance_type):
    rng = np.random.default_rng(1)
    K, d = 3, 4
    cov = random_covariances(rng, covariance_type, K, d)
    chol = compute_precision_cholesky(cov, covariance_type)
    prec = precisions_from_precision_cholesky(chol, covariance_type)
    full_cov = as_full(cov, covariance_type, K, d)
    full_prec = as_full(prec, covariance_type, K, d)
    for k in range(K):
        np.testing.assert_allclose(full_prec[k] @ full_cov[k], np.eye(d), atol=1e-10)
    if covariance_type in ("full", "tied"):
        stack = chol if covariance_type == "full" else chol[None]
        for u in stack:  # upper triangular with positive diagonal
            np.testing.assert_array_equal(np.tril(u, -1), 0.0)
            assert np.all(np.diag(u) > 0)
    # precisions -> factor gives the same (unique) factor; factor -> covariances round-trips
    np.testing.assert_allclose(
        precision_cholesky_from_precisions(prec, covariance_type), chol, rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        covariances_from_precision_cholesky(chol, covariance_type), cov, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_det_cholesky_is_half_log_det_precision(covariance_type):
    rng = np.random.default_rng(2)
    K, d = 3, 3
    cov = random_covariances(rng, covariance_type, K, d)
    chol = compute_precision_cholesky(cov, covariance_type)
    got = np.broadcast_to(log_det_cholesky(chol, covariance_type, d), (K,))
    full_cov = as_full(cov, covariance_type, K, d)
    expected = [-0.5 * np.linalg.slogdet(c)[1] for c in full_cov]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_estimate_gaussian_parameters(covariance_type):
    rng = np.random.default_rng(3)
    n, d, K = 200, 3, 3
    X = rng.normal(size=(n, d)) + 5.0
    resp = rng.dirichlet(np.ones(K), size=n)
    reg = 1e-3
    nk, means, covs = estimate_gaussian_parameters(X, resp, reg, covariance_type)
    np.testing.assert_allclose(nk, resp.sum(0), rtol=1e-12)
    np.testing.assert_allclose(means, (resp.T @ X) / resp.sum(0)[:, None], rtol=1e-12)
    # weighted covariance by numpy (bias=True gives the 1/N_k normalisation)
    full = np.stack([np.cov(X.T, aweights=resp[:, k], bias=True) for k in range(K)])
    if covariance_type == "full":
        expected = full + reg * np.eye(d)
    elif covariance_type == "tied":
        expected = np.einsum("k,kij->ij", nk, full) / nk.sum() + reg * np.eye(d)
    elif covariance_type == "diag":
        expected = np.diagonal(full, axis1=1, axis2=2) + reg
    else:
        expected = np.diagonal(full, axis1=1, axis2=2).mean(1) + reg
    np.testing.assert_allclose(covs, expected, rtol=1e-10, atol=1e-12)
    # and the same as scikit-learn's private estimator
    _, _, sk_covs = skgm._estimate_gaussian_parameters(X, resp, reg, covariance_type)
    np.testing.assert_allclose(covs, sk_covs, rtol=1e-9, atol=1e-12)


def test_estimate_gaussian_parameters_empty_component_is_finite():
    X = np.random.default_rng(4).normal(size=(20, 2))
    resp = np.zeros((20, 2))
    resp[:, 0] = 1.0
    nk, means, covs = estimate_gaussian_parameters(X, resp, 1e-6, "full")
    assert np.all(np.isfinite(means)) and np.all(np.isfinite(covs))
    assert nk[1] > 0
    np.testing.assert_allclose(covs[1], 1e-6 * np.eye(2))
    compute_precision_cholesky(covs, "full")  # the floor keeps it positive definite


def test_logsumexp_and_log_resp():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(50, 4)) * 300  # large magnitudes: naive exp would overflow
    np.testing.assert_allclose(logsumexp(a, axis=1), scipy_logsumexp(a, axis=1), rtol=1e-14)
    norm, log_resp = estimate_log_resp(a)
    np.testing.assert_allclose(np.exp(log_resp).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(log_resp, a - scipy_logsumexp(a, axis=1, keepdims=True), atol=1e-12)
    # a component with zero weight (log weight -inf) gets zero responsibility, no NaN
    b = a.copy()
    b[:, 2] = -np.inf
    _, lr = estimate_log_resp(b)
    assert np.all(np.exp(lr[:, 2]) == 0) and not np.any(np.isnan(lr))
    assert logsumexp(np.full((1, 3), -np.inf), axis=1)[0] == -np.inf


def test_degenerate_covariance_error_says_what_to_change():
    cov = np.stack([np.eye(2), np.zeros((2, 2))])
    with pytest.raises(DegenerateCovarianceError, match=r"component 1.*reg_covar \(now 0\)"):
        compute_precision_cholesky(cov, "full", reg_covar=0.0)
    with pytest.raises(DegenerateCovarianceError, match="tied covariance"):
        compute_precision_cholesky(np.zeros((2, 2)), "tied")
    with pytest.raises(DegenerateCovarianceError, match="component 0"):
        compute_precision_cholesky(np.array([[0.0, 1.0]]), "diag")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        compute_precision_cholesky(np.eye(2), "banana")


def test_degenerate_covariance_error_is_a_genrec_error_and_still_a_value_error():
    from genrec.errors import GenrecError

    cov = np.stack([np.eye(2), np.zeros((2, 2))])
    for caught in (GenrecError, ValueError):  # the CLI's one-line handler, and older callers
        with pytest.raises(caught) as info:
            compute_precision_cholesky(cov, "full", reg_covar=0.0)
        assert type(info.value) is DegenerateCovarianceError
        assert "\n" not in str(info.value)  # one line, as the CLI prints it


def test_n_covariance_parameters_matches_sklearn():
    for covariance_type in COVARIANCE_TYPES:
        sk = skgm.GaussianMixture(n_components=4, covariance_type=covariance_type)
        sk.means_ = np.zeros((4, 5))
        ours = n_covariance_parameters(covariance_type, 4, 5) + 4 * 5 + 3
        assert ours == sk._n_parameters()


def test_a_degenerate_covariance_is_the_one_numerical_failure_type():
    # issue 28, defect 9: one error type for divergence and ill-conditioning
    from genrec.errors import DivergenceError

    with pytest.raises(DivergenceError, match="reg_covar"):
        compute_precision_cholesky(np.zeros((1, 2, 2)), "full", reg_covar=0.0)

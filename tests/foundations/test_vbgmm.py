"""BayesianGaussianMixture (CAVI): full ELBO, monotonicity, scikit-learn agreement, pruning."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import digamma
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture

from genrec.foundations import BayesianGaussianMixture, ConvergenceWarning
from genrec.foundations.elbo import elbo, kl_beta, kl_dirichlet
from genrec.foundations.gaussian import estimate_gaussian_parameters
from genrec.foundations.synthetic import make_gaussian_mixture
from genrec.foundations.vbgmm import (
    WEIGHT_PRIOR_TYPES,
    estimate_normal_wishart,
    estimate_weight_concentration,
    expected_log_gaussian,
    expected_log_weights,
    expected_weights,
    kl_weights,
    sklearn_lower_bound_offset,
    variational_elbo,
)


def quiet_fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkConvergenceWarning)
        return model.fit(X)


@pytest.fixture(scope="module")
def blobs():
    return make_gaussian_mixture(450, 3, 2, separation=4.0, random_state=0)


def sklearn_reference(X, resp, n_iter, **priors):
    """Run scikit-learn's CAVI from the same responsibilities via its private steps."""
    sk = SkBayesianGaussianMixture(n_components=resp.shape[1], reg_covar=0.0, **priors)
    sk._check_parameters(X)
    sk._initialize(X, resp)
    bounds = []
    for _ in range(n_iter):
        log_prob_norm, log_resp = sk._e_step(X)
        sk._m_step(X, log_resp)
        bounds.append(sk._compute_lower_bound(log_resp, log_prob_norm))
    sk._set_parameters(sk._get_parameters())
    return sk, np.asarray(bounds)


@pytest.mark.parametrize("prior_type", WEIGHT_PRIOR_TYPES)
@pytest.mark.parametrize("explicit_priors", [False, True])
def test_agrees_with_sklearn_same_priors_and_init(blobs, prior_type, explicit_priors):
    X = blobs.X
    n, d = X.shape
    K = 6
    resp = np.random.default_rng(1).dirichlet(np.ones(K), size=n)
    priors = dict(weight_concentration_prior_type=prior_type)
    if explicit_priors:
        priors.update(
            weight_concentration_prior=0.05,
            mean_precision_prior=0.3,
            mean_prior=np.array([1.0, -1.0]),
            degrees_of_freedom_prior=3.5,
            covariance_prior=np.array([[2.0, 0.3], [0.3, 1.0]]),
        )
    sk, sk_bounds = sklearn_reference(X, resp, 40, **priors)
    ours = quiet_fit(BayesianGaussianMixture(K, resp_init=resp, max_iter=40, tol=0.0, **priors), X)
    # scikit-learn drops constants from its bound; add them back (derived in the docstring)
    offset = sklearn_lower_bound_offset(
        n,
        d,
        K,
        sk.weight_concentration_prior_,
        prior_type,
        sk.mean_precision_prior_,
        sk.degrees_of_freedom_prior_,
        sk.covariance_prior_,
    )
    np.testing.assert_allclose(ours.lower_bounds_, sk_bounds + offset, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(ours.weights_, sk.weights_, atol=1e-10)
    np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, atol=1e-8)
    np.testing.assert_allclose(ours.degrees_of_freedom_, sk.degrees_of_freedom_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(1, 6),
    prior_type=st.sampled_from(WEIGHT_PRIOR_TYPES),
    init=st.sampled_from(["k-means++", "random", "random_from_data"]),
    concentration=st.sampled_from([None, 1e-3, 1.0, 100.0]),
)
def test_elbo_never_decreases(seed, K, prior_type, init, concentration):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(30, 150)), int(rng.integers(1, 4))
    centres = rng.normal(size=(3, d)) * 5
    X = centres[rng.integers(3, size=n)] + rng.normal(size=(n, d))
    vb = quiet_fit(
        BayesianGaussianMixture(
            K,
            weight_concentration_prior_type=prior_type,
            weight_concentration_prior=concentration,
            init_params=init,
            max_iter=30,
            tol=0.0,
            random_state=seed,
        ),
        X,
    )
    lb = vb.lower_bounds_
    assert len(lb) == 30
    assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))


@pytest.mark.parametrize("prior_type", WEIGHT_PRIOR_TYPES)
def test_superfluous_components_are_emptied_and_true_k_recovered(prior_type):
    data = make_gaussian_mixture(900, 3, 2, separation=6.0, random_state=2)
    vb = BayesianGaussianMixture(
        10,
        weight_concentration_prior_type=prior_type,
        weight_concentration_prior=1e-3,
        max_iter=500,
        random_state=0,
    )
    vb.fit(data.X)
    assert vb.converged_
    w = np.sort(vb.weights_)[::-1]
    assert np.sum(w > 0.01) == 3
    assert w[3:].sum() < 0.01
    # the kept components sit on the true means
    kept = vb.means_[vb.weights_ > 0.01]
    dist = np.linalg.norm(kept[:, None] - data.means[None], axis=-1).min(axis=0)
    assert np.all(dist < 0.3)


def test_full_elbo_decomposes_and_is_below_for_worse_q(blobs):
    X = blobs.X
    vb = BayesianGaussianMixture(4, max_iter=200, random_state=0).fit(X)
    # the optimal q(Z) given q(theta) is the E-step: any other q gives a lower ELBO
    best = vb.elbo(X)
    other = np.random.default_rng(3).dirichlet(np.ones(4), size=len(X))
    assert vb.elbo(X, other) < best
    # ELBO = sum r (log rho - log r) - KL(q(pi)||p(pi)) - sum_k KL(q(mu,L)||p(mu,L))
    resp, log_rho = vb.predict_proba(X), vb.weighted_log_prob(X)
    assert best == pytest.approx(
        elbo(resp, log_rho) - vb.weights_kl() - vb.components_kl().sum(), rel=1e-12
    )
    assert vb.lower_bound_ == pytest.approx(vb.lower_bounds_[-1])


def test_weight_functions_match_sklearn():
    nk = np.array([10.0, 0.5, 30.0, 0.0])
    for prior_type in WEIGHT_PRIOR_TYPES:
        sk = SkBayesianGaussianMixture(n_components=4, weight_concentration_prior_type=prior_type)
        sk.weight_concentration_prior_ = 0.3
        sk._estimate_weights(nk)
        conc = estimate_weight_concentration(nk, 0.3, prior_type)
        if prior_type == "dirichlet_process":
            np.testing.assert_allclose(conc[0], sk.weight_concentration_[0])
            np.testing.assert_allclose(conc[1], sk.weight_concentration_[1])
        else:
            np.testing.assert_allclose(conc, sk.weight_concentration_)
        np.testing.assert_allclose(
            expected_log_weights(conc, prior_type), sk._estimate_log_weights(), rtol=1e-12
        )
        sk.covariance_type = "diag"
        sk._set_parameters((conc, None, None, None, None, np.ones((4, 1))))
        np.testing.assert_allclose(expected_weights(conc, prior_type), sk.weights_, rtol=1e-12)


def test_expected_log_weights_closed_forms():
    alpha = np.array([2.0, 3.0, 0.5])
    np.testing.assert_allclose(
        expected_log_weights(alpha, "dirichlet_distribution"), digamma(alpha) - digamma(alpha.sum())
    )
    # stick-breaking, Monte Carlo: pi_k = v_k prod_{j<k} (1 - v_j)
    a, b = np.array([2.0, 4.0, 1.5]), np.array([3.0, 1.0, 2.0])
    rng = np.random.default_rng(4)
    v = rng.beta(a, b, size=(200_000, 3))
    pi = v * np.concatenate([np.ones((len(v), 1)), np.cumprod(1 - v, axis=1)[:, :-1]], axis=1)
    logs = np.log(pi)
    se = logs.std(0) / np.sqrt(len(v))
    assert np.all(np.abs(expected_log_weights((a, b), "dirichlet_process") - logs.mean(0)) < 4 * se)


def test_kl_weights_closed_forms():
    alpha = np.array([2.0, 3.0, 0.5])
    assert kl_weights(alpha, 0.7, "dirichlet_distribution") == pytest.approx(
        kl_dirichlet(alpha, np.full(3, 0.7))
    )
    a, b = np.array([2.0, 4.0]), np.array([3.0, 1.0])
    assert kl_weights((a, b), 0.7, "dirichlet_process") == pytest.approx(
        kl_beta(2.0, 3.0, 1.0, 0.7) + kl_beta(4.0, 1.0, 1.0, 0.7)
    )
    with pytest.raises(ValueError, match="weight_concentration_prior_type"):
        kl_weights(alpha, 0.7, "uniform")


def test_normal_wishart_update_by_hand():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 2))
    resp = rng.dirichlet(np.ones(2), size=40)
    nk, xk, sk = estimate_gaussian_parameters(X, resp, 0.0, "full")
    m0, b0, nu0, psi0 = np.array([0.5, 0.0]), 2.0, 3.0, np.eye(2) * 0.5
    beta, means, dof, inv_scales = estimate_normal_wishart(nk, xk, sk, m0, b0, nu0, psi0)
    for k in range(2):
        r = resp[:, k]
        n_k = r.sum()
        xbar = r @ X / n_k
        S = ((X - xbar).T * r) @ (X - xbar)  # scatter, N_k S_k
        assert beta[k] == pytest.approx(b0 + n_k)
        assert dof[k] == pytest.approx(nu0 + n_k)
        np.testing.assert_allclose(means[k], (b0 * m0 + n_k * xbar) / (b0 + n_k))
        expected = psi0 + S + b0 * n_k / (b0 + n_k) * np.outer(xbar - m0, xbar - m0)
        np.testing.assert_allclose(inv_scales[k], expected, rtol=1e-10)


def test_expected_log_gaussian_against_monte_carlo():
    from scipy import stats

    rng = np.random.default_rng(6)
    d = 2
    m, beta, nu = np.array([0.3, -0.2]), 3.0, 5.0
    psi = np.array([[2.0, 0.4], [0.4, 1.5]])
    x = np.array([[1.0, 0.5]])
    W = np.linalg.inv(psi)
    chol_u = np.linalg.cholesky((nu * W)[::-1, ::-1])[::-1, ::-1]  # upper, U U^T = nu W
    got = expected_log_gaussian(x, m[None], chol_u[None], np.array([nu]), np.array([beta]))[0, 0]
    lams = stats.wishart(df=nu, scale=W).rvs(size=50_000, random_state=7)
    covs = np.linalg.inv(lams)
    chols = np.linalg.cholesky(covs / beta)
    mus = m + (chols @ rng.normal(size=(len(lams), d, 1)))[..., 0]
    diff = x[0] - mus
    logs = (
        -0.5 * d * np.log(2 * np.pi)
        + 0.5 * np.linalg.slogdet(lams)[1]
        - 0.5 * np.einsum("si,sij,sj->s", diff, lams, diff)
    )
    se = logs.std() / np.sqrt(len(logs))
    assert abs(got - logs.mean()) < 4 * se


def test_variational_elbo_composition():
    resp = np.array([[0.2, 0.8], [1.0, 0.0]])
    log_rho = np.array([[-1.0, -2.0], [-0.5, -3.0]])
    expected = (0.2 * (-1 - np.log(0.2)) + 0.8 * (-2 - np.log(0.8)) + 1.0 * -0.5) - 0.3 - 0.7
    assert variational_elbo(resp, log_rho, 0.3, np.array([0.2, 0.5])) == pytest.approx(expected)


def test_invalid_parameters(blobs):
    X = blobs.X
    with pytest.raises(ValueError, match="covariance_type='full' only"):
        BayesianGaussianMixture(2, covariance_type="diag").fit(X)
    with pytest.raises(ValueError, match="greater than n_features - 1"):
        BayesianGaussianMixture(2, degrees_of_freedom_prior=0.5).fit(X)
    with pytest.raises(ValueError, match="positive number"):
        BayesianGaussianMixture(2, weight_concentration_prior=-1.0).fit(X)
    with pytest.raises(ValueError, match="covariance_prior must have shape"):
        BayesianGaussianMixture(2, covariance_prior=np.eye(3)).fit(X)
    Xc = np.column_stack([X[:, 0], np.ones(len(X))])  # a constant feature
    with pytest.raises(ValueError, match="singular: some feature is constant"):
        BayesianGaussianMixture(2).fit(Xc)
    vb = BayesianGaussianMixture(2, covariance_prior=np.eye(2), max_iter=300, random_state=0)
    vb.fit(Xc)  # an explicit prior makes the constant feature harmless
    assert np.all(np.isfinite(vb.covariances_))

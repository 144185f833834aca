"""The ELBO/KL decomposition and the closed-form divergences."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import multigammaln

from genrec.foundations import BayesianGaussianMixture, GaussianMixture
from genrec.foundations.beta_bernoulli import beta_elbo, beta_elbo_terms
from genrec.foundations.elbo import (
    elbo,
    elbo_terms,
    kl_beta,
    kl_categorical,
    kl_dirichlet,
    kl_normal_wishart,
    kl_posterior,
    kl_wishart,
    log_likelihood,
    log_multivariate_gamma,
    wishart_entropy,
    wishart_expected_log_det,
    wishart_log_norm,
)
from genrec.foundations.synthetic import make_gaussian_mixture


def spd(rng, d):
    A = rng.normal(size=(d, d))
    return A @ A.T / d + 0.5 * np.eye(d)


@pytest.fixture(scope="module")
def fitted():
    data = make_gaussian_mixture(300, 3, 2, separation=3.0, random_state=0)
    gm = GaussianMixture(3, random_state=0, max_iter=5, tol=0.0)
    with pytest.warns(UserWarning):
        gm.fit(data.X)
    return gm, data.X


def test_decomposition_holds_for_arbitrary_q(fitted):
    gm, X = fitted
    rng = np.random.default_rng(0)
    lp = gm.weighted_log_prob(X)
    total = log_likelihood(lp)
    for concentration in (0.1, 1.0, 10.0):
        q = rng.dirichlet(np.full(3, concentration), size=len(X))
        q[0] = [1.0, 0.0, 0.0]  # exact zeros are allowed (0 log 0 = 0)
        e, kl = elbo(q, lp), kl_posterior(q, lp)
        assert abs(total - (e + kl)) < 1e-8
        assert kl > 1.0  # a random q is far from the posterior ...
        assert e < total  # ... so the bound is strict
    # the same through the estimator's methods
    q = rng.dirichlet(np.ones(3), size=len(X))
    assert abs(gm.log_likelihood(X) - gm.elbo(X, q) - gm.kl_posterior(X, q)) < 1e-8


def test_kl_is_zero_after_e_step(fitted):
    gm, X = fitted
    resp = gm.predict_proba(X)  # the E-step
    lp = gm.weighted_log_prob(X)
    assert abs(kl_posterior(resp, lp)) < 1e-10
    assert abs(elbo(resp, lp) - log_likelihood(lp)) < 1e-8
    assert abs(log_likelihood(lp) - gm.score(X) * len(X)) < 1e-8


def test_elbo_rejects_bad_q():
    lp = np.zeros((3, 2))
    with pytest.raises(ValueError, match="shape"):
        elbo(np.full((3, 3), 1 / 3), lp)
    with pytest.raises(ValueError, match="probability vector"):
        elbo(np.full((3, 2), 0.7), lp)


def test_kl_categorical_matches_scipy_entropy():
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(5), size=10)
    p = rng.dirichlet(np.ones(5), size=10)
    expected = [stats.entropy(q[i], p[i]) for i in range(10)]
    np.testing.assert_allclose(kl_categorical(q, np.log(p)), expected, rtol=1e-12)


@pytest.mark.parametrize("params", [(2.0, 3.0, 1.0, 1.0), (0.5, 0.7, 4.0, 2.0), (30, 12, 25, 15)])
def test_kl_beta_matches_torch_and_quadrature(params):
    a_q, b_q, a_p, b_p = params
    got = kl_beta(a_q, b_q, a_p, b_p)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Beta(
            torch.tensor(a_q, dtype=torch.float64), torch.tensor(b_q, dtype=torch.float64)
        ),
        torch.distributions.Beta(
            torch.tensor(a_p, dtype=torch.float64), torch.tensor(b_p, dtype=torch.float64)
        ),
    ).item()
    assert got == pytest.approx(ref, rel=1e-10, abs=1e-12)
    q, p = stats.beta(a_q, b_q), stats.beta(a_p, b_p)
    quad, _ = integrate.quad(lambda t: q.pdf(t) * (q.logpdf(t) - p.logpdf(t)), 0, 1, limit=200)
    assert got == pytest.approx(quad, rel=1e-6, abs=1e-8)
    assert kl_beta(a_q, b_q, a_q, b_q) == pytest.approx(0.0, abs=1e-12)


def test_kl_dirichlet_against_monte_carlo():
    rng = np.random.default_rng(2)
    aq, ap = np.array([2.0, 5.0, 1.5]), np.array([1.0, 1.0, 3.0])
    x = rng.dirichlet(aq, size=200_000)
    terms = stats.dirichlet(aq).logpdf(x.T) - stats.dirichlet(ap).logpdf(x.T)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(kl_dirichlet(aq, ap) - terms.mean()) < 4 * se
    assert kl_dirichlet(aq, aq) == pytest.approx(0.0, abs=1e-12)


def test_log_multivariate_gamma_matches_scipy():
    for d in (1, 2, 5):
        for a in (2.7, 10.0):
            assert log_multivariate_gamma(a, d) == pytest.approx(multigammaln(a, d), rel=1e-12)
    vec = log_multivariate_gamma(np.array([3.0, 4.0]), 3)
    np.testing.assert_allclose(vec, [multigammaln(3.0, 3), multigammaln(4.0, 3)], rtol=1e-12)


def test_wishart_quantities_match_scipy():
    rng = np.random.default_rng(3)
    d, nu = 3, 6.5
    psi = spd(rng, d)  # inverse scale
    W = np.linalg.inv(psi)
    log_det_w = np.linalg.slogdet(W)[1]
    dist = stats.wishart(df=nu, scale=W)
    lam = dist.rvs(random_state=4)
    # log density = log B(W, nu) + (nu - d - 1)/2 log|L| - tr(W^-1 L)/2
    manual = (
        wishart_log_norm(log_det_w, nu, d)
        + 0.5 * (nu - d - 1) * np.linalg.slogdet(lam)[1]
        - 0.5 * np.trace(psi @ lam)
    )
    assert manual == pytest.approx(dist.logpdf(lam), rel=1e-12)
    assert wishart_entropy(log_det_w, nu, d) == pytest.approx(dist.entropy(), rel=1e-10)
    draws = dist.rvs(size=40_000, random_state=5)
    logdets = np.linalg.slogdet(draws)[1]
    se = logdets.std() / math.sqrt(len(logdets))
    assert abs(wishart_expected_log_det(log_det_w, nu, d) - logdets.mean()) < 4 * se


@pytest.mark.slow
def test_kl_wishart_against_monte_carlo():
    rng = np.random.default_rng(6)
    d = 2
    psi_q, psi_p = spd(rng, d), spd(rng, d)
    nu_q, nu_p = 7.0, 3.5
    q = stats.wishart(df=nu_q, scale=np.linalg.inv(psi_q))
    p = stats.wishart(df=nu_p, scale=np.linalg.inv(psi_p))
    lam = q.rvs(size=20_000, random_state=7)
    terms = q.logpdf(lam.T) - p.logpdf(lam.T)
    se = terms.std() / math.sqrt(len(terms))
    got = kl_wishart(psi_q, nu_q, psi_p, nu_p)
    assert got > 0
    assert abs(got - terms.mean()) < 4 * se
    assert kl_wishart(psi_q, nu_q, psi_q, nu_q) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.slow
def test_kl_normal_wishart_against_monte_carlo():
    rng = np.random.default_rng(8)
    d = 2
    psi_q, psi_p = spd(rng, d), spd(rng, d)
    m_q, m_p = np.array([0.5, -1.0]), np.array([0.0, 0.3])
    b_q, b_p, nu_q, nu_p = 4.0, 0.7, 6.0, 3.0
    wq = stats.wishart(df=nu_q, scale=np.linalg.inv(psi_q))
    wp = stats.wishart(df=nu_p, scale=np.linalg.inv(psi_p))
    S = 20_000
    lams = wq.rvs(size=S, random_state=9)
    # mu | Lambda ~ N(m_q, (b_q Lambda)^-1): mu = m_q + L^-T z / sqrt(b_q) with Lambda = L L^T
    L = np.linalg.cholesky(lams)
    z = rng.normal(size=(S, d, 1))
    mu = m_q + np.linalg.solve(np.swapaxes(L, 1, 2), z)[..., 0] / math.sqrt(b_q)

    def log_normal(mu, m, b):  # log N(mu | m, (b Lambda)^-1), Lambda from the draws
        diff = mu - m
        quad = np.einsum("si,sij,sj->s", diff, lams, diff)
        return (
            0.5 * d * math.log(b / (2 * math.pi))
            + 0.5 * np.linalg.slogdet(lams)[1]
            - 0.5 * b * quad
        )

    terms = (wq.logpdf(lams.T) + log_normal(mu, m_q, b_q)) - (
        wp.logpdf(lams.T) + log_normal(mu, m_p, b_p)
    )
    se = terms.std() / math.sqrt(S)
    got = kl_normal_wishart(m_q, b_q, psi_q, nu_q, m_p, b_p, psi_p, nu_p)
    assert abs(got - terms.mean()) < 4 * se
    assert kl_normal_wishart(m_q, b_q, psi_q, nu_q, m_q, b_q, psi_q, nu_q) == pytest.approx(
        0.0, abs=1e-10
    )


def test_kl_wishart_rejects_non_spd():
    with pytest.raises(ValueError, match="positive definite"):
        kl_wishart(-np.eye(2), 3.0, np.eye(2), 3.0)


def test_elbo_terms_match_loops_and_sum_to_the_elbo():
    rng = np.random.default_rng(3)
    n, K = 7, 3
    log_prob = rng.normal(size=(n, K)) - 2.0
    log_w = np.log(rng.dirichlet(np.ones(K)))
    q = rng.dirichlet(np.ones(K), size=n)
    q[0] = [1.0, 0.0, 0.0]  # 0 log 0 = 0
    t = elbo_terms(q, log_prob, log_w)
    loops = [0.0, 0.0, 0.0]
    for i in range(n):
        for k in range(K):
            if q[i, k] > 0:
                loops[0] += q[i, k] * log_prob[i, k]
                loops[1] += q[i, k] * log_w[k]
                loops[2] -= q[i, k] * math.log(q[i, k])
    assert t.expected_log_likelihood == pytest.approx(loops[0], rel=1e-12)
    assert t.expected_log_prior == pytest.approx(loops[1], rel=1e-12)
    assert t.entropy == pytest.approx(loops[2], rel=1e-12)
    assert t.elbo == pytest.approx(elbo(q, log_prob + log_w), rel=1e-12)


def test_elbo_terms_of_a_one_hot_q_have_zero_entropy_not_minus_zero():
    q = np.eye(3)
    t = elbo_terms(q, np.zeros((3, 3)), np.log(np.full(3, 1 / 3)))
    assert t.entropy == 0.0 and math.copysign(1.0, t.entropy) == 1.0


def test_mixture_elbo_terms_give_the_log_likelihood_and_the_full_cavi_elbo():
    X = make_gaussian_mixture(300, 3, 2, separation=1.5, random_state=0).X
    gm = GaussianMixture(3, random_state=0).fit(X)
    t = gm.elbo_terms(X)  # q = the posterior: ELBO = log p(X)
    assert t.elbo == pytest.approx(gm.log_likelihood(X), rel=1e-12)
    q = np.random.default_rng(0).dirichlet(np.ones(3), size=len(X))
    tq = gm.elbo_terms(X, q)
    assert tq.elbo + gm.kl_posterior(X, q) == pytest.approx(gm.log_likelihood(X), rel=1e-12)
    vb = BayesianGaussianMixture(3, random_state=0).fit(X)
    tv = vb.elbo_terms(X)
    full = tv.elbo - vb.weights_kl() - np.sum(vb.components_kl())
    assert full == pytest.approx(vb.elbo(X), rel=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "a0", "b0", "c", "v"), [(3, 4, 1, 1, 2, 3), (7.5, 2.2, 2, 3, 9, 1)]
)
def test_beta_elbo_terms_match_quadrature_and_sum_to_the_elbo(a, b, a0, b0, c, v):
    expected, kl_prior = beta_elbo_terms(a, b, a0, b0, c, v)
    quad, _ = integrate.quad(
        lambda t: stats.beta.pdf(t, a, b) * (c * math.log(t) + v * math.log1p(-t)), 0, 1
    )
    assert expected == pytest.approx(quad, rel=1e-8)
    assert kl_prior == pytest.approx(kl_beta(a, b, a0, b0), rel=1e-12)
    assert expected - kl_prior == pytest.approx(beta_elbo(a, b, a0, b0, c, v), rel=1e-12)

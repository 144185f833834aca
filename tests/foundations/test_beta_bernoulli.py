"""The cookie jar: exact Beta posterior, VI by stochastic gradients, KL closed form vs MC."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from genrec.foundations import BetaBernoulliJar
from genrec.foundations.beta_bernoulli import (
    beta_elbo,
    beta_log_evidence,
    beta_posterior,
    beta_rsample,
    fit_beta_vi,
    kl_beta_monte_carlo,
    simulate_jar,
)
from genrec.foundations.elbo import kl_beta


@pytest.fixture(scope="module")
def rounds():
    return simulate_jar(0.7, 4, 12, random_state=0)


def test_exact_posterior_is_prior_times_likelihood_normalised():
    a0, b0, c, v = 2.0, 3.0, 7, 4
    a, b = beta_posterior(a0, b0, c, v)
    assert (a, b) == (9.0, 7.0)
    unnorm = lambda t: stats.beta.pdf(t, a0, b0) * t**c * (1 - t) ** v  # noqa: E731
    evidence, _ = integrate.quad(unnorm, 0, 1)
    for t in (0.2, 0.5, 0.8):
        assert unnorm(t) / evidence == pytest.approx(stats.beta.pdf(t, a, b), rel=1e-8)
    assert beta_log_evidence(a0, b0, c, v) == pytest.approx(math.log(evidence), rel=1e-10)


def test_elbo_plus_kl_is_log_evidence():
    a0, b0, c, v = 1.0, 1.0, 12, 5
    log_z = beta_log_evidence(a0, b0, c, v)
    exact = beta_posterior(a0, b0, c, v)
    for a, b in [(2.0, 2.0), (13.0, 6.0), (30.0, 4.0)]:
        assert beta_elbo(a, b, a0, b0, c, v) + kl_beta(a, b, *exact) == pytest.approx(
            log_z, abs=1e-10
        )
    assert beta_elbo(*exact, a0, b0, c, v) == pytest.approx(log_z, abs=1e-10)


def test_closed_form_elbo_against_monte_carlo():
    a, b, a0, b0, c, v = 3.0, 5.0, 2.0, 2.0, 4, 6
    q = stats.beta(a, b)
    t = q.rvs(size=200_000, random_state=1)
    terms = c * np.log(t) + v * np.log1p(-t) + stats.beta.logpdf(t, a0, b0) - q.logpdf(t)
    se = terms.std() / math.sqrt(len(t))
    assert abs(beta_elbo(a, b, a0, b0, c, v) - terms.mean()) < 4 * se


@pytest.mark.parametrize("params", [(2.0, 3.0, 5.0, 1.5), (7.0, 5.0, 1.0, 1.0), (36, 16, 30, 20)])
def test_kl_closed_form_equals_monte_carlo_within_standard_error(params):
    gen = torch.Generator().manual_seed(2)
    mc, se = kl_beta_monte_carlo(*params, n_samples=50_000, generator=gen)
    closed = kl_beta(*params)
    assert closed > 0.01
    assert se > 0
    assert abs(closed - mc) < 4 * se


def test_reparameterised_gradient_is_unbiased():
    # d/da E[theta] = b / (a + b)^2 and d/db E[theta] = -a / (a + b)^2 for theta ~ Beta(a, b).
    # One (a, b) leaf per draw gives per-sample derivatives, hence a standard error.
    S = 100_000
    a = torch.full((S,), 2.0, dtype=torch.float64, requires_grad=True)
    b = torch.full((S,), 3.0, dtype=torch.float64, requires_grad=True)
    theta = beta_rsample(a, b, S, torch.Generator().manual_seed(3))
    ga, gb = torch.autograd.grad(theta.sum(), [a, b])
    for g, expected in ((ga, 3.0 / 25.0), (gb, -2.0 / 25.0)):
        se = g.std().item() / math.sqrt(S)
        assert abs(g.mean().item() - expected) < 4 * se
    assert theta.min() > 0 and theta.max() < 1
    assert theta.mean().item() == pytest.approx(0.4, abs=4 * 0.2 / math.sqrt(S))


@pytest.mark.parametrize("estimator", ["reparam", "score"])
def test_vi_converges_to_exact_posterior_every_round(rounds, estimator):
    jar = BetaBernoulliJar(estimator=estimator, n_steps=250, lr=0.2, random_state=0).fit(rounds)
    assert len(jar.kl_) == len(rounds)
    assert np.all(jar.kl_ < 1e-3)
    # the round started from a q that was off: VI did the work
    assert np.all(jar.kl_before_ > 1e-2)
    for (aq, bq), (ae, be) in zip(jar.variational_posteriors_, jar.exact_posteriors_):
        assert aq == pytest.approx(ae, rel=0.02) and bq == pytest.approx(be, rel=0.02)
    np.testing.assert_allclose(jar.elbo_, jar.log_evidence_ - jar.kl_, atol=1e-9)
    total = sum(int(r.sum()) for r in rounds)
    assert jar.counts_[-1] == (total, sum(r.size for r in rounds) - total)


def test_vi_is_repeatable_with_random_state(rounds):
    a = BetaBernoulliJar(estimator="score", n_steps=50, random_state=5).fit(rounds[:1])
    b = BetaBernoulliJar(estimator="score", n_steps=50, random_state=5).fit(rounds[:1])
    c = BetaBernoulliJar(estimator="score", n_steps=50, random_state=6).fit(rounds[:1])
    assert a.variational_posteriors_ == b.variational_posteriors_
    assert a.variational_posteriors_ != c.variational_posteriors_


def test_fit_beta_vi_elbo_trace_rises_towards_log_evidence():
    gen = torch.Generator().manual_seed(4)
    res = fit_beta_vi(20, 8, 1.0, 1.0, estimator="reparam", n_steps=600, generator=gen)
    log_z = beta_log_evidence(1.0, 1.0, 20, 8)
    assert res.elbo_trace[0] < log_z - 0.1
    assert log_z - res.elbo_trace[-1] < 1e-6
    assert max(res.elbo_trace) <= log_z + 1e-9  # the ELBO is a lower bound


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        beta_posterior(0.0, 1.0, 1, 1)
    with pytest.raises(ValueError, match="non-negative"):
        beta_posterior(1.0, 1.0, -1, 1)
    with pytest.raises(ValueError, match="estimator must be one of"):
        fit_beta_vi(1, 1, estimator="magic")
    with pytest.raises(ValueError, match="0/1"):
        BetaBernoulliJar().fit([[0, 1, 2]])
    with pytest.raises(ValueError, match="at least one round"):
        BetaBernoulliJar().fit([])
    with pytest.raises(ValueError, match="rate must be in"):
        simulate_jar(1.5, 1, 1)


@pytest.mark.parametrize("lr", [1e6, 50.0])
def test_diverging_fit_names_the_learning_rate(lr):
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="diverged.*lower the learning rate lr"):
        fit_beta_vi(7, 3, lr=lr, n_steps=200, generator=gen)

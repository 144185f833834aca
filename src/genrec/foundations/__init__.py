"""Probabilistic foundations: maximum likelihood, latent variables, EM, the ELBO and KL, CAVI.

Public API
----------
Models
    :class:`GaussianMixture` (EM), :class:`BayesianGaussianMixture` (mean-field VI / CAVI),
    :class:`BetaBernoulliJar` (exact vs. variational Beta posterior, round by round).
The decomposition log p(X | theta) = ELBO(q, theta) + KL(q || p(z | X, theta))
    :func:`log_likelihood`, :func:`elbo`, :func:`kl_posterior`.
Closed-form divergences
    :func:`kl_categorical`, :func:`kl_beta`, :func:`kl_dirichlet`, :func:`kl_wishart`,
    :func:`kl_normal_wishart`.
The ELBO in its terms
    :func:`~genrec.foundations.elbo.elbo_terms`, ``model.elbo_terms(X, q)``,
    :func:`~genrec.foundations.beta_bernoulli.beta_elbo_terms`.
Saddle points of EM / CAVI
    :func:`genrec.foundations.saddle.find_saddle`.
Gaussian building blocks
    :func:`log_gaussian_prob`, :func:`estimate_log_resp`, :func:`estimate_gaussian_parameters`,
    :func:`compute_precision_cholesky`.

Importing this package changes no global state.
"""

from genrec.foundations.beta_bernoulli import (
    BetaBernoulliJar,
    beta_elbo,
    beta_log_evidence,
    beta_posterior,
    fit_beta_vi,
    kl_beta_monte_carlo,
    simulate_jar,
)
from genrec.foundations.elbo import (
    elbo,
    kl_beta,
    kl_categorical,
    kl_dirichlet,
    kl_normal_wishart,
    kl_posterior,
    kl_wishart,
    log_likelihood,
)
from genrec.foundations.gaussian import (
    DegenerateCovarianceError,
    compute_precision_cholesky,
    estimate_gaussian_parameters,
    estimate_log_resp,
    log_gaussian_prob,
)
from genrec.foundations.gmm import GaussianMixture
from genrec.foundations.mixture_base import ConvergenceWarning, NotFittedError
from genrec.foundations.synthetic import make_gaussian_mixture
from genrec.foundations.vbgmm import BayesianGaussianMixture

kl_divergence = kl_categorical
"""Alias of :func:`kl_categorical` (row-wise KL between discrete distributions)."""

__all__ = [
    "GaussianMixture",
    "BayesianGaussianMixture",
    "BetaBernoulliJar",
    "ConvergenceWarning",
    "NotFittedError",
    "DegenerateCovarianceError",
    "log_likelihood",
    "elbo",
    "kl_posterior",
    "kl_divergence",
    "kl_categorical",
    "kl_beta",
    "kl_dirichlet",
    "kl_wishart",
    "kl_normal_wishart",
    "log_gaussian_prob",
    "estimate_log_resp",
    "estimate_gaussian_parameters",
    "compute_precision_cholesky",
    "beta_posterior",
    "beta_log_evidence",
    "beta_elbo",
    "fit_beta_vi",
    "kl_beta_monte_carlo",
    "simulate_jar",
    "make_gaussian_mixture",
]

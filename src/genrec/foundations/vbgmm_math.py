"""The variational updates of :class:`~genrec.foundations.vbgmm.BayesianGaussianMixture` as
pure functions: the weight and Normal-Wishart posteriors, the expectations under them, the
KL terms and the evidence lower bound."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import digamma

from genrec.foundations.elbo import (
    elbo,
    kl_beta,
    kl_dirichlet,
    wishart_expected_log_det,
)
from genrec.foundations.gaussian import (
    log_det_cholesky,
    log_gaussian_prob,
)

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


def _check_prior_type(prior_type: str) -> str:
    if prior_type not in WEIGHT_PRIOR_TYPES:
        raise ValueError(
            f"weight_concentration_prior_type must be one of {', '.join(WEIGHT_PRIOR_TYPES)}; "
            f"got {prior_type!r}"
        )
    return prior_type


def estimate_weight_concentration(
    nk: np.ndarray, weight_concentration_prior: float, prior_type: str
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""CAVI update of :math:`q(\pi)`.

    Dirichlet: :math:`\alpha_k = \alpha_0 + N_k`. Stick-breaking:
    :math:`q(v_k)=\mathrm{Beta}(a_k,b_k)`, :math:`a_k = 1+N_k`,
    :math:`b_k = \gamma + \sum_{j>k}N_j`.

    Parameters
    ----------
    nk : ndarray of shape (K,)
    weight_concentration_prior : float
        :math:`\alpha_0` or :math:`\gamma`.
    prior_type : {'dirichlet_process', 'dirichlet_distribution'}

    Returns
    -------
    ndarray of shape (K,), or tuple ``(a, b)`` of two such arrays (stick-breaking)
    """
    _check_prior_type(prior_type)
    if prior_type == "dirichlet_process":
        tail = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        return (1.0 + nk, weight_concentration_prior + tail)
    return weight_concentration_prior + nk


def expected_log_weights(concentration: Any, prior_type: str) -> np.ndarray:
    r""":math:`\mathbb E_q[\log\pi_k]`, shape (K,) (formulas in the module docstring)."""
    _check_prior_type(prior_type)
    if prior_type == "dirichlet_process":
        a, b = concentration
        dsum = digamma(a + b)
        log_v = digamma(a) - dsum
        log_1mv = digamma(b) - dsum
        return log_v + np.concatenate([[0.0], np.cumsum(log_1mv)[:-1]])
    alpha = np.asarray(concentration)
    return digamma(alpha) - digamma(alpha.sum())


def expected_weights(concentration: Any, prior_type: str) -> np.ndarray:
    r"""Point estimate of the weights, shape (K,), normalised to sum to one.

    Dirichlet: :math:`\alpha_k/\sum_j\alpha_j`; stick-breaking:
    :math:`\mathbb E[v_k]\prod_{j<k}\mathbb E[1-v_j]` (renormalised over the K sticks).
    """
    _check_prior_type(prior_type)
    if prior_type == "dirichlet_process":
        a, b = concentration
        ev = a / (a + b)
        w = ev * np.concatenate([[1.0], np.cumprod(b / (a + b))[:-1]])
        return w / w.sum()
    alpha = np.asarray(concentration)
    return alpha / alpha.sum()


def kl_weights(concentration: Any, weight_concentration_prior: float, prior_type: str) -> float:
    r""":math:`\mathrm{KL}(q(\pi)\|p(\pi))` of the weights.

    Dirichlet: :func:`~genrec.foundations.elbo.kl_dirichlet`; stick-breaking:
    :math:`\sum_k\mathrm{KL}(\mathrm{Beta}(a_k,b_k)\|\mathrm{Beta}(1,\gamma))`.
    """
    _check_prior_type(prior_type)
    if prior_type == "dirichlet_process":
        a, b = concentration
        return float(np.sum(kl_beta(a, b, 1.0, weight_concentration_prior)))
    alpha = np.asarray(concentration)
    return kl_dirichlet(alpha, np.full_like(alpha, weight_concentration_prior))


def estimate_normal_wishart(
    nk: np.ndarray,
    xk: np.ndarray,
    sk: np.ndarray,
    mean_prior: np.ndarray,
    mean_precision_prior: float,
    degrees_of_freedom_prior: float,
    covariance_prior: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""CAVI update of :math:`q(\mu_k,\Lambda_k)`.

    :math:`q(\mu_k,\Lambda_k)=\mathcal N(m_k,(\beta_k\Lambda_k)^{-1})\mathcal W(W_k,\nu_k)`, with
    the updates of the module docstring.

    Parameters
    ----------
    nk : ndarray of shape (K,)
    xk : ndarray of shape (K, d)
        Weighted means :math:`\bar x_k`.
    sk : ndarray of shape (K, d, d)
        Weighted covariances :math:`S_k`.
    mean_prior : ndarray of shape (d,)
    mean_precision_prior, degrees_of_freedom_prior : float
    covariance_prior : ndarray of shape (d, d)
        :math:`\Psi_0 = W_0^{-1}`.

    Returns
    -------
    mean_precision : ndarray of shape (K,)
        :math:`\beta_k`.
    means : ndarray of shape (K, d)
        :math:`m_k`.
    degrees_of_freedom : ndarray of shape (K,)
        :math:`\nu_k`.
    inv_scales : ndarray of shape (K, d, d)
        :math:`\Psi_k = W_k^{-1}`.
    """
    beta = mean_precision_prior + nk
    means = (mean_precision_prior * mean_prior + nk[:, None] * xk) / beta[:, None]
    dof = degrees_of_freedom_prior + nk
    diff = xk - mean_prior
    shrink = nk * mean_precision_prior / beta
    inv_scales = (
        covariance_prior[None]
        + nk[:, None, None] * sk
        + shrink[:, None, None] * diff[:, :, None] * diff[:, None, :]
    )
    return beta, means, dof, inv_scales


def expected_log_gaussian(
    X: np.ndarray,
    means: np.ndarray,
    precisions_chol: np.ndarray,
    degrees_of_freedom: np.ndarray,
    mean_precision: np.ndarray,
) -> np.ndarray:
    r""":math:`\mathbb E_q[\log\mathcal N(x_n\mid\mu_k,\Lambda_k^{-1})]`, shape (n, K).

    .. math::

        \tfrac12\mathbb E[\log|\Lambda_k|] - \tfrac d2\log2\pi - \tfrac{d}{2\beta_k}
        - \tfrac12\lVert x_n^\top U_k - m_k^\top U_k\rVert^2,

    where :math:`U_k` is the upper Cholesky factor of :math:`\mathbb E[\Lambda_k]=\nu_kW_k`
    (so :math:`\log|W_k| = 2\log|U_k| - d\log\nu_k`).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    means : ndarray of shape (K, d)
    precisions_chol : ndarray of shape (K, d, d)
    degrees_of_freedom, mean_precision : ndarray of shape (K,)
    """
    d = X.shape[1]
    log_det_u = log_det_cholesky(precisions_chol, "full", d)
    # log N(x | m, (nu W)^-1) contains log|U|; replace it with E[log|Lambda|] / 2.
    log_gauss = log_gaussian_prob(X, means, precisions_chol, "full") - log_det_u
    log_det_w = 2.0 * log_det_u - d * np.log(degrees_of_freedom)
    e_log_det = wishart_expected_log_det(log_det_w, degrees_of_freedom, d)
    return log_gauss + 0.5 * e_log_det - 0.5 * d / mean_precision


def variational_elbo(
    resp: np.ndarray, log_rho: np.ndarray, weights_kl: float, components_kl: np.ndarray
) -> float:
    r"""Full ELBO of the variational mixture.

    .. math::

        \sum_{nk}r_{nk}(\log\rho_{nk}-\log r_{nk}) - \mathrm{KL}_\pi - \sum_k\mathrm{KL}_k

    Parameters
    ----------
    resp : ndarray of shape (n, K)
        :math:`q(z_n = k)`.
    log_rho : ndarray of shape (n, K)
        :math:`\mathbb E[\log\pi_k] + \mathbb E[\log\mathcal N(x_n\mid\mu_k,\Lambda_k^{-1})]`
        under the current :math:`q(\pi)q(\mu,\Lambda)`.
    weights_kl : float
        :func:`kl_weights`.
    components_kl : ndarray of shape (K,)
        :func:`~genrec.foundations.elbo.kl_normal_wishart` per component.
    """
    return float(elbo(resp, log_rho) - weights_kl - np.sum(components_kl))


def sklearn_lower_bound_offset(
    n_samples: int,
    n_features: int,
    n_components: int,
    weight_concentration_prior: float,
    weight_concentration_prior_type: str,
    mean_precision_prior: float,
    degrees_of_freedom_prior: float,
    covariance_prior: np.ndarray,
) -> float:
    r"""Constant :math:`C` with full ELBO = scikit-learn's ``_compute_lower_bound`` + :math:`C`.

    scikit-learn's BayesianGaussianMixture drops terms that are constant given the data
    size and the priors. Right after an M-step (with ``reg_covar=0``) the full ELBO
    equals :math:`-\sum r\log r + \log\frac{C(\alpha_0)}{C(\alpha)} + \sum_k\log Z_k`, the
    Normal-Wishart marginal likelihoods, and the difference to scikit-learn's bound is

    .. math::

        C = -\tfrac{nd}{2}\log 2\pi - \tfrac{K\nu_0 d}{2}\log 2 + \tfrac{Kd(d-1)}{4}\log\pi
            - K\log\Gamma_d(\nu_0/2) + \tfrac{K\nu_0}{2}\log|\Psi_0| + \tfrac{Kd}{2}\log\beta_0
            + c_\pi,

    with :math:`c_\pi = \log\Gamma(K\alpha_0) - K\log\Gamma(\alpha_0)` (Dirichlet) or
    :math:`K\log\gamma` (stick-breaking). Used to compare with scikit-learn in the tests.
    """
    from scipy.special import gammaln

    from genrec.foundations.elbo import log_multivariate_gamma

    n, d, K = n_samples, n_features, n_components
    nu0, beta0 = degrees_of_freedom_prior, mean_precision_prior
    sign, logdet_psi0 = np.linalg.slogdet(covariance_prior)
    if weight_concentration_prior_type == "dirichlet_process":
        c_pi = K * math.log(weight_concentration_prior)
    else:
        c_pi = float(
            gammaln(K * weight_concentration_prior) - K * gammaln(weight_concentration_prior)
        )
    return float(
        -0.5 * n * d * math.log(2.0 * math.pi)
        - 0.5 * K * nu0 * d * math.log(2.0)
        + K * d * (d - 1) / 4.0 * math.log(math.pi)
        - K * log_multivariate_gamma(0.5 * nu0, d)
        + 0.5 * K * nu0 * logdet_psi0
        + 0.5 * K * d * math.log(beta0)
        + c_pi
    )

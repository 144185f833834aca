r"""Bayesian Gaussian mixture by mean-field variational inference (CAVI).

Model (Bishop, PRML §10.2), in the notation of the code:

.. math::

    \pi &\sim \mathrm{Dir}(\alpha_0) \quad\text{or}\quad
        \pi_k = v_k\textstyle\prod_{j<k}(1-v_j),\ v_k\sim\mathrm{Beta}(1,\gamma)
        \ \text{(stick-breaking)} \\
    \Lambda_k &\sim \mathcal W(W_0, \nu_0),\qquad
    \mu_k\mid\Lambda_k \sim \mathcal N(m_0, (\beta_0\Lambda_k)^{-1}) \\
    z_n &\sim \mathrm{Cat}(\pi),\qquad x_n\mid z_n=k \sim \mathcal N(\mu_k, \Lambda_k^{-1}).

Priors map to parameters as ``weight_concentration_prior`` = :math:`\alpha_0` or
:math:`\gamma`, ``mean_prior`` = :math:`m_0`, ``mean_precision_prior`` = :math:`\beta_0`,
``degrees_of_freedom_prior`` = :math:`\nu_0`, ``covariance_prior`` = :math:`\Psi_0 = W_0^{-1}`
(scikit-learn's names and defaults).

The variational family is :math:`q(Z)\,q(\pi)\prod_k q(\mu_k,\Lambda_k)` and CAVI cycles
through the closed-form coordinate updates:

**q(Z)** (E-step): :math:`r_{nk}\propto\rho_{nk}` with

.. math::

    \log\rho_{nk} = \mathbb E[\log\pi_k] + \tfrac12\mathbb E[\log|\Lambda_k|]
      - \tfrac d2\log 2\pi - \tfrac{d}{2\beta_k} - \tfrac{\nu_k}{2}(x_n-m_k)^\top W_k(x_n-m_k),

:math:`\mathbb E[\log|\Lambda_k|] = \sum_{i=1}^d\psi(\tfrac{\nu_k+1-i}{2}) + d\log2 + \log|W_k|`
and :math:`\mathbb E[\log\pi_k] = \psi(\alpha_k)-\psi(\sum_j\alpha_j)` (Dirichlet) or
:math:`\psi(a_k)-\psi(a_k+b_k)+\sum_{j<k}[\psi(b_j)-\psi(a_j+b_j)]` (stick-breaking).

**q(π), q(μ, Λ)** (M-step), with :math:`N_k = \sum_n r_{nk}`,
:math:`\bar x_k = \frac1{N_k}\sum_n r_{nk}x_n`,
:math:`S_k = \frac1{N_k}\sum_n r_{nk}(x_n-\bar x_k)(x_n-\bar x_k)^\top` (+ ``reg_covar``):

.. math::

    \alpha_k &= \alpha_0 + N_k \quad\text{or}\quad
        a_k = 1 + N_k,\ b_k = \gamma + \textstyle\sum_{j>k}N_j\\
    \beta_k &= \beta_0 + N_k,\qquad m_k = (\beta_0 m_0 + N_k\bar x_k)/\beta_k,\qquad
    \nu_k = \nu_0 + N_k\\
    \Psi_k = W_k^{-1} &= \Psi_0 + N_k S_k
        + \tfrac{\beta_0N_k}{\beta_0+N_k}(\bar x_k-m_0)(\bar x_k-m_0)^\top .

**ELBO**, computed in full (with every constant) after every iteration:

.. math::

    \mathcal L = \sum_{n,k} r_{nk}(\log\rho_{nk} - \log r_{nk})
      - \mathrm{KL}(q(\pi)\|p(\pi)) - \sum_k \mathrm{KL}(q(\mu_k,\Lambda_k)\|p(\mu_k,\Lambda_k)),

the first sum being :math:`\mathbb E_q[\log p(X,Z\mid\pi,\mu,\Lambda)] - \mathbb E_q[\log q(Z)]`.
Every update maximises :math:`\mathcal L` in its block exactly (for ``reg_covar=0``), so
:math:`\mathcal L` never decreases.

Only ``covariance_type='full'`` is supported (the Normal-Wishart prior).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genrec.foundations._linalg import cholesky_lower
from genrec.foundations.elbo import kl_normal_wishart
from genrec.foundations.gaussian import (
    compute_precision_cholesky,
    estimate_gaussian_parameters,
    precisions_from_precision_cholesky,
)
from genrec.foundations.mixture_base import BaseMixture
from genrec.foundations.vbgmm_math import (
    WEIGHT_PRIOR_TYPES,
    _check_prior_type,
    estimate_normal_wishart,
    estimate_weight_concentration,
    expected_log_gaussian,
    expected_log_weights,
    expected_weights,
    kl_weights,
    variational_elbo,
)
from genrec.foundations.vbgmm_math import sklearn_lower_bound_offset as sklearn_lower_bound_offset

__all__ = [
    "BayesianGaussianMixture",
    "WEIGHT_PRIOR_TYPES",
    "estimate_weight_concentration",
    "expected_log_weights",
    "expected_weights",
    "kl_weights",
    "estimate_normal_wishart",
    "expected_log_gaussian",
    "variational_elbo",
]


class BayesianGaussianMixture(BaseMixture):
    r"""Variational Bayesian Gaussian mixture (mean-field, CAVI), full covariances.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound ``K``; superfluous components get weights close to zero.
    covariance_type : {'full'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the (total) ELBO, in nats.
    reg_covar : float, default=0.0
        Added to :math:`S_k` (as scikit-learn does). The prior :math:`\Psi_0` already keeps
        every :math:`\Psi_k` positive definite; a non-zero value makes the q(μ, Λ) update
        slightly inexact.
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {'k-means++', 'random', 'random_from_data'}, default='k-means++'
    resp_init : array-like of shape (n_samples, n_components), optional
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, \
default='dirichlet_process'
    weight_concentration_prior : float, optional
        :math:`\gamma` or :math:`\alpha_0`; default ``1 / n_components``.
    mean_precision_prior : float, optional
        :math:`\beta_0`; default 1.
    mean_prior : array-like of shape (d,), optional
        :math:`m_0`; default the data mean.
    degrees_of_freedom_prior : float, optional
        :math:`\nu_0 > d - 1`; default ``d``.
    covariance_prior : array-like of shape (d, d), optional
        :math:`\Psi_0 = W_0^{-1}`; default the data covariance.
    random_state : int, numpy.random.Generator or None

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
        Expected weights under :math:`q(\pi)`.
    weight_concentration_ : ndarray of shape (K,) or tuple of two
        :math:`\alpha` or :math:`(a, b)`.
    mean_precision_, degrees_of_freedom_ : ndarray of shape (K,)
        :math:`\beta_k`, :math:`\nu_k`.
    means_ : ndarray of shape (K, d)
        :math:`m_k`.
    covariances_ : ndarray of shape (K, d, d)
        :math:`\Psi_k/\nu_k = (\mathbb E[\Lambda_k])^{-1}`.
    precisions_, precisions_cholesky_ : ndarray of shape (K, d, d)
        :math:`\nu_kW_k` and its upper Cholesky factor.
    lower_bound_ : float
        Final ELBO (nats, all constants included).
    lower_bounds_ : ndarray of shape (n_iter_,)
        ELBO after every iteration.
    converged_, n_iter_, n_features_in_
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 0.0,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "k-means++",
        resp_init: Any = None,
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior: Any = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        random_state: Any = None,
    ) -> None:
        super().__init__(
            n_components=n_components,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            resp_init=resp_init,
            random_state=random_state,
        )
        self.covariance_type = covariance_type
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, X: np.ndarray) -> None:
        n, d = X.shape
        if self.covariance_type != "full":
            raise ValueError(
                "BayesianGaussianMixture supports covariance_type='full' only (Normal-Wishart "
                f"prior); got {self.covariance_type!r}. Use GaussianMixture for 'tied', 'diag' "
                "or 'spherical'."
            )
        _check_prior_type(self.weight_concentration_prior_type)

        def positive(value: Any, name: str, default: float) -> float:
            if value is None:
                return default
            # np.isscalar is a TypeGuard whose type has no <=; as a plain bool it narrows nothing
            scalar = bool(np.isscalar(value))
            if not scalar or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number; got {value!r}")
            return float(value)

        self.weight_concentration_prior_ = positive(
            self.weight_concentration_prior, "weight_concentration_prior", 1.0 / self.n_components
        )
        self.mean_precision_prior_ = positive(
            self.mean_precision_prior, "mean_precision_prior", 1.0
        )
        if self.mean_prior is None:
            self.mean_prior_ = X.mean(axis=0)
        else:
            m0 = np.asarray(self.mean_prior, dtype=np.float64)
            if m0.shape != (d,) or not np.all(np.isfinite(m0)):
                raise ValueError(f"mean_prior must be a finite vector of shape ({d},)")
            self.mean_prior_ = m0
        nu0 = positive(self.degrees_of_freedom_prior, "degrees_of_freedom_prior", float(d))
        if nu0 <= d - 1:
            raise ValueError(
                f"degrees_of_freedom_prior must be greater than n_features - 1 = {d - 1}; got {nu0}"
            )
        self.degrees_of_freedom_prior_ = nu0
        if self.covariance_prior is None:
            if n < 2:
                raise ValueError("the default covariance_prior needs at least 2 samples")
            psi0 = np.atleast_2d(np.cov(X.T))
            what = (
                "the default covariance_prior (the data covariance) is singular: some feature "
                "is constant or linearly dependent, or n_samples <= n_features. Remove the "
                "degenerate features (columns) or add samples; in Python, covariance_prior can "
                "also be passed explicitly."
            )
        else:
            psi0 = np.asarray(self.covariance_prior, dtype=np.float64)
            if psi0.shape != (d, d):
                raise ValueError(f"covariance_prior must have shape ({d}, {d}); got {psi0.shape}")
            what = "covariance_prior must be symmetric positive definite"
        if not np.allclose(psi0, psi0.T) or cholesky_lower(psi0) is None:
            raise ValueError(what)
        self.covariance_prior_ = psi0

    # ------------------------------------------------------------------ template hooks
    def _initialize(self, X: np.ndarray, resp: np.ndarray | None) -> None:
        assert resp is not None
        self._update_q_params(X, resp)

    def _update_q_params(self, X: np.ndarray, resp: np.ndarray) -> None:
        nk, xk, sk = estimate_gaussian_parameters(X, resp, self.reg_covar, "full")
        self.weight_concentration_ = estimate_weight_concentration(
            nk, self.weight_concentration_prior_, self.weight_concentration_prior_type
        )
        beta, means, dof, inv_scales = estimate_normal_wishart(
            nk,
            xk,
            sk,
            self.mean_prior_,
            self.mean_precision_prior_,
            self.degrees_of_freedom_prior_,
            self.covariance_prior_,
        )
        self.mean_precision_ = beta
        self.means_ = means
        self.degrees_of_freedom_ = dof
        self.covariances_ = inv_scales / dof[:, None, None]
        self.precisions_cholesky_ = compute_precision_cholesky(
            self.covariances_, "full", self.reg_covar
        )

    def _m_step(self, X: np.ndarray, log_resp: np.ndarray) -> None:
        self._update_q_params(X, np.exp(log_resp))

    def _estimate_log_weights(self) -> np.ndarray:
        return expected_log_weights(
            self.weight_concentration_, self.weight_concentration_prior_type
        )

    def _estimate_log_prob(self, X: np.ndarray) -> np.ndarray:
        return expected_log_gaussian(
            X,
            self.means_,
            self.precisions_cholesky_,
            self.degrees_of_freedom_,
            self.mean_precision_,
        )

    def components_kl(self) -> np.ndarray:
        r""":math:`\mathrm{KL}(q(\mu_k,\Lambda_k)\|p(\mu_k,\Lambda_k))` per component, (K,)."""
        return np.array(
            [
                kl_normal_wishart(
                    self.means_[k],
                    self.mean_precision_[k],
                    self.covariances_[k] * self.degrees_of_freedom_[k],
                    self.degrees_of_freedom_[k],
                    self.mean_prior_,
                    self.mean_precision_prior_,
                    self.covariance_prior_,
                    self.degrees_of_freedom_prior_,
                )
                for k in range(self.n_components)
            ]
        )

    def weights_kl(self) -> float:
        r""":math:`\mathrm{KL}(q(\pi)\|p(\pi))`."""
        return kl_weights(
            self.weight_concentration_,
            self.weight_concentration_prior_,
            self.weight_concentration_prior_type,
        )

    def _compute_lower_bound(
        self, X: np.ndarray, log_resp: np.ndarray, log_prob_norm: float
    ) -> float:
        return variational_elbo(
            np.exp(log_resp),
            self._estimate_weighted_log_prob(X),
            self.weights_kl(),
            self.components_kl(),
        )

    def elbo(self, X: Any, q: Any | None = None) -> float:
        r"""Full ELBO at the fitted :math:`q(\pi)q(\mu,\Lambda)` with :math:`q(Z)` = ``q``
        (default: the optimal responsibilities ``predict_proba(X)``)."""
        log_rho = self.weighted_log_prob(X)
        if q is None:
            q = self.predict_proba(X)
        return variational_elbo(np.asarray(q), log_rho, self.weights_kl(), self.components_kl())

    def _get_parameters(self) -> tuple:
        return (
            self.weight_concentration_,
            self.mean_precision_,
            self.means_,
            self.degrees_of_freedom_,
            self.covariances_,
            self.precisions_cholesky_,
        )

    def _set_parameters(self, params: tuple) -> None:
        (
            self.weight_concentration_,
            self.mean_precision_,
            self.means_,
            self.degrees_of_freedom_,
            self.covariances_,
            self.precisions_cholesky_,
        ) = params
        self.weights_ = expected_weights(
            self.weight_concentration_, self.weight_concentration_prior_type
        )
        self.precisions_ = precisions_from_precision_cholesky(self.precisions_cholesky_, "full")

r"""Gaussian mixture fitted by maximum likelihood with EM.

Model: :math:`z_n \sim \mathrm{Cat}(\pi)`,
:math:`x_n \mid z_n = k \sim \mathcal N(\mu_k, \Sigma_k)`.
Each EM iteration of :class:`GaussianMixture` performs

E-step (:func:`~genrec.foundations.gaussian.estimate_log_resp`), in log space:

.. math::

    \ell_{nk} = \log\pi_k + \log|U_k| - \tfrac d2\log 2\pi
               - \tfrac12\lVert x_n^\top U_k - \mu_k^\top U_k\rVert^2,\qquad
    \log r_{nk} = \ell_{nk} - \operatorname{logsumexp}_j \ell_{nj},

M-step (:func:`~genrec.foundations.gaussian.estimate_gaussian_parameters`):

.. math::

    N_k = \sum_n r_{nk},\quad \pi_k = N_k / n,\quad \mu_k = \tfrac{1}{N_k}\sum_n r_{nk}x_n,\quad
    \Sigma_k = \tfrac{1}{N_k}\sum_n r_{nk}(x_n-\mu_k)(x_n-\mu_k)^\top + \text{reg}\,I,

and :math:`U_k` is recomputed from the Cholesky factor of :math:`\Sigma_k`. The recorded bound
of iteration :math:`t` is :math:`\frac1n\log p(X\mid\theta^{(t)})`, the mean log-likelihood of
the parameters entering that iteration (equal to the ELBO, since the E-step makes the KL
term zero). Exact EM never decreases it. The ``reg`` added to each covariance makes the
M-step inexact: a step can then lose at most
:math:`\frac{1}{2n}\sum_k N_k \sum_j [\log(1 + \text{reg}/\lambda_{kj}) -
\text{reg}/(\lambda_{kj} + \text{reg})]` (:math:`\lambda_{kj}` the eigenvalues of the unregularised
covariance), which matters only for a nearly flat component (the test suite checks this bound).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genrec.foundations.elbo import elbo as _elbo
from genrec.foundations.elbo import kl_posterior as _kl_posterior
from genrec.foundations.elbo import log_likelihood as _log_likelihood
from genrec.foundations.gaussian import (
    check_covariance_type,
    compute_precision_cholesky,
    covariances_from_precision_cholesky,
    estimate_gaussian_parameters,
    log_gaussian_prob,
    n_covariance_parameters,
    precision_cholesky_from_precisions,
    precisions_from_precision_cholesky,
)
from genrec.foundations.mixture_base import BaseMixture, check_array

__all__ = ["GaussianMixture", "gmm_n_parameters"]


def gmm_n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters of a Gaussian mixture: covariances + K*d means + (K - 1) weights."""
    return (
        n_covariance_parameters(covariance_type, n_components, n_features)
        + n_components * n_features
        + n_components
        - 1
    )


_PRECISION_SHAPES = {
    "full": lambda K, d: (K, d, d),
    "tied": lambda K, d: (d, d),
    "diag": lambda K, d: (K, d),
    "spherical": lambda K, d: (K,),
}


class GaussianMixture(BaseMixture):
    r"""Gaussian mixture model fitted by EM (maximum likelihood).

    Parameters
    ----------
    n_components : int, default=1
        Number of components ``K``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood per sample.
    reg_covar : float, default=1e-6
        Covariance floor added to every diagonal in the M-step.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the one with the highest final bound is kept.
    init_params : {'k-means++', 'random', 'random_from_data'}, default='k-means++'
        See :class:`~genrec.foundations.mixture_base.BaseMixture`.
    resp_init : array-like of shape (n_samples, n_components), optional
        Explicit initial responsibilities.
    weights_init, means_init, precisions_init : array-like, optional
        Initial parameters (shapes ``(K,)``, ``(K, d)`` and the covariance shape). When all
        three are given, no initial responsibilities are computed.
    random_state : int, numpy.random.Generator or None, default=None

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, d)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes depend on ``covariance_type`` (see :mod:`genrec.foundations.gaussian`).
    lower_bound_ : float
        Final bound (mean log-likelihood per sample) of the kept restart.
    lower_bounds_ : ndarray of shape (n_iter_,)
        The bound after every iteration of the kept restart (the history).
    converged_ : bool
    n_iter_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from genrec.foundations import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> sorted(np.round(gm.means_[:, 0]).tolist())
    [-4.0, 4.0]
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "k-means++",
        resp_init: Any = None,
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
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
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # ------------------------------------------------------------------ validation
    def _check_parameters(self, X: np.ndarray) -> None:
        check_covariance_type(self.covariance_type)
        K, d = self.n_components, X.shape[1]
        self._weights_init = None
        self._means_init = None
        self._prec_chol_init = None
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            if w.shape != (K,):
                raise ValueError(f"weights_init must have shape ({K},); got {w.shape}")
            if np.any(~np.isfinite(w)) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise ValueError("weights_init must be non-negative and sum to 1")
            self._weights_init = w
        if self.means_init is not None:
            m = np.asarray(self.means_init, dtype=np.float64)
            if m.shape != (K, d):
                raise ValueError(f"means_init must have shape ({K}, {d}); got {m.shape}")
            if not np.all(np.isfinite(m)):
                raise ValueError("means_init contains NaN or infinite values")
            self._means_init = m
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=np.float64)
            shape = _PRECISION_SHAPES[self.covariance_type](K, d)
            if p.shape != shape:
                raise ValueError(
                    f"precisions_init must have shape {shape} for covariance_type="
                    f"{self.covariance_type!r}; got {p.shape}"
                )
            self._prec_chol_init = precision_cholesky_from_precisions(p, self.covariance_type)

    def _needs_resp_init(self) -> bool:
        return (
            self.resp_init is not None
            or self.weights_init is None
            or self.means_init is None
            or self.precisions_init is None
        )

    # ------------------------------------------------------------------ template hooks
    def _initialize(self, X: np.ndarray, resp: np.ndarray | None) -> None:
        if resp is not None:
            nk, means, covs = estimate_gaussian_parameters(
                X, resp, self.reg_covar, self.covariance_type
            )
            self.weights_ = nk / nk.sum()
            self.means_ = means
            self.covariances_ = covs
            self.precisions_cholesky_ = compute_precision_cholesky(
                covs, self.covariance_type, self.reg_covar
            )
        if self._weights_init is not None:
            self.weights_ = self._weights_init.copy()
        if self._means_init is not None:
            self.means_ = self._means_init.copy()
        if self._prec_chol_init is not None:
            self.precisions_cholesky_ = self._prec_chol_init.copy()
            self.covariances_ = covariances_from_precision_cholesky(
                self.precisions_cholesky_, self.covariance_type
            )

    def _m_step(self, X: np.ndarray, log_resp: np.ndarray) -> None:
        nk, self.means_, self.covariances_ = estimate_gaussian_parameters(
            X, np.exp(log_resp), self.reg_covar, self.covariance_type
        )
        self.weights_ = nk / nk.sum()
        self.precisions_cholesky_ = compute_precision_cholesky(
            self.covariances_, self.covariance_type, self.reg_covar
        )

    def _estimate_log_prob(self, X: np.ndarray) -> np.ndarray:
        return log_gaussian_prob(X, self.means_, self.precisions_cholesky_, self.covariance_type)

    def _estimate_log_weights(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.weights_)

    def _compute_lower_bound(
        self, X: np.ndarray, log_resp: np.ndarray, log_prob_norm: float
    ) -> float:
        return log_prob_norm

    def _get_parameters(self) -> tuple:
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params: tuple) -> None:
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params
        self.precisions_ = precisions_from_precision_cholesky(
            self.precisions_cholesky_, self.covariance_type
        )

    # ------------------------------------------------------------------ model selection
    def _n_parameters(self) -> int:
        return gmm_n_parameters(self.covariance_type, self.n_components, self.means_.shape[1])

    def bic(self, X: Any) -> float:
        r"""Bayesian information criterion :math:`-2\log p(X\mid\hat\theta) + p\log n`.

        ``p`` counts free parameters; lower is better.
        """
        X = check_array(X)
        n = X.shape[0]
        return -2.0 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X: Any) -> float:
        r"""Akaike information criterion :math:`-2\log p(X\mid\hat\theta) + 2p` (lower: better)."""
        X = check_array(X)
        return -2.0 * self.score(X) * X.shape[0] + 2.0 * self._n_parameters()

    # ------------------------------------------------------------------ the identity
    def elbo(self, X: Any, q: Any) -> float:
        r"""ELBO(q, θ) = :math:`\sum_{n,k} q_{nk}(\ell_{nk} - \log q_{nk})` at the fitted θ.

        Parameters
        ----------
        X : array-like of shape (n, d)
        q : array-like of shape (n, K)
            Any distribution over the component of every sample.
        """
        return _elbo(q, self.weighted_log_prob(X))

    def kl_posterior(self, X: Any, q: Any) -> float:
        r""":math:`\sum_n \mathrm{KL}(q_n\,\|\,p(z_n\mid x_n,\theta))` at the fitted parameters."""
        return _kl_posterior(q, self.weighted_log_prob(X))

    def log_likelihood(self, X: Any) -> float:
        r"""Total log-likelihood at the fitted θ.

        .. math:: \log p(X\mid\theta) = \mathrm{ELBO}(q,\theta) + \mathrm{KL}(q\|p(z\mid X,\theta))
        """
        return _log_likelihood(self.weighted_log_prob(X))

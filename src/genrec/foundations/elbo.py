r"""The ELBO, KL divergences, and the decomposition of the log-likelihood.

For a latent-variable model :math:`p(x, z \mid \theta)` and *any* distribution
:math:`q(z)` over the latent variable,

.. math::

    \log p(x \mid \theta) = \underbrace{\mathbb E_q[\log p(x, z\mid\theta) - \log q(z)]}_
    {\mathrm{ELBO}(q, \theta)} + \underbrace{\mathbb E_q[\log q(z) - \log p(z\mid x,\theta)]}_
    {\mathrm{KL}(q \,\|\, p(z\mid x, \theta))} .

For a mixture, :math:`z_n \in \{1..K\}`, :math:`q(z_n = k) = q_{nk}` and
:math:`\ell_{nk} = \log p(x_n, z_n = k \mid \theta) = \log\pi_k + \log p(x_n\mid\theta_k)`
(``weighted_log_prob``); the functions below compute each term of the identity summed over
samples. The KL is non-negative and is zero exactly when :math:`q` equals the posterior
(the responsibilities), which is what the E-step sets, so after an E-step the ELBO *is* the
log-likelihood. ``0 \log 0`` is taken as 0.

The remaining functions are closed-form KL divergences and Wishart quantities used by the
variational Bayesian mixture and the Beta-Bernoulli example. Wishart distributions are
parameterised (as in Bishop, PRML §10.2) by the scale :math:`W` and degrees of freedom
:math:`\nu`, with :math:`\mathbb E[\Lambda] = \nu W`; the functions take the *inverse*
scale :math:`\Psi = W^{-1}` because that is what the CAVI update produces, and work with its
Cholesky factor (no explicit inverse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln, xlogy

from genrec.foundations._linalg import cholesky_lower, solve_triangular
from genrec.foundations.gaussian import logsumexp

__all__ = [
    "ElboTerms",
    "elbo_terms",
    "log_likelihood",
    "elbo",
    "kl_posterior",
    "kl_categorical",
    "kl_beta",
    "kl_dirichlet",
    "log_multivariate_gamma",
    "wishart_log_norm",
    "wishart_expected_log_det",
    "wishart_entropy",
    "kl_wishart",
    "kl_normal_wishart",
]


def _check_q(resp: np.ndarray, weighted_log_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(resp, dtype=np.float64)
    lp = np.asarray(weighted_log_prob, dtype=np.float64)
    if q.shape != lp.shape or q.ndim != 2:
        raise ValueError(
            f"q and weighted_log_prob must both have shape (n_samples, n_components); "
            f"got {q.shape} and {lp.shape}"
        )
    if np.any(q < 0) or not np.allclose(q.sum(axis=1), 1.0, atol=1e-8):
        raise ValueError("every row of q must be a probability vector (non-negative, sums to 1)")
    return q, lp


def _q_times(q: np.ndarray, a: np.ndarray) -> np.ndarray:
    """q * a with 0 * (-inf) = 0."""
    with np.errstate(invalid="ignore"):
        return np.where(q > 0, q * a, 0.0)


def log_likelihood(weighted_log_prob: np.ndarray) -> float:
    r"""Total log-likelihood.

    .. math:: \sum_n \log p(x_n\mid\theta) = \sum_n \operatorname{logsumexp}_k \ell_{nk}

    Parameters
    ----------
    weighted_log_prob : ndarray of shape (n, K)
        :math:`\ell_{nk} = \log \pi_k + \log p(x_n\mid\theta_k)`.

    Returns
    -------
    float
    """
    return float(np.sum(logsumexp(np.asarray(weighted_log_prob, dtype=np.float64), axis=1)))


def elbo(resp: np.ndarray, weighted_log_prob: np.ndarray) -> float:
    r"""Evidence lower bound :math:`\sum_n\sum_k q_{nk}(\ell_{nk} - \log q_{nk})`.

    Parameters
    ----------
    resp : ndarray of shape (n, K)
        Any distribution :math:`q(z_n)` per row (rows sum to one).
    weighted_log_prob : ndarray of shape (n, K)
        :math:`\ell_{nk} = \log p(x_n, z_n = k \mid \theta)`.

    Returns
    -------
    float
        :math:`\mathrm{ELBO}(q, \theta) \le \log p(X \mid \theta)`.
    """
    q, lp = _check_q(resp, weighted_log_prob)
    return float(np.sum(_q_times(q, lp)) - np.sum(xlogy(q, q)))


@dataclass(frozen=True)
class ElboTerms:
    r"""The ELBO of a mixture's :math:`q(z)` split into its three terms (sums over samples).

    ``expected_log_likelihood`` :math:`=\sum_{nk}q_{nk}\log p(x_n\mid z_n=k)`,
    ``expected_log_prior`` :math:`=\sum_{nk}q_{nk}\log p(z_n=k)` and ``entropy``
    :math:`=-\sum_{nk}q_{nk}\log q_{nk}`; ``elbo`` is their sum.
    """

    expected_log_likelihood: float
    expected_log_prior: float
    entropy: float

    @property
    def elbo(self) -> float:
        return self.expected_log_likelihood + self.expected_log_prior + self.entropy


def elbo_terms(resp: np.ndarray, log_prob: np.ndarray, log_weights: np.ndarray) -> ElboTerms:
    r""":func:`elbo` in its terms, for :math:`\ell_{nk}=\log\pi_k+\log p(x_n\mid\theta_k)`.

    Parameters
    ----------
    resp : ndarray of shape (n, K)
        Any :math:`q(z_n)` per row.
    log_prob : ndarray of shape (n, K)
        :math:`\log p(x_n\mid z_n=k)` (for CAVI its expectation under :math:`q(\theta)`).
    log_weights : ndarray of shape (K,)
        :math:`\log\pi_k` (for CAVI :math:`\mathbb E_q[\log\pi_k]`).

    Returns
    -------
    ElboTerms
        ``.elbo`` equals ``elbo(resp, log_prob + log_weights)`` up to rounding.
    """
    lp = np.asarray(log_prob, dtype=np.float64)
    lw = np.broadcast_to(np.asarray(log_weights, dtype=np.float64), lp.shape)
    q, _ = _check_q(resp, lp)
    return ElboTerms(
        float(np.sum(_q_times(q, lp))),
        float(np.sum(_q_times(q, lw))),
        float(-np.sum(xlogy(q, q))) + 0.0,  # + 0.0: a one-hot q has entropy 0, not -0
    )


def kl_categorical(q: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    r"""Row-wise :math:`\mathrm{KL}(q_n\,\|\,p_n) = \sum_k q_{nk}(\log q_{nk} - \log p_{nk})`.

    Parameters
    ----------
    q : ndarray of shape (n, K)
        Probabilities.
    log_p : ndarray of shape (n, K)
        Log probabilities of the second distribution.

    Returns
    -------
    ndarray of shape (n,)
    """
    q = np.asarray(q, dtype=np.float64)
    log_p = np.asarray(log_p, dtype=np.float64)
    return np.sum(xlogy(q, q) - _q_times(q, log_p), axis=-1)


def kl_posterior(resp: np.ndarray, weighted_log_prob: np.ndarray) -> float:
    r"""KL from q to the exact posterior, summed over samples.

    .. math::

        \sum_n \mathrm{KL}(q(z_n)\,\|\,p(z_n\mid x_n,\theta)),\qquad
        \log p(z_n = k\mid x_n,\theta) = \ell_{nk} - \operatorname{logsumexp}_j \ell_{nj}.

    Parameters
    ----------
    resp : ndarray of shape (n, K)
        Any distribution :math:`q(z_n)` per row.
    weighted_log_prob : ndarray of shape (n, K)
        :math:`\ell_{nk} = \log p(x_n, z_n = k\mid\theta)`.

    Returns
    -------
    float
        Non-negative; zero iff ``resp`` equals the posterior responsibilities.
    """
    q, lp = _check_q(resp, weighted_log_prob)
    log_post = lp - logsumexp(lp, axis=1)[:, None]
    return float(np.sum(kl_categorical(q, log_post)))


def kl_beta(a_q, b_q, a_p, b_p):
    r""":math:`\mathrm{KL}(\mathrm{Beta}(a_q,b_q)\,\|\,\mathrm{Beta}(a_p,b_p))` in closed form.

    .. math::

        \log B(a_p,b_p) - \log B(a_q,b_q) + (a_q-a_p)\psi(a_q) + (b_q-b_p)\psi(b_q)
        + (a_p-a_q+b_p-b_q)\psi(a_q+b_q).

    Parameters
    ----------
    a_q, b_q, a_p, b_p : float or ndarray
        Positive shape parameters (broadcast together).

    Returns
    -------
    float or ndarray
    """
    a_q, b_q, a_p, b_p = (np.asarray(v, dtype=np.float64) for v in (a_q, b_q, a_p, b_p))
    out = (
        betaln(a_p, b_p)
        - betaln(a_q, b_q)
        + (a_q - a_p) * digamma(a_q)
        + (b_q - b_p) * digamma(b_q)
        + (a_p - a_q + b_p - b_q) * digamma(a_q + b_q)
    )
    return float(out) if out.ndim == 0 else out


def kl_dirichlet(alpha_q: np.ndarray, alpha_p: np.ndarray) -> float:
    r""":math:`\mathrm{KL}(\mathrm{Dir}(\alpha^q)\,\|\,\mathrm{Dir}(\alpha^p))`.

    .. math::

        \log\Gamma(\hat\alpha^q) - \sum_k\log\Gamma(\alpha^q_k) - \log\Gamma(\hat\alpha^p)
        + \sum_k \log\Gamma(\alpha^p_k) + \sum_k(\alpha^q_k-\alpha^p_k)(\psi(\alpha^q_k) -
        \psi(\hat\alpha^q)),\quad \hat\alpha = \textstyle\sum_k \alpha_k.

    Parameters
    ----------
    alpha_q, alpha_p : ndarray of shape (K,)

    Returns
    -------
    float
    """
    aq = np.asarray(alpha_q, dtype=np.float64)
    ap = np.broadcast_to(np.asarray(alpha_p, dtype=np.float64), aq.shape)
    sq, sp = aq.sum(), ap.sum()
    return float(
        gammaln(sq)
        - gammaln(aq).sum()
        - gammaln(sp)
        + gammaln(ap).sum()
        + np.sum((aq - ap) * (digamma(aq) - digamma(sq)))
    )


def log_multivariate_gamma(a, d: int):
    r"""Log multivariate gamma function (vectorised over ``a``).

    .. math:: \log\Gamma_d(a) = \tfrac{d(d-1)}{4}\log\pi + \sum_{i=0}^{d-1}\log\Gamma(a - i/2)
    """
    a = np.asarray(a, dtype=np.float64)
    i = np.arange(d).reshape((d,) + (1,) * a.ndim)
    out = d * (d - 1) / 4.0 * math.log(math.pi) + np.sum(gammaln(a - 0.5 * i), axis=0)
    return float(out) if out.ndim == 0 else out


def wishart_log_norm(log_det_scale, dof, d: int):
    r"""Log normaliser :math:`\log B(W,\nu)` of the Wishart density (Bishop B.79).

    .. math::

        \log B(W,\nu) = -\tfrac{\nu}{2}\log|W| - \tfrac{\nu d}{2}\log 2 - \log\Gamma_d(\nu/2).

    Parameters
    ----------
    log_det_scale : float or ndarray
        :math:`\log|W|`.
    dof : float or ndarray
        :math:`\nu > d - 1`.
    d : int
        Dimension.
    """
    dof = np.asarray(dof, dtype=np.float64)
    out = (
        -0.5 * dof * np.asarray(log_det_scale)
        - 0.5 * dof * d * math.log(2.0)
        - log_multivariate_gamma(0.5 * dof, d)
    )
    return float(out) if np.ndim(out) == 0 else out


def wishart_expected_log_det(log_det_scale, dof, d: int):
    r"""Expected log-determinant under a Wishart (Bishop B.81).

    .. math::

        \mathbb E[\log|\Lambda|] = \sum_{i=1}^{d}\psi\!\left(\tfrac{\nu+1-i}{2}\right)
        + d\log 2 + \log|W|
    """
    dof = np.asarray(dof, dtype=np.float64)
    i = np.arange(d).reshape((d,) + (1,) * dof.ndim)
    out = np.sum(digamma(0.5 * (dof - i)), axis=0) + d * math.log(2.0) + log_det_scale
    return float(out) if np.ndim(out) == 0 else out


def wishart_entropy(log_det_scale, dof, d: int):
    r"""Entropy of a Wishart (Bishop B.82).

    .. math::

        H[\mathcal W(W,\nu)] = -\log B(W,\nu) - \tfrac{\nu-d-1}{2}\mathbb E[\log|\Lambda|]
        + \tfrac{\nu d}{2}
    """
    dof = np.asarray(dof, dtype=np.float64)
    out = (
        -wishart_log_norm(log_det_scale, dof, d)
        - 0.5 * (dof - d - 1) * wishart_expected_log_det(log_det_scale, dof, d)
        + 0.5 * dof * d
    )
    return float(out) if np.ndim(out) == 0 else out


def _chol(m: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    chol = cholesky_lower(m) if m.ndim == 2 and np.allclose(m, m.T) else None
    if chol is None:
        raise ValueError(f"{what} must be symmetric positive definite")
    return chol


def _logdet_from_chol(chol: np.ndarray) -> float:
    return float(2.0 * np.sum(np.log(np.diag(chol))))


def kl_wishart(
    inv_scale_q: np.ndarray, dof_q: float, inv_scale_p: np.ndarray, dof_p: float
) -> float:
    r"""KL between Wisharts :math:`\mathcal W(W_q,\nu_q)` and :math:`\mathcal W(W_p,\nu_p)`.

    Given the inverse scales :math:`\Psi = W^{-1}`:

    .. math::

        \log B(W_q,\nu_q) - \log B(W_p,\nu_p) + \tfrac{\nu_q-\nu_p}{2}\mathbb E_q\log|\Lambda|
        - \tfrac{\nu_q d}{2} + \tfrac{\nu_q}{2}\operatorname{tr}(W_p^{-1}W_q),

    with :math:`\operatorname{tr}(W_p^{-1} W_q) = \operatorname{tr}(\Psi_p\Psi_q^{-1}) =
    \lVert L_q^{-1} L_p\rVert_F^2` for Cholesky factors :math:`\Psi = LL^\top`.

    Parameters
    ----------
    inv_scale_q, inv_scale_p : ndarray of shape (d, d)
        Inverse scale matrices :math:`\Psi_q = W_q^{-1}`, :math:`\Psi_p = W_p^{-1}`.
    dof_q, dof_p : float
        Degrees of freedom (> d - 1).

    Returns
    -------
    float
    """
    lq = _chol(inv_scale_q, "inv_scale_q")
    lp = _chol(inv_scale_p, "inv_scale_p")
    d = lq.shape[0]
    log_det_wq = -_logdet_from_chol(lq)
    log_det_wp = -_logdet_from_chol(lp)
    trace = float(np.sum(solve_triangular(lq, lp, lower=True) ** 2))
    return float(
        wishart_log_norm(log_det_wq, dof_q, d)
        - wishart_log_norm(log_det_wp, dof_p, d)
        + 0.5 * (dof_q - dof_p) * wishart_expected_log_det(log_det_wq, dof_q, d)
        - 0.5 * dof_q * d
        + 0.5 * dof_q * trace
    )


def kl_normal_wishart(
    mean_q: np.ndarray,
    beta_q: float,
    inv_scale_q: np.ndarray,
    dof_q: float,
    mean_p: np.ndarray,
    beta_p: float,
    inv_scale_p: np.ndarray,
    dof_p: float,
) -> float:
    r"""KL between Normal-Wishart distributions.

    The density is :math:`\mathcal N(\mu\mid m,(\beta\Lambda)^{-1})\,\mathcal W(\Lambda\mid W,\nu)`
    and the KL is

    .. math::

        \mathrm{KL}(\mathcal W_q\|\mathcal W_p) + \tfrac12\Big[\tfrac{d\beta_p}{\beta_q}
        + \beta_p\nu_q (m_q-m_p)^\top W_q (m_q-m_p) - d + d\log\tfrac{\beta_q}{\beta_p}\Big],

    the second term being :math:`\mathbb E_{q(\Lambda)}` of the KL between the conditional
    Gaussians.

    Parameters
    ----------
    mean_q, mean_p : ndarray of shape (d,)
    beta_q, beta_p : float
        Precision scalings of the mean.
    inv_scale_q, inv_scale_p : ndarray of shape (d, d)
        :math:`\Psi = W^{-1}`.
    dof_q, dof_p : float

    Returns
    -------
    float
    """
    lq = _chol(inv_scale_q, "inv_scale_q")
    d = lq.shape[0]
    diff = np.asarray(mean_q, dtype=np.float64) - np.asarray(mean_p, dtype=np.float64)
    quad = float(np.sum(solve_triangular(lq, diff, lower=True) ** 2))
    gauss = 0.5 * (d * beta_p / beta_q + beta_p * dof_q * quad - d + d * math.log(beta_q / beta_p))
    return kl_wishart(inv_scale_q, dof_q, inv_scale_p, dof_p) + gauss

r"""Gaussian densities, Cholesky parameterisation and the sufficient statistics of a mixture.

Notation used throughout (and in the code):

* ``X`` has shape ``(n, d)``; row :math:`x_n`.
* ``K`` components with weights :math:`\pi_k`, means :math:`\mu_k` and covariances
  :math:`\Sigma_k`.
* Every component is parameterised by the Cholesky factor of its *precision*
  :math:`\Lambda_k = \Sigma_k^{-1}`: an upper-triangular :math:`U_k` with
  :math:`\Lambda_k = U_k U_k^\top` (the scikit-learn convention, ``precisions_chol``).
  Then :math:`(x - \mu_k)^\top \Lambda_k (x - \mu_k) = \lVert U_k^\top (x - \mu_k)\rVert^2`
  and :math:`\tfrac12 \log|\Lambda_k| = \sum_i \log (U_k)_{ii}`, so no matrix is ever
  inverted explicitly.

The shapes of the covariance parameters depend on ``covariance_type``:

=============  ==========================  ===============================
type           covariances                 precisions_chol
=============  ==========================  ===============================
``full``       ``(K, d, d)``               ``(K, d, d)`` upper triangular
``tied``       ``(d, d)``                  ``(d, d)`` upper triangular
``diag``       ``(K, d)``                  ``(K, d)`` (:math:`1/\sigma_{kj}`)
``spherical``  ``(K,)``                    ``(K,)`` (:math:`1/\sigma_k`)
=============  ==========================  ===============================
"""

from __future__ import annotations

import math

import numpy as np

from genrec.errors import DivergenceError
from genrec.foundations._linalg import cholesky_lower, triangular_inverse

__all__ = [
    "COVARIANCE_TYPES",
    "DegenerateCovarianceError",
    "check_covariance_type",
    "compute_precision_cholesky",
    "precision_cholesky_from_precisions",
    "covariances_from_precision_cholesky",
    "precisions_from_precision_cholesky",
    "log_det_cholesky",
    "log_gaussian_prob",
    "estimate_gaussian_parameters",
    "logsumexp",
    "estimate_log_resp",
    "n_covariance_parameters",
    "full_covariances",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# Rows per block in the full-covariance E-step: a (block, K*d) float64 buffer stays in cache.
_E_STEP_BLOCK = 256


class DegenerateCovarianceError(DivergenceError, ValueError):
    """A covariance matrix is not positive definite (a component collapsed).

    A :class:`~genrec.errors.DivergenceError`, the one type of numerical failures (the CLI
    prints its one-line message), and still a ``ValueError``, as before."""


def check_covariance_type(covariance_type: str) -> str:
    """Return ``covariance_type`` if valid, else raise a ``ValueError`` naming the choices."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}; got {covariance_type!r}"
        )
    return covariance_type


def _degenerate_message(component: int | None, reg_covar: float | None) -> str:
    where = "the tied covariance" if component is None else f"component {component}"
    reg = "" if reg_covar is None else f" (now {reg_covar:g})"
    return (
        f"{where} has a degenerate covariance matrix (not positive definite): it has "
        f"collapsed onto too few or identical points. Increase reg_covar{reg}, use fewer "
        "components, a constrained covariance_type ('diag', 'spherical' or 'tied'), or "
        "standardise / de-duplicate the data."
    )


def compute_precision_cholesky(
    covariances: np.ndarray, covariance_type: str, reg_covar: float | None = None
) -> np.ndarray:
    r"""Cholesky factors of the precisions from the covariances.

    For a full matrix :math:`\Sigma = L L^\top` (``L`` lower), the precision factor is
    :math:`U = L^{-\top}` (upper), obtained by a triangular solve, so that
    :math:`\Lambda = \Sigma^{-1} = U U^\top`.

    Parameters
    ----------
    covariances : ndarray
        ``(K, d, d)`` for 'full', ``(d, d)`` for 'tied', ``(K, d)`` for 'diag',
        ``(K,)`` for 'spherical'.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float, optional
        Only used to make the error message say what to change.

    Returns
    -------
    precisions_chol : ndarray
        Same shape as ``covariances``.

    Raises
    ------
    DegenerateCovarianceError
        If a covariance is not positive definite.
    """
    check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = covariances[None] if covariance_type == "tied" else covariances
        out = np.empty_like(stack)
        for k, cov in enumerate(stack):
            cov_chol = cholesky_lower(cov)
            if cov_chol is None or np.any(np.diag(cov_chol) <= 0):
                comp = None if covariance_type == "tied" else k
                raise DegenerateCovarianceError(_degenerate_message(comp, reg_covar))
            # U = L^{-T}: the triangular solve L X = I, transposed
            out[k] = triangular_inverse(cov_chol, lower=True).T
        return out[0] if covariance_type == "tied" else out
    bad = ~(covariances > 0) | ~np.isfinite(covariances)
    if np.any(bad):
        comp = int(np.argwhere(bad)[0][0])
        raise DegenerateCovarianceError(_degenerate_message(comp, reg_covar))
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    r"""Upper Cholesky factor :math:`U` with :math:`\Lambda = U U^\top` from precisions.

    Uses the exchange-matrix trick: with :math:`J` the anti-identity,
    :math:`J \Lambda J = L L^\top` gives :math:`U = J L J`.

    Parameters
    ----------
    precisions : ndarray
        Shapes as for covariances (see module docstring).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    precisions_chol : ndarray
        Same shape as ``precisions``.
    """
    check_covariance_type(covariance_type)
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        stack = precisions[None] if covariance_type == "tied" else precisions
        out = np.empty_like(stack)
        for k, prec in enumerate(stack):
            chol = cholesky_lower(prec[::-1, ::-1])
            if chol is None or not np.allclose(prec, prec.T):
                raise ValueError(f"precision matrix {k} is not symmetric positive definite")
            out[k] = chol[::-1, ::-1]
        return out[0] if covariance_type == "tied" else out
    if np.any(~(precisions > 0)):
        raise ValueError("precisions must be strictly positive")
    return np.sqrt(precisions)


def precisions_from_precision_cholesky(
    precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    r"""Precisions :math:`\Lambda = U U^\top` (or :math:`u^2` for 'diag'/'spherical')."""
    check_covariance_type(covariance_type)
    if covariance_type == "full":
        return np.matmul(precisions_chol, np.swapaxes(precisions_chol, 1, 2))
    if covariance_type == "tied":
        return precisions_chol @ precisions_chol.T
    return precisions_chol**2


def covariances_from_precision_cholesky(
    precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    r"""Covariances :math:`\Sigma = U^{-\top} U^{-1}` by a triangular solve (no inverse)."""
    check_covariance_type(covariance_type)
    if covariance_type in ("full", "tied"):
        stack = precisions_chol[None] if covariance_type == "tied" else precisions_chol
        out = np.empty_like(stack)
        for k, u in enumerate(stack):
            v = triangular_inverse(u, lower=False)  # U^{-1}
            out[k] = v.T @ v
        return out[0] if covariance_type == "tied" else out
    return 1.0 / precisions_chol**2


def log_det_cholesky(
    matrix_chol: np.ndarray, covariance_type: str, n_features: int
) -> np.ndarray | float:
    r"""Log-determinant of the Cholesky factors: :math:`\log|U_k| = \sum_i \log (U_k)_{ii}`.

    Equals :math:`\tfrac12 \log|\Lambda_k|`.

    Parameters
    ----------
    matrix_chol : ndarray
        Precision Cholesky factors (shapes as in the module docstring).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_features : int
        ``d``; needed for 'spherical' where :math:`\log|U_k| = d \log u_k`.

    Returns
    -------
    log_det : ndarray of shape (K,), or float for 'tied'
    """
    check_covariance_type(covariance_type)
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(matrix_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return float(np.sum(np.log(np.diag(matrix_chol))))
    if covariance_type == "diag":
        return np.sum(np.log(matrix_chol), axis=1)
    return n_features * np.log(matrix_chol)


def log_gaussian_prob(
    X: np.ndarray, means: np.ndarray, precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    r"""Log densities :math:`\log \mathcal N(x_n \mid \mu_k, \Sigma_k)`, every sample and component.

    .. math::

        \log \mathcal N(x_n \mid \mu_k, \Sigma_k)
        = -\tfrac{d}{2}\log 2\pi + \log|U_k|
          - \tfrac12 \lVert x_n^\top U_k - \mu_k^\top U_k \rVert^2 .

    For 'full' the products :math:`x_n^\top U_k` of all components are computed as one
    matrix product per block of rows (``X_block @ [U_1 ... U_K]``), so the cost is a
    single BLAS call per block and there is no loop over samples.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    means : ndarray of shape (K, d)
    precisions_chol : ndarray
        Upper Cholesky factors of the precisions (shapes in the module docstring).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    log_prob : ndarray of shape (n, K)
    """
    check_covariance_type(covariance_type)
    n, d = X.shape
    K = means.shape[0]
    log_det = log_det_cholesky(precisions_chol, covariance_type, d)
    maha = np.empty((n, K))
    if covariance_type == "full":
        # W = [U_1 | U_2 | ... | U_K] of shape (d, K*d); c = [mu_1 U_1 | ... | mu_K U_K].
        W = np.ascontiguousarray(precisions_chol.transpose(1, 0, 2).reshape(d, K * d))
        c = np.einsum("kd,kde->ke", means, precisions_chol).reshape(K * d)
        # Block indicator (K*d, K): sums squared coordinates per component via BLAS.
        block_sum = np.kron(np.eye(K), np.ones((d, 1)))
        buf = np.empty((_E_STEP_BLOCK, K * d))
        for start in range(0, n, _E_STEP_BLOCK):
            stop = min(start + _E_STEP_BLOCK, n)
            y = buf[: stop - start]
            np.matmul(X[start:stop], W, out=y)
            y -= c
            np.square(y, out=y)
            np.matmul(y, block_sum, out=maha[start:stop])
    elif covariance_type == "tied":
        y = X @ precisions_chol
        mu_u = means @ precisions_chol
        buf = np.empty_like(y)
        for k in range(K):
            np.subtract(y, mu_u[k], out=buf)
            np.square(buf, out=buf)
            maha[:, k] = buf.sum(axis=1)
    else:
        scale = precisions_chol if covariance_type == "diag" else precisions_chol[:, None]
        scale = np.broadcast_to(scale, (K, d))
        buf = np.empty_like(X)
        for k in range(K):
            np.subtract(X, means[k], out=buf)
            buf *= scale[k]
            np.square(buf, out=buf)
            maha[:, k] = buf.sum(axis=1)
    return -0.5 * (d * math.log(2.0 * math.pi) + maha) + log_det


def estimate_gaussian_parameters(
    X: np.ndarray, resp: np.ndarray, reg_covar: float, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""M-step sufficient statistics: soft counts, means and covariances.

    .. math::

        N_k = \sum_n r_{nk} + 10\epsilon, \qquad
        \mu_k = \frac{1}{N_k}\sum_n r_{nk} x_n, \qquad
        \Sigma_k = \frac{1}{N_k}\sum_n r_{nk}(x_n-\mu_k)(x_n-\mu_k)^\top + \text{reg}\, I .

    'tied' pools :math:`\Sigma = \sum_k N_k \Sigma_k / \sum_k N_k` (+ reg), 'diag' keeps the
    diagonal and 'spherical' its mean. :math:`\epsilon` is machine epsilon, so an empty
    component has :math:`N_k > 0`; ``reg`` (``reg_covar``) is the covariance floor that
    keeps a collapsing component positive definite. Each covariance is computed as one
    matrix product :math:`A_k^\top A_k` with :math:`A_k = \sqrt{r_{\cdot k}} \odot
    (X - \mu_k)` (centred exactly, so no cancellation).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    resp : ndarray of shape (n, K)
        Responsibilities :math:`r_{nk}`, rows summing to one.
    reg_covar : float
        Non-negative value added to the diagonal of every covariance.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    nk : ndarray of shape (K,)
    means : ndarray of shape (K, d)
    covariances : ndarray
        Shape depends on ``covariance_type`` (module docstring).
    """
    check_covariance_type(covariance_type)
    n, d = X.shape
    K = resp.shape[1]
    nk = resp.sum(axis=0) + 10.0 * np.finfo(np.float64).eps
    means = (resp.T @ X) / nk[:, None]
    buf = np.empty_like(X)
    if covariance_type in ("full", "tied"):
        sqrt_resp = np.sqrt(resp.T)
        cov = np.empty((K, d, d))
        for k in range(K):
            np.subtract(X, means[k], out=buf)
            buf *= sqrt_resp[k][:, None]
            cov[k] = buf.T @ buf
        if covariance_type == "tied":
            out = cov.sum(axis=0) / nk.sum()
            out.flat[:: d + 1] += reg_covar
            return nk, means, out
        cov /= nk[:, None, None]
        for k in range(K):
            cov[k].flat[:: d + 1] += reg_covar
        return nk, means, cov
    var = np.empty((K, d))
    for k in range(K):
        np.subtract(X, means[k], out=buf)
        np.square(buf, out=buf)
        var[k] = resp[:, k] @ buf
    var /= nk[:, None]
    var += reg_covar
    if covariance_type == "diag":
        return nk, means, var
    return nk, means, var.mean(axis=1)


def logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    r"""Stable :math:`\log\sum_j \exp a_j` along ``axis`` (rows of all ``-inf`` give ``-inf``)."""
    a = np.asarray(a, dtype=np.float64)
    a_max = np.max(a, axis=axis, keepdims=True)
    a_max = np.where(np.isfinite(a_max), a_max, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - a_max), axis=axis, keepdims=True)) + a_max
    return np.squeeze(out, axis=axis)


def estimate_log_resp(weighted_log_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""E-step in log space.

    With :math:`\ell_{nk} = \log \pi_k + \log \mathcal N(x_n\mid\mu_k,\Sigma_k)` (the
    *weighted* log probability, i.e. :math:`\log p(x_n, z_n=k\mid\theta)`):

    .. math::

        \log p(x_n\mid\theta) = \operatorname{logsumexp}_k \ell_{nk}, \qquad
        \log r_{nk} = \ell_{nk} - \log p(x_n\mid\theta) = \log p(z_n = k\mid x_n, \theta).

    Parameters
    ----------
    weighted_log_prob : ndarray of shape (n, K)

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
        :math:`\log p(x_n \mid \theta)`.
    log_resp : ndarray of shape (n, K)
        Log responsibilities.
    """
    log_prob_norm = logsumexp(weighted_log_prob, axis=1)
    with np.errstate(under="ignore", invalid="ignore"):
        log_resp = weighted_log_prob - log_prob_norm[:, None]
    return log_prob_norm, log_resp


def n_covariance_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Number of free covariance parameters (used by BIC/AIC)."""
    check_covariance_type(covariance_type)
    d = n_features
    return {
        "full": n_components * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": n_components * d,
        "spherical": n_components,
    }[covariance_type]


def full_covariances(
    covariances: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Covariances of any layout as one (K, d, d) array (a view for ``full`` and ``tied``)."""
    check_covariance_type(covariance_type)
    c = np.asarray(covariances, dtype=np.float64)
    K, d = n_components, n_features
    if covariance_type == "full":
        return c
    if covariance_type == "tied":
        return np.broadcast_to(c, (K, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(row) for row in c])
    return np.stack([np.eye(d) * v for v in c])

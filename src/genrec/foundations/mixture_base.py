r"""One template for EM and for mean-field VI on mixtures.

Both algorithms alternate two coordinate updates of a lower bound on :math:`\log p(X)`:

* **E-step** - set :math:`q(z)` given the current parameters (EM) or the current
  :math:`q(\theta)` (VI): :math:`\log r_{nk} = \ell_{nk} - \operatorname{logsumexp}_j \ell_{nj}`,
  computed in log space by :func:`~genrec.foundations.gaussian.estimate_log_resp`.
* **M-step** - maximise the bound over the parameters (EM) or over :math:`q(\theta)` (VI),
  holding the responsibilities fixed.

:class:`BaseMixture` writes the outer loop once: ``n_init`` restarts, stopping when the
bound changes by less than ``tol``, keeping the restart with the best bound, warning with
:class:`ConvergenceWarning` when that restart did not converge, and a final E-step so that
``fit_predict(X)`` equals ``fit(X).predict(X)``. Subclasses supply the E-step ingredients
(``_estimate_log_weights``, ``_estimate_log_prob``), ``_m_step`` and
``_compute_lower_bound``.
"""

from __future__ import annotations

import inspect
import logging
import numbers
import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from genrec.errors import NotFittedError
from genrec.foundations.gaussian import estimate_log_resp, logsumexp
from genrec.foundations.kmeans import _sq_dists, kmeans_plusplus

if TYPE_CHECKING:
    from genrec.foundations.elbo import ElboTerms

__all__ = [
    "BaseMixture",
    "ConvergenceWarning",
    "NotFittedError",
    "check_array",
    "kmeans_plusplus",
    "INIT_METHODS",
]

logger = logging.getLogger(__name__)

INIT_METHODS = ("k-means++", "random", "random_from_data")


class ConvergenceWarning(UserWarning):
    """The best restart stopped at ``max_iter`` before the bound changed by less than ``tol``."""


def check_array(X: Any, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Validate a data matrix and return it as a C-contiguous float64 array.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    name : str
        Used in error messages.
    n_features : int, optional
        Required number of columns (e.g. the number seen in ``fit``).

    Returns
    -------
    ndarray of shape (n_samples, n_features), float64

    Raises
    ------
    ValueError
        Non-numeric, not 2-D, empty, NaN/inf, or wrong number of columns.
    """
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a numeric array of shape (n_samples, n_features)"
        ) from None
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got a 1-D array of shape {arr.shape}. "
            "Use X.reshape(-1, 1) for a single feature."
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} contains NaN or infinite values (first at row {row}, column {col})"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but the model was fitted with {n_features}"
        )
    return np.ascontiguousarray(arr)


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0:
        raise ValueError(f"{name} must be a non-negative number; got {value!r}")
    return float(value)


class BaseMixture(ABC):
    """Template for mixture models fitted by EM or CAVI (see the module docstring).

    Parameters
    ----------
    n_components : int
        ``K``.
    tol : float
        Stop a restart when the lower bound changes by less than ``tol``.
    reg_covar : float
        Added to the diagonal of every covariance in the M-step.
    max_iter : int
        Maximum number of E/M iterations per restart (0 only initialises).
    n_init : int
        Number of restarts; the one with the best final bound is kept.
    init_params : {'k-means++', 'random', 'random_from_data'}
        Initial responsibilities: hard assignment to the nearest of K k-means++ seeds,
        random responsibilities (uniform draws normalised per row), or K random points
        with responsibility one.
    resp_init : array-like of shape (n_samples, n_components), optional
        Explicit initial responsibilities (overrides ``init_params``).
    random_state : int, numpy.random.Generator or None
        Seed of the ``numpy.random.Generator`` built in ``fit``; the same value gives the
        same fit.
    """

    # Set by the subclass constructor.
    covariance_type: str
    # Fitted state: only ``fit`` creates it (``_check_is_fitted`` tests ``n_features_in_``);
    # the subclasses' ``_initialize``, ``_m_step`` and ``_set_parameters`` set the parameters.
    weights_: np.ndarray
    means_: np.ndarray
    precisions_cholesky_: np.ndarray
    n_features_in_: int
    n_iter_: int
    converged_: bool
    lower_bound_: float
    lower_bounds_: np.ndarray

    def __init__(
        self,
        n_components: int,
        tol: float,
        reg_covar: float,
        max_iter: int,
        n_init: int,
        init_params: str,
        resp_init: Any,
        random_state: Any,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.resp_init = resp_init
        self.random_state = random_state

    # ------------------------------------------------------------------ estimator API
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseMixture:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, np.ndarray)
        )
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ validation
    def _check_base_parameters(self, X: np.ndarray) -> None:
        K = _check_int(self.n_components, "n_components", 1)
        n = X.shape[0]
        if K > n:
            raise ValueError(
                f"n_components={K} is larger than the number of samples n_samples={n}; "
                "use fewer components or more data"
            )
        _check_nonneg(self.tol, "tol")
        _check_nonneg(self.reg_covar, "reg_covar")
        _check_int(self.max_iter, "max_iter", 0)
        _check_int(self.n_init, "n_init", 1)
        if self.init_params not in INIT_METHODS:
            raise ValueError(
                f"init_params must be one of {', '.join(INIT_METHODS)}; got {self.init_params!r}"
            )
        if self.resp_init is not None:
            resp = np.asarray(self.resp_init, dtype=np.float64)
            if resp.shape != (n, K):
                raise ValueError(
                    f"resp_init must have shape (n_samples, n_components) = {(n, K)}; "
                    f"got {resp.shape}"
                )
            if (
                not np.all(np.isfinite(resp))
                or np.any(resp < 0)
                or not np.allclose(resp.sum(axis=1), 1.0)
            ):
                raise ValueError("every row of resp_init must be non-negative and sum to 1")

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    # ------------------------------------------------------------------ initialisation
    def _initial_resp(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = X.shape[0]
        K = self.n_components
        if self.resp_init is not None:
            return np.array(self.resp_init, dtype=np.float64)
        if self.init_params == "random":
            resp = rng.uniform(size=(n, K))
            return resp / resp.sum(axis=1, keepdims=True)
        resp = np.zeros((n, K))
        if self.init_params == "random_from_data":
            idx = rng.choice(n, size=K, replace=False)
            resp[idx, np.arange(K)] = 1.0
            return resp
        # k-means++: seeds, then hard assignment of every point to its nearest seed.
        idx = kmeans_plusplus(X, K, rng)
        labels = np.argmin(_sq_dists(X, np.sum(X * X, axis=1), X[idx]), axis=0)
        labels[idx] = np.arange(K)  # every seed owns itself (duplicates stay non-empty)
        resp[np.arange(n), labels] = 1.0
        return resp

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _check_parameters(self, X: np.ndarray) -> None:
        """Validate subclass parameters (called in ``fit`` after the base checks)."""

    @abstractmethod
    def _initialize(self, X: np.ndarray, resp: np.ndarray | None) -> None:
        """Set the initial parameters from responsibilities (``None``: from user inits)."""

    def _needs_resp_init(self) -> bool:
        return True

    @abstractmethod
    def _estimate_log_weights(self) -> np.ndarray:
        r""":math:`\log\pi_k` (EM) or :math:`\mathbb E_q[\log\pi_k]` (VI), shape (K,)."""

    @abstractmethod
    def _estimate_log_prob(self, X: np.ndarray) -> np.ndarray:
        """Per-component log density (EM) or its expectation under q (VI), shape (n, K)."""

    @abstractmethod
    def _m_step(self, X: np.ndarray, log_resp: np.ndarray) -> None:
        """Update the parameters (EM) or q(theta) (VI) given the responsibilities."""

    @abstractmethod
    def _compute_lower_bound(
        self, X: np.ndarray, log_resp: np.ndarray, log_prob_norm: float
    ) -> float:
        """The bound monitored for convergence, after the M-step of an iteration."""

    @abstractmethod
    def _get_parameters(self) -> tuple:
        """Snapshot of the fitted parameters."""

    @abstractmethod
    def _set_parameters(self, params: tuple) -> None:
        """Restore a snapshot and derive dependent attributes."""

    # ------------------------------------------------------------------ E-step
    def _estimate_weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        r""":math:`\ell_{nk} = \log\pi_k + \log p(x_n\mid\theta_k)`, shape (n, K)."""
        return self._estimate_log_prob(X) + self._estimate_log_weights()

    def _e_step(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean of :math:`\\log p(x_n)` and the log responsibilities, shape (n, K)."""
        log_prob_norm, log_resp = estimate_log_resp(self._estimate_weighted_log_prob(X))
        return float(np.mean(log_prob_norm)), log_resp

    # ------------------------------------------------------------------ the loop
    def fit(self, X: Any, y: Any = None) -> BaseMixture:
        """Fit the model (``n_init`` restarts, keep the best bound); return ``self``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return the component label of every sample, shape (n_samples,).

        Equal to ``fit(X).predict(X)`` because a final E-step is run with the kept
        parameters.
        """
        X = check_array(X)
        self._check_base_parameters(X)
        self._check_parameters(X)
        rng = np.random.default_rng(self.random_state)

        best_bound = -np.inf
        best_params: tuple | None = None
        best_bounds: list[float] = []
        best_n_iter = 0
        best_converged = False
        for init in range(self.n_init):
            resp = self._initial_resp(X, rng) if self._needs_resp_init() else None
            self._initialize(X, resp)
            bound = -np.inf
            bounds: list[float] = []
            converged = False
            n_iter = 0
            for n_iter in range(1, self.max_iter + 1):
                prev = bound
                log_prob_norm, log_resp = self._e_step(X)
                self._m_step(X, log_resp)
                bound = float(self._compute_lower_bound(X, log_resp, log_prob_norm))
                bounds.append(bound)
                change = bound - prev
                logger.debug("init %d iter %d bound %.10g change %.3g", init, n_iter, bound, change)
                if abs(change) < self.tol:
                    converged = True
                    break
            logger.debug(
                "init %d: %s after %d iterations, bound %.10g",
                init,
                "converged" if converged else "did not converge",
                n_iter,
                bound,
            )
            if best_params is None or bound > best_bound:
                best_bound = bound
                best_params = self._get_parameters()
                best_bounds = bounds
                best_n_iter = n_iter
                best_converged = converged

        if not best_converged and self.max_iter > 0:
            warnings.warn(
                f"{type(self).__name__}: the best of {self.n_init} restart(s) did not converge "
                f"in max_iter={self.max_iter} iterations (tol={self.tol:g}). Increase max_iter "
                "or tol, try other initialisations, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        assert best_params is not None
        self._set_parameters(best_params)
        self.n_features_in_ = X.shape[1]
        self.n_iter_ = best_n_iter
        self.converged_ = best_converged
        self.lower_bound_ = best_bound
        self.lower_bounds_ = np.asarray(best_bounds, dtype=np.float64)
        _, log_resp = self._e_step(X)
        return np.argmax(log_resp, axis=1)

    # ------------------------------------------------------------------ inference
    def score_samples(self, X: Any) -> np.ndarray:
        r""":math:`\log p(x_n) = \operatorname{logsumexp}_k \ell_{nk}` per sample, shape (n,)."""
        self._check_is_fitted()
        X = check_array(X, n_features=self.n_features_in_)
        return logsumexp(self._estimate_weighted_log_prob(X), axis=1)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component per sample, shape (n,)."""
        self._check_is_fitted()
        X = check_array(X, n_features=self.n_features_in_)
        return np.argmax(self._estimate_weighted_log_prob(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        r"""Responsibilities :math:`r_{nk} = p(z_n = k\mid x_n)`, shape (n, K)."""
        self._check_is_fitted()
        X = check_array(X, n_features=self.n_features_in_)
        _, log_resp = estimate_log_resp(self._estimate_weighted_log_prob(X))
        return np.exp(log_resp)

    def weighted_log_prob(self, X: Any) -> np.ndarray:
        r""":math:`\ell_{nk} = \log p(x_n, z_n = k)`, shape (n, K): the input of
        :func:`~genrec.foundations.elbo.elbo` and :func:`~genrec.foundations.elbo.kl_posterior`."""
        self._check_is_fitted()
        X = check_array(X, n_features=self.n_features_in_)
        return self._estimate_weighted_log_prob(X)

    def elbo_terms(self, X: Any, q: Any = None) -> ElboTerms:
        r"""The bound's data part, :math:`\sum_{nk}q_{nk}(\ell_{nk}-\log q_{nk})`, in its terms
        (:func:`~genrec.foundations.elbo.elbo_terms`) at the fitted parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        q : array-like of shape (n_samples, n_components), optional
            Any :math:`q(z)`; the default is the posterior ``predict_proba(X)``.
        """
        from genrec.foundations.elbo import elbo_terms

        self._check_is_fitted()
        X = check_array(X, n_features=self.n_features_in_)
        log_prob = self._estimate_log_prob(X)  # (n, K)
        log_weights = self._estimate_log_weights()  # (K,)
        if q is None:
            _, log_resp = estimate_log_resp(log_prob + log_weights)
            q = np.exp(log_resp)
        return elbo_terms(np.asarray(q, dtype=np.float64), log_prob, log_weights)

    def sample(self, n_samples: int = 1, random_state: Any = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Draw from the fitted mixture.

        :math:`z\sim\mathrm{Cat}(\pi)`, :math:`x = \mu_z + U_z^{-\top}\varepsilon`,
        :math:`\varepsilon\sim\mathcal N(0, I)`.

        Parameters
        ----------
        n_samples : int
        random_state : int, Generator or None
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, d)
        y : ndarray of shape (n_samples,)
            Component of each draw (sorted by component).
        """
        from genrec.foundations._linalg import solve_triangular

        self._check_is_fitted()
        n_samples = _check_int(n_samples, "n_samples", 1)
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        d = self.means_.shape[1]
        chol = self.precisions_cholesky_
        Xs, ys = [], []
        for k, m in enumerate(counts):
            eps = rng.standard_normal((d, int(m)))
            if self.covariance_type == "full":
                z = solve_triangular(chol[k], eps, lower=False, trans=True)
            elif self.covariance_type == "tied":
                z = solve_triangular(chol, eps, lower=False, trans=True)
            elif self.covariance_type == "diag":
                z = eps / chol[k][:, None]
            else:
                z = eps / chol[k]
            Xs.append(self.means_[k] + z.T)
            ys.append(np.full(int(m), k, dtype=np.int64))
        return np.vstack(Xs), np.concatenate(ys)

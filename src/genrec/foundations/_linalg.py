"""Small dense triangular/Cholesky kernels called straight through LAPACK.

``scipy.linalg.solve_triangular`` (and LAPACK ``trtrs``) go through the level-3 BLAS
``trsm``, which OpenBLAS runs multi-threaded even for tiny matrices; on a busy machine a
2x2 solve then waits milliseconds for sleeping threads. The mixtures call these kernels
K times per iteration on d x d matrices, so they use ``potrf`` (Cholesky) and ``trtri``
(triangular inverse, unblocked at these sizes) directly, and a triangular solve is the
product with the triangular inverse.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

__all__ = ["cholesky_lower", "solve_triangular", "triangular_inverse"]


def cholesky_lower(a: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor ``L`` of ``a = L L^T``; ``None`` if ``a`` is not positive definite."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return None
    c, info = lapack.dpotrf(a, lower=1, clean=1)
    if info != 0:
        return None
    return c


def solve_triangular(t: np.ndarray, b: np.ndarray, lower: bool, trans: bool = False) -> np.ndarray:
    """Solve ``t x = b`` (or ``t^T x = b`` if ``trans``) for triangular ``t``.

    Computed as ``t^{-1} b`` with the triangular inverse (see the module docstring).
    """
    inv = triangular_inverse(t, lower)
    return (inv.T if trans else inv) @ np.asarray(b, dtype=np.float64)


def triangular_inverse(t: np.ndarray, lower: bool) -> np.ndarray:
    """``t^{-1}`` for a triangular ``t`` (itself triangular), i.e. the solve ``t X = I``."""
    inv, info = lapack.dtrtri(np.asarray(t, dtype=np.float64), lower=int(lower))
    if info != 0:
        raise np.linalg.LinAlgError(f"singular triangular matrix (LAPACK info {info})")
    return inv

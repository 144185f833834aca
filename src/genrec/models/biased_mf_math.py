"""The arithmetic of biased matrix factorization (Koren, Bell and Volinsky 2009), apart
from the model class.

Pure functions used by :class:`genrec.models.biased_mf.BiasedMF` and tested against their
closed forms: the prediction r_hat = mu + b_u + b_i + p_u . q_i, Funk's SGD step and the loss
its autograd version minimises, and one half-sweep of alternating least squares (every
user's (b_u, p_u) solved exactly with the items fixed, or the other way round). Symbols as in
:mod:`genrec.models.biased_mf`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from genrec.errors import DivergenceError
from genrec.models._shallow import gather_rows, row_blocks

__all__ = ["mf_predict", "sgd_step", "sgd_loss", "als_half_step"]


# ----------------------------------------------------------------------------- math
def mf_predict(
    mu: float,
    bu: torch.Tensor,
    bi: torch.Tensor,
    P: torch.Tensor,
    Q: torch.Tensor,
    u: torch.Tensor,
    i: torch.Tensor,
    ku: torch.Tensor | None = None,
    ki: torch.Tensor | None = None,
) -> torch.Tensor:
    """r_hat = mu + b_u + b_i + p_u . q_i for index pairs (B,), dropping the terms of unknowns.

    ``ku``/``ki`` (B,) bool mark known users/items (None = all known); unknown indices must
    still be valid (0) and their terms are zeroed.
    """
    pu, qi = P[u], Q[i]  # (B, K)
    b_u, b_i = bu[u], bi[i]  # (B,)
    dot = (pu * qi).sum(1)  # (B,)
    if ku is not None:
        b_u = b_u * ku
        dot = dot * ku
    if ki is not None:
        b_i = b_i * ki
        dot = dot * ki
    return mu + b_u + b_i + dot


def sgd_step(
    mu: float,
    bu: torch.Tensor,
    bi: torch.Tensor,
    P: torch.Tensor,
    Q: torch.Tensor,
    u: torch.Tensor,
    i: torch.Tensor,
    r: torch.Tensor,
    lr: float,
    l2: float,
    l2_bias: float,
    su: torch.Tensor,
    si: torch.Tensor,
) -> torch.Tensor:
    """One vectorized SGD step on a mini-batch of ratings, in place; returns the errors (B,).

    All updates use the parameters from before the step (``index_add_`` sums repeats).
    ``su`` (U,) and ``si`` (I,) are each rating's share of the user's / item's penalty.
    """
    pu, qi = P[u], Q[i]  # (B, K)
    e = r - mf_predict(mu, bu, bi, P, Q, u, i)  # (B,)
    s_u, s_i = su[u], si[i]  # (B,)
    d_bu = lr * (e - l2_bias * s_u * bu[u])  # (B,)
    d_bi = lr * (e - l2_bias * s_i * bi[i])  # (B,)
    d_p = lr * (e[:, None] * qi - l2 * s_u[:, None] * pu)  # (B, K)
    d_q = lr * (e[:, None] * pu - l2 * s_i[:, None] * qi)  # (B, K)
    bu.index_add_(0, u, d_bu)
    bi.index_add_(0, i, d_bi)
    P.index_add_(0, u, d_p)
    Q.index_add_(0, i, d_q)
    return e


def sgd_loss(
    mu: float,
    bu: torch.Tensor,
    bi: torch.Tensor,
    P: torch.Tensor,
    Q: torch.Tensor,
    u: torch.Tensor,
    i: torch.Tensor,
    r: torch.Tensor,
    l2: float,
    l2_bias: float,
    su: torch.Tensor,
    si: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the objective's terms of a mini-batch of ratings, and the errors (B,):

        1/2 sum_b [ e_b^2 + s_u (lambda_b b_u^2 + lambda ||p_u||^2)
                          + s_i (lambda_b b_i^2 + lambda ||q_i||^2) ]

    Its gradient step with step size lr is :func:`sgd_step`'s update.
    """
    pu, qi = gather_rows(P, u), gather_rows(Q, i)  # (B, K)
    b_u, b_i = gather_rows(bu, u), gather_rows(bi, i)  # (B,)
    e = r - (mu + b_u + b_i + (pu * qi).sum(1))  # (B,)
    s_u, s_i = gather_rows(su, u), gather_rows(si, i)  # (B,)
    pen = s_u * (l2_bias * b_u**2 + l2 * (pu * pu).sum(1)) + s_i * (
        l2_bias * b_i**2 + l2 * (qi * qi).sum(1)
    )  # (B,)
    return 0.5 * ((e * e).sum() + pen.sum()), e.detach()


def als_half_step(
    R: sp.csr_matrix,
    fixed: torch.Tensor,
    fixed_bias: torch.Tensor,
    mu: float,
    l2: float,
    l2_bias: float,
    weighting: str = "count",
    budget: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact minimization over one side's (bias, factors), the other side fixed.

    For every row r of ``R`` (users, or items with ``R`` transposed) solve

        (A_r^T A_r + c_r diag(lambda_b, lambda, ..., lambda)) [b_r; x_r] = A_r^T y_r

    with A_r the rows [1, fixed_c] of the columns c that row r rated, y_r = R_rc - mu - b_c,
    and c_r = the row's rating count ("count") or 1 ("uniform"). A row with no ratings gets 0.

    Parameters
    ----------
    R : csr_matrix, shape (N, C)
        Ratings of the side being solved for (values are ratings).
    fixed : Tensor, shape (C, K)
        The other side's factors.
    fixed_bias : Tensor, shape (C,)
    budget : padded entries (rows x longest row x (K+1)) per batched solve

    Returns
    -------
    factors : Tensor (N, K), biases : Tensor (N,)

    Raises
    ------
    DivergenceError
        When a system is singular to working precision (``l2`` or ``l2_bias`` too small for
        a row with fewer ratings than K + 1).
    """
    R = sp.csr_matrix(R)
    dev, dt = fixed.device, fixed.dtype
    N, K = R.shape[0], fixed.shape[1]
    counts = np.diff(R.indptr)
    A = torch.cat([torch.ones(len(fixed), 1, dtype=dt, device=dev), fixed], 1)  # (C, K+1)
    reg = torch.full((K + 1,), float(l2), dtype=dt, device=dev)  # (K+1,)
    reg[0] = l2_bias
    c = counts if weighting == "count" else np.ones_like(counts)
    c = torch.as_tensor(np.maximum(c, 1), dtype=dt, device=dev)  # (N,)
    out = torch.zeros(N, K + 1, dtype=dt, device=dev)  # (N, K+1)
    indptr = torch.as_tensor(R.indptr, device=dev)
    indices = torch.as_tensor(R.indices.astype(np.int64), device=dev)
    values = torch.as_tensor(R.data, dtype=dt, device=dev)
    for rows_np in row_blocks(counts, K + 1, budget):
        rows = torch.as_tensor(rows_np, device=dev)  # (R,)
        n_r = indptr[rows + 1] - indptr[rows]  # (R,)
        L = max(int(n_r.max()), 1)
        pos = indptr[rows][:, None] + torch.arange(L, device=dev)  # (R, L)
        mask = torch.arange(L, device=dev) < n_r[:, None]  # (R, L)
        pos = torch.where(mask, pos, torch.zeros_like(pos))
        cols = indices[pos] if len(indices) else torch.zeros_like(pos)  # (R, L)
        m = mask.to(dt)
        Ar = A[cols] * m[..., None]  # (R, L, K+1)
        y = ((values[pos] if len(values) else 0.0) - mu - fixed_bias[cols]) * m  # (R, L)
        G = Ar.transpose(1, 2) @ Ar  # (R, K+1, K+1)
        G = G + torch.diag_embed(c[rows][:, None] * reg)  # + c_r diag(reg)
        rhs = Ar.transpose(1, 2) @ y[..., None]  # (R, K+1, 1)
        L_r, info = torch.linalg.cholesky_ex(G)  # (R, K+1, K+1); info > 0: not PD
        if bool((info > 0).any()) or not bool(torch.isfinite(L_r).all()):
            raise DivergenceError(
                f"ALS: the normal equations of {int((info > 0).sum())} of {N} users or items "
                f"are singular to working precision at l2 = {l2:g}, l2_bias = {l2_bias:g}; "
                f"raise l2 and l2_bias (e.g. to 0.01)"
            )
        x = torch.cholesky_solve(rhs, L_r)[..., 0]  # (R, K+1)
        out[rows] = x
    return out[:, 1:].contiguous(), out[:, 0].contiguous()

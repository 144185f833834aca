"""The next-item losses of sequential models, over the positions that have a target.

Dimensions: N positions with a target (padding already dropped), D width, I items, K
negatives per position (or shared by the batch).

Each loss takes the hidden states ``h`` (N, D) at those positions, the item output table
``E`` (I, D) and the target items ``t`` (N,), and returns the mean over the N positions:

``ce``
    Full softmax cross-entropy over every item: -log softmax(h E^T)_t (Klenitskiy and
    Vasilev, RecSys 2023: SASRec trained so beats BERT4Rec).
``bce``
    Binary cross-entropy with one sampled negative per position (the SASRec paper, Kang and
    McAuley, ICDM 2018): -log sigma(s+) - log(1 - sigma(s-)).
``sampled_softmax``
    Softmax cross-entropy over the target and K sampled negatives; a negative equal to the
    target is masked out (an accidental hit). With negatives drawn by popularity, pass their
    log sampling probabilities as ``log_q`` for the logQ correction (s - log q).
``gbce``
    Generalised BCE (Petrov and Macdonald, RecSys 2023, gSASRec): with K negatives drawn
    uniformly from I - 1 items, alpha = K / (I - 1) and beta = alpha (t (1 - 1/alpha) +
    1/alpha), the loss -log sigma(s+)^beta - sum_k log(1 - sigma(s-_k)): t = 0 is BCE,
    t = 1 a calibrated estimate of the full softmax's probabilities.

A per-item output bias b (I,) (scores h E^T + b) enters every loss through
:func:`with_bias`, which appends it to the table as one more column (and a 1 to ``h``).

Negatives are drawn by the model (see :func:`uniform_negatives`), so the losses stay pure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genrec.train.noise import WindowNoise

__all__ = [
    "ce_loss",
    "bce_loss",
    "sampled_softmax_loss",
    "gbce_loss",
    "gbce_beta",
    "uniform_negatives",
    "with_bias",
]


def ce_loss(h: torch.Tensor, E: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy of the targets ``t`` (N,) given ``h`` (N, D), ``E`` (I, D)."""
    return F.cross_entropy(h @ E.T, t)


def bce_loss(h: torch.Tensor, E: torch.Tensor, t: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """BCE with one negative ``neg`` (N,) per position."""
    pos = (h * E[t]).sum(-1)  # (N,)
    ng = (h * E[neg]).sum(-1)  # (N,)
    return (F.softplus(-pos) + F.softplus(ng)).mean()


def _pos_neg(
    h: torch.Tensor, E: torch.Tensor, t: torch.Tensor, neg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of the targets (N,), of the negatives (N, K), and the accidental hits (N, K).
    ``neg`` is (N, K) per position or (K,) shared by the batch."""
    pos = (h * E[t]).sum(-1)  # (N,)
    if neg.ndim == 1:
        ng = h @ E[neg].T  # (N, K)
        hit = neg[None, :] == t[:, None]
    else:
        ng = torch.einsum("nd,nkd->nk", h, E[neg])  # (N, K)
        hit = neg == t[:, None]
    return pos, ng, hit


def sampled_softmax_loss(
    h: torch.Tensor,
    E: torch.Tensor,
    t: torch.Tensor,
    neg: torch.Tensor,
    log_q: torch.Tensor | None = None,
    log_q_pos: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over the target and the negatives ``neg`` ((K,) shared or
    (N, K)); ``log_q`` / ``log_q_pos``: log sampling probabilities of the negatives and of
    the targets, subtracted from their scores (logQ correction), or None (uniform)."""
    pos, ng, hit = _pos_neg(h, E, t, neg)
    if log_q is not None:
        ng = ng - log_q
        if log_q_pos is not None:
            pos = pos - log_q_pos
    ng = ng.masked_fill(hit, float("-inf"))
    logits = torch.cat([pos[:, None], ng], dim=1)  # (N, 1 + K), the target first
    return (torch.logsumexp(logits, dim=1) - pos).mean()


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """beta of gBCE for K negatives sampled from I - 1 items and calibration t in [0, 1]."""
    alpha = n_negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_loss(
    h: torch.Tensor, E: torch.Tensor, t: torch.Tensor, neg: torch.Tensor, beta: float
) -> torch.Tensor:
    """gBCE: -beta log sigma(s+) - sum_k log(1 - sigma(s-_k)), negatives ``neg`` ((K,) or
    (N, K)); accidental hits among the negatives are left out."""
    pos, ng, hit = _pos_neg(h, E, t, neg)
    neg_term = F.softplus(ng).masked_fill(hit, 0.0).sum(1)  # (N,)
    return (beta * F.softplus(-pos) + neg_term).mean()


def uniform_negatives(
    shape: tuple[int, ...],
    n_items: int,
    generator: torch.Generator | WindowNoise,
    device: torch.device,
    shared: bool = False,
) -> torch.Tensor:
    """Item indices drawn uniformly from [0, n_items) (on ``generator``'s device, moved).
    Keyed noise (:class:`~genrec.train.noise.WindowNoise`) keys a draw of ``shape`` (B, L,
    ...) by (row, position from the window's end, ...), or with ``shared`` (negatives that
    the whole batch shares) by the step alone."""
    if isinstance(generator, WindowNoise):
        return generator.items(shape, n_items, shared=shared).to(device)
    return torch.randint(n_items, shape, generator=generator, device=generator.device).to(device)


def with_bias(
    h: torch.Tensor, E: torch.Tensor, b: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, E) with the item bias ``b`` (I,) folded in: [h, 1] (N, D + 1) and [E, b] (I, D + 1),
    so [h, 1] [E, b]^T = h E^T + b; (h, E) unchanged when ``b`` is None."""
    if b is None:
        return h, E
    ones = torch.ones((*h.shape[:-1], 1), dtype=h.dtype, device=h.device)
    return torch.cat([h, ones], -1), torch.cat([E, b[:, None].to(E.dtype)], -1)

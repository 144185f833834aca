"""Pure ranking and rating metrics.

Every ranking metric is a function of a score matrix (n_users, n_items), the held-out truth
as a CSR matrix of the same shape, and a cut-off k, and returns one value per user.
Aggregation (which users count, how empty truth is averaged) is a separate step, done by the
evaluator according to the protocol.

Conventions, shared by every function here:

* **Ranking.** Items are ranked by score, highest first; **ties are broken by the lower item
  index first** (a stable sort). Items with score ``-inf`` are never recommended (the
  evaluator uses ``-inf`` to mask excluded items): a top-k list can hold fewer than k items.
  NaN scores raise ``ValueError``.
* **Empty truth.** A user with no held-out item gets 0 for every metric; the evaluator can
  drop such users instead, depending on the protocol.
* **Gains are binary** (an item is relevant or not), as in the papers genrec reproduces.

Let ``hits_j`` be 1 when the item at rank j (0-based) is in the truth, ``n = |truth|``:

* Recall@k = sum_j hits_j / n  (the standard denominator)
* TruncatedRecall@k = sum_j hits_j / min(k, n)  (Liang et al. 2018's "Recall@k")
* Precision@k = sum_j hits_j / k
* HitRate@k = 1 if any hit else 0
* NDCG@k = DCG / IDCG, DCG = sum_j hits_j / log2(j + 2), IDCG = sum_{j < min(k, n)} 1 / log2(j + 2)
* MRR@k = 1 / (1 + rank of the first hit within the top k), 0 if none
* ItemCoverage@k = |distinct items in all users' top-k lists| / n_items (one number)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "largest",
    "ranked",
    "topk_indices",
    "hits_at_k",
    "recall_at_k",
    "truncated_recall_at_k",
    "precision_at_k",
    "hit_rate_at_k",
    "ndcg_at_k",
    "mrr_at_k",
    "item_coverage_at_k",
    "rmse",
    "mae",
    "RANKING_METRICS",
]


TOPK_CHUNK = 32  # items per chunk of :func:`largest`'s first pass


def largest(s: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` largest values of each row of ``s`` (B, I) and their indices, (B, n) each,
    best first, NaN counted largest: the values of ``torch.topk(s, n)`` (the indices may
    differ among equal values).

    Wide rows go in two passes: the maximum of each whole chunk of :data:`TOPK_CHUNK`
    items, then a selection among the items of the ``n`` chunks with the largest maxima and
    of the short last chunk. Those hold the ``n`` largest values: a chunk left out has a
    maximum no larger than the n-th value, and the n chunks taken each hold one value at
    least that large. One pass over the row and a selection among n chunks' items replace
    a selection over all of it."""
    B, I = s.shape
    c = TOPK_CHUNK
    if n * c * 4 > I or s.device.type != "cpu":
        return torch.topk(s, n, dim=1, sorted=True)
    m = I - I % c  # items in whole chunks
    whole = s[:, :m].reshape(B, m // c, c)  # (B, C, c), a view
    chunks = torch.topk(whole.amax(2), n, dim=1, sorted=False).indices  # (B, n)
    cand = whole.gather(1, chunks[:, :, None].expand(B, n, c)).reshape(B, n * c)
    if m < I:
        cand = torch.cat([cand, s[:, m:]], 1)  # (B, n c + I - m), the short chunk always
    vals, j = torch.topk(cand, n, dim=1, sorted=True)  # (B, n)
    jc = j.clamp_max(n * c - 1)
    idx = torch.where(j < n * c, chunks.gather(1, jc // c) * c + jc % c, m + j - n * c)
    return vals, idx


def ranked(scores: np.ndarray | torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk_indices` and the scores of the items it lists, (B, min(k, I)) each, best
    first (-inf where the list is padded with -1; NaN, counted largest, comes first)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = torch.as_tensor(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (users, items), got shape {tuple(s.shape)}")
    B, I = s.shape
    k_eff = min(k, I)
    # one extra item tells whether the k-th score is tied with one left outside the top k
    vals, idx = largest(s, min(k_eff + 1, I))  # (B, k_eff [+ 1])
    if vals.shape[1] > k_eff:
        crowded = vals[:, k_eff] == vals[:, k_eff - 1]  # (B,) more than k items >= boundary
        vals, idx = vals[:, :k_eff], idx[:, :k_eff]
    else:  # every item is in the top k: nothing is left out
        crowded = torch.zeros(B, dtype=torch.bool, device=s.device)
    # within the selected set, order by (score desc, index asc): sort by index, then stably by score
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    idx = idx.gather(1, order)
    # rows with a tie at the boundary may have selected the wrong tied items: redo exactly
    if crowded.any():
        rows = crowded.nonzero().squeeze(1)
        v_full, i_full = torch.sort(s[rows], dim=1, descending=True, stable=True)
        idx[rows] = i_full[:, :k_eff]
        vals[rows] = v_full[:, :k_eff]
    return torch.where(vals == float("-inf"), torch.full_like(idx, -1), idx), vals


def topk_indices(scores: np.ndarray | torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items per row, best first; ties by lower index; -1 pads.

    Parameters
    ----------
    scores : array or tensor, shape (B, I)
    k : int, >= 1

    Returns
    -------
    LongTensor, shape (B, min(k, I))
        Item indices; -1 where fewer than k items have a finite-or-+inf score. A list never
        holds more than the I items there are: a larger k is clamped to I, so memory does
        not grow with k.
    """
    idx, vals = ranked(scores, k)
    if torch.isnan(vals[:, :1]).any():  # NaN ranks first
        raise ValueError("scores contain NaN: the model produced invalid scores")
    return idx


def hits_at_k(topk: torch.Tensor | np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Boolean matrix (B, k): is the item at each rank in the user's truth row.

    ``truth`` is a CSR matrix (B, I) whose stored entries (any value) are the relevant items.
    """
    top = torch.as_tensor(topk).cpu().numpy()
    B, k = top.shape
    truth = sp.csr_matrix(truth)
    if truth.shape[0] != B:
        raise ValueError(f"truth has {truth.shape[0]} rows, top-k lists have {B}")
    # a (B, I) dense boolean view of the truth, built per call: callers batch the users
    dense = np.zeros((B, truth.shape[1] + 1), dtype=bool)  # extra column absorbs the -1 pads
    rows = np.repeat(np.arange(B), np.diff(truth.indptr))
    dense[rows, truth.indices] = True
    dense[:, -1] = False
    return dense[np.arange(B)[:, None], np.where(top < 0, truth.shape[1], top)]


def _n_truth(truth: sp.csr_matrix) -> np.ndarray:
    return np.diff(sp.csr_matrix(truth).indptr).astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


# --- metrics from a hit matrix: the evaluator computes top-k and hits once, then all of these.
# The hit matrix may be narrower than k (a top-k list holds at most the catalogue): the
# missing ranks count as misses, so each value is the one of a list padded to k.


def _recall(hits: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    return np.divide(hits.sum(1), n, out=np.zeros(len(n)), where=n > 0)


def _truncated_recall(hits: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    d = np.minimum(n, k)
    return np.divide(hits.sum(1), d, out=np.zeros(len(n)), where=d > 0)


def _precision(hits: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    return np.where(n > 0, hits.sum(1) / k, 0.0)


def _hit_rate(hits: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    return np.any(hits, axis=1).astype(np.float64)


def _ndcg(hits: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    ideal_len = np.minimum(n, k).astype(np.int64)  # (B,) ranks an ideal list fills
    disc = _discounts(max(hits.shape[1], int(ideal_len.max(initial=0))))
    dcg = hits @ disc[: hits.shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[ideal_len]
    return np.divide(dcg, ideal, out=np.zeros(len(n)), where=ideal > 0)


def _mrr(hits: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    first = hits.argmax(1)
    return np.where(hits.any(1), 1.0 / (first + 1.0), 0.0)


RANKING_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "recall": _recall,
    "truncated_recall": _truncated_recall,
    "precision": _precision,
    "hit_rate": _hit_rate,
    "ndcg": _ndcg,
    "mrr": _mrr,
}
"""Per-user metric functions of (hits (B, <= k) bool, |truth| (B,), k), by name; ranks past
the width of ``hits`` count as misses."""


def _from_scores(name: str, scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    hits = hits_at_k(topk_indices(scores, k), truth)
    return RANKING_METRICS[name](hits, _n_truth(truth), k)


def recall_at_k(scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """Recall@k per user: hits in the top k / |truth|. Shape (B,)."""
    return _from_scores("recall", scores, truth, k)


def truncated_recall_at_k(scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """Liang et al.'s Recall@k per user: hits / min(k, |truth|). Shape (B,)."""
    return _from_scores("truncated_recall", scores, truth, k)


def precision_at_k(scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """Precision@k per user: hits / k. Shape (B,)."""
    return _from_scores("precision", scores, truth, k)


def hit_rate_at_k(scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """HitRate@k per user: 1 if any of the top k is relevant. Shape (B,)."""
    return _from_scores("hit_rate", scores, truth, k)


def ndcg_at_k(scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """NDCG@k per user with binary gains and log2(rank + 2) discounts. Shape (B,)."""
    return _from_scores("ndcg", scores, truth, k)


def mrr_at_k(scores, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """MRR@k per user: reciprocal rank of the first hit in the top k, else 0. Shape (B,)."""
    return _from_scores("mrr", scores, truth, k)


def item_coverage_at_k(topk: torch.Tensor | np.ndarray, n_items: int) -> float:
    """Fraction of the catalogue that appears in at least one top-k list."""
    top = torch.as_tensor(topk).cpu().numpy().ravel()
    return float(len(np.unique(top[top >= 0])) / n_items)


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error between predicted and true ratings."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.size == 0:
        raise ValueError(
            f"rmse needs two non-empty arrays of one shape, got {pred.shape} and {truth.shape}"
        )
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error between predicted and true ratings."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.size == 0:
        raise ValueError(
            f"mae needs two non-empty arrays of one shape, got {pred.shape} and {truth.shape}"
        )
    return float(np.mean(np.abs(pred - truth)))

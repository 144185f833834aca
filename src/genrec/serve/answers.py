"""The JSON answers of the recommendation endpoints, built from one model call's top-k
(:meth:`genrec.serve.service.Catalog.score`): rows of ``Run.recommend``'s shape, the notes
it gives, raw ids as JSON has them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from genrec.data import Sequences

if TYPE_CHECKING:
    from genrec.serve.service import ServedModel

__all__ = ["RawId", "raw_id", "row", "score_users", "score_histories"]

RawId = str | int


def raw_id(x: Any) -> RawId:
    """A raw id as JSON gives it: an int for integer ids, else a str."""
    v = x.item() if hasattr(x, "item") else x
    return v if isinstance(v, int) else str(v)


def row(m: ServedModel, rank: int, i: int, score: float) -> dict[str, Any]:
    """One recommended item: rank, raw id, score (null when not finite), title if known."""
    out: dict[str, Any] = {
        "rank": rank,
        "item": m.raw_items[i],
        "score": score if math.isfinite(score) else None,  # JSON has no infinity
    }
    if m.titles is not None:
        out["title"] = m.titles[i]
    return out


def _answer(
    m: ServedModel,
    user: Any,
    history: list[Any] | None,
    rows: list[dict[str, Any]],
    unknown: Sequence[RawId],
    notes: list[str],
) -> dict[str, Any]:
    return {
        "model": m.name,
        "user": None if user is None else raw_id(user),
        "items": None if history is None else [raw_id(x) for x in history],
        "recommendations": rows,
        "unknown_items": [str(x) for x in unknown],
        "notes": notes,
    }


def _lists(m: ServedModel, top: np.ndarray, scores: np.ndarray) -> list[list[dict[str, Any]]]:
    """Rows of ``Run.recommend``'s shape from (B, k) item indices and scores."""
    out = []
    for t, s in zip(top.tolist(), scores.tolist()):
        rows = []
        for rank, (i, v) in enumerate(zip(t, s), 1):
            if i < 0:
                break
            rows.append(row(m, rank, i, v))
        out.append(rows)
    return out


def _short(n: int, k: int, include_seen: bool) -> list[str]:
    if n >= k:
        return []
    return [  # as Run.recommend says it
        f"only {n} items can be recommended "
        f"({'all items' if include_seen else 'the unseen items'}), fewer than k {k}"
    ]


def score_users(
    m: ServedModel, rows: list[int], k: int, include_seen: bool
) -> list[dict[str, Any]]:
    """Known users (training rows) in one model call, as ``Run.recommend(user=...)``
    scores each: from the whole history, every item the user has left out."""
    run = m.run
    idx = np.asarray(rows, dtype=np.int64)  # (B,)
    H = run.data.history[idx]  # (B, I)
    X: sp.csr_matrix | Sequences = H
    if run.model.capabilities.sequential:
        assert run.data.sequences is not None  # _can_rank
        X = run.data.sequences.take(idx)
    kk = min(k, run.data.train.shape[1])
    top, scores = run.model.recommend(
        idx, X, k=kk, exclude_seen=not include_seen, exclude=run.data.known[idx]
    )
    empty = np.diff(H.indptr) == 0  # (B,)
    answers = []
    for b, lst in enumerate(_lists(m, top, scores)):
        u = int(idx[b])
        user = raw_id(run.users.raw[u])
        notes = []
        if empty[b]:
            notes.append(
                f"{run._why_empty(user, u)}, so this is the model's answer to an empty history"
            )
        notes += _short(len(lst), k, include_seen)
        answers.append(_answer(m, user, None, lst, [], notes))
    return answers


def score_histories(
    m: ServedModel, lists: list[list[int]], k: int, include_seen: bool
) -> list[dict[str, Any]]:
    """Posted histories (item rows, in order) in one model call, folded in as
    ``Run.recommend(items=...)`` folds in each."""
    run = m.run
    n_items = run.data.train.shape[1]
    lengths = [len(x) for x in lists]
    cols = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=sum(lengths))
    rows = np.repeat(np.arange(len(lists)), lengths)
    X: sp.csr_matrix | Sequences = sp.csr_matrix(
        (np.ones(len(cols), np.float32), (rows, cols)), shape=(len(lists), n_items)
    )
    if run.model.capabilities.sequential:  # the order given is the history's order
        X = Sequences.from_lists(lists, n_items)
    top, scores = run.model.recommend(None, X, k=min(k, n_items), exclude_seen=not include_seen)
    answers = []
    for x, lst in zip(lists, _lists(m, top, scores)):
        history = [m.raw_items[i] for i in x]
        answers.append(_answer(m, None, history, lst, [], _short(len(lst), k, include_seen)))
    return answers

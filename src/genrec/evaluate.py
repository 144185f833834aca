"""Batched full-ranking evaluation (and rating evaluation).

The evaluator never forms the whole users x items score matrix: it scores ``batch_size``
users at a time, masks the items to exclude with ``-inf``, takes the top ``max(ks)`` once,
computes the hit matrix once, and derives every metric at every cut-off from it.

What is masked, which users count and how empty truth is averaged are data, carried by the
:class:`RankingTask` a protocol builds (see :mod:`genrec.protocols`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from genrec.data.sequences import Sequences
from genrec.errors import ConfigError, DivergenceError
from genrec.metrics import RANKING_METRICS, hits_at_k, mae, ranked, rmse

__all__ = [
    "RankingTask",
    "RatingTask",
    "RankingResult",
    "RatingResult",
    "evaluate_ranking",
    "evaluate_rating",
    "evaluate_sampled",
    "SAMPLED_NOTE",
    "check_scores",
    "DEFAULT_METRICS",
]

DEFAULT_METRICS = ("recall", "ndcg", "precision", "hit_rate", "mrr", "truncated_recall")


@dataclass
class RankingTask:
    """One ranking evaluation: who is scored, from what history, against what truth.

    Attributes
    ----------
    users : ndarray of int64, shape (n,), or None
        Row indices of the users in the training matrix; None when the users are not in
        training (strong generalization: scoring folds in from ``inputs``).
    inputs : csr_matrix, shape (n, n_items)
        The history each user is scored from.
    exclude : csr_matrix, shape (n, n_items)
        Items masked out of the ranking (typically what the user already has).
    truth : csr_matrix, shape (n, n_items)
        Held-out relevant items.
    empty_truth : {"zero", "skip"}
        "zero": every user is averaged, a user with empty truth counts 0 (DiffRec protocol);
        "skip": only users with some truth are averaged.
    name : str
    sequences : Sequences or None
        The same histories in order (one row per user, as ``inputs``), where the protocol
        orders them (seq-loo): what a sequential model is scored from.
    """

    users: np.ndarray | None
    inputs: sp.csr_matrix
    exclude: sp.csr_matrix
    truth: sp.csr_matrix
    empty_truth: Literal["zero", "skip"] = "skip"
    name: str = "test"
    sequences: Sequences | None = None

    def __post_init__(self) -> None:
        n = self.inputs.shape[0]
        for what in ("exclude", "truth"):
            m = getattr(self, what)
            if m.shape != self.inputs.shape:
                raise ValueError(
                    f"RankingTask.{what} has shape {m.shape}, inputs {self.inputs.shape}"
                )
        if self.users is not None and len(self.users) != n:
            raise ValueError(f"RankingTask.users has {len(self.users)} entries for {n} rows")
        if self.sequences is not None and len(self.sequences) != n:
            raise ValueError(f"RankingTask.sequences has {len(self.sequences)} rows for {n}")

    def batch_inputs(self, model: object, rows: slice) -> sp.csr_matrix | Sequences:
        """The inputs of ``rows`` as ``model`` reads them: ordered sequences for a model
        that reads sequences (``model.capabilities.sequential``), else the CSR rows."""
        if reads_sequences(model):
            if self.sequences is None:
                raise ConfigError(
                    f"{type(model).__name__} scores ordered histories, and the task "
                    f"{self.name!r} has none; use protocol seq-loo"
                )
            return self.sequences.take(rows)
        return self.inputs[rows]

    @property
    def n_users(self) -> int:
        return self.inputs.shape[0]


@dataclass
class RatingTask:
    """Held-out ratings: predict ``ratings[j]`` for (``users[j]``, ``items[j]``)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    name: str = "test"


@dataclass
class RankingResult:
    """Means, standard errors and per-user values of ranking metrics.

    ``metrics`` and ``stderr`` are keyed ``"recall@20"``; ``per_user`` holds the (n,) arrays
    over all users of the task (NaN where a user was skipped for empty truth).
    ``coverage@k`` (a catalogue-level number) appears in ``metrics`` without a stderr.
    """

    metrics: dict[str, float]
    stderr: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    n_users: int
    n_evaluated: int
    seconds: float
    #: averaged users with no held-out items (empty_truth "zero"): each counts 0
    n_empty: int = 0

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "stderr": self.stderr,
            "n_users": self.n_users,
            "n_evaluated": self.n_evaluated,
            "n_empty": self.n_empty,
            "seconds": self.seconds,
        }


@dataclass
class RatingResult:
    metrics: dict[str, float]
    n_ratings: int
    seconds: float

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "n_ratings": self.n_ratings, "seconds": self.seconds}


def reads_sequences(model: object) -> bool:
    """Whether ``model`` is scored from ordered histories (a sequential model)."""
    return bool(getattr(getattr(model, "capabilities", None), "sequential", False))


def _mask_rows(scores: torch.Tensor, exclude: sp.csr_matrix) -> None:
    """Set scores[u, i] = -inf for every stored entry of ``exclude`` (in place)."""
    if exclude.nnz == 0:
        return
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    r = torch.from_numpy(rows).to(scores.device)
    c = torch.from_numpy(exclude.indices.astype(np.int64)).to(scores.device)
    scores[r, c] = float("-inf")


def check_scores(scores: torch.Tensor | np.ndarray, model: object, what: str) -> None:
    """Refuse NaN or +inf scores (or predicted ratings) of ``model`` on ``what``.

    They come from a fit that diverged or overflowed, and would rank or average as noise.
    ``-inf`` stays allowed in scores: it is how a model rules an item out.

    Raises
    ------
    DivergenceError
    """
    s = torch.as_tensor(scores)
    total = float(s.sum()) if s.numel() else 0.0  # one pass: finite or -inf when all is well
    if not (math.isnan(total) or total == math.inf):
        return
    bad = torch.isnan(s) | (s == float("inf"))
    if bool(bad.any()):
        n = int(bad.reshape(len(s), -1).any(1).sum()) if s.ndim else 1
        raise DivergenceError(
            f"{type(model).__name__} gives NaN or infinite values for {n} of {len(s)} rows "
            f"of {what!r}: its fit diverged or overflowed; refit it with a lower learning "
            f"rate or more regularization"
        )


class Shard(Protocol):
    """A process's part of a distributed evaluation (see :mod:`genrec.train.distributed`):
    it scores the users ``bounds(n)`` and ``gather_rows`` puts every rank's block of rows
    together, in rank order, each row once."""

    @property
    def world(self) -> int: ...

    def bounds(self, n: int) -> tuple[int, int]: ...

    def gather_rows(self, block: np.ndarray, n: int, what: str) -> np.ndarray: ...


def evaluate_ranking(
    model,
    task: RankingTask,
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 2048,
    on_batch: Callable[[int, int], None] | None = None,
    shard: Shard | None = None,
) -> RankingResult:
    """Full-ranking evaluation of ``model`` on ``task``.

    Parameters
    ----------
    model : Recommender
        Anything with ``score(users, X_users) -> (B, n_items)``.
    task : RankingTask
    ks : cut-offs, >= 1; one past the item count is computed exactly (its lists hold every
        item, and Precision still divides by k), with memory bounded by the item count
    metrics : names in :data:`genrec.metrics.RANKING_METRICS`
    batch_size : users scored at once (memory is about batch_size x n_items floats)
    on_batch : called as ``on_batch(users_done, n_users)`` after each batch (progress bars)
    shard : in a distributed run, this process's part: it scores its contiguous block of
        users, and the ranked lists of all blocks are gathered (each user once) before the
        means, which every process then computes alike

    Returns
    -------
    RankingResult
    """
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(RANKING_METRICS)}")
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    # a list holds at most the catalogue: a cut-off past it is exact with the lists this long
    kmax = min(ks[-1], task.inputs.shape[1])
    n = task.n_users
    t0 = time.perf_counter()
    inputs, exclude, truth = (sp.csr_matrix(m) for m in (task.inputs, task.exclude, task.truth))
    n_truth = np.diff(truth.indptr).astype(np.float64)
    lo, hi = (0, n) if shard is None else shard.bounds(n)
    hits_all = np.zeros((hi - lo, kmax), dtype=bool)
    top_all = np.zeros((hi - lo, kmax), dtype=np.int64)
    seq = reads_sequences(model)
    failed: DivergenceError | None = None
    for start in range(lo, hi, batch_size):
        stop = min(hi, start + batch_size)
        users = None if task.users is None else task.users[start:stop]
        with torch.inference_mode():
            batch = task.batch_inputs(model, slice(start, stop)) if seq else inputs[start:stop]
            raw = model.score(users, batch)
            if isinstance(raw, np.ndarray) and not raw.flags.writeable:
                raw = raw.copy()  # the contract asks for new memory; a view is copied
            scores = torch.as_tensor(raw).float()  # (B, I)
            _mask_rows(scores, exclude[start:stop])  # in place: score's result is ours
            top, best = ranked(scores, kmax)  # (B, kmax) each
            try:
                check_scores(best[:, :1], model, task.name)  # NaN and +inf rank first
            except DivergenceError as e:
                if shard is None:
                    raise
                failed = e  # every process must reach the gathers below
                break
            top = top.cpu()
        top_all[start - lo : stop - lo] = top.numpy()
        hits_all[start - lo : stop - lo] = hits_at_k(top, truth[start:stop])
        if on_batch is not None:
            on_batch(stop - lo, hi - lo)
    if shard is not None:
        what = f"the evaluation of {task.name!r}"
        bad = shard.gather_rows(np.array([[failed is not None]]), shard.world, what)
        if bad.any():
            raise failed or DivergenceError(
                f"{type(model).__name__} gives NaN or infinite values on {task.name!r} in "
                f"another process: its fit diverged or overflowed; refit it with a lower "
                f"learning rate or more regularization"
            )
        top_all = shard.gather_rows(top_all, n, what)
        hits_all = shard.gather_rows(hits_all, n, what)
    counted = np.ones(n, bool) if task.empty_truth == "zero" else n_truth > 0
    out: dict[str, float] = {}
    err: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    m_count = int(counted.sum())
    for k in ks:
        hk = hits_all[:, :k]  # (n, min(k, kmax)); ranks past the catalogue are misses
        for name in metrics:
            vals = RANKING_METRICS[name](hk, n_truth, k)
            vals = np.where(counted, vals, np.nan)
            key = f"{name}@{k}"
            per_user[key] = vals
            v = vals[counted]
            out[key] = float(v.mean()) if m_count else float("nan")
            err[key] = float(v.std(ddof=1) / np.sqrt(m_count)) if m_count > 1 else float("nan")
        cov_top = top_all[:, :k][counted]
        out[f"coverage@{k}"] = float(len(np.unique(cov_top[cov_top >= 0])) / truth.shape[1])
    n_empty = int((counted & (n_truth == 0)).sum())
    return RankingResult(out, err, per_user, n, m_count, time.perf_counter() - t0, n_empty)


def ranking_metric_names(ks: Sequence[int], metrics: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """The keys of :func:`evaluate_ranking`'s ``metrics``: ``name@k`` for each metric and
    cut-off, and ``coverage@k``."""
    return [
        key
        for k in sorted(set(int(k) for k in ks))
        for key in (*(f"{name}@{k}" for name in metrics), f"coverage@{k}")
    ]


def evaluate_rating(model, task: RatingTask) -> RatingResult:
    """RMSE and MAE of ``model.predict(users, items)`` on held-out ratings."""
    t0 = time.perf_counter()
    pred = np.asarray(model.predict(task.users, task.items), dtype=np.float64)
    if pred.size and not np.isfinite(pred).all():
        check_scores(np.where(np.isfinite(pred), pred, np.nan), model, task.name)
    truth = np.asarray(task.ratings, dtype=np.float64)
    return RatingResult(
        {"rmse": rmse(pred, truth), "mae": mae(pred, truth)}, len(truth), time.perf_counter() - t0
    )


#: printed beside every sampled number
SAMPLED_NOTE = (
    "sampled metrics rank models differently from full ranking (Krichene and Rendle, KDD "
    "2020): compare them only with sampled numbers of the same sampler and count"
)


def evaluate_sampled(
    model,
    task: RankingTask,
    n_negatives: int = 100,
    sampler: Literal["uniform", "popularity", "sasrec"] = "uniform",
    ks: Sequence[int] = (5, 10, 20),
    seed: int = 0,
    popularity: np.ndarray | None = None,
    train: sp.csr_matrix | None = None,
    batch_size: int = 2048,
    keep_negatives: bool = False,
) -> dict:
    """Sampled evaluation of a task with one held-out item per user: the target is ranked
    among ``n_negatives`` sampled items instead of all items.

    Each user's negatives are drawn independently with replacement, from the items not in
    the task's ``exclude`` row and not the target (``uniform``: equally likely;
    ``popularity``: in proportion to ``popularity``, the training counts), or, with the
    ``sasrec`` preset (the SASRec paper's evaluation code), uniformly from the items not in
    the user's training part ``train`` (rows in the task's user order) only, so the
    validation item, or even the target itself, may be drawn. The rank of the target is the
    number of negatives scoring at least as high (ties count against it): HR@k = [rank < k],
    NDCG@k = [rank < k] / log2(rank + 2), MRR = 1 / (rank + 1), averaged over the users.

    Returns
    -------
    dict with ``metrics`` (``hit_rate@k``, ``ndcg@k``, ``mrr``), ``n_users``,
    ``n_negatives``, ``sampler``, ``seconds`` and ``note`` (:data:`SAMPLED_NOTE`); with
    ``keep_negatives``, also ``negatives`` (n, n_negatives) and ``ranks`` (n,).
    """
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if sampler not in ("uniform", "popularity", "sasrec"):
        raise ValueError(f"sampler must be uniform, popularity or sasrec, got {sampler!r}")
    truth = sp.csr_matrix(task.truth)
    if (np.diff(truth.indptr) != 1).any():
        raise ValueError(f"sampled evaluation needs one held-out item per user in {task.name!r}")
    if sampler == "popularity" and popularity is None:
        raise ValueError("the popularity sampler needs the item popularity")
    if sampler == "sasrec" and (train is None or train.shape[0] != task.n_users):
        raise ValueError("the sasrec sampler needs the users' training rows (train)")
    t0 = time.perf_counter()
    n, n_items = task.n_users, task.inputs.shape[1]
    target = truth.indices.astype(np.int64)
    gen = torch.Generator().manual_seed(seed)
    if sampler == "popularity":
        base = torch.as_tensor(np.asarray(popularity, np.float64)).float()
    else:
        base = torch.ones(n_items)
    mask_source = sp.csr_matrix(train if sampler == "sasrec" else task.exclude)
    ranks = np.zeros(n, np.int64)
    kept = np.zeros((n, n_negatives), np.int64) if keep_negatives else None
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        rows = slice(start, stop)
        users = None if task.users is None else task.users[start:stop]
        allowed = base.repeat(stop - start, 1)  # (B, I)
        m = mask_source[rows].tocoo()
        allowed[
            torch.from_numpy(m.row.astype(np.int64)), torch.from_numpy(m.col.astype(np.int64))
        ] = 0
        tgt = torch.from_numpy(target[rows])
        if sampler != "sasrec":
            allowed[torch.arange(stop - start), tgt] = 0
        if (allowed.sum(1) <= 0).any():
            raise ValueError(f"a user of {task.name!r} has no item left to sample")
        negs = torch.multinomial(allowed, n_negatives, replacement=True, generator=gen)
        if kept is not None:
            kept[rows] = negs.numpy()
        with torch.no_grad():
            batch = task.batch_inputs(model, rows)
            scores = torch.as_tensor(model.score(users, batch)).float().cpu()  # (B, I)
            check_scores(scores, model, task.name)
        s_t = scores.gather(1, tgt[:, None])  # (B, 1)
        ranks[rows] = (scores.gather(1, negs) >= s_t).sum(1).numpy()
    out: dict[str, float] = {}
    for k in sorted(set(int(k) for k in ks)):
        hit = ranks < k
        out[f"hit_rate@{k}"] = float(hit.mean()) if n else float("nan")
        out[f"ndcg@{k}"] = float((hit / np.log2(ranks + 2)).mean()) if n else float("nan")
    out["mrr"] = float((1.0 / (ranks + 1)).mean()) if n else float("nan")
    res = {
        "metrics": out,
        "n_users": n,
        "n_negatives": n_negatives,
        "sampler": sampler,
        "seconds": time.perf_counter() - t0,
        "note": SAMPLED_NOTE,
    }
    if kept is not None:
        res.update(negatives=kept, ranks=ranks)
    return res

"""``load_run``: a finished run folder as a model with its raw ids and histories.

>>> run = load_run("runs/ease-ml-100k")                       # doctest: +SKIP
>>> run.recommend(user=196, k=5).items                         # doctest: +SKIP
>>> run.recommend(items=["1", "50", "172"], k=5).items         # doctest: +SKIP
>>> run.user_embeddings(users=[196, 186]).shape                # doctest: +SKIP
>>> write_recommendations("recs.parquet", run.recommend_all(k=100))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from genrec.data import IdMap, Sequences
from genrec.errors import ConfigError, DataError
from genrec.models.base import RatingPredictor, Recommender
from genrec.runs import folder as rf
from genrec.runs.export import RecommendationRows, recommend_all

__all__ = ["Run", "Recommendations", "load_run", "RunNotFinishedError"]


class RunNotFinishedError(DataError):
    """The run folder holds no finished model (an interrupted or failed run)."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass
class Recommendations:
    """Top-k items for one user or history, with the notes a caller should show."""

    items: list[dict[str, Any]]  # {"rank", "item" (raw id), "score"[, "title"]}
    user: Any = None  # the raw user id, when recommending for a known user
    history: list[Any] | None = None  # the raw item ids folded in
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """A finished run: the model, the raw id maps, the histories and the run record."""

    path: Path
    record: dict[str, Any]
    model: Recommender
    data: rf.RunData
    users: IdMap
    items: IdMap

    @property
    def name(self) -> str:
        return str(self.record["model"])

    def _user_sequence(self, u: int | np.ndarray) -> Sequences:
        """User row ``u``'s (or rows') whole history in order (a sequential model scores from
        it)."""
        if self.data.sequences is None:
            raise rf.RunFolderError(
                f"{self.path / 'data.npz'}: no ordered histories kept beside the sequential "
                f"model {self.name}; train it again"
            )
        return self.data.sequences.take(np.atleast_1d(u))

    @property
    def train_matrix(self) -> sp.csr_matrix:
        """The training matrix (n_users, n_items) the model was fitted on: row ``u`` is the
        training history of the user ``users.raw[u]``, the ``X_users`` that
        ``model.user_embeddings`` and ``model.score`` take."""
        return self.data.train

    def user_embeddings(self, users: Sequence[Any] | None = None) -> np.ndarray:
        """The model's embeddings (B, d) of ``users`` (raw ids; None: every user, in row
        order) from their training histories: ``model.user_embeddings`` of their rows of
        :attr:`train_matrix` (a sequential model: of their ordered histories, as
        :meth:`recommend` reads them)."""
        idx = (
            np.arange(self.data.train.shape[0])
            if users is None
            else self.users.indices(list(users), "user")
        )
        if self.model.capabilities.sequential:  # it reads the ordered histories recommend reads
            return self.model.user_embeddings(self._user_sequence(idx), users=idx)
        return self.model.user_embeddings(self.data.train[idx], users=idx)

    def user_history(self, user: Any) -> sp.csr_matrix:
        """The user's whole history in the data (1, n_items), by raw id."""
        return self.data.history[self.users.index(user, "user")]

    def recommend(
        self,
        user: Any = None,
        items: list[Any] | None = None,
        k: int = 10,
        include_seen: bool = False,
        unknown_items: Literal["skip", "error"] = "skip",
    ) -> Recommendations:
        """Top-k items for a known user (raw id; scored from the user's whole history, every
        item the user has left out) or a new history (raw item ids, folded in; unknown ids
        skipped with a note, or an error with ``unknown_items="error"``)."""
        if (user is None) == (items is None):
            raise ConfigError("recommend: give a user or a list of items, not both")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"recommend: k must be a positive integer, got {k!r}")
        notes: list[str] = []
        asked = int(k)
        k = min(asked, self.data.train.shape[1])  # a larger k would only allocate more
        exclude = None
        raw_items: list[Any] | None = None
        if user is not None:
            u = self.users.index(user, "user")
            users: np.ndarray | None = np.array([u])
            history = self.data.history[u]
            exclude = self.data.known[u]
            empty = history.nnz == 0
            if self.model.capabilities.sequential:
                history = self._user_sequence(u)
            if empty:
                notes.append(
                    f"{self._why_empty(user, u)}, so this is the model's answer to an empty history"
                )
        else:
            if not self.model.folds_in():
                raise ConfigError(
                    f"model {self.name} cannot fold in a new history; "
                    f"recommend for a known user instead"
                )
            raw = list(dict.fromkeys(str(x).strip() for x in items or [] if str(x).strip()))
            if not raw:
                raise ConfigError("recommend: the item list is empty; give raw item ids")
            idx, raw_items = [], []
            for r in raw:
                i = self.items.get(r)
                if i is None:
                    if unknown_items == "error":
                        self.items.index(r, "item")
                    notes.append(f"item {r} is not in the training data: left out")
                    continue
                idx.append(i)
                raw_items.append(self.items.raw[i].item())
            if not idx:
                raise DataError(
                    f"none of the items {', '.join(raw)} occurs in the training "
                    f"data; give known item ids"
                )
            history = sp.csr_matrix(
                (np.ones(len(idx), np.float32), (np.zeros(len(idx), int), idx)),
                shape=(1, self.data.train.shape[1]),
            )
            if self.model.capabilities.sequential:  # the order given is the history's order
                history = Sequences.from_lists([idx], self.data.train.shape[1])
            users = None
        top, scores = self.model.recommend(
            users, history, k=k, exclude_seen=not include_seen, exclude=exclude
        )
        titles = self.data.titles
        rows = []
        for rank, (i, s) in enumerate(zip(top[0], scores[0]), 1):
            if i < 0:
                break
            row: dict[str, Any] = {
                "rank": rank,
                "item": self.items.raw[i].item(),
                "score": float(s),
            }
            if titles is not None:
                row["title"] = str(titles[i])
            rows.append(row)
        if len(rows) < asked:
            notes.append(
                f"only {len(rows)} items can be recommended "
                f"({'all items' if include_seen else 'the unseen items'}), fewer "
                f"than k {asked}"
            )
        who = None if user is None else self.users.raw[self.users.index(user, "user")].item()
        return Recommendations(rows, who, raw_items, notes)

    def recommend_all(
        self, k: int = 10, batch_size: int | None = None, include_seen: bool = False
    ) -> Iterator[RecommendationRows]:
        """Top-k items for every user, in row order, as batches of rows (user, rank, item,
        score[, title]) scored ``batch_size`` users at a time through the model's batched
        ``recommend``: each user's list is :meth:`recommend` ``(user=..., k=k,
        include_seen=include_seen)``'s. Write them with
        :func:`genrec.runs.write_recommendations`."""
        return recommend_all(self, k, batch_size, include_seen)

    def _why_empty(self, user: Any, u: int) -> str:
        """Why the known user ``user`` (row ``u``) has an empty history: none in the data,
        or every interaction dropped by the protocol's binarizing or k-core filtering."""
        n = self.data.known[u].nnz
        if n == 0:
            part = "the data" if self.data.has_history else "the training part"
            return f"user {user} has no interactions in {part}"
        p = self.record.get("protocol") or {}
        by = {
            "binarize": f"protocol.binarize_threshold={p.get('binarize_threshold')}",
            "k_core": f"k-core filtering (protocol.user_k={p.get('user_k')}, "
            f"protocol.item_k={p.get('item_k')})",
        }
        step = next((s for s, rows in self.data.dropped.items() if u in rows), None)
        if step is None and not (p.get("user_k") or p.get("item_k")):  # an older folder
            step = "binarize"
        what = by.get(step or "", f"{by['binarize']} or {by['k_core']}")
        described = self.record.get("protocol_description") or {}
        steps = [f.get("step") for f in described.get("filters") or [] if isinstance(f, dict)]
        if step == "k_core" and "binarize" in steps:  # binarizing went first
            what = f"{by['binarize']} and {what}"
        return f"user {user} is in the data but all their {n} interactions were dropped by {what}"

    def predict(
        self, user: Any, item: Any, unknown: Literal["fallback", "error"] = "fallback"
    ) -> tuple[float, list[str]]:
        """The predicted rating of (user, item) by raw ids, and notes on fallbacks: an
        unknown id gets the model's fallback with a note, or an error with
        ``unknown="error"`` (the rule of :meth:`recommend`'s ``unknown_items``)."""
        if not isinstance(self.model, RatingPredictor) or self.model.selects_on() != "rating":
            what = (
                "was trained to rank (objective bpr), not to predict ratings"
                if isinstance(self.model, RatingPredictor)
                else "does not predict ratings"
            )
            raise ConfigError(
                f"model {self.name} {what}; use a rating model (biased-mf, fm, "
                f"autorec) or recommend"
            )
        if unknown not in ("fallback", "error"):
            raise ConfigError(f"predict: unknown must be 'fallback' or 'error', got {unknown!r}")
        if unknown == "error":
            self.users.index(user, "user"), self.items.index(item, "item")
        u, i = self.users.get(user), self.items.get(item)
        notes = []
        if u is None:
            notes.append(f"user {user} unknown: fallback prediction")
        if i is None:
            notes.append(f"item {item} unknown: fallback prediction")
        r = float(
            self.model.predict(
                np.array([-1 if u is None else u]), np.array([-1 if i is None else i])
            )[0]
        )
        return r, notes


def load_run(folder: str | Path) -> Run:
    """The finished run in ``folder`` (written by :func:`genrec.runs.train_run` or
    ``genrec train``): its model, raw id maps and histories. Every file is checked (format,
    fields, shapes, checksums) before use; nothing is unpickled."""
    d = Path(folder)
    if not d.is_dir():
        raise rf.RunFolderError(f"{d}: no such run folder")
    if _writable(d):
        rf.recover(d)  # a replacement a crash interrupted
    record = rf.read_record(d, keys=("model",))
    status = record.get("status")
    if status != "done":
        raise RunNotFinishedError(f"{d}: training did not finish (status {status!r}); resume it", d)
    for key in ("dataset",):
        if key not in record:
            raise rf.RunFolderError(
                f"{d / 'run.json'}: not a genrec run folder: field {key!r} is missing"
            )
    rf.check_digests(d, record)
    model = Recommender.load(d)
    data = rf.load_run_data(d)
    if model.n_items_ != data.train.shape[1]:
        raise rf.RunFolderError(
            f"{d}: the model has {model.n_items_} items but data.npz "
            f"{data.train.shape[1]}; the folder mixes two runs, train "
            f"again"
        )
    return Run(d, record, model, data, IdMap(data.user_ids), IdMap(data.item_ids))


def _writable(d: Path) -> bool:
    import os

    return os.access(d, os.W_OK | os.X_OK)

"""The served models and what each endpoint asks of them, without any web framework.

:class:`Catalog` loads every run folder once (``genrec.runs.load_run``: checked, nothing
unpickled) and answers in plain dicts, the JSON bodies of ``docs/serving.md``; a refused
request raises :class:`genrec.serve.errors.ServeError`. A request is checked first
(``check_user``, ``check_items``, ``check_batch``: lookups only), then scored by ``score``,
one ``Recommender.recommend`` call for many known users or many posted histories, with the
history, the excluded items and the notes ``Run.recommend`` uses, so the service and the
command line give the same lists (the scoring thread of :mod:`genrec.serve.batching` calls
``score`` for the requests waiting together; :meth:`Catalog.batch` does it all for one batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrec import __version__
from genrec.errors import GenrecError
from genrec.metrics import topk_indices
from genrec.models.base import RatingPredictor
from genrec.runs import Run, load_run
from genrec.serve.answers import RawId, raw_id, row, score_histories, score_users
from genrec.serve.config import Limits, ServeConfig, model_names
from genrec.serve.errors import ServeError

__all__ = ["Catalog", "ServedModel"]


@dataclass
class ServedModel:
    """One run folder, loaded, under the name it is served as."""

    name: str
    run: Run
    unit_items: np.ndarray | None  # (I, d) item embeddings scaled to unit length, or None
    titles_lower: list[str] | None  # (I,) item titles in lower case, for the title search
    raw_items: list[RawId] = field(default_factory=list)  # (I,) raw item ids as JSON has them
    titles: list[str] | None = None  # (I,) item titles, when the data has them

    @classmethod
    def load(cls, name: str, folder: Path) -> ServedModel:
        run = load_run(folder)
        try:
            emb = np.asarray(run.model.item_embeddings(), dtype=np.float32)  # (I, d)
        except GenrecError:
            unit = None
        else:
            norms = np.linalg.norm(emb, axis=1, keepdims=True)  # (I, 1)
            unit = emb / np.maximum(norms, 1e-12)
        titles = None if run.data.titles is None else [str(t) for t in run.data.titles]
        lower = None if titles is None else [t.lower() for t in titles]
        raw = [raw_id(x) for x in run.items.raw]
        return cls(name, run, unit, lower, raw, titles)

    # ------------------------------------------------------------------ description
    def info(self) -> dict[str, Any]:
        run, rec = self.run, self.run.record
        results = rec.get("results") or {}
        test = results.get("test") if isinstance(results, dict) else None
        metrics = test.get("metrics") if isinstance(test, dict) else None
        model = run.model
        return {
            "name": self.name,
            "model": run.name,
            "dataset": rec.get("dataset_name") or rec.get("dataset"),
            "protocol": rec.get("protocol"),
            "test_metrics": metrics or {},
            "sizes": {
                "users": int(run.data.train.shape[0]),
                "items": int(run.data.train.shape[1]),
                "train_interactions": int(run.data.train.nnz),
            },
            "genrec_version": rec.get("genrec_version"),
            "trained": rec.get("finished"),
            "capabilities": {
                "fold_in": bool(model.folds_in()),
                "sequential": bool(model.capabilities.sequential),
                "similar_items": self.unit_items is not None,
                "predict": _rates(run),
                "titles": run.data.titles is not None,
            },
            "example_users": [raw_id(run.users.raw[u]) for u in range(min(10, len(run.users)))],
        }


class Catalog:
    """The models a service answers for, by name, and the requests it answers."""

    def __init__(self, models: dict[str, ServedModel], limits: Limits):
        self.models = models
        self.limits = limits
        self.version = __version__

    @classmethod
    def load(cls, config: ServeConfig) -> Catalog:
        """Every run folder of ``config`` loaded (a GenrecError names a folder that is not
        a finished run)."""
        names = model_names(config.runs)
        models = {n: ServedModel.load(n, p) for n, p in zip(names, config.runs)}
        return cls(models, config.limits)

    # ------------------------------------------------------------------ lookups
    def get(self, name: str) -> ServedModel:
        m = self.models.get(name)
        if m is None:
            raise ServeError(
                404,
                "unknown_model",
                f"no model named {name!r} is served; the served models are "
                f"{', '.join(sorted(self.models))} (GET /v1/models)",
            )
        return m

    def check_k(self, k: int) -> None:
        if k > self.limits.max_k:
            raise ServeError(
                413,
                "limit_exceeded",
                f"k={k} is above this service's limit of {self.limits.max_k} items per list "
                f"(max_k); ask for fewer",
            )

    # ------------------------------------------------------------------ recommendations
    # Each request is checked first (``check_*``: lookups only, a ServeError when refused),
    # then scored by ``score``: the service's scoring thread calls it for many requests at
    # once (genrec.serve.batching); ``batch`` does both for one batch request.
    def check_user(self, name: str, user: RawId, k: int) -> tuple[ServedModel, int]:
        """The model and the training row of a known user's request."""
        m = self.get(name)
        self.check_k(k)
        u = _known_user(m, user)
        _can_rank(m)
        return m, u

    def check_items(
        self, name: str, items: Sequence[RawId], k: int, where: str = "items"
    ) -> tuple[ServedModel, list[int], list[RawId]]:
        """The model, the item rows (in order) and the unknown ids of a posted history."""
        m = self.get(name)
        self.check_k(k)
        self._check_history(items, where)
        _can_fold_in(m)
        raw, unknown = _split_known(m, items, where)
        return m, [m.run.items.index(x) for x in raw], unknown

    def check_batch(
        self, name: str, requests: Sequence[dict[str, Any]], k: int
    ) -> tuple[ServedModel, list[tuple[int, int]], list[tuple[int, list[int], list[RawId]]]]:
        """The model, the known users ``(position, row)`` and the posted histories
        ``(position, item rows, unknown ids)`` of a batch request."""
        m = self.get(name)
        self.check_k(k)
        if len(requests) > self.limits.max_batch:
            raise ServeError(
                413,
                "limit_exceeded",
                f"requests holds {len(requests)} entries, above this service's limit of "
                f"{self.limits.max_batch} per batch (max_batch); split it",
            )
        users: list[tuple[int, int]] = []
        histories: list[tuple[int, list[int], list[RawId]]] = []
        for j, r in enumerate(requests):
            where = f"requests[{j}]"
            if r.get("user") is not None:
                users.append((j, _known_user(m, r["user"], where)))
            else:
                items = r["items"]
                self._check_history(items, f"{where}.items")
                raw, unknown = _split_known(m, items, f"{where}.items")
                histories.append((j, [m.run.items.index(x) for x in raw], unknown))
        if users:
            _can_rank(m)
        if histories:
            _can_fold_in(m)
        return m, users, histories

    def score(
        self, kind: str, name: str, rows: list[Any], k: int, include_seen: bool
    ) -> list[dict[str, Any]]:
        """One answer per row from one model call: ``kind`` ``"users"`` (training rows,
        scored from the whole history, as ``Run.recommend(user=...)``) or ``"histories"``
        (lists of item rows in order, folded in as ``Run.recommend(items=...)``)."""
        m = self.get(name)
        if kind == "users":
            return score_users(m, rows, k, include_seen)
        if kind == "histories":
            return score_histories(m, rows, k, include_seen)
        raise ValueError(f"unknown kind of request {kind!r}")

    @staticmethod
    def with_unknown(answer: dict[str, Any], unknown: Sequence[RawId]) -> dict[str, Any]:
        """A posted history's answer with its unknown ids listed and noted."""
        answer["unknown_items"] = [str(x) for x in unknown]
        answer["notes"] = [_left_out(x) for x in unknown] + answer["notes"]
        return answer

    def batch_answer(
        self,
        m: ServedModel,
        n: int,
        users: list[tuple[int, int]],
        user_answers: list[dict[str, Any]],
        histories: list[tuple[int, list[int], list[RawId]]],
        history_answers: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The batch response: one answer per request, in the order asked."""
        out: list[dict[str, Any] | None] = [None] * n
        for (j, _), answer in zip(users, user_answers):
            out[j] = answer
        for (j, _, unknown), answer in zip(histories, history_answers):
            out[j] = self.with_unknown(answer, unknown)
        return {"model": m.name, "results": out}

    def batch(
        self, name: str, requests: Sequence[dict[str, Any]], k: int, include_seen: bool
    ) -> dict[str, Any]:
        """One answer per request (``{"user": id}`` or ``{"items": [...]}``), in order; the
        known users scored by one model call, the posted histories by another."""
        m, users, histories = self.check_batch(name, requests, k)
        ua = self.score("users", m.name, [u for _, u in users], k, include_seen) if users else []
        ha = (
            self.score("histories", m.name, [r for _, r, _ in histories], k, include_seen)
            if histories
            else []
        )
        return self.batch_answer(m, len(requests), users, ua, histories, ha)

    def _check_history(self, items: Sequence[RawId], where: str) -> None:
        if len(items) > self.limits.max_history:
            raise ServeError(
                413,
                "limit_exceeded",
                f"{where} holds {len(items)} item ids, above this service's limit of "
                f"{self.limits.max_history} per history (max_history); send the most recent "
                f"ones",
            )

    # ------------------------------------------------------------------ items
    def similar(self, name: str, item: RawId, k: int) -> dict[str, Any]:
        """The k items nearest ``item`` by the cosine of the model's item embeddings."""
        m = self.get(name)
        self.check_k(k)
        if m.unit_items is None:
            raise ServeError(
                409,
                "no_item_embeddings",
                f"model {m.name} ({m.run.name}) has no item embeddings, so it cannot find "
                f"similar items; ask a model with item factors or an item table (bpr-mf, "
                f"mult-vae, sasrec, ...)",
            )
        i = m.run.items.get(item)
        if i is None:
            raise ServeError(
                404,
                "unknown_item",
                f"unknown item {str(item)!r} in model {m.name}: it does not occur in the "
                f"training data",
            )
        E = torch.from_numpy(m.unit_items)  # (I, d)
        sims = (E @ E[i]).unsqueeze(0)  # (1, I) cosines
        sims[0, i] = float("-inf")  # not the item itself
        top = topk_indices(sims, k)[0]  # (min(k, I),)
        rows = []
        for rank, j in enumerate(top.tolist(), 1):
            if j < 0:
                break
            rows.append(row(m, rank, j, float(sims[0, j])))
        answer: dict[str, Any] = {"model": m.name, "item": raw_id(m.run.items.raw[i])}
        if m.run.data.titles is not None:
            answer["title"] = str(m.run.data.titles[i])
        answer["similar"] = rows
        return answer

    def search_items(self, name: str, q: str, limit: int) -> dict[str, Any]:
        """Items whose raw id equals ``q`` or whose title contains it (case ignored), for
        the try-it page."""
        m = self.get(name)
        q = q.strip()
        hits: list[int] = []
        exact = m.run.items.get(q) if q else None
        if exact is not None:
            hits.append(exact)
        if q and m.titles_lower is not None:
            needle = q.lower()
            for i, t in enumerate(m.titles_lower):
                if len(hits) >= limit:
                    break
                if needle in t and i != exact:
                    hits.append(i)
        titles = m.run.data.titles
        found = []
        for i in hits[:limit]:
            row: dict[str, Any] = {"item": raw_id(m.run.items.raw[i])}
            if titles is not None:
                row["title"] = str(titles[i])
            found.append(row)
        return {"model": m.name, "query": q, "items": found}

    def predict(self, name: str, user: RawId, item: RawId) -> dict[str, Any]:
        """The predicted rating of (user, item) by raw ids, as ``genrec predict`` gives it."""
        m = self.get(name)
        if not _rates(m.run):
            raise ServeError(
                409,
                "not_a_rating_model",
                f"model {m.name} ({m.run.name}) does not predict ratings; serve a rating "
                f"model (biased-mf, fm, autorec trained on the rating protocol) or ask for "
                f"recommendations",
            )
        rating, notes = m.run.predict(user, item)
        if not math.isfinite(rating):
            raise ServeError(
                409, "invalid_prediction", f"model {m.name} predicted a non-finite rating"
            )
        u, i = m.run.users.get(user), m.run.items.get(item)
        return {  # ids typed as in the data when known, else as given
            "model": m.name,
            "user": user if u is None else raw_id(m.run.users.raw[u]),
            "item": item if i is None else raw_id(m.run.items.raw[i]),
            "rating": rating,
            "notes": notes,
        }


# ---------------------------------------------------------------------- helpers
def _rates(run: Run) -> bool:
    return isinstance(run.model, RatingPredictor) and run.model.selects_on() == "rating"


def _left_out(item: RawId) -> str:
    return f"item {item} is not in the training data: left out"  # as Run.recommend says


def _known_user(m: ServedModel, user: RawId, where: str = "user") -> int:
    u = m.run.users.get(user)
    if u is None:
        fold = (
            f"to recommend for a new user, POST their item ids to "
            f'/v1/models/{m.name}/recommendations as {{"items": ["id", ...]}}'
            if m.run.model.folds_in()
            else f"model {m.run.name} cannot fold in a new user, so serve a fold-in model "
            f"(ease, mult-vae, ...) for new users"
        )
        at = "" if where == "user" else f"{where}: "
        raise ServeError(
            404,
            "unknown_user",
            f"{at}unknown user {str(user)!r} in model {m.name}: it does not occur in the "
            f"training data; {fold}",
        )
    return u


def _can_rank(m: ServedModel) -> None:
    if m.run.model.capabilities.sequential and m.run.data.sequences is None:
        raise ServeError(
            409,
            "no_histories",
            f"model {m.name}: the run folder keeps no ordered histories beside the "
            f"sequential model {m.run.name}; train it again, or POST the items in order",
        )


def _can_fold_in(m: ServedModel) -> None:
    if not m.run.model.folds_in():
        raise ServeError(
            409,
            "cannot_fold_in",
            f"model {m.name} ({m.run.name}) cannot fold in a new history; recommend for a "
            f"known user with GET /v1/models/{m.name}/users/{{user_id}}/recommendations",
        )


def _split_known(
    m: ServedModel, items: Sequence[RawId], where: str
) -> tuple[list[str], list[RawId]]:
    """The ids of a posted history as ``Run.recommend`` reads them (stripped, first
    occurrence kept, in order) and those of them unknown to the model; a 422 when none is
    known."""
    raw = list(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))
    known = [r for r in raw if m.run.items.get(r) is not None]
    unknown: list[RawId] = [r for r in raw if m.run.items.get(r) is None]
    if not known:
        shown = ", ".join(raw[:10]) + (", ..." if len(raw) > 10 else "")
        raise ServeError(
            422,
            "no_known_items",
            f"{where}: none of the items ({shown}) occurs in the training data of model "
            f"{m.name}; give known raw item ids (GET /v1/models/{m.name}/items?q=... finds "
            f"them by title)",
        )
    return known, unknown

"""Recommendations for every user of a run, scored in batches, and their bulk export.

>>> run = load_run("runs/ease-ml-1m_clean")                          # doctest: +SKIP
>>> for rows in run.recommend_all(k=100):                            # doctest: +SKIP
...     print(rows.n_users, len(rows))   # users in the batch, their (user, item) rows
>>> write_recommendations("recs.parquet", run.recommend_all(k=100))  # doctest: +SKIP

Each batch goes through the model's batched ``recommend`` once (one ``score`` call for many
users), and each user's list is the one :meth:`Run.recommend` gives that user: scored from the
user's whole history, every item the user has in the data left out unless ``include_seen``.
The writer streams batch after batch into a temporary file beside the target and renames it
into place at the end (:mod:`genrec.io`): memory holds one batch, and a failure or Ctrl-C
leaves no partial file and an earlier file of that name as it was.

Columns, one row per (user, rank): ``user`` and ``item`` (raw ids, typed as in the data:
integers stay integers), ``rank`` (1 = best), ``score`` (float32), and ``title`` when the run
keeps item titles. A user with fewer than ``k`` items left to recommend has fewer rows.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np

from genrec._optional import require
from genrec.errors import ConfigError
from genrec.io import atomic_path, write_file

if TYPE_CHECKING:
    from genrec.runs.load import Run

__all__ = [
    "EXPORT_FORMATS",
    "RecommendationRows",
    "default_batch_size",
    "export_format",
    "recommend_all",
    "write_recommendations",
]

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")
_SUFFIXES: dict[str, ExportFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
SCORE_CELLS = 1 << 24  # the default batch holds at most this many scores (64 MiB of float32)


@dataclass
class RecommendationRows:
    """One batch of :func:`recommend_all`: the top-k lists of ``n_users`` users as rows
    (R rows: one per user and rank; R <= n_users * k)."""

    n_users: int  # users in this batch (a user with nothing to recommend has no rows)
    user: np.ndarray  # (R,) raw user ids
    rank: np.ndarray  # (R,) int32, 1 = best
    item: np.ndarray  # (R,) raw item ids
    score: np.ndarray  # (R,) float32
    title: np.ndarray | None  # (R,) str, when the run keeps item titles

    def __len__(self) -> int:
        return len(self.rank)


def default_batch_size(n_items: int) -> int:
    """Users per batch: 1,024, fewer for a catalogue so large that 1,024 rows of scores
    would pass :data:`SCORE_CELLS`."""
    return int(max(1, min(1024, SCORE_CELLS // max(1, n_items))))


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"recommend_all: k must be a positive integer, got {k!r}")
    return int(k)


def recommend_all(
    run: Run, k: int = 10, batch_size: int | None = None, include_seen: bool = False
) -> Iterator[RecommendationRows]:
    """Top-k items for every user of ``run`` (in row order), ``batch_size`` users at a time
    (default :func:`default_batch_size`); each user's list equals ``run.recommend(user=u,
    k=k, include_seen=include_seen)``. A generator: nothing is scored until it is read."""
    k = _check_k(k)
    if batch_size is None:
        batch_size = default_batch_size(run.data.train.shape[1])
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"recommend_all: batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ConfigError(f"recommend_all: batch_size must be at least 1, got {batch_size}")
    return _batches(run, min(k, run.data.train.shape[1]), int(batch_size), include_seen)


def _batches(run: Run, k: int, batch_size: int, include_seen: bool) -> Iterator[RecommendationRows]:
    data, model = run.data, run.model
    seqs = data.sequences if model.capabilities.sequential else None  # ordered histories
    if model.capabilities.sequential and seqs is None:
        run._user_sequence(0)  # raises the folder's error: no ordered histories kept
    n_users = data.train.shape[0]
    for a in range(0, n_users, batch_size):
        b = min(a + batch_size, n_users)
        users = np.arange(a, b)
        history: Any = data.history[a:b] if seqs is None else seqs.take(slice(a, b))
        top, scores = model.recommend(  # (B, k) item indices (-1: nothing left), scores
            users, history, k=k, exclude_seen=not include_seen, exclude=data.known[a:b]
        )
        keep = top >= 0  # (B, k)
        per_user = keep.sum(axis=1)  # (B,)
        items = top[keep]  # (R,) row by row, best first
        yield RecommendationRows(
            n_users=b - a,
            user=np.repeat(run.users.raw[a:b], per_user),
            rank=(np.nonzero(keep)[1] + 1).astype(np.int32),
            item=run.items.raw[items],
            score=scores[keep].astype(np.float32),
            title=None if data.titles is None else data.titles[items].astype(str),
        )


def export_format(path: str | os.PathLike[str], format: str | None = None) -> ExportFormat:
    """The export format: ``format`` when given, else read from the suffix of ``path``
    (``.csv``; ``.parquet`` or ``.pq``). A ConfigError names the fix for any other."""
    if format is not None:
        if format not in EXPORT_FORMATS:
            raise ConfigError(
                f"unknown export format {format!r}; use one of {', '.join(EXPORT_FORMATS)}"
            )
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; end the "
            f"name in .csv or .parquet, or name the format (csv, parquet)"
        )
    return _SUFFIXES[suffix]


def write_recommendations(
    path: str | os.PathLike[str],
    batches: Iterable[RecommendationRows],
    format: str | None = None,
    on_batch: Callable[[RecommendationRows], None] | None = None,
) -> int:
    """Write the rows of ``batches`` (from :func:`recommend_all`) to ``path`` as CSV or
    Parquet (``format``, else the suffix: :func:`export_format`), one batch at a time, and
    atomically; ``on_batch`` is called after each batch is written. Returns the number of
    rows. Parquet needs the ``parquet`` extra (pyarrow)."""
    fmt = export_format(path, format)
    if fmt == "parquet":
        require("pyarrow", "parquet", f"{path}: writing recommendations as Parquet")
    counted = [0]

    def writer(f: BinaryIO) -> None:
        write = _write_parquet if fmt == "parquet" else _write_csv
        for rows in write(f, batches):
            counted[0] += len(rows)
            if on_batch is not None:
                on_batch(rows)

    with atomic_path(path) as tmp:
        write_file(tmp, writer, target=path)
    return counted[0]


def _columns(rows: RecommendationRows) -> dict[str, np.ndarray]:
    cols = {"user": rows.user, "rank": rows.rank, "item": rows.item, "score": rows.score}
    if rows.title is not None:
        cols["title"] = rows.title
    return cols


def _write_csv(f: BinaryIO, batches: Iterable[RecommendationRows]) -> Iterator[RecommendationRows]:
    """CSV with a header line; scores as the shortest text that reads back as the same
    float32."""
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    out = csv.writer(text, lineterminator="\n")
    header: list[str] | None = None
    try:
        for rows in batches:
            cols = _columns(rows)
            if header is None:
                header = list(cols)
                out.writerow(header)
            cols["score"] = rows.score.astype(np.float32).astype(str)  # shortest round trip
            out.writerows(zip(*(c.tolist() for c in cols.values()), strict=True))
            text.flush()
            yield rows
        if header is None:  # no users: the header alone
            out.writerow(["user", "rank", "item", "score"])
        text.flush()
    finally:
        text.detach()  # the file is the caller's to close


def _write_parquet(
    f: BinaryIO, batches: Iterable[RecommendationRows]
) -> Iterator[RecommendationRows]:
    """Parquet, one row group per batch: ``user`` and ``item`` int64 or string as the raw
    ids are, ``rank`` int32, ``score`` float32, ``title`` string."""
    pa = require("pyarrow", "parquet", "writing recommendations as Parquet")
    pq = require("pyarrow.parquet", "parquet", "writing recommendations as Parquet")
    writer = None
    try:
        for rows in batches:
            table = pa.table({name: _arrow(pa, col) for name, col in _columns(rows).items()})
            if writer is None:
                writer = pq.ParquetWriter(f, table.schema)
            writer.write_table(table)
            yield rows
        if writer is None:  # no users: an empty table with the columns
            table = _empty_schema(pa).empty_table()
            writer = pq.ParquetWriter(f, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _arrow(pa: Any, col: np.ndarray) -> Any:
    if col.dtype.kind in "US":
        return pa.array(col.tolist(), pa.string())
    return pa.array(col)


def _empty_schema(pa: Any) -> Any:
    names = {"user": pa.string(), "rank": pa.int32(), "item": pa.string(), "score": pa.float32()}
    return pa.schema(list(names.items()))

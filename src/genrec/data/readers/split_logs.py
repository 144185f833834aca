"""Reader of a folder of split logs: ``train``, ``valid`` (optional) and ``test`` files, each
a CSV/TSV/Parquet log read as :func:`~genrec.data.readers.logs.read_log` reads one.

The parts become the data set's given split (``Dataset.splits["given"]``), which the
protocols keep as they keep DiffRec's pair lists: ``diffrec`` and ``rating`` use the files'
train/valid/test parts instead of splitting the data again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.readers._parse import _LOG_FORMATS, COMPRESSED_SUFFIXES, _build, _part
from genrec.data.readers.logs import frame_is_implicit, log_frame, log_stem
from genrec.errors import DataError

__all__ = ["read_split_logs", "split_log_files", "SPLIT_PARTS"]

SPLIT_PARTS = ("train", "valid", "test")


def split_log_files(folder: Path) -> dict[str, Path]:
    """The log of each part in ``folder`` (``train.csv``, ``valid.tsv``, ``test.parquet``,
    ``train.csv.gz``, ...), by part; a part given twice (``train.csv`` and ``train.tsv``) is
    a DataError."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return {}
    for f in sorted(folder.iterdir()):
        suffixes = [s.lower() for s in f.suffixes]
        while suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
            suffixes.pop()
        if not f.is_file() or not suffixes or suffixes[-1] not in _LOG_FORMATS:
            continue
        part = log_stem(f)
        if part in SPLIT_PARTS:
            found.setdefault(part, []).append(f)
    for part, files in found.items():
        if len(files) > 1:
            raise DataError(
                f"{folder}: the {part} part is given twice ("
                f"{', '.join(f.name for f in files)}); keep one file per part"
            )
    return {p: found[p][0] for p in SPLIT_PARTS if p in found}


def read_split_logs(
    folder: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    sep: str | None = None,
    duplicates: str = "last",
    name: str | None = None,
    header: bool = True,
    ordered: bool = False,
    columns: Sequence[str] | None = None,
) -> Dataset:
    """A folder of ``train``/``valid``/``test`` logs (``valid`` optional; ``.csv``, ``.tsv``,
    ``.parquet``, optionally compressed), one id space over all of them.

    Every file is read with the same column mapping (the arguments of
    :func:`~genrec.data.readers.logs.read_log`) and must have the same columns. The whole
    data set is all parts together (a pair repeated across parts is kept once, by
    ``duplicates``); ``splits["given"]`` holds each part as given. The data is implicit when
    the files have no rating column, or one holding a single value throughout. The
    Dataset's ``sequences`` order each user's rows over all parts by time, or (``ordered``,
    no time column) in the order train, valid, test, each in file order.
    """
    d = Path(folder)
    files = split_log_files(d)
    if "train" not in files or "test" not in files:
        found = ", ".join(f.name for f in files.values()) or "no part"
        raise DataError(
            f"{d}: a folder of split logs needs a train and a test file (found "
            f"{found}); name them train.csv, test.csv and optionally valid.csv (or "
            f".tsv, .parquet)"
        )
    frames = {
        p: log_frame(
            f,
            user_col=user_col,
            item_col=item_col,
            rating_col=rating_col,
            time_col=time_col,
            sep=sep,
            header=header,
            columns=columns,
        )
        for p, f in files.items()
    }
    first = next(iter(frames))
    for p, frame in frames.items():
        for col, role in (("rating", "rating_col"), ("timestamp", "time_col")):
            if (col in frame) != (col in frames[first]):
                has, lacks = (p, first) if col in frame else (first, p)
                raise DataError(
                    f"{files[lacks]}: no {col} column (data.{role}), but "
                    f"{files[has].name} has one; give every part the same columns"
                )
    for col in ("user", "item"):  # one id type over the parts: text if any part has text
        if len({frame[col].dtype.kind for frame in frames.values()}) > 1:
            for frame in frames.values():
                frame[col] = frame[col].astype(str)
    whole = pd.concat(list(frames.values()), ignore_index=True)
    implicit = frame_is_implicit(d, whole)
    ds, umap, imap = _build(
        name or d.name, whole, d, duplicates=duplicates, implicit=implicit, ordered=ordered
    )
    ds.splits["given"] = {
        p: _part(ds, frame, umap, imap, files[p], implicit, duplicates)
        for p, frame in frames.items()
    }
    if not implicit:
        ratings = whole["rating"].to_numpy(np.float64)
        ds.rating_range = (float(ratings.min()), float(ratings.max()))
    return ds

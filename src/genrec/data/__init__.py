"""Data: readers, the Interactions type, preprocessing, splits and downloads.

:func:`load_dataset` takes a known name (``ml-100k``) or a path (a MovieLens folder, a folder
of pair lists, a folder of train/valid/test logs, or a CSV/TSV/Parquet log) and returns a
:class:`Dataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from genrec.data.dataset import Dataset
from genrec.data.download import KNOWN_DATASETS, resolve_known
from genrec.data.interactions import IdMap, Interactions
from genrec.data.preprocess import binarize, compact, k_core
from genrec.data.readers import (
    log_format,
    read_log,
    read_ml1m,
    read_ml10m,
    read_ml100k,
    read_ml_csv,
    read_pair_lists,
    read_split_logs,
    split_log_files,
)
from genrec.data.readers._columns import parse_columns
from genrec.data.readers.sequence_lines import looks_like_sequence_lines, read_sequence_lines
from genrec.data.sequences import Sequences, SequenceSplit, sequence_leave_one_out
from genrec.data.splits import (
    leave_last_one_out,
    random_ratio_split,
    random_split,
    strong_generalization_split,
    temporal_ratio_split,
)
from genrec.errors import DataError

__all__ = [
    "Dataset",
    "Interactions",
    "IdMap",
    "Sequences",
    "SequenceSplit",
    "sequence_leave_one_out",
    "DataOptions",
    "load_dataset",
    "FORMATS",
    "binarize",
    "k_core",
    "compact",
    "random_ratio_split",
    "temporal_ratio_split",
    "leave_last_one_out",
    "random_split",
    "strong_generalization_split",
    "KNOWN_DATASETS",
]

FORMATS = (
    "ml-100k",
    "ml-1m",
    "ml-10m",
    "ml-csv",
    "pairs",
    "splits",
    "csv",
    "tsv",
    "parquet",
    "sequences",
)
#: the formats of one file (the others read a folder)
_FILE_FORMATS = ("csv", "tsv", "parquet", "sequences")
#: what each folder format looks for, in the order a folder is tried
_FOLDER_LAYOUTS = (
    ("u.data", "ml-100k"),
    ("ratings.dat + users.dat", "ml-1m"),
    ("ratings.dat", "ml-10m"),
    ("ratings.csv", "ml-csv"),
    ("train_list.npy or train.txt + test.txt", "pairs"),
    ("train.csv + test.csv (or .tsv, .parquet; valid optional)", "splits"),
)


@dataclass(frozen=True)
class DataOptions:
    """How to read a data set (the ``[data]`` table of a run config)."""

    format: str | None = None  # one of FORMATS; detected from the path when None
    user_col: str = "user"  # generic logs: column of user ids
    item_col: str = "item"  # generic logs: column of item ids
    rating_col: str = "rating"  # logs: column of ratings (absent or "" = implicit)
    time_col: str = "timestamp"  # generic logs: column of timestamps (optional)
    sep: str | None = None  # generic logs: field separator (default by format)
    header: bool = True  # logs: False = no header, columns user item [rating [time]]
    columns: str | None = None  # logs without a header: their fields' names, "user,item,,time"
    duplicates: Literal["last", "first", "max", "error"] = "last"  # repeated (user, item)
    ordered: bool = False  # logs without a time column: rows are in time order (sequences)
    download: bool = True  # fetch a known data set when it is not found locally

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.columns is not None:
            parse_columns(self.columns)  # its own one-line errors
            if self.header:
                raise ValueError(
                    f"columns={self.columns!r} names the fields of a log without a header "
                    f"line; set header=false with it, or leave columns out to read the header"
                )


def _detect(path: Path) -> str:
    if path.is_file():
        return "sequences" if looks_like_sequence_lines(path) else log_format(path)
    if (path / "u.data").is_file():
        return "ml-100k"
    if (path / "ratings.dat").is_file():
        return "ml-1m" if (path / "users.dat").is_file() else "ml-10m"
    if (path / "ratings.csv").is_file():
        return "ml-csv"
    if (path / "train_list.npy").is_file() or (path / "train.txt").is_file():
        return "pairs"
    if split_log_files(path):
        return "splits"
    names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    found = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "nothing"
    looked = "; ".join(f"{files} ({fmt})" for files, fmt in _FOLDER_LAYOUTS)
    raise DataError(
        f"{path}: no data set layout found (looked for {looked}; found {found}); name the "
        f"files as one of these layouts, or give the path of a CSV/TSV/Parquet log file"
    )


def load_dataset(
    spec: str | Path,
    options: DataOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Dataset:
    """Load a data set by known name or path.

    Parameters
    ----------
    spec : str or Path
        A known name (see :data:`KNOWN_DATASETS`) or a path.
    options : DataOptions, optional
    progress : download progress callback ``(bytes_done, bytes_total)``
    """
    opts = options or DataOptions()
    name = str(spec)
    if name in KNOWN_DATASETS and not Path(name).exists():
        path = resolve_known(name, allow_download=opts.download, progress=progress)
        fmt = opts.format or _detect(path)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            known = ", ".join(KNOWN_DATASETS)
            raise DataError(f"{path}: no such file or folder, and not a known data set ({known})")
        fmt = opts.format or _detect(path)
    if fmt in _FILE_FORMATS and path.is_dir():
        raise DataError(
            f"{path}: a folder, and data.format {fmt} reads one log file; give the "
            f"path of the file, or leave data.format out to read the folder's layout"
        )
    if fmt == "ml-100k":
        ds = read_ml100k(path, duplicates=opts.duplicates)
    elif fmt == "ml-1m":
        ds = read_ml1m(path, duplicates=opts.duplicates)
    elif fmt == "ml-10m":
        ds = read_ml10m(path, duplicates=opts.duplicates)
    elif fmt == "ml-csv":
        ds = read_ml_csv(
            path, name=name if name in KNOWN_DATASETS else path.name, duplicates=opts.duplicates
        )
    elif fmt == "pairs":
        ds = read_pair_lists(path)
    elif fmt == "sequences":
        ds = read_sequence_lines(path)
    else:  # a log, or a folder of train/valid/test logs: the same column mapping
        log_args: dict[str, Any] = {
            "user_col": opts.user_col,
            "item_col": opts.item_col,
            "rating_col": opts.rating_col,
            "time_col": opts.time_col,
            "sep": opts.sep,
            "duplicates": opts.duplicates,
            "header": opts.header,
            "ordered": opts.ordered,
            "columns": None if opts.columns is None else parse_columns(opts.columns),
        }
        if fmt == "splits":
            ds = read_split_logs(path, **log_args)
        else:
            ds = read_log(path, fmt=fmt, **log_args)
    if name in KNOWN_DATASETS:
        ds.name = name
    return ds

"""Readers for MovieLens layouts, pre-split pair lists and generic interaction logs.

Each reader returns a :class:`~genrec.data.dataset.Dataset`. Malformed input raises
:class:`~genrec.errors.DataError` naming the file and line and what to fix.

The readers live in one module per family of formats (:mod:`.movielens`, :mod:`.pairs`,
:mod:`.logs`, :mod:`.split_logs`) over the shared parsing helpers of :mod:`._parse`.
"""

from __future__ import annotations

from genrec.data.readers._parse import COMPRESSED_SUFFIXES as COMPRESSED_SUFFIXES
from genrec.data.readers._parse import log_format as log_format
from genrec.data.readers.logs import read_log
from genrec.data.readers.movielens import (
    ML1M_OCCUPATIONS,
    ML100K_GENRES,
    read_ml1m,
    read_ml10m,
    read_ml100k,
    read_ml_csv,
)
from genrec.data.readers.pairs import read_pair_lists
from genrec.data.readers.split_logs import read_split_logs, split_log_files

__all__ = [
    "read_ml100k",
    "read_ml1m",
    "read_ml10m",
    "read_ml_csv",
    "read_pair_lists",
    "read_log",
    "read_split_logs",
    "split_log_files",
    "ML100K_GENRES",
    "ML1M_OCCUPATIONS",
]

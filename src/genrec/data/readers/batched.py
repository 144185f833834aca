"""Delimited logs read in batches: numeric columns straight into arrays, never a whole frame.

A ratings file of tens of millions of rows (ML-20M: 20M, ML-25M: 25M) read as text and then
as a table of strings needs several times its size in memory. :func:`scan_numeric` streams it
through pyarrow's CSV reader (``pyarrow.csv.open_csv``, blocks of ``block_size`` bytes, one
thread) and keeps only the typed columns asked for, as NumPy arrays: 8 bytes per value per
column. pyarrow is the choice because genrec already takes it for Parquet (the ``parquet``
extra), its streaming reader parses and converts in C++ with no Python per row, and its
Parquet reader gives the same batches; DuckDB and polars would be a second engine to install.

The fast path is for clean files. Any value the typed parse refuses (a missing field, text in
a number column, a ragged line), a null, or a rating the library does not accept raises
:class:`FastPathRefused`; the callers then read the file with the careful reader, whose
messages name the line and the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrec.data.interactions import RATING_LIMIT

__all__ = ["FastPathRefused", "scan_numeric", "have_pyarrow"]

BLOCK_SIZE = 1 << 25  # 32 MiB of text per batch


class FastPathRefused(Exception):
    """The batched reader cannot take this file as it is; read it the careful way."""


def have_pyarrow() -> bool:
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


def scan_numeric(
    path: str | Path,
    sep: str,
    columns: dict[str, str],
    *,
    header: bool = True,
    names: list[str] | None = None,
    block_size: int = BLOCK_SIZE,
) -> dict[str, np.ndarray]:
    """The ``columns`` (name -> ``"int64"``, ``"float32"`` or ``"float64"``) of a delimited
    file, each as one NumPy array in file order.

    With ``header`` the first line names the columns; otherwise ``names`` does. A column
    named ``rating`` is held to the library's rating limit. :class:`FastPathRefused` when
    the file is not clean (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(
        block_size=block_size, use_threads=False, column_names=None if header else names
    )
    parse = pcsv.ParseOptions(delimiter=sep)
    convert = pcsv.ConvertOptions(
        column_types={c: getattr(pa, t)() for c, t in columns.items()},
        include_columns=list(columns),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    try:
        reader = pcsv.open_csv(
            str(path), read_options=read, parse_options=parse, convert_options=convert
        )
        for batch in reader:
            for c in columns:
                col = batch.column(c)
                if col.null_count:
                    raise FastPathRefused(f"column {c} has empty values")
                parts[c].append(col.to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
        raise FastPathRefused(str(e).splitlines()[0]) from None
    out: dict[str, np.ndarray] = {}
    for c in columns:  # one column at a time, its batches freed as it is joined
        p = parts.pop(c)
        out[c] = np.concatenate(p) if p else np.zeros(0, dtype=columns[c])
        del p
    for c, a in out.items():
        if c == "rating" and not (np.abs(a.astype(np.float64)) <= RATING_LIMIT).all():
            raise FastPathRefused("a rating is not finite or beyond the limit")
        if a.dtype.kind == "f" and c != "rating" and not np.isfinite(a).all():
            raise FastPathRefused(f"column {c} has a value that is not finite")
    return out

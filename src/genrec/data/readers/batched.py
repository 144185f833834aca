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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.interactions import RATING_LIMIT

__all__ = ["FastPathRefused", "scan_numeric", "scan_log", "scan_parquet", "have_pyarrow"]

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
    types = {c: getattr(pa, t)() for c, t in columns.items()}
    out = _scan_csv(path, read, parse, types, {c: np.dtype(t) for c, t in columns.items()})
    for c, a in out.items():
        if c == "rating" and not (np.abs(a.astype(np.float64)) <= RATING_LIMIT).all():
            raise FastPathRefused("a rating is not finite or beyond the limit")
        if a.dtype.kind == "f" and c != "rating" and not np.isfinite(a).all():
            raise FastPathRefused(f"column {c} has a value that is not finite")
    return out


def _dtypes(ids: list[str], numbers: list[str]) -> dict[str, np.dtype]:
    return {**{c: np.dtype(np.int64) for c in ids}, **{c: np.dtype(np.float64) for c in numbers}}


def _joined(
    parts: dict[str, list[np.ndarray]], dtypes: dict[str, np.dtype]
) -> dict[str, np.ndarray]:
    """One array per column from its batches, a column at a time (its batches freed as it
    is joined)."""
    out: dict[str, np.ndarray] = {}
    for c in list(parts):
        p = parts.pop(c)
        out[c] = np.concatenate(p) if p else np.zeros(0, dtype=dtypes[c])
        del p
    return out


def _scan_csv(
    path: str | Path,
    read: Any,
    parse: Any,
    types: dict[str, Any],
    dtypes: dict[str, np.dtype],
    column: Callable[[str, Any], Any] = lambda c, col: col,
) -> dict[str, np.ndarray]:
    """The ``types`` columns (name -> pyarrow type) of a delimited file streamed in batches,
    each batch's column passed through ``column(name, col)``; nulls refuse the file."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    parts: dict[str, list[np.ndarray]] = {c: [] for c in types}
    try:
        reader = pcsv.open_csv(
            str(path), read_options=read, parse_options=parse, convert_options=convert
        )
        for batch in reader:
            for c in types:
                col = batch.column(c)
                if col.null_count:
                    raise FastPathRefused(f"column {c} has empty values")
                parts[c].append(column(c, col).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
        raise FastPathRefused(str(e).splitlines()[0]) from None
    return _joined(parts, dtypes)


#: a raw id the careful reader keeps as an integer (as written: '7', not '07' or '+7')
CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"


def scan_log(
    path: str | Path,
    sep: str,
    ids: list[str],
    numbers: list[str],
    *,
    check: list[str] | None = None,
    block_size: int = BLOCK_SIZE,
) -> dict[str, np.ndarray]:
    """The ``ids`` columns (int64) and ``numbers`` columns (float64) of a delimited log with
    a header line, in batches; the ``check`` columns are parsed as text (valid UTF-8, as the
    careful reader asks of the whole file) and dropped. An id column is taken only when
    every value is an integer written as the careful reader keeps it as one ('7'; '07',
    '+7', ' 7' or 'u7' refuse the file, since they stay text there); quotes count in
    comma-separated files only, as in the careful reader. :class:`FastPathRefused` when
    the file is not clean."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(block_size=block_size, use_threads=False)
    parse = pcsv.ParseOptions(delimiter=sep, quote_char='"' if sep == "," else False)
    extra = [c for c in check or () if c not in ids and c not in numbers]
    types = {**{c: pa.string() for c in [*ids, *extra]}, **{c: pa.float64() for c in numbers}}

    def as_int(c: str, col: Any) -> Any:
        if c in extra:
            return pa.array([], pa.int64())  # checked by the parse; nothing kept
        if c not in ids:
            return col
        if not pc.all(pc.match_substring_regex(col, CANONICAL_INT)).as_py():
            raise FastPathRefused(f"column {c} has ids that are not integers")
        return pc.cast(col, pa.int64())

    dtypes = {**_dtypes(ids, numbers), **{c: np.dtype(np.int64) for c in extra}}
    out = _scan_csv(path, read, parse, types, dtypes, as_int)
    for c in extra:
        del out[c]
    for c in numbers:
        if not np.isfinite(out[c]).all():
            raise FastPathRefused(f"column {c} has a value that is not finite")
    return out


def scan_parquet(
    path: str | Path, ids: list[str], numbers: list[str], *, batch_rows: int = 1 << 20
) -> dict[str, np.ndarray]:
    """The ``ids`` (int64) and ``numbers`` (float64) columns of a Parquet log, read a row
    group batch at a time (``ParquetFile.iter_batches``). Ids must be stored as integers
    (signed, or unsigned of up to 32 bits) and numbers as integers or floats; any other
    type, a null or a value that is not finite raises :class:`FastPathRefused`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(str(path))
        schema = f.schema_arrow
        for c in ids:
            t = schema.field(c).type
            if not (
                pa.types.is_signed_integer(t)
                or (pa.types.is_unsigned_integer(t) and t.bit_width <= 32)
            ):
                raise FastPathRefused(f"column {c} holds {t}, not integer ids")
        for c in numbers:
            t = schema.field(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise FastPathRefused(f"column {c} holds {t}, not numbers")
        dtypes = _dtypes(ids, numbers)
        parts: dict[str, list[np.ndarray]] = {c: [] for c in dtypes}
        for batch in f.iter_batches(batch_size=batch_rows, columns=list(dtypes)):
            for c in parts:
                col = batch.column(c)
                if col.null_count:
                    raise FastPathRefused(f"column {c} has nulls")
                parts[c].append(col.to_numpy(zero_copy_only=False).astype(dtypes[c], copy=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, OSError) as e:
        raise FastPathRefused(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    out = _joined(parts, dtypes)
    for c in numbers:
        if not np.isfinite(out[c]).all():
            raise FastPathRefused(f"column {c} has a value that is not finite")
    return out

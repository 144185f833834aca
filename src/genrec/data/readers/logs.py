"""Reader of generic interaction logs (CSV, TSV, Parquet, optionally compressed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from genrec._optional import require
from genrec.data.dataset import Dataset
from genrec.data.interactions import as_id_array
from genrec.data.readers._columns import (
    check_header,
    check_not_a_header,
    first_records,
    headerless_names,
    missing_roles,
)
from genrec.data.readers._parse import (
    _LOG_FORMATS,
    COMPRESSED_SUFFIXES,
    _build,
    _header,
    _id_values,
    _load_text,
    _parse_table,
    binary_kind,
    build_arrays,
    constant_ratings,
    log_format,
    rating_limit_text,
    rating_problem,
)
from genrec.data.readers.batched import FastPathRefused, have_pyarrow, scan_log, scan_parquet
from genrec.errors import DataError

log = logging.getLogger("genrec.data.readers")


# ----------------------------------------------------------------------------- generic logs
def read_log(
    path: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    sep: str | None = None,
    fmt: str | None = None,
    duplicates: str = "last",
    name: str | None = None,
    header: bool = True,
    ordered: bool = False,
    columns: Sequence[str] | None = None,
) -> Dataset:
    """Any CSV/TSV/Parquet interaction log with a header, through a column mapping.

    ``rating_col`` and ``time_col`` are optional: when the named column is absent (or the
    setting is ``""`` or None) the data is implicit (or has no timestamps); a rating column
    that holds one value on every line (``user item 1``) is implicit data too. ``fmt`` is
    ``csv``, ``tsv`` or ``parquet``, detected from the suffix when None. A text log without
    a header (``header=False``) has its columns in the order user, item[, rating[,
    timestamp]] (ML-100K's ``u.data`` layout); ``rating_col=""`` reads ``user item time``.
    ``columns`` names the fields of such a log in order (``""`` skips one), and the column
    settings then select among those names as among a header's. Values in the rating
    position that look like Unix times (all 1e8 or more) are refused there, since they
    would be read as ratings of about a billion. The Dataset's ``sequences`` order each
    user's rows by time (stable), or keep file order when ``ordered`` and there is no time
    column.
    """
    p = Path(path)
    fast = _scan_large_log(p, user_col, item_col, rating_col, time_col, sep, fmt, header, columns)
    if fast is not None:  # a large clean log, read in batches (genrec.data.readers.batched)
        r = fast["rating"]
        implicit = ratings_are_implicit(p, r)
        if implicit:
            fast["rating"] = None
        ranged = None if r is None or implicit else (float(r.min()), float(r.max()))
        ds, _, _ = build_arrays(
            name or log_stem(p), fast, p, duplicates=duplicates, implicit=implicit,
            ordered=ordered, rating_range=ranged,
        )  # fmt: skip
        return ds
    out = log_frame(
        p,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
        sep=sep,
        fmt=fmt,
        header=header,
        columns=columns,
    )
    implicit = frame_is_implicit(p, out)
    ds, _, _ = _build(
        name or log_stem(p), out, p, duplicates=duplicates, implicit=implicit, ordered=ordered
    )
    if not implicit:
        ds.rating_range = (float(out["rating"].min()), float(out["rating"].max()))
    return ds


def log_stem(p: Path) -> str:
    """The name of the log ``p``: its file name without format and compression suffixes."""
    stem = p.name
    for suffix in reversed(p.suffixes):  # 'log.csv.gz' -> 'log'
        if suffix.lower() not in COMPRESSED_SUFFIXES + tuple(_LOG_FORMATS):
            break
        stem = stem[: -len(suffix)]
    return stem or p.stem


def frame_is_implicit(where: Path, frame: pd.DataFrame) -> bool:
    """A frame of :func:`log_frame` is implicit data when it has no rating column, or one
    holding the same value on every line (:func:`constant_ratings`, the rule of every
    reader)."""
    return ratings_are_implicit(where, frame["rating"].to_numpy() if "rating" in frame else None)


def ratings_are_implicit(where: Path, ratings: np.ndarray | None) -> bool:
    """No rating column, or one value on every line: implicit data (said in the log)."""
    if ratings is None:
        return True
    if constant_ratings(ratings):
        log.info(
            "%s: every rating is %g, so the log is read as implicit feedback",
            where,
            float(ratings[0]),
        )
        return True
    return False


def _roles(
    user_col: str, item_col: str, rating_col: str | None, time_col: str | None
) -> dict[str, str | None]:
    """The column settings by name (as the messages name them)."""
    return {"user_col": user_col, "item_col": item_col, "rating_col": rating_col,
            "time_col": time_col}  # fmt: skip


def _text_sep(sep: str | None, fmt: str) -> str:
    """The separator of a text log: the setting, or the format's (tab for TSV)."""
    if sep == "\\t":  # typed as data.sep='\t' in a shell: a backslash and a t, a tab
        sep = "\t"
    return sep or ("\t" if fmt == "tsv" else ",")


#: a text log at least this large is read in batches when it is clean (smaller ones, and
#: any the batched reader refuses, the careful way, whose messages name the line)
BATCHED_LOG_BYTES = 64 << 20


def _scan_large_log(
    p: Path,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    time_col: str | None,
    sep: str | None,
    fmt: str | None,
    header: bool,
    columns: Sequence[str] | None,
) -> dict[str, np.ndarray | None] | None:
    """The columns of a large, clean log read in batches (user, item int64; rating float32
    or None; timestamp float64 or None): an uncompressed CSV/TSV log with a header, or a
    Parquet log, with integer ids and numeric ratings and times; None for any other log,
    which :func:`log_frame` reads (and checks)."""
    if columns is not None or not p.is_file() or not have_pyarrow():
        return None
    try:
        if p.stat().st_size < BATCHED_LOG_BYTES:
            return None
        fmt = fmt or log_format(p)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(str(p))
            index = (schema.pandas_metadata or {}).get("index_columns", [])
            present = [str(c) for c in schema.names if c not in index]  # pandas' index: not read
        elif fmt not in ("csv", "tsv") or not header or p.suffix.lower() in COMPRESSED_SUFFIXES:
            return None
        else:
            with p.open("rb") as f:
                head = f.read(16)
                f.seek(0)
                first = f.readline().decode("utf-8").rstrip("\r\n")
            # a '\r' left inside the first line: lines ended by lone CRs (the careful reader)
            if binary_kind(head) is not None or '"' in first or "\r" in first:
                return None
            sep = _text_sep(sep, fmt)
            if len(sep) != 1:  # '::' and other long separators: the careful reader
                return None
            present = first.split(sep)
            if any(c != c.strip() or c.startswith("\ufeff") for c in present):
                return None  # names the careful reader strips (and a byte-order mark)
    except Exception:  # unreadable, not Parquet, not UTF-8...: the careful reader says what
        return None
    mapped = [c for c in (user_col, item_col, rating_col, time_col) if c]
    if len(set(mapped)) != len(mapped) or len(set(present)) != len(present):
        return None  # the careful reader names the clash
    if missing_roles(present, _roles(user_col, item_col, rating_col, time_col)):
        return None  # the careful reader names what is missing
    r_col = rating_col if rating_col and rating_col in present else None
    t_col = time_col if time_col and time_col in present else None
    numbers = [c for c in (r_col, t_col) if c is not None]
    try:
        if fmt == "parquet":
            cols = scan_parquet(p, [user_col, item_col], numbers)
        else:
            assert sep is not None
            unread = [c for c in present if c not in (user_col, item_col, *numbers)]
            cols = scan_log(p, sep, [user_col, item_col], numbers, check=unread)
    except FastPathRefused as e:
        log.info("%s: read the careful way (%s)", p, e)
        return None
    if not len(cols[user_col]):
        return None  # the careful reader says there is nothing in it
    ratings = None if r_col is None else cols[r_col]
    if ratings is not None and (rating_problem(ratings).any() or ratings.min() >= _UNIX_TIME_FLOOR):
        return None  # the careful reader names the line
    _warn_unused(p, present, user_col, item_col, rating_col, time_col, r_col, t_col)
    return {
        "user": cols[user_col],
        "item": cols[item_col],
        "rating": None if ratings is None else ratings.astype(np.float32),
        "timestamp": None if t_col is None else cols[t_col],
    }


def _warn_unused(
    p: Path,
    present: Sequence[str],
    user_col: str,
    item_col: str,
    rating_col: str | None,
    time_col: str | None,
    r_col: str | None,
    t_col: str | None,
) -> None:
    """The warning about columns not read, when the log is read without ratings or times."""
    has_r, has_t = r_col is not None, t_col is not None
    unused = [c for c in present if c not in (user_col, item_col, rating_col, time_col)]
    if unused and not (has_r and has_t):
        log.warning(
            "%s: column%s %s not read; the log is read %s (map a column with the "
            "setting data.rating_col or data.time_col)",
            p,
            "s" * (len(unused) > 1),
            ", ".join(map(repr, unused)),
            " and ".join(
                w
                for w, has in (("as implicit feedback", has_r), ("without timestamps", has_t))
                if not has
            ),
        )


#: values in the rating position of a log without a header at or above this are Unix times
#: (1e8 s is March 1973; in milliseconds, 1970), never ratings
_UNIX_TIME_FLOOR = 1e8


def log_frame(
    p: Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    sep: str | None = None,
    fmt: str | None = None,
    header: bool = True,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The log ``p`` read and checked (see :func:`read_log`), as a frame of ``user``,
    ``item`` and, where the log has them, ``rating`` and ``timestamp`` columns."""
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    roles = _roles(user_col, item_col, rating_col, time_col)
    mapped = [(r, c) for r, c in roles.items() if c]
    for j, (role, col) in enumerate(mapped):
        for other, col2 in mapped[:j]:
            if col == col2:
                raise DataError(
                    f"{p}: data.{other} and data.{role} both name the column "
                    f"{col!r}; map each role to its own column"
                )
    if columns is not None and header:
        raise DataError(
            f"{p}: data.columns names the fields of a log without a header line; set "
            f"data.header=false with it, or leave data.columns out to read the header"
        )
    fmt = fmt or log_format(p)
    names: list[str] = []  # the fields of a log without a header ("": skipped)
    if fmt == "parquet":
        if columns is not None:
            raise DataError(
                f"{p}: data.columns names the fields of a text log without a header, "
                f"and a Parquet file names its own columns; leave data.columns out"
            )
        df = _read_parquet(p)
        present = list(df.columns)
    else:
        sep_given = sep is not None
        sep = _text_sep(sep, fmt)
        raw = _load_text(p, log=True)
        present = _header(raw, sep)
        if not header:  # fields by position, named by data.columns or by default
            records = first_records(raw, sep, 20)
            first = records[0] if records else (1, [""])
            names = headerless_names(
                p, first, roles, columns, sep=sep, fmt=fmt, sep_given=sep_given
            )
            check_not_a_header(p, records, names, roles)
            present = [c for c in names if c]
        else:
            check_header(p, present, roles, text=True, sep=sep, fmt=fmt, sep_given=sep_given)
    if fmt == "parquet":
        check_header(p, present, roles, text=False)
    # the optional columns read: None when not mapped or not in the log
    r_col = rating_col if rating_col is not None and rating_col in present else None
    t_col = time_col if time_col is not None and time_col in present else None
    _warn_unused(p, present, user_col, item_col, rating_col, time_col, r_col, t_col)
    numeric = [r_col] if r_col is not None else []  # timestamps: numbers or ISO dates, below
    cols = [user_col, item_col] + numeric + ([t_col] if t_col is not None else [])
    if fmt == "parquet":
        df = _parquet_columns(p, df[cols], [user_col, item_col], numeric)
        lines = None
    else:
        assert sep is not None  # set for every text log above
        df, lines = _parse_table(
            p,
            raw,
            sep,
            cols if header else [c or f"(field {j + 1})" for j, c in enumerate(names)],
            numeric,
            header=header,
            required=(user_col, item_col),
            ratings=tuple(numeric),
        )
    out = pd.DataFrame(
        {"user": df[user_col].astype(str).str.strip(), "item": df[item_col].astype(str).str.strip()}
    )
    for role, col in (("user", user_col), ("item", item_col)):
        empty = (out[role] == "") | (out[role].str.lower() == "nan")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            where = f"row {row}" if lines is None else f"line {lines[row]}"
            raise DataError(
                f"{p}, {where}: missing {role} id ({out[role].iloc[row]!r}) in column {col!r}"
            )
    out = pd.DataFrame({"user": _id_values(out["user"]), "item": _id_values(out["item"])})
    if r_col is not None:
        has_names = header or fmt == "parquet" or columns is not None
        _check_not_times(
            p, df[r_col].to_numpy(np.float64), lines, len(present), r_col if has_names else None
        )
        out["rating"] = df[r_col].to_numpy(np.float32)
    if t_col is not None:
        out["timestamp"] = _times(p, df[t_col], t_col, lines)
    return out


def _check_not_times(
    p: Path, values: np.ndarray, lines: np.ndarray | None, n: int, column: str | None = None
) -> None:
    """A DataError when every rating looks like a Unix time: the common ``user item time``
    layout of a log without a header, or a rating column mapped to the time column of one
    with a header (``column``), which would otherwise be read as ratings of about a
    billion."""
    if not len(values) or values.min() < _UNIX_TIME_FLOOR:
        return
    first = float(values[0])
    seconds = first if first < 1e11 else first / 1000  # seconds until the year 5138, then ms
    try:
        date = f" ({first:.0f} is {datetime.fromtimestamp(seconds, timezone.utc):%Y-%m-%d})"
    except (OverflowError, OSError, ValueError):  # past the year 9999
        date = ""
    where = "" if lines is None else f", line {lines[0]}"
    if column is not None:
        raise DataError(
            f"{p}{where}: the rating column {column!r} holds {first:.0f}, and every value in "
            f"it is 1e8 or more: Unix times{date}, not ratings; map data.rating_col to the "
            f"rating column, or set it to '' when the log has none (and data.time_col to "
            f"{column!r} if it is the time)"
        )
    fix = (
        "if the columns are user, item, time, set data.rating_col to '' (no rating "
        "column; DataOptions(rating_col=''))"
        if n == 3
        else "give the log a header line naming its columns, or name them with "
        "data.columns (e.g. data.columns=user,item,timestamp,rating)"
    )
    raise DataError(
        f"{p}{where}: the rating field is {first:.0f}, and every value in that "
        f"position is 1e8 or more: Unix times{date}, not ratings; "
        f"{fix}"
    )


def _seconds(dates: pd.Series) -> np.ndarray:
    """Timezone-aware datetimes as float64 seconds since 1970 (UTC), counted in microseconds:
    a subtraction in pandas' nanoseconds overflows past 2262 (year 9999 is a valid date)."""
    naive = dates.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()  # datetime64[unit]
    return naive.astype("datetime64[us]").astype(np.int64) / 1e6


def _times(p: Path, col: pd.Series, name: str, lines: np.ndarray | None) -> np.ndarray:
    """Timestamps as float64 seconds: numbers as they are (Unix time, or any increasing
    count), dates (ISO 8601 text, Parquet timestamps) as seconds since 1970 (UTC when the
    text gives no zone). Only their order is used, but one column must be all one kind."""

    def where(row: int) -> str:
        return f"row {row}" if lines is None else f"line {lines[row]}"

    if pd.api.types.is_datetime64_any_dtype(col):
        if col.isna().any():
            row = int(np.flatnonzero(col.isna().to_numpy())[0])
            raise DataError(f"{p}, {where(row)}: column {name!r} has no timestamp (null)")
        return _seconds(col.dt.tz_localize("UTC") if col.dt.tz is None else col)
    is_text = not pd.api.types.is_numeric_dtype(col)
    text = col.astype(str).str.strip() if is_text else col
    nums = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(nums)
    if finite.all():
        return nums
    if not finite.any() and is_text:
        dates = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        if not dates.isna().any():
            return _seconds(dates)
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
    else:
        row = int(np.flatnonzero(~finite)[0])
    value = col.iloc[row]
    what = "an empty value" if str(value).strip() == "" else repr(str(value))
    raise DataError(
        f"{p}, {where(row)}: field {name!r} has {what}, expected a timestamp: "
        f"a finite number (Unix time) or an ISO 8601 date such as "
        f"2024-01-31T12:00:00, the same kind on every line"
    )


def _read_parquet(p: Path) -> pd.DataFrame:
    """The Parquet file ``p`` as a frame with string column names; a file that is not
    Parquet (text, a compressed text log) is named as what it is."""
    require("pyarrow", "parquet", f"{p}: reading a Parquet log")
    with p.open("rb") as f:
        head = f.read(16)
    if not head.startswith(b"PAR1"):
        what = binary_kind(head) or "not a Parquet file (no PAR1 at its start)"
        raise DataError(
            f"{p}: {what}, read as Parquet (data.format=parquet or a .parquet suffix); set "
            f"data.format=csv or tsv for a text log (compressed text logs are read directly)"
        )
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # pyarrow raises several types
        raise DataError(f"{p}: cannot read Parquet ({e})") from None
    df.columns = [str(c) for c in df.columns]
    return df


def _parquet_columns(p: Path, df: pd.DataFrame, ids: list[str], numeric: list[str]) -> pd.DataFrame:
    """Parquet columns checked: ids not null, ``numeric`` columns numbers."""
    for c in ids:
        if df[c].isna().any():
            row = int(np.flatnonzero(df[c].isna().to_numpy())[0])
            raise DataError(f"{p}, row {row}: column {c!r} has no id (null)")
        if pd.api.types.is_float_dtype(df[c]):  # ids stored as float: 1.0 is the id 1
            vals = as_id_array(df[c].to_numpy(np.float64))
            if vals.dtype.kind == "i":
                df = df.assign(**{c: vals})
    for c in numeric:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = ~np.isfinite(vals.to_numpy(np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = df[c].iloc[row]
            what = (
                "null"
                if pd.isna(value)
                else repr(value.item() if hasattr(value, "item") else value)
            )
            raise DataError(
                f"{p}, row {row}: column {c!r} has {what}, expected a finite "
                f"number (null, NaN and infinite values are not allowed)"
            )
        big = rating_problem(vals.to_numpy(np.float64))  # numeric columns are ratings
        if big.any():
            row = int(np.flatnonzero(big)[0])
            what = f"column {c!r} has {float(vals.iloc[row])!r}"
            raise DataError(f"{p}, row {row}: {rating_limit_text(what)}")
        df = df.assign(**{c: vals})
    return df

"""Shared parsing of the readers: decoding, decompression, table parsing with
line-numbered errors, and building a Dataset from a ratings frame."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from genrec.data.dataset import Dataset
from genrec.data.interactions import RATING_LIMIT, Interactions, factorize_ids
from genrec.data.sequences import Sequences
from genrec.errors import DataError

# ----------------------------------------------------------------------------- parsing
_UTF8_BOM = b"\xef\xbb\xbf"


def rating_problem(values: np.ndarray) -> np.ndarray:
    """Where ``values`` (float64) are ratings genrec cannot compute with: beyond
    :data:`RATING_LIMIT` in magnitude (1e39 is inf in float32; 1e38 squares to inf)."""
    return np.abs(values) > RATING_LIMIT


def rating_limit_text(what: str) -> str:
    """The message for a rating beyond :data:`RATING_LIMIT`."""
    return (
        f"{what}, beyond +-{RATING_LIMIT:.3g} (ratings are float32 and their squares must "
        f"fit); rescale the ratings"
    )


def _decode(path: Path, data: bytes, encoding: str = "utf-8") -> str:
    """``data`` as text; for UTF-8 a leading byte-order mark (Excel's exports) is dropped."""
    if encoding == "utf-8":
        data = data.removeprefix(_UTF8_BOM)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        label = "UTF-8" if encoding == "utf-8" else encoding
        raise DataError(
            f"{path}, line {line}: not {label} text ({e.reason} at byte {e.start}); "
            f"save it as {label}"
        ) from None


def _quoting(sep: str) -> Literal[0, 3]:
    """Quotes are honoured in comma-separated files only (TSV and '::' fields are verbatim).
    The result is ``csv.QUOTE_MINIMAL`` (0) or ``csv.QUOTE_NONE`` (3)."""
    return csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE


def _split_record(text: str, sep: str) -> list[str]:
    """The fields of the record that starts ``text``, split the way :func:`_parse_table`
    splits it: in a comma-separated file a quoted field may run over line breaks."""
    if len(sep) > 1 or _quoting(sep) == csv.QUOTE_NONE:
        return text.split("\n", 1)[0].rstrip("\r").split(sep)
    return next(csv.reader(io.StringIO(text), delimiter=sep), [""])


#: leading bytes of the compressed formats read transparently (``log.csv.gz``)
_COMPRESSED = [
    ("gzip", re.compile(rb"\x1f\x8b"), gzip.decompress),
    ("bzip2", re.compile(rb"BZh[1-9]1AY&SY"), bz2.decompress),
    ("xz", re.compile(rb"\xfd7zXZ\x00"), lzma.decompress),
]
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz")
_LOG_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tsv": "tsv",
    ".tab": "tsv",
}  # by suffix; anything else is read as CSV


def log_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the suffix of ``path``; a compression suffix
    (``.csv.gz``, ``.tsv.bz2``) is looked through."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    return _LOG_FORMATS.get(last, "csv")


#: leading bytes of binary files that are not text, what each is, and what to do with it
_BINARY = (
    (b"PAR1", "a Parquet file", "convert it to a text file"),
    (
        b"PK\x03\x04",
        "a zip archive (an Excel workbook is one too)",
        "unzip it and give the file inside, or save a workbook as CSV",
    ),
    (b"ARROW1", "an Arrow (Feather) file", "save it as CSV or Parquet"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file", "save it as CSV or Parquet"),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV"),
    (
        b"\x28\xb5\x2f\xfd",
        "a zstd-compressed file",
        "decompress it (zstd -d), or compress it with gzip, bzip2 or xz, which are read directly",
    ),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract it and give the file inside"),
)


def binary_kind(head: bytes) -> str | None:
    """What the file starting with the bytes ``head`` is, when its leading bytes mark a
    binary format (Parquet, zip, gzip, ...), else None."""
    for magic, kind, _ in _BINARY:
        if head.startswith(magic):
            return kind
    for kind, pattern, _ in _COMPRESSED:
        if pattern.match(head):
            return f"a {kind}-compressed file"
    return None


def _load_text(path: Path, encoding: str = "utf-8", *, log: bool = False) -> str:
    """The text of ``path``, decompressed; a binary file is named as what it is (``log``:
    ``path`` is a log, whose reading ``data.format`` chooses)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    for kind, magic, decompress in _COMPRESSED:
        if magic.match(data):
            try:
                data = decompress(data)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as e:
                raise DataError(
                    f"{path}: cannot decompress this {kind} file ({e}); the file "
                    f"is truncated or corrupt, copy it again"
                ) from None
            break
    for lead, kind, fix in _BINARY:
        if data.startswith(lead):
            if log and lead == b"PAR1":
                fix = (
                    "set data.format=parquet, or leave data.format out"
                    if log_format(path) == "parquet"
                    else "set data.format=parquet (or give the file a .parquet suffix)"
                )
            raise DataError(f"{path}: {kind}, not text; {fix}")
    text = _decode(path, data, encoding)
    if "\r" in text and "\n" not in text:  # lines ended by lone CRs (classic Mac OS)
        text = text.replace("\r", "\n")
    return text


def _header(raw: str, sep: str) -> list[str]:
    """Column names on the first line of ``raw``."""
    end = raw.find("\n")
    first = raw[: end if end >= 0 else len(raw)].rstrip("\r")
    return [c.strip() for c in _split_record(first, sep)]


def _blank_rows(df: pd.DataFrame) -> np.ndarray:
    """Rows whose fields are all empty or whitespace (blank lines, ',,,' lines).

    A blank line is one field, padded with empty ones: only rows whose last field is empty
    are candidates, which keeps this cheap on large files.
    """
    blank = (df.iloc[:, -1] == "").to_numpy(copy=True)
    for col in df.columns[:-1]:
        rows = np.flatnonzero(blank)
        blank[rows] = (df[col].iloc[rows].str.strip() == "").to_numpy()
    return blank


def _field_error(
    path: Path,
    raw: str,
    line: int,
    sep: str,
    n_fields: int,
    header: bool,
    problem: str,
    shown: str | None = None,
) -> DataError:
    """``problem`` on file line ``line``, unless the line is short: then say that.
    (``shown``: the separator to name, when the text was parsed on another.)"""
    n = len(_split_record(raw.split("\n", line - 1)[line - 1], sep))  # from that line on
    if n < n_fields:
        return _field_count_error(path, line, n, n_fields, header, shown or sep)
    return DataError(f"{path}, line {line}: {problem}")


def _field_count_error(
    path: Path, line: int, n: int, n_fields: int, header: bool, sep: str
) -> DataError:
    """Line ``line`` has ``n`` fields where every line needs ``n_fields``."""
    want = f"the header has {n_fields}" if header else f"expected {n_fields}"
    return DataError(
        f"{path}, line {line} has {n} field{'s' if n != 1 else ''}, {want}; "
        f"every line needs {n_fields} fields separated by {sep!r}"
    )


def _first_long_record(raw: str, sep: str, n_fields: int) -> tuple[int, int]:
    """(file line, field count) of the first record of ``raw`` with more than ``n_fields``
    fields, split as :func:`_parse_table` splits them."""
    reader = csv.reader(io.StringIO(raw), delimiter=sep, quoting=_quoting(sep))
    start = 1
    for fields in reader:
        if len(fields) > n_fields:
            return start, len(fields)
        start = reader.line_num + 1
    return 1, n_fields + 1  # not found again: the first line is the best guess


def _row_lines(raw: str, sep: str, offset: int, n_rows: int) -> np.ndarray:
    """The file line on which each of the ``n_rows`` data rows starts (``offset``: the line of
    row 0 when every row is one line). A quoted field holding a line break makes its record
    span lines; only then is the text walked with :mod:`csv` to count them."""
    simple = np.arange(n_rows) + offset
    if _quoting(sep) == csv.QUOTE_NONE or '"' not in raw:
        return simple
    reader = csv.reader(io.StringIO(raw), delimiter=sep)
    starts, prev = [], 0
    for _ in reader:
        starts.append(prev + 1)
        prev = reader.line_num
    starts = starts[offset - 1 :]  # the header record
    return np.asarray(starts, dtype=np.int64) if len(starts) == n_rows else simple


def _parse_table(
    path: Path,
    raw: str,
    sep: str,
    names: list[str],
    numeric: list[str],
    *,
    header: bool = False,
    required: tuple[str, ...] = (),
    ratings: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, np.ndarray]:
    """Parse the text ``raw`` of the delimited file ``path``: strings (``numeric``: numbers).

    Blank lines are skipped. Returns the frame and the file line number of each row; every
    problem is reported with the file and line number. ``required`` columns may not be empty;
    ``ratings`` (numeric) columns must stay within :data:`RATING_LIMIT`.
    """
    shown = sep  # the separator messages name ('::', not the tab it is parsed as)
    if len(sep) > 1:  # '::' layouts: pandas' C parser takes one-character separators only
        raw = raw.replace(sep, "\t")
        sep = "\t"
    offset = 2 if header else 1  # file line of data row 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            # index_col=False: a first row longer than the header must not silently become
            # an index column (shifting every field one column left)
            df = pd.read_csv(
                io.StringIO(raw),
                sep=sep,
                header=0 if header else None,
                names=None if header else names,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                engine="c",
                quoting=_quoting(sep),
                index_col=False,
            )
    except pd.errors.ParserError as e:
        msg = " ".join(str(e).split())  # pandas' message spans lines
        long = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if long and '"' not in raw:  # then pandas' line is the file line: say it plainly
            want_n, line, n = (int(g) for g in long.groups())
            text = raw.split("\n", line - 1)[line - 1] if line >= 1 else ""
            if len(_split_record(text, sep)) == n:  # the line pandas means
                raise _field_count_error(path, line, n, want_n, header, shown) from None
        want = "as many fields as the header" if header else f"{len(names)} fields"
        raise DataError(
            f"{path}: malformed line ({msg}); every line needs {want} separated by {shown!r}"
        ) from None
    n_fields = df.shape[1]
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        raise _field_count_error(
            path, *_first_long_record(raw, sep, n_fields), n_fields, header, shown
        )
    if header:
        df.columns = [str(c).strip() for c in df.columns]
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)} in the header "
                f"(found {', '.join(df.columns)})"
            )
    elif n_fields != len(names):
        raise DataError(f"{path}: expected {len(names)} fields per line, found {n_fields}")
    lines = _row_lines(raw, sep, offset, len(df))
    if len(df):
        keep = ~_blank_rows(df)
        df, lines = df[keep], lines[keep]
    df = df[names].reset_index(drop=True)
    for col in required:
        empty = (df[col].str.strip() == "").to_numpy()
        if empty.any():
            line = int(lines[np.flatnonzero(empty)[0]])
            raise _field_error(
                path, raw, line, sep, n_fields, header, f"field {col!r} is empty", shown
            )
    for col in numeric:
        vals = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = ~np.isfinite(vals.to_numpy(np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = repr(df[col].iloc[row]) if df[col].iloc[row] != "" else "an empty value"
            raise _field_error(
                path,
                raw,
                int(lines[row]),
                sep,
                n_fields,
                header,
                f"field {col!r} has {what}, expected a finite number "
                f"(NaN, infinite and empty values are not allowed)",
                shown,
            )
        big = rating_problem(vals.to_numpy(np.float64))
        if col in ratings and big.any():
            row = int(np.flatnonzero(big)[0])
            what = f"field {col!r} has {df[col].iloc[row].strip()!r}"
            raise _field_error(
                path, raw, int(lines[row]), sep, n_fields, header, rating_limit_text(what), shown
            )
        df[col] = vals
    return df, lines


def _read_table(
    path: Path,
    sep: str,
    names: list[str],
    numeric: list[str],
    *,
    header: bool = False,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a delimited file; every problem is reported with the file and line number. A
    numeric column named ``rating`` is held to :data:`RATING_LIMIT`."""
    raw = _load_text(path, encoding)
    ratings = tuple(c for c in numeric if c == "rating")
    return _parse_table(path, raw, sep, names, numeric, header=header, ratings=ratings)[0]


def _id_values(ids: pd.Series) -> np.ndarray:
    """Raw ids: int64 when every id reads back exactly as written ('7', not '07' or '+7').

    Otherwise strings, so that '007', '07' and '7' stay three users.
    """
    if ids.str.fullmatch(r"0|-?[1-9]\d*").all():
        try:
            return ids.astype(np.int64).to_numpy()
        except (OverflowError, ValueError):  # beyond int64
            pass
    return ids.to_numpy(dtype=str)


def constant_ratings(ratings: np.ndarray) -> bool:
    """The rule of every reader for implicit data given with a rating column: a column that
    holds one value on every line (the common ``user item 1`` layout) says nothing about
    preference, so the data is implicit (each interaction 1)."""
    r = np.asarray(ratings)
    return len(r) > 0 and bool((r == r[0]).all())


def _build(
    name: str,
    ratings: pd.DataFrame,
    source: Path,
    *,
    rating_range=None,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    duplicates: str = "last",
    implicit: bool = False,
    ordered: bool = False,
) -> tuple[Dataset, dict, dict]:
    """Make a Dataset from a (user, item, rating[, timestamp]) frame and metadata frames.

    Its ``sequences`` are each user's rows sorted by timestamp (stable), or in file order
    when ``ordered`` and there is no timestamp; None without either."""
    columns = {
        "user": ratings["user"].to_numpy(),
        "item": ratings["item"].to_numpy(),
        "rating": None if implicit else ratings["rating"].to_numpy(np.float32),
        "timestamp": ratings["timestamp"].to_numpy(np.float64) if "timestamp" in ratings else None,
    }
    return build_arrays(
        name,
        columns,
        source,
        rating_range=rating_range,
        items=items,
        users=users,
        duplicates=duplicates,
        implicit=implicit,
        ordered=ordered,
    )


def build_arrays(
    name: str,
    columns: dict[str, np.ndarray | None],
    source: Path,
    *,
    rating_range=None,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    duplicates: str = "last",
    implicit: bool = False,
    ordered: bool = False,
) -> tuple[Dataset, dict, dict]:
    """:func:`_build` from the columns as arrays, ``columns`` ``user`` and ``item`` (raw ids),
    ``rating`` (float32, or None when implicit) and ``timestamp`` (float64, or None), with no
    frame of the interactions. The raw id columns are taken out of ``columns`` as they are
    mapped (a large log's are freed then)."""
    if len(columns["user"]) == 0:  # type: ignore[arg-type]
        raise DataError(f"{source}: no interactions found")
    # items known from metadata but never rated are not given columns: nothing can be learned
    uid, u = factorize_ids(columns.pop("user"))  # type: ignore[arg-type]
    iid, i = factorize_ids(columns.pop("item"))  # type: ignore[arg-type]
    r, t = columns.get("rating"), columns.get("timestamp")
    try:
        inter = Interactions.from_arrays(
            u, i, r, t, user_ids=uid, item_ids=iid, duplicates=duplicates
        )
    except DataError as e:  # a duplicate under duplicates="error": name the file and the option
        what = str(e).split(";")[0]
        raise DataError(
            f"{source}: {what}; to keep one of the repeats set data.duplicates=last (or first, max)"
        ) from None
    item_df = None
    if items is not None:
        item_df = items.drop_duplicates("item_id").set_index("item_id").reindex(iid)
        item_df = item_df.reset_index().rename(columns={"index": "item_id"})
    user_df = None
    if users is not None:
        user_df = users.drop_duplicates("user_id").set_index("user_id").reindex(uid)
        user_df = user_df.reset_index().rename(columns={"index": "user_id"})
    seqs = None
    if t is not None or ordered:
        seqs = Sequences.from_events(u, i, len(uid), len(iid), t, source=str(source))
    ds = Dataset(name, inter, item_df, user_df, {}, implicit, rating_range, str(source), seqs)
    umap = {v: k for k, v in enumerate(uid.tolist())}
    return ds, umap, {v: k for k, v in enumerate(iid.tolist())}


def _part(
    ds: Dataset,
    frame: pd.DataFrame,
    umap: dict,
    imap: dict,
    where: Path,
    implicit: bool = False,
    duplicates: str = "last",
) -> Interactions:
    """Interactions of ``frame`` in the id space of ``ds``."""
    try:
        u = np.fromiter((umap[x] for x in frame["user"].tolist()), np.int64, len(frame))
        i = np.fromiter((imap[x] for x in frame["item"].tolist()), np.int64, len(frame))
    except KeyError as e:
        raise DataError(f"{where}: id {e.args[0]!r} does not occur in the full data") from None
    r = None if implicit else frame["rating"].to_numpy(np.float32)
    t = frame["timestamp"].to_numpy(np.float64) if "timestamp" in frame else None
    return Interactions.from_arrays(
        u,
        i,
        r,
        t,
        user_ids=ds.interactions.user_ids,
        item_ids=ds.interactions.item_ids,
        duplicates=duplicates,
    )

"""Readers for MovieLens layouts, pre-split pair lists and generic interaction logs.

Each reader returns a :class:`~genrec.data.dataset.Dataset`. Malformed input raises
:class:`~genrec.errors.DataError` naming the file and line and what to fix.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import lzma
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from genrec._optional import require
from genrec.data.dataset import Dataset
from genrec.data.interactions import Interactions, as_id_array
from genrec.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "read_ml100k",
    "read_ml1m",
    "read_ml10m",
    "read_ml_csv",
    "read_pair_lists",
    "read_log",
    "ML100K_GENRES",
    "ML1M_OCCUPATIONS",
]

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]


# ----------------------------------------------------------------------------- parsing
_UTF8_BOM = b"\xef\xbb\xbf"


def _decode(path: Path, data: bytes, encoding: str = "utf-8") -> str:
    """``data`` as text; for UTF-8 a leading byte-order mark (Excel's exports) is dropped."""
    if encoding == "utf-8":
        data = data.removeprefix(_UTF8_BOM)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        label = "UTF-8" if encoding == "utf-8" else encoding
        raise DataError(f"{path}, line {line}: not {label} text ({e.reason} at byte {e.start}); "
                        f"save it as {label}") from None


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
_COMPRESSED = [("gzip", re.compile(rb"\x1f\x8b"), gzip.decompress),
               ("bzip2", re.compile(rb"BZh[1-9]1AY&SY"), bz2.decompress),
               ("xz", re.compile(rb"\xfd7zXZ\x00"), lzma.decompress)]
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz")
_LOG_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".tsv": "tsv",
                ".tab": "tsv"}  # by suffix; anything else is read as CSV


def log_format(path: Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the suffix of ``path``; a compression suffix
    (``.csv.gz``, ``.tsv.bz2``) is looked through."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    return _LOG_FORMATS.get(last, "csv")


def _load_text(path: Path, encoding: str = "utf-8") -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    for kind, magic, decompress in _COMPRESSED:
        if magic.match(data):
            try:
                data = decompress(data)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as e:
                raise DataError(f"{path}: cannot decompress this {kind} file ({e}); the file "
                                f"is truncated or corrupt, copy it again") from None
            break
    return _decode(path, data, encoding)


def _header(raw: str, sep: str) -> list[str]:
    """Column names on the first line of ``raw``."""
    end = raw.find("\n")
    first = raw[:end if end >= 0 else len(raw)].rstrip("\r")
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


def _field_error(path: Path, raw: str, line: int, sep: str, n_fields: int, header: bool,
                 problem: str, shown: str | None = None) -> DataError:
    """``problem`` on file line ``line``, unless the line is short: then say that.
    (``shown``: the separator to name, when the text was parsed on another.)"""
    n = len(_split_record(raw.split("\n", line - 1)[line - 1], sep))  # from that line on
    if n < n_fields:
        return _field_count_error(path, line, n, n_fields, header, shown or sep)
    return DataError(f"{path}, line {line}: {problem}")


def _field_count_error(path: Path, line: int, n: int, n_fields: int, header: bool,
                       sep: str) -> DataError:
    """Line ``line`` has ``n`` fields where every line needs ``n_fields``."""
    want = f"the header has {n_fields}" if header else f"expected {n_fields}"
    return DataError(f"{path}, line {line} has {n} field{'s' if n != 1 else ''}, {want}; "
                     f"every line needs {n_fields} fields separated by {sep!r}")


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
    starts = starts[offset - 1:]  # the header record
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
) -> tuple[pd.DataFrame, np.ndarray]:
    """Parse the text ``raw`` of the delimited file ``path``: strings (``numeric``: numbers).

    Blank lines are skipped. Returns the frame and the file line number of each row; every
    problem is reported with the file and line number. ``required`` columns may not be empty.
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
                io.StringIO(raw), sep=sep, header=0 if header else None,
                names=None if header else names, dtype=str, keep_default_na=False,
                skip_blank_lines=False, engine="c", quoting=_quoting(sep), index_col=False,
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
        raise DataError(f"{path}: malformed line ({msg}); every line needs {want} "
                        f"separated by {shown!r}") from None
    n_fields = df.shape[1]
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        raise _field_count_error(path, *_first_long_record(raw, sep, n_fields), n_fields,
                                 header, shown)
    if header:
        df.columns = [str(c).strip() for c in df.columns]
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} in the header "
                            f"(found {', '.join(df.columns)})")
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
            raise _field_error(path, raw, line, sep, n_fields, header,
                               f"field {col!r} is empty", shown)
    for col in numeric:
        vals = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = ~np.isfinite(vals.to_numpy(np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = repr(df[col].iloc[row]) if df[col].iloc[row] != "" else "an empty value"
            raise _field_error(path, raw, int(lines[row]), sep, n_fields, header,
                               f"field {col!r} has {what}, expected a finite number "
                               f"(NaN, infinite and empty values are not allowed)", shown)
        df[col] = vals
    return df, lines


def _read_table(path: Path, sep: str, names: list[str], numeric: list[str], *,
                header: bool = False, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a delimited file; every problem is reported with the file and line number."""
    return _parse_table(path, _load_text(path, encoding), sep, names, numeric, header=header)[0]


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


def _build(name: str, ratings: pd.DataFrame, source: Path, *, rating_range=None,
           items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
           duplicates: str = "last", implicit: bool = False) -> tuple[Dataset, dict, dict]:
    """Make a Dataset from a (user, item, rating[, timestamp]) frame and metadata frames."""
    if len(ratings) == 0:
        raise DataError(f"{source}: no interactions found")
    # items known from metadata but never rated are not given columns: nothing can be learned
    uid, u = np.unique(as_id_array(ratings["user"].to_numpy()), return_inverse=True)
    iid, i = np.unique(as_id_array(ratings["item"].to_numpy()), return_inverse=True)
    r = None if implicit else ratings["rating"].to_numpy(np.float32)
    t = ratings["timestamp"].to_numpy(np.float64) if "timestamp" in ratings else None
    try:
        inter = Interactions.from_arrays(u, i, r, t, user_ids=uid, item_ids=iid,
                                         duplicates=duplicates)
    except DataError as e:  # a duplicate under duplicates="error": name the file and the option
        what = str(e).split(";")[0]
        raise DataError(f"{source}: {what}; to keep one of the repeats pass --set "
                        f"data.duplicates=last (or first, max)") from None
    item_df = None
    if items is not None:
        item_df = items.drop_duplicates("item_id").set_index("item_id").reindex(iid)
        item_df = item_df.reset_index().rename(columns={"index": "item_id"})
    user_df = None
    if users is not None:
        user_df = users.drop_duplicates("user_id").set_index("user_id").reindex(uid)
        user_df = user_df.reset_index().rename(columns={"index": "user_id"})
    ds = Dataset(name, inter, item_df, user_df, {}, implicit, rating_range, str(source))
    umap = {v: k for k, v in enumerate(uid.tolist())}
    return ds, umap, {v: k for k, v in enumerate(iid.tolist())}


def _part(ds: Dataset, frame: pd.DataFrame, umap: dict, imap: dict, where: Path,
          implicit: bool = False) -> Interactions:
    """Interactions of ``frame`` in the id space of ``ds``."""
    try:
        u = np.fromiter((umap[x] for x in frame["user"].tolist()), np.int64, len(frame))
        i = np.fromiter((imap[x] for x in frame["item"].tolist()), np.int64, len(frame))
    except KeyError as e:
        raise DataError(f"{where}: id {e.args[0]!r} does not occur in the full data") from None
    r = None if implicit else frame["rating"].to_numpy(np.float32)
    t = frame["timestamp"].to_numpy(np.float64) if "timestamp" in frame else None
    return Interactions.from_arrays(u, i, r, t, user_ids=ds.interactions.user_ids,
                                    item_ids=ds.interactions.item_ids)


# ----------------------------------------------------------------------------- MovieLens
def read_ml100k(folder: str | Path, *, duplicates: str = "last") -> Dataset:
    """ML-100K: ``u.data`` (tab), ``u.item`` and ``u.user`` ('|', latin-1), folds u1..u5.

    The canonical folds become ``splits["u1"] .. splits["u5"]`` with parts ``train``
    (``uN.base``, or ``u.data`` minus ``uN.test`` when the base file is absent) and ``test``.
    """
    d = Path(folder)
    cols = ["user", "item", "rating", "timestamp"]
    ratings = _read_table(d / "u.data", "\t", cols, cols)
    item_cols = ["item_id", "title", "release", "video_release", "url"] + ML100K_GENRES
    items = None
    if (d / "u.item").is_file():
        raw = _read_table(d / "u.item", "|", item_cols, ["item_id"] + ML100K_GENRES,
                          encoding="latin-1")
        flags = raw[ML100K_GENRES].to_numpy().astype(bool)
        genres = ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags]
        items = pd.DataFrame({"item_id": raw["item_id"].astype(np.int64), "title": raw["title"],
                              "genres": genres})
    users = None
    if (d / "u.user").is_file():
        raw = _read_table(d / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip"],
                          ["user_id", "age"], encoding="latin-1")
        users = raw.assign(user_id=raw["user_id"].astype(np.int64), age=raw["age"].astype(int))
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    ds, umap, imap = _build("ml-100k", ratings, d, rating_range=(1.0, 5.0), items=items,
                            users=users, duplicates=duplicates)
    for n in range(1, 6):
        test_path = d / f"u{n}.test"
        if not test_path.is_file():
            continue
        test = _read_table(test_path, "\t", cols, cols).astype({"user": np.int64, "item": np.int64})
        base_path = d / f"u{n}.base"
        if base_path.is_file():
            base = _read_table(base_path, "\t", cols, cols).astype(
                {"user": np.int64, "item": np.int64})
        else:
            key = ratings["user"] * 10**7 + ratings["item"]
            base = ratings[~key.isin(test["user"] * 10**7 + test["item"])]
        ds.splits[f"u{n}"] = {"train": _part(ds, base, umap, imap, base_path),
                              "test": _part(ds, test, umap, imap, test_path)}
    return ds


def _read_movies_dat(path: Path) -> pd.DataFrame:
    raw = _read_table(path, "::", ["item_id", "title", "genres"], ["item_id"], encoding="latin-1")
    return raw.assign(item_id=raw["item_id"].astype(np.int64))


def read_ml1m(folder: str | Path, *, duplicates: str = "last") -> Dataset:
    """ML-1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` ('::', latin-1)."""
    d = Path(folder)
    cols = ["user", "item", "rating", "timestamp"]
    ratings = _read_table(d / "ratings.dat", "::", cols, cols, encoding="latin-1")
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    items = _read_movies_dat(d / "movies.dat") if (d / "movies.dat").is_file() else None
    users = None
    if (d / "users.dat").is_file():
        raw = _read_table(d / "users.dat", "::",
                          ["user_id", "gender", "age", "occupation", "zip"],
                          ["user_id", "age", "occupation"], encoding="latin-1")
        occ = raw["occupation"].astype(int).map(
            lambda c: ML1M_OCCUPATIONS[c] if 0 <= c < len(ML1M_OCCUPATIONS) else str(c))
        users = raw.assign(user_id=raw["user_id"].astype(np.int64), age=raw["age"].astype(int),
                           occupation=occ)[["user_id", "age", "gender", "occupation", "zip"]]
    return _build("ml-1m", ratings, d, rating_range=(1.0, 5.0), items=items, users=users,
                  duplicates=duplicates)[0]


def read_ml10m(folder: str | Path, *, duplicates: str = "last") -> Dataset:
    """ML-10M (``ml-10M100K``): ``ratings.dat`` and ``movies.dat`` ('::'); half-star ratings."""
    d = Path(folder)
    cols = ["user", "item", "rating", "timestamp"]
    ratings = _read_table(d / "ratings.dat", "::", cols, cols, encoding="latin-1")
    ratings = ratings.astype({"user": np.int64, "item": np.int64})
    items = _read_movies_dat(d / "movies.dat") if (d / "movies.dat").is_file() else None
    return _build("ml-10m", ratings, d, rating_range=(0.5, 5.0), items=items,
                  duplicates=duplicates)[0]


def read_ml_csv(folder: str | Path, name: str = "ml-20m", *, duplicates: str = "last") -> Dataset:
    """ML-20M, ML-25M, ml-latest(-small): ``ratings.csv`` and ``movies.csv`` with headers."""
    d = Path(folder)
    raw = _read_table(d / "ratings.csv", ",", ["userId", "movieId", "rating", "timestamp"],
                      ["userId", "movieId", "rating", "timestamp"], header=True)
    ratings = pd.DataFrame({"user": raw["userId"].astype(np.int64),
                            "item": raw["movieId"].astype(np.int64),
                            "rating": raw["rating"], "timestamp": raw["timestamp"]})
    items = None
    if (d / "movies.csv").is_file():
        m = _read_table(d / "movies.csv", ",", ["movieId", "title", "genres"], ["movieId"],
                        header=True)
        items = pd.DataFrame({"item_id": m["movieId"].astype(np.int64), "title": m["title"],
                              "genres": m["genres"]})
    return _build(name, ratings, d, rating_range=(0.5, 5.0), items=items,
                  duplicates=duplicates)[0]


# ----------------------------------------------------------------------------- pair lists
_PARTS = ("train", "valid", "test")


def _load_npy_pairs(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.dtype.kind not in "iu":
        raise DataError(f"{path}: expected an integer array of shape (n, 2) of (user, item) "
                        f"rows, got {arr.dtype} {arr.shape}")
    if len(arr) and arr[:, :2].min() < 0:
        row = int(np.flatnonzero((arr[:, :2] < 0).any(1))[0])
        raise DataError(f"{path}, row {row}: negative id {arr[row, :2].tolist()}; pair lists "
                        f"hold 0-based indices")
    return arr


def _read_text_pairs(path: Path) -> pd.DataFrame:
    """Whitespace ``user item [rating]`` lines."""
    rows = []
    for lineno, line in enumerate(_load_text(path).split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise DataError(f"{path}, line {lineno}: expected 'user item [rating]', got "
                            f"{line.strip()!r}")
        if len(parts) == 3:
            try:
                r = float(parts[2])
            except ValueError:
                raise DataError(f"{path}, line {lineno}: rating {parts[2]!r} is not a "
                                f"number") from None
            if not np.isfinite(r):
                raise DataError(f"{path}, line {lineno}: rating is {parts[2]}; NaN and "
                                f"infinite ratings are not allowed")
        else:
            r = 1.0
        rows.append((parts[0], parts[1], r))
    if not rows:
        raise DataError(f"{path}: no interactions found")
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def read_pair_lists(folder: str | Path, *, name: str | None = None,
                    n_users: int | None = None, n_items: int | None = None) -> Dataset:
    """A folder of pre-split pair lists.

    Either DiffRec's ``train_list.npy``, ``valid_list.npy``, ``test_list.npy`` (int64 (n, 2)
    rows of 0-based (user, item) indices), or text files ``train.txt``, ``valid.txt``,
    ``test.txt`` (``valid`` optional) with whitespace ``user item [rating]`` lines.

    For ``.npy`` lists the indices are the ids: the matrix has ``max + 1`` rows and columns
    over all parts (or ``n_users``/``n_items`` when given, which out-of-range ids violate).
    """
    d = Path(folder)
    npy = {p: d / f"{p}_list.npy" for p in _PARTS}
    txt = {p: d / f"{p}.txt" for p in _PARTS}
    label = name or d.name
    if npy["train"].is_file():
        arrays = {p: _load_npy_pairs(f) for p, f in npy.items() if f.is_file()}
        if "test" not in arrays:
            raise DataError(f"{d}: test_list.npy is missing (found {', '.join(arrays)})")
        if not any(len(a) for a in arrays.values()):
            raise DataError(f"{d}: no interactions found (every pair list is empty)")
        max_u = max(int(a[:, 0].max()) for a in arrays.values() if len(a)) + 1
        max_i = max(int(a[:, 1].max()) for a in arrays.values() if len(a)) + 1
        U = n_users if n_users is not None else max_u
        I = n_items if n_items is not None else max_i
        for p, a in arrays.items():
            bad_u, bad_i = a[:, 0] >= U, a[:, 1] >= I
            if bad_u.any() or bad_i.any():
                row = int(np.flatnonzero(bad_u | bad_i)[0])
                raise DataError(f"{npy[p]}, row {row}: id {a[row, :2].tolist()} out of range "
                                f"for {U} users x {I} items")
        uid, iid = np.arange(U, dtype=np.int64), np.arange(I, dtype=np.int64)
        parts = {p: Interactions.from_arrays(a[:, 0], a[:, 1], user_ids=uid, item_ids=iid)
                 for p, a in arrays.items()}
        allp = np.concatenate(list(arrays.values()))
        whole = Interactions.from_arrays(allp[:, 0], allp[:, 1], user_ids=uid, item_ids=iid)
        return Dataset(label, whole, None, None, {"given": parts}, True, None, str(d))
    if txt["train"].is_file():
        frames = {p: _read_text_pairs(f) for p, f in txt.items() if f.is_file()}
        if "test" not in frames:
            raise DataError(f"{d}: test.txt is missing (found {', '.join(frames)})")
        allf = pd.concat(list(frames.values()), ignore_index=True)
        for col in ("user", "item"):  # integer ids when all read back as written, as in logs
            ids = _id_values(allf[col])
            if ids.dtype.kind == "i":
                allf[col] = ids
                for f in frames.values():
                    f[col] = f[col].astype(np.int64)
        implicit = bool((allf["rating"] == 1.0).all())
        ds, umap, imap = _build(label, allf, d, implicit=implicit)
        ds.splits["given"] = {p: _part(ds, f, umap, imap, txt[p], implicit)
                              for p, f in frames.items()}
        return ds
    raise DataError(f"{d}: no pair lists found; expected train_list.npy/valid_list.npy/"
                    f"test_list.npy or train.txt/valid.txt/test.txt")


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
) -> Dataset:
    """Any CSV/TSV/Parquet interaction log with a header, through a column mapping.

    ``rating_col`` and ``time_col`` are optional: when the named column is absent the data
    is implicit (or has no timestamps). ``fmt`` is ``csv``, ``tsv`` or ``parquet``, detected
    from the suffix when None. A text log without a header (``header=False``) has its columns
    in the order user, item[, rating[, timestamp]] (ML-100K's ``u.data`` layout).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    roles = [(r, c) for r, c in (("user_col", user_col), ("item_col", item_col),
                                 ("rating_col", rating_col), ("time_col", time_col)) if c]
    for j, (role, col) in enumerate(roles):
        for other, col2 in roles[:j]:
            if col == col2:
                raise DataError(f"{p}: data.{other} and data.{role} both name the column "
                                f"{col!r}; map each role to its own column")
    fmt = fmt or log_format(p)
    if fmt == "parquet":
        require("pyarrow", "parquet", f"{p}: reading a Parquet log")
        try:
            df = pd.read_parquet(p)
        except Exception as e:  # pyarrow raises several types
            raise DataError(f"{p}: cannot read Parquet ({e})") from None
        df.columns = [str(c) for c in df.columns]
        present = list(df.columns)
    else:
        if sep == "\\t":  # typed as --set data.sep='\t': a backslash and a t, meant as a tab
            sep = "\t"
        sep = sep or ("\t" if fmt == "tsv" else ",")
        raw = _load_text(p)
        present = _header(raw, sep)
        if not header:  # columns by position, named by the mapping
            order = [c for c in (user_col, item_col, rating_col, time_col) if c]
            first = next((line for line in raw.splitlines() if line.strip()), "")
            n = len(_split_record(first, sep))
            if not 2 <= n <= len(order):
                extra = [r for r, c in (("rating", rating_col), ("timestamp", time_col)) if c]
                shape = "".join(f"[, {r}" for r in extra) + "]" * len(extra)
                raise DataError(f"{p}: {n} field(s) separated by {sep!r} on the first line; a "
                                f"log without a header has 2 to {len(order)}: user, item{shape}")
            present = order[:n]
    _check_columns(p, present, user_col, item_col, rating_col, time_col, text=fmt != "parquet",
                   sep=sep)
    for role, named, default in (("rating", rating_col, "rating"),
                                 ("time", time_col, "timestamp")):
        if named and named != default and named not in present:  # named, so meant ('' = none)
            raise DataError(f"{p}: no column {named!r} for the {role}s (data.{role}_col; "
                            f"columns: {', '.join(present)}); fix the name, or leave the "
                            f"setting out")
    # the optional columns read: None when not mapped or not in the log
    r_col = rating_col if rating_col is not None and rating_col in present else None
    t_col = time_col if time_col is not None and time_col in present else None
    has_r, has_t = r_col is not None, t_col is not None
    unused = [c for c in present if c not in (user_col, item_col, rating_col, time_col)]
    if unused and not (has_r and has_t):
        log.warning("%s: column%s %s not read; the log is read %s (map a column with --set "
                    "data.rating_col=NAME / data.time_col=NAME)", p, "s" * (len(unused) > 1),
                    ", ".join(map(repr, unused)),
                    " and ".join(w for w, has in (("as implicit feedback", has_r),
                                                  ("without timestamps", has_t)) if not has))
    numeric = [r_col] if r_col is not None else []  # timestamps: numbers or ISO dates, below
    cols = [user_col, item_col] + numeric + ([t_col] if t_col is not None else [])
    if fmt == "parquet":
        df = _parquet_columns(p, df[cols], [user_col, item_col], numeric)
        lines = None
    else:
        assert sep is not None  # set for every text log above
        df, lines = _parse_table(p, raw, sep, cols if header else present, numeric,
                                 header=header, required=(user_col, item_col))
    out = pd.DataFrame({"user": df[user_col].astype(str).str.strip(),
                        "item": df[item_col].astype(str).str.strip()})
    for role, col in (("user", user_col), ("item", item_col)):
        empty = (out[role] == "") | (out[role].str.lower() == "nan")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            where = f"row {row}" if lines is None else f"line {lines[row]}"
            raise DataError(f"{p}, {where}: missing {role} id ({out[role].iloc[row]!r}) "
                            f"in column {col!r}")
    out = pd.DataFrame({"user": _id_values(out["user"]), "item": _id_values(out["item"])})
    if r_col is not None:
        out["rating"] = df[r_col].to_numpy(np.float32)
    if t_col is not None:
        out["timestamp"] = _times(p, df[t_col], t_col, lines)
    stem = p.name
    for suffix in reversed(p.suffixes):  # 'log.csv.gz' -> 'log'
        if suffix.lower() not in COMPRESSED_SUFFIXES + tuple(_LOG_FORMATS):
            break
        stem = stem[: -len(suffix)]
    ds, _, _ = _build(name or stem or p.stem, out, p, duplicates=duplicates, implicit=not has_r)
    if has_r:
        ds.rating_range = (float(out["rating"].min()), float(out["rating"].max()))
    return ds


_EPOCH = pd.Timestamp(0, tz="UTC")


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
        dt = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        return ((dt - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
    is_text = not pd.api.types.is_numeric_dtype(col)
    text = col.astype(str).str.strip() if is_text else col
    nums = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(nums)
    if finite.all():
        return nums
    if not finite.any() and is_text:
        dates = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        if not dates.isna().any():
            return ((dates - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
    else:
        row = int(np.flatnonzero(~finite)[0])
    value = col.iloc[row]
    what = "an empty value" if str(value).strip() == "" else repr(str(value))
    raise DataError(f"{p}, {where(row)}: field {name!r} has {what}, expected a timestamp: "
                    f"a finite number (Unix time) or an ISO 8601 date such as "
                    f"2024-01-31T12:00:00, the same kind on every line")


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
            what = "null" if pd.isna(value) else repr(value.item() if hasattr(value, "item")
                                                      else value)
            raise DataError(f"{p}, row {row}: column {c!r} has {what}, expected a finite "
                            f"number (null, NaN and infinite values are not allowed)")
        df = df.assign(**{c: vals})
    return df


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_columns(p: Path, present: list[str], user_col: str, item_col: str,
                   rating_col: str | None, time_col: str | None, *, text: bool,
                   sep: str | None = None) -> None:
    """The id columns are in the header; a first line that is data, or a header split on
    another separator, is named as such."""
    expected = [c for c in (user_col, item_col, rating_col, time_col) if c]
    twice = sorted({c for c in expected if present.count(c) > 1})
    if twice:  # pandas would silently read the first of them
        raise DataError(f"{p}: the header names column {', '.join(map(repr, twice))} more than "
                        f"once; rename the repeats so that each column has its own name")
    if all(c in present for c in (user_col, item_col)):
        return
    if text and not any(present):
        raise DataError(f"{p}: the file is empty (no header line); a log starts with a header "
                        f"naming its columns ({', '.join(expected)})")
    if text and len(present) == 1:
        for other, name in (("\t", "a tab"), (";", "';'"), ("|", "'|'"), (",", "','")):
            if other != sep and {user_col, item_col} <= set(present[0].split(other)):
                arg = "'\\t'" if other == "\t" else repr(other)
                raise DataError(f"{p}: the header is one field split on {sep!r}, but {name} "
                                f"separates its columns; pass --set data.sep={arg}")
    if text and not any(c in present for c in expected) and any(map(_is_number, present)):
        shape = f"{user_col}, {item_col}" + "".join(f"[, {c}]" for c in (rating_col, time_col) if c)
        raise DataError(f"{p}: the first line ({', '.join(present)}) looks like data, not a "
                        f"header; pass --set data.header=false when the columns are user, item"
                        f"[, rating[, timestamp]] in this order, or add a header line naming "
                        f"them ({shape})")
    for role, col in (("user", user_col), ("item", item_col)):
        if col not in present:
            raise DataError(f"{p}: no column {col!r} for the {role} ids (columns: "
                            f"{', '.join(present)}); map it with --set data.{role}_col=NAME")

"""The column mapping of the log readers: which column holds each role (user, item, rating,
time) in a log with a header and in one without, and the one-line errors when the mapping
and the file disagree (every missing column at once, a first line that is data or a header
that is read as data, a file split on the wrong separator).

``roles`` maps each setting (``user_col``, ``item_col``, ``rating_col``, ``time_col``) to the
column it names; ``""`` or None maps no column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from genrec.data.readers._parse import _quoting, log_format
from genrec.errors import DataError

__all__ = [
    "ROLE_DEFAULTS",
    "parse_columns",
    "first_records",
    "missing_roles",
    "check_header",
    "headerless_names",
    "check_not_a_header",
    "separator_fix",
]

#: the default column name of each role, and the positional names of a log without a header
ROLE_DEFAULTS = {
    "user_col": "user",
    "item_col": "item",
    "rating_col": "rating",
    "time_col": "timestamp",
}
_ROLE_TEXT = {
    "user_col": "the user ids",
    "item_col": "the item ids",
    "rating_col": "the ratings",
    "time_col": "the timestamps",
}
#: (separator, its name in messages, the text format it is the default of)
_SEPARATORS = (("\t", "a tab", "tsv"), (",", "','", "csv"), (";", "';'", None), ("|", "'|'", None))
#: common names of the columns of a log, which on a first line mark a header
_HEADER_WORDS = frozenset(
    "user item rating time timestamp date user_id item_id userid itemid uid iid ts score "
    "stars product product_id asin reviewer_id reviewerid overall".split()
)
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def parse_columns(text: str) -> tuple[str, ...]:
    """The names of ``data.columns`` (``"user,item,,time"``: an empty name skips a field),
    checked: at least two fields, no name twice."""
    names = tuple(c.strip() for c in text.split(","))
    if len(names) < 2:
        raise ValueError(
            f"columns {text!r} names {len(names)} field; name every field of a line in "
            f"order, separated by commas (e.g. user,item,rating,timestamp)"
        )
    twice = sorted({c for c in names if c and names.count(c) > 1})
    if twice:
        raise ValueError(
            f"columns {text!r} names {', '.join(map(repr, twice))} more than once; give "
            f"each field its own name (an empty name skips a field)"
        )
    return names


def first_records(raw: str, sep: str, k: int) -> list[tuple[int, list[str]]]:
    """(file line, stripped fields) of the first ``k`` non-blank records of ``raw``, split as
    the table parser splits them."""
    out: list[tuple[int, list[str]]] = []
    if len(sep) > 1 or _quoting(sep) == csv.QUOTE_NONE:
        for line, text in enumerate(io.StringIO(raw), 1):
            if text.strip():
                out.append((line, [f.strip() for f in text.rstrip("\r\n").split(sep)]))
                if len(out) == k:
                    break
        return out
    reader = csv.reader(io.StringIO(raw), delimiter=sep)
    start = 1
    for fields in reader:
        if any(f.strip() for f in fields):
            out.append((start, [f.strip() for f in fields]))
            if len(out) == k:
                break
        start = reader.line_num + 1
    return out


def missing_roles(present: Sequence[str], roles: dict[str, str | None]) -> list[str]:
    """The settings whose column is not in ``present``: the user and item columns always,
    the rating and time columns when named other than by default (a default name that is
    absent means the log has no such column)."""
    return [
        key
        for key, col in roles.items()
        if col
        and (key in ("user_col", "item_col") or col != ROLE_DEFAULTS[key])
        and col not in present
    ]


def _listed(missing: list[str], roles: dict[str, str | None]) -> str:
    parts = [f"{roles[k]!r} for {_ROLE_TEXT[k]} (data.{k})" for k in missing]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _optional_fix(missing: list[str]) -> str:
    optional = [f"data.{k}" for k in missing if k in ("rating_col", "time_col")]
    return f", or leave {' and '.join(optional)} out" if optional else ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_data(fields: list[str]) -> bool:
    """A first line of values: a number or date among them, or a digit in every field
    (``A39HTATAQ9V7YF, B0055KIQ1C``); column names seldom hold digits."""
    return any(_is_number(f) or _ISO_DATE.match(f) for f in fields) or all(
        any(ch.isdigit() for ch in f) for f in fields
    )


def separator_fix(p: Path, field: str, sep: str, fmt: str, sep_given: bool, want=()) -> str:
    """For a line that is one field split on ``sep``: what splits it (another separator,
    preferring one that splits out the names ``want``) and the setting to change, as
    ``"but ',' separates its fields; set ..."``, or "" when nothing splits it."""
    found = None
    for other, name, other_fmt in _SEPARATORS:
        parts = [x.strip() for x in field.split(other)]
        if other == sep or len(parts) < 2:
            continue
        if found is None or (set(want) and set(want) <= set(parts)):
            found = (other, name, other_fmt)
    if found is None:
        return ""
    other, name, other_fmt = found
    arg = "'\\t'" if other == "\t" else repr(other)
    if other_fmt is not None and other_fmt != fmt and not sep_given:
        if log_format(p) == other_fmt:  # data.format was set against the suffix
            fix = f"set data.format={other_fmt}, or leave data.format out"
        else:
            fix = f"set data.format={other_fmt} (or data.sep={arg})"
    else:
        fix = f"set data.sep={arg}"
    return f"but {name} separates its fields; {fix}"


def check_header(
    p: Path,
    present: list[str],
    roles: dict[str, str | None],
    *,
    text: bool,
    sep: str = ",",
    fmt: str = "csv",
    sep_given: bool = False,
) -> None:
    """The header ``present`` holds every mapped column; otherwise one DataError naming all
    that are missing, or the cause: an empty file, a header split on the wrong separator, a
    first line that is data (then ``data.header=false``)."""
    expected = [c for c in roles.values() if c]
    twice = sorted({c for c in expected if present.count(c) > 1})
    if twice:  # pandas would silently read the first of them
        raise DataError(
            f"{p}: the header names column {', '.join(map(repr, twice))} more than "
            f"once; rename the repeats so that each column has its own name"
        )
    missing = missing_roles(present, roles)
    if not missing:
        return
    user_col, item_col, rating_col, time_col = roles.values()
    if text and not any(present):
        raise DataError(
            f"{p}: the file is empty (no header line); a log starts with a header "
            f"naming its columns ({', '.join(expected)})"
        )
    if text and len(present) == 1:
        fix = separator_fix(p, present[0], sep, fmt, sep_given, (user_col, item_col))
        if fix:
            raise DataError(f"{p}: the header is one field split on {sep!r}, {fix}")
    if text and not any(c in present for c in expected) and _looks_like_data(present):
        shape = f"{user_col}, {item_col}" + "".join(f"[, {c}]" for c in (rating_col, time_col) if c)
        raise DataError(
            f"{p}: the first line ({', '.join(present)}) looks like data, not a "
            f"header; set data.header=false when the columns are user, item"
            f"[, rating[, timestamp]] in this order (or name them with data.columns), "
            f"or add a header line naming them ({shape})"
        )
    raise DataError(
        f"{p}: no column {_listed(missing, roles)}; the columns are "
        f"{', '.join(present)}: set {'it' if len(missing) == 1 else 'each setting'} to the "
        f"name of its column{_optional_fix(missing)}"
    )


def headerless_names(
    p: Path,
    first: tuple[int, list[str]],
    roles: dict[str, str | None],
    columns: Sequence[str] | None,
    *,
    sep: str,
    fmt: str,
    sep_given: bool,
) -> list[str]:
    """The names of the fields of a log without a header, in order ("" for a skipped
    field): ``columns`` (``data.columns``) when given, else by position user, item[,
    rating[, timestamp]] (user, item[, timestamp] with ``rating_col`` ""). Every role
    setting then selects among these names as among a header's; a name that matches none
    is a DataError naming the setting."""
    line, fields = first
    n = len(fields)
    split = separator_fix(p, sep.join(fields), sep, fmt, sep_given) if n == 1 else ""
    if columns is not None:
        names = list(columns)
        if len(names) != n:
            raise DataError(
                f"{p}, line {line}: {n} field{'s' * (n != 1)} separated by {sep!r}, but "
                f"data.columns names {len(names)} ({','.join(names)}); "
                + (split or "name every field in order (an empty name skips one)")
            )
        missing = missing_roles([c for c in names if c], roles)
        if missing:
            raise DataError(
                f"{p}: no column {_listed(missing, roles)} among the names of data.columns "
                f"({','.join(names)}): set {'it' if len(missing) == 1 else 'each setting'} "
                f"to one of them, or name that field in data.columns{_optional_fix(missing)}"
            )
        return names
    default = list(ROLE_DEFAULTS.values())
    if not roles["rating_col"] and n <= 3:  # user item time
        default.remove("rating")
    if not 2 <= n <= len(default):
        example = ",".join(default + [""] * max(n - len(default), 0))
        raise DataError(
            f"{p}: {n} field(s) separated by {sep!r} on the first line; a log without a "
            f"header has 2 to {len(default)}: user, item[, rating[, timestamp]] by "
            f"position"
            + (
                f", {split}"
                if split
                else f"; name more with data.columns (e.g. {example}; an empty name skips one)"
            )
        )
    names = default[:n]
    renamed = [k for k, c in roles.items() if c and c != ROLE_DEFAULTS[k]]
    if renamed:
        renamed_names = _example(names, roles, renamed)
        settings = " and ".join(f"data.{k}={roles[k]}" for k in renamed)
        raise DataError(
            f"{p}: {settings} name{'s a column' if len(renamed) == 1 else ' columns'}, but "
            f"a log without a header has no column names: its {n} fields are read as "
            f"{', '.join(names)} by position; name them "
            f"with data.columns (e.g. data.columns={','.join(renamed_names)}), or leave "
            f"{' and '.join(f'data.{k}' for k in renamed)} out"
        )
    return names


def _example(names: list[str], roles: dict[str, str | None], renamed: list[str]) -> list[str]:
    """``names`` with each default name replaced by the name its setting gives."""
    by_default = {ROLE_DEFAULTS[k]: roles[k] for k in renamed}
    return [by_default.get(c) or c for c in names]


def _valid(token: str, kind: str) -> bool:
    """``token`` is a value of the kind ``kind`` (ratings and ids: numbers, which alone tell
    an id from a name; times: numbers or ISO dates)."""
    return _is_number(token) or (kind == "time" and bool(_ISO_DATE.match(token)))


def check_not_a_header(
    p: Path, records: list[tuple[int, list[str]]], names: list[str], roles: dict[str, str | None]
) -> None:
    """A DataError when the first of ``records`` (a log read without a header) looks like a
    header: a word where the lines below hold numbers (ratings, times, or both ids), or
    column names in the user and item fields."""
    if len(records) < 2:
        return
    (line, first), rest = records[0], [f for _, f in records[1:] if len(f) == len(records[0][1])]
    if not rest:
        return
    role_kinds = (
        ("user_col", "id"),
        ("item_col", "id"),
        ("rating_col", "number"),
        ("time_col", "time"),
    )
    kinds = {c: kind for key, kind in role_kinds if (c := roles[key])}

    def wordy(j: int, kind: str) -> bool:  # a word on line 1, values of the kind below it
        word = first[j] != "" and not _valid(first[j], kind)  # an empty field is no name
        return word and all(_valid(f[j], kind) for f in rest)

    ids = [names.index(c) for c in (roles["user_col"], roles["item_col"]) if c in names]
    values = [
        (j, kinds[c]) for j, c in enumerate(names) if c and kinds.get(c) in ("number", "time")
    ]
    reason = ""
    if any(wordy(j, kind) for j, kind in values):
        reason = "words where the lines below hold numbers"
    elif ids and all(wordy(j, "id") for j in ids):
        reason = "words where the lines below hold numeric ids"
    elif ids and all(first[j].lower() in _HEADER_WORDS | {c.lower() for c in names} for j in ids):
        reason = "column names in the user and item fields"
    if reason:
        raise DataError(
            f"{p}, line {line}: the first line ({', '.join(first)}) looks like a header "
            f"({reason}), but data.header=false reads it as data; drop data.header=false "
            f"to read it as the header"
        )

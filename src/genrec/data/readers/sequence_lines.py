"""Reader of ordered histories written one user per line: ``user i1 i2 ... in``.

The layout of the Amazon 5-core files packaged by the S3-Rec authors (``Beauty.txt``) and
of most sequential-recommendation code: fields separated by whitespace, the first the user
id, the rest the items in consumption order (oldest first). Repeats are kept in the
sequence; the interaction matrix holds each (user, item) pair once. Ids that are all
integers stay integers; otherwise every id is a string.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrec.data.dataset import Dataset
from genrec.data.interactions import Interactions, factorize_ids
from genrec.data.readers._parse import _load_text
from genrec.data.sequences import Sequences
from genrec.errors import DataError

__all__ = ["read_sequence_lines", "looks_like_sequence_lines"]


def _ids(tokens: list[str]) -> np.ndarray:
    try:
        return np.asarray(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        return np.asarray(tokens, dtype=str)


def read_sequence_lines(path: str | Path, *, name: str | None = None) -> Dataset:
    """Read a ``user i1 i2 ... in`` file (plain or compressed) into an implicit Dataset
    whose ``sequences`` keep each line's order."""
    p = Path(path)
    text = _load_text(p)
    users: list[str] = []
    items: list[str] = []
    counts: list[int] = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        user = fields[0]
        if len(fields) == 1:
            raise DataError(
                f"{p}, line {n}: user {user!r} has no items; each line is 'user item1 "
                f"item2 ...' (remove the line, or give the user's items)"
            )
        if user in first_line:
            raise DataError(
                f"{p}, line {n}: user {user!r} already has a line (line {first_line[user]}); "
                f"write each user's whole history on one line"
            )
        first_line[user] = n
        users.append(user)
        items.extend(fields[1:])
        counts.append(len(fields) - 1)
    if not users:
        raise DataError(f"{p}: no interactions found (expected lines 'user item1 item2 ...')")
    uid = _ids(users)  # unique by construction
    order = np.argsort(uid, kind="stable")  # user rows in sorted id order, as every reader
    rank = np.empty(len(uid), np.int64)
    rank[order] = np.arange(len(uid))
    u = np.repeat(rank, counts)
    iid, i = factorize_ids(_ids(items))
    i = i.astype(np.int64).ravel()
    inter = Interactions.from_arrays(u, i, None, None, user_ids=uid[order], item_ids=iid)
    seqs = Sequences.from_events(u, i, len(uid), len(iid))  # stable: line order kept
    stem = p.name.split(".")[0] or p.name
    return Dataset(name or stem, inter, None, None, {}, True, None, str(p), seqs)


def looks_like_sequence_lines(path: Path, n_lines: int = 200) -> bool:
    """Whether ``path`` reads as ``user i1 i2 ... in`` lines: a ``.txt`` (or suffix-less)
    text file whose first lines are whitespace-separated, have differing field counts and
    some line more than 4 fields (a log has the same count on every line)."""
    if path.suffix.lower() not in (".txt", ""):
        return False
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    try:
        lines = head.decode("utf-8").splitlines()[:n_lines]
    except UnicodeDecodeError:
        return False
    if len(lines) > 1 and len(head) == 1 << 16:
        lines = lines[:-1]  # the last line may be cut
    if any(sep in line for line in lines for sep in (",", "\t", ";")):
        return False
    widths = {len(line.split()) for line in lines if line.strip()}
    return len(widths) > 1 and max(widths) > 4

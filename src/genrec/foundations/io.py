"""Reading point files (the foundations commands' input). Results are written with
:mod:`genrec.io`'s atomic writers."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["read_points_csv"]


def _parse_row(row: list[str]) -> list[float] | None:
    try:
        return [float(cell) for cell in row]
    except ValueError:
        return None


def read_points_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a CSV of points (one row per point, one column per feature; header optional).

    The first row is a header when any of its cells is not a number. Blank lines are
    skipped.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    ndarray of shape (n_points, n_features), float64

    Raises
    ------
    ValueError
        Unreadable file, no data rows, rows of different lengths, non-numeric or
        non-finite cells (the message names the line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {p}: {exc}") from None
    rows = [
        (i + 1, r) for i, r in enumerate(csv.reader(text.splitlines())) if any(c.strip() for c in r)
    ]
    if not rows:
        raise ValueError(f"{p} contains no data rows")
    first_line, first = rows[0]
    if _parse_row(first) is None:
        header_width = len(first)
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{p} has a header but no data rows")
    else:
        header_width = None
    width = len(rows[0][1]) if header_width is None else header_width
    data = []
    for line, row in rows:
        if len(row) != width:
            raise ValueError(f"{p}, line {line}: expected {width} columns, found {len(row)}")
        values = _parse_row(row)
        if values is None:
            raise ValueError(f"{p}, line {line}: non-numeric value in {row!r}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{p}, line {line}: NaN or infinite value in {row!r}")
        data.append(values)
    return np.asarray(data, dtype=np.float64)

"""Reading point files and writing results atomically."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_points_csv", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file in the target's folder, then ``os.replace`` it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = (target.stat().st_mode & 0o777) if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic UTF-8 text write (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON write; numpy values become plain numbers, non-finite floats ``null``."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")

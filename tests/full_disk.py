"""A disk that fills up, for tests: the file writes of :mod:`genrec.io` fail with an
``OSError`` (``ENOSPC`` by default) after writing half of what they were given, as a real
full disk fails part-way through a file."""

from __future__ import annotations

import builtins
import errno
import os
from collections.abc import Callable
from typing import Any

import genrec.io


class _FullFile:
    def __init__(self, f: Any, code: int):
        self._f = f
        self._code = code

    def write(self, data: Any) -> int:
        raw = bytes(data)
        self._f.write(raw[: len(raw) // 2])
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def fill_disk(monkeypatch: Any, name: str = "", code: int = errno.ENOSPC) -> Callable[[], None]:
    """From now on, writes of ``genrec.io`` to files whose name contains ``name`` (a temp
    file is ``.NAME.XXXX.tmp``) fail with ``code``; returns a function that frees the disk."""
    real_open = builtins.open

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax") and name in os.fspath(file).rsplit("/", 1)[-1]:
            return _FullFile(f, code)
        return f

    monkeypatch.setattr(genrec.io, "open", full_open, raising=False)
    return lambda: monkeypatch.delattr(genrec.io, "open")

"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A reader never sees a half-written file, and an interrupted run leaves the previous
version (or nothing) in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from genrec.errors import ConfigError, DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], writer: Callable[[BinaryIO], object]) -> None:
    """Write a file atomically through ``writer(fileobj)`` (its return value is ignored)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_files(folder: str | os.PathLike[str], files: dict[str, bytes | str]) -> None:
    """Write several files of ``folder`` as one step, as far as a file system allows: each is
    first written in full to a temporary file beside it, and only then are they all renamed
    into place, in the order given. A failure while writing (disk full, Ctrl-C) removes the
    temporary files and leaves every target as it was. ``str`` contents are written as UTF-8.
    """
    with contextlib.ExitStack() as stack:  # on leaving, the last entered is renamed first
        for name, data in reversed(list(files.items())):
            tmp = stack.enter_context(atomic_path(Path(folder) / name))
            with open(tmp, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib`` algorithm name), read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy scalars and arrays converted, paths as text,
    dict keys as text, and every non-finite float (NaN, inf) as ``None``: strict JSON,
    which every reader (browsers, ``jq``, other languages) accepts."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of :func:`jsonable` ``(obj)``; a newline ends it."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as strict JSON (see :func:`jsonable`) atomically; nothing is written
    when ``obj`` cannot be serialised."""
    atomic_write_text(path, to_json(obj))


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """Save named arrays as an uncompressed ``.npz``, atomically. Object arrays are refused,
    and so is the name ``allow_pickle`` (``numpy.savez`` takes it as its flag, not an array)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; save strings as fixed-width 'U'")
    if "allow_pickle" in arrays:
        raise TypeError("an array may not be named 'allow_pickle' (numpy.savez's flag); rename it")
    atomic_write_bytes(path, lambda f: np.savez(f, allow_pickle=False, **arrays))


INFLATION_SLACK = 1 << 20  # bytes an honest uncompressed .npz may hold beyond its file size


def npz_sizes(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in a ``.npz``, read from the headers alone."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            out[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    return out


def check_npz(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """:func:`npz_sizes` of a ``.npz`` that :func:`load_arrays` would read, checked as it
    checks them (nothing is inflated): a DataError on a damaged file or one whose headers
    declare much more than the file's size."""
    try:
        sizes = npz_sizes(path)
        declared = sum(
            math.prod(int(n) for n in shape) * dtype.itemsize for shape, dtype in sizes.values()
        )
        size = os.path.getsize(path)
        if declared > size + INFLATION_SLACK:
            raise DataError(
                f"{path}: declares {declared / 2**20:.0f} MiB of arrays in a "
                f"{size / 2**20:.1f} MiB file; genrec writes these files "
                f"uncompressed, so it is not one of its files; write it again"
            )
        return sizes
    except (FileNotFoundError, DataError):
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise _unreadable(path, e) from None


def _unreadable(path: str | os.PathLike[str], e: Exception) -> DataError:
    return DataError(
        f"{path}: unreadable, the file is damaged or not a genrec .npz "
        f"({type(e).__name__}); write it again (e.g. train the model again)"
    )


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a ``.npz`` written by :func:`save_arrays` with pickling disabled.

    :func:`save_arrays` writes uncompressed files, so the arrays take about the file's size
    in memory; a file whose headers declare much more (a compressed "zip bomb") is refused
    before anything is inflated (:func:`check_npz`).
    """
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise _unreadable(path, e) from None


def check_writable(path: str | os.PathLike[str] | None, option: str, folder: bool = False) -> None:
    """A ConfigError (one line naming ``option``) when ``path``, a file or (``folder``) a
    folder that a command will create or replace, cannot be written: a part of it is a file,
    or its nearest existing folder is not writable. Commands call it before any long work,
    so that a bad path fails at once and not after training or fitting."""
    if not path:
        return
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; choose a folder path")
    parent = next((a for a in p.parents if a.exists()), Path("."))  # "." or the root at worst
    if not parent.is_dir():
        raise ConfigError(
            f"{option} {path}: {parent} is a file, not a folder; choose a path in a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {path}: cannot write in {parent} (permission denied); "
            f"choose a path in a folder you can write to"
        )

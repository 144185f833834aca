"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A reader never sees a half-written file, and an interrupted run leaves the previous
version (or nothing) in place. A full disk, an exceeded quota or a read-only file system
while writing is a :class:`~genrec.errors.WriteError` naming the file, and the temp file is
removed. JSON records can carry a SHA-256 of their own contents (:func:`seal_record`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import signal
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from genrec.errors import ConfigError, DataError, WriteError

#: errno values that mean "this file cannot be written here", and what to do about each
_WRITE_FAILURES = {
    errno.ENOSPC: ("no space left on device", "free some space (or write to another disk)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space in your quota (or write elsewhere)"),
    errno.EROFS: ("read-only file system", "write to a folder on a writable disk"),
}


@contextlib.contextmanager
def write_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk, an exceeded quota or a read-only file system in the block into a
    one-line :class:`WriteError` naming ``path`` (other errors pass unchanged)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        if e.errno not in _WRITE_FAILURES:
            raise
        what, fix = _WRITE_FAILURES[e.errno]
        err = WriteError(f"{what} writing {path}; {fix}, then run again")
        err.errno = e.errno
        raise err from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``."""
    target = Path(path)
    with write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600: the usual permissions
            yield tmp_path
            os.replace(tmp_path, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
            raise


def write_file(
    path: str | os.PathLike[str],
    writer: Callable[[BinaryIO], object],
    target: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``path`` (in place: use it on a temporary path of :func:`atomic_path` or
    :func:`atomic_files`) through ``writer(fileobj)``, then flush it to the disk; a
    :class:`WriteError` names ``target`` (the file it will become) or ``path``."""
    with write_errors(target or path), open(path, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], writer: Callable[[BinaryIO], object]) -> None:
    """Write a file atomically through ``writer(fileobj)`` (its return value is ignored)."""
    with atomic_path(path) as tmp:
        write_file(tmp, writer, target=path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_files(folder: str | os.PathLike[str], files: dict[str, bytes | str]) -> None:
    """Write several files of ``folder`` as one step, as far as a file system allows: each is
    first written in full to a temporary file beside it, and only then are they all renamed
    into place, in the order given. A failure while writing (disk full, Ctrl-C) removes the
    temporary files and leaves every target as it was. ``str`` contents are written as UTF-8.
    """
    with atomic_files(folder, list(files)) as tmp:
        for name, data in files.items():
            raw = data.encode("utf-8") if isinstance(data, str) else data
            write_file(tmp[name], _bytes_writer(raw), target=Path(folder) / name)


def _bytes_writer(raw: bytes) -> Callable[[BinaryIO], object]:
    return lambda f: f.write(raw)


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike[str], names: list[str]) -> Iterator[dict[str, Path]]:
    """Temporary paths for the files ``names`` of ``folder``, renamed into place together
    (in the order given) when the block succeeds; removed, every target left as it was,
    when it fails. The block writes them (e.g. with :func:`write_file`)."""
    with contextlib.ExitStack() as stack:  # on leaving, the last entered is renamed first
        tmp = {name: stack.enter_context(atomic_path(Path(folder) / name)) for name in names[::-1]}
        yield tmp


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib`` algorithm name), read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` (UTF-8) to ``path``. A write that fails (a full disk) is undone, so
    the file never ends in half a line."""
    data = memoryview(text.encode("utf-8"))
    with write_errors(path), open(path, "ab", buffering=0) as f:
        start = f.seek(0, os.SEEK_END)
        try:
            while data:
                data = data[f.write(data) or 0 :]
        except BaseException:
            with contextlib.suppress(OSError):
                f.truncate(start)
            raise


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


RECORD_DIGEST = "record_sha256"


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 of a JSON record's canonical text (sorted keys, no spaces), its own
    :data:`RECORD_DIGEST` field left out: the same before writing and after reading."""
    body = {k: v for k, v in jsonable(record).items() if k != RECORD_DIGEST}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with :data:`RECORD_DIGEST` set to its :func:`record_digest`."""
    return {**jsonable(record), RECORD_DIGEST: record_digest(record)}


def record_intact(record: dict[str, Any]) -> bool:
    """False when ``record`` holds a :data:`RECORD_DIGEST` that its contents do not match
    (records written without one, by older versions, are intact)."""
    return RECORD_DIGEST not in record or record[RECORD_DIGEST] == record_digest(record)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as strict JSON (see :func:`jsonable`) atomically; nothing is written
    when ``obj`` cannot be serialised."""
    atomic_write_text(path, to_json(obj))


def npz_writer(arrays: dict[str, np.ndarray]) -> Callable[[BinaryIO], None]:
    """A writer (for :func:`write_file`) of named arrays as an uncompressed ``.npz``. Object
    arrays are refused, and so is the name ``allow_pickle`` (``numpy.savez``'s flag)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; save strings as fixed-width 'U'")
    if "allow_pickle" in arrays:
        raise TypeError("an array may not be named 'allow_pickle' (numpy.savez's flag); rename it")
    return lambda f: np.savez(f, allow_pickle=False, **arrays)


def save_arrays(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """Save named arrays as an uncompressed ``.npz``, atomically (see :func:`npz_writer`)."""
    atomic_write_bytes(path, npz_writer(arrays))


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


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM back while the block runs, then deliver them.

    For writes that should not be cut in the middle: an interrupt that lands inside a
    serializer can surface as that library's own error instead of ``KeyboardInterrupt``. A
    signal received during the block is passed to the handler that was installed before it
    once the block is done (so Ctrl-C raises ``KeyboardInterrupt`` there). Outside the main
    thread signals cannot be handled, and the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: set outside Python, which cannot restore it: leave it
            previous[int(sig)] = handler

    def hold(signum: int, frame: Any) -> None:
        received.append((signum, frame))

    for number in previous:
        signal.signal(number, hold)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for signum, frame in received[:1]:  # one delivery: the first signal received
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)

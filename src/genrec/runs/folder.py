"""The run-folder format: the one module that reads and writes a run folder.

A run folder (``docs/run-format.md``) holds

* ``run.json``: the run record (format, status, model, data set, configs, results);
* ``model.json`` + ``weights.npz``: the model, as :meth:`Recommender.save` writes it;
* ``data.npz``: the training matrix, the raw id maps, each user's whole history
  (``history_*``), every item a user has (``known_*``) and the item titles;
* ``train_log.jsonl`` and ``checkpoint/state.pt`` for models trained by the trainer.

A run is built in the staging folder ``.next`` inside its folder and replaces the files of
an earlier run there only when it is complete (:func:`commit`), so a failed or interrupted
run never touches a finished model; an interrupted run stays in ``.next``, from which it
resumes. A lock file (``.lock``) keeps two runs from writing one folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec.data.sequences import Sequences
from genrec.errors import CorruptFileError, DataError, GenrecError
from genrec.io import (
    RECORD_DIGEST,
    atomic_write_json,
    file_digest,
    load_arrays,
    record_intact,
    save_arrays,
    seal_record,
    write_errors,
)

__all__ = [
    "RUN_FORMAT",
    "READABLE_FORMATS",
    "RunData",
    "RunFolderError",
    "UnfinishedRunError",
    "RunLockedError",
    "staging_dir",
    "read_record",
    "read_status",
    "save_run_data",
    "load_run_data",
    "epochs_done",
    "run_lock",
    "commit",
    "stage_copy",
    "recover",
    "file_digests",
    "check_digests",
    "sweep_temp_files",
    "write_record",
]

RUN_FORMAT = "genrec-run/2"
READABLE_FORMATS = ("genrec-run/1", RUN_FORMAT)
LOG_NAME = "train_log.jsonl"
CHECKPOINT_NAME = "checkpoint/state.pt"
MODEL_FILES = ("model.json", "weights.npz", "data.npz")  # digests kept in run.json


class RunFolderError(DataError):
    """A folder is not a (usable) genrec run folder."""


class UnfinishedRunError(GenrecError):
    """A new run was asked for where an unfinished, resumable one is kept."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class RunLockedError(GenrecError):
    """Another process is writing this run folder."""


def staging_dir(out: Path) -> Path:
    """Where a run for ``out`` is built (and an interrupted one is kept): ``out/.next``."""
    return out / ".next"


# ----------------------------------------------------------------------------- run.json
def read_record(folder: Path, keys: tuple[str, ...] = ("model",), advice: str = "") -> dict:
    """The run record of ``folder``, holding ``keys``; a RunFolderError naming the field
    otherwise."""
    path = folder / "run.json"
    if not path.is_file():
        raise RunFolderError(
            f"{folder}: not a genrec run folder (no run.json); pass a folder "
            f"written by a training run"
        )
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(
            f"{path}: not a genrec run record ({type(e).__name__}); "
            f"{advice or 'train the model again'}"
        ) from None
    if not isinstance(run, dict):
        raise RunFolderError(
            f"{path}: not a genrec run record (a JSON {type(run).__name__}, "
            f"not an object); {advice or 'train the model again'}"
        )
    fmt = run.get("format", READABLE_FORMATS[0])
    if fmt not in READABLE_FORMATS:
        raise RunFolderError(
            f"{path}: unsupported run format {fmt!r} (this genrec reads "
            f"{', '.join(READABLE_FORMATS)}); use the genrec that wrote it"
        )
    if not record_intact(run):
        raise CorruptFileError(
            f"{path}: corrupt file (its {RECORD_DIGEST} differs from its contents); "
            f"{advice or 'train the model again'}"
        )
    run.pop(RECORD_DIGEST, None)
    for k in keys:
        if k not in run:
            raise RunFolderError(
                f"{path}: not a genrec run folder: field {k!r} is missing; "
                f"{advice or 'train the model again'}"
            )
    return run


def read_status(folder: Path) -> str | None:
    """``"running"`` / ``"done"`` of the run in ``folder``; None when it holds none."""
    if not (folder / "run.json").is_file():
        return None
    try:
        status = read_record(folder, keys=()).get("status")
    except (GenrecError, OSError):
        return None
    return status if isinstance(status, str) else None


def epochs_done(folder: Path) -> int:
    """The last epoch in the run's training log (0 when it has none)."""
    try:
        lines = (folder / LOG_NAME).read_text().splitlines()
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return 0


# ----------------------------------------------------------------------------- integrity
def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of the model and data files present in ``folder``."""
    return {name: file_digest(folder / name) for name in MODEL_FILES if (folder / name).is_file()}


def check_digests(folder: Path, record: dict) -> None:
    """A RunFolderError naming the first file whose digest differs from ``run.json``'s
    (older runs, without digests, pass)."""
    want = record.get("files")
    if not isinstance(want, dict):
        return
    for name, digest in want.items():
        path = folder / name
        if not path.is_file():
            raise RunFolderError(
                f"{path}: missing; the run folder is incomplete, train the model again"
            )
        if file_digest(path) != digest:
            raise RunFolderError(
                f"{path}: corrupt file (its checksum differs from the one in "
                f"run.json); train the model again or restore the file"
            )


# ----------------------------------------------------------------------------- data.npz
@dataclass
class RunData:
    """What a run folder keeps beside the model."""

    train: sp.csr_matrix  # (U, I) the training matrix
    user_ids: np.ndarray  # (U,) raw ids
    item_ids: np.ndarray  # (I,)
    history: sp.csr_matrix  # (U, I) 0/1, every user's positives in all parts
    known: sp.csr_matrix  # (U, I) 0/1, every item a user has in the data
    titles: np.ndarray | None  # (I,) or None
    has_history: bool  # False for runs saved before whole histories were kept
    #: every user's items in order (ordered data: the sequential models' histories)
    sequences: Sequences | None = None
    #: users whom a protocol filter left with no interaction, by step ("binarize",
    #: "k_core"): row indices; empty for folders written before they were kept
    dropped: dict[str, np.ndarray] = field(default_factory=dict)


def save_run_data(
    out: Path,
    train: sp.csr_matrix,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    positives: sp.csr_matrix | None,
    known: sp.csr_matrix | None,
    titles: np.ndarray | None,
    sequences: Sequences | None = None,
    dropped: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``data.npz``: the training matrix, raw ids and titles, and (when they add items
    to the pattern below them) each user's whole history (``history_*``: the positives of
    every part) and every item the user has in the data (``known_*``: ratings under the
    threshold too); with ``sequences``, every user's items in order (``seq_offsets``,
    ``seq_items``); ``dropped``: the users each protocol filter emptied (``dropped_STEP``)."""
    m = train
    arrays = {
        "indptr": m.indptr.astype(np.int64),
        "indices": m.indices.astype(np.int64),
        "data": m.data.astype(np.float32),
        "shape": np.array(m.shape, np.int64),
        "user_ids": user_ids,
        "item_ids": item_ids,
    }
    below = m  # each pattern is kept only when it adds items to the one below it
    for name, extra in (("history", positives), ("known", known)):
        if extra is None or extra.shape != m.shape:
            continue
        extra = sp.csr_matrix(extra)
        if extra.count_nonzero() > below.count_nonzero():
            arrays[f"{name}_indptr"] = extra.indptr.astype(np.int64)
            arrays[f"{name}_indices"] = extra.indices.astype(np.int32)
        below = extra
    if titles is not None:
        arrays["item_titles"] = titles.astype(str)
    if sequences is not None:
        arrays["seq_offsets"] = sequences.offsets.astype(np.int64)
        arrays["seq_items"] = sequences.items.astype(np.int32)
    for step, users in (dropped or {}).items():
        if len(users):
            arrays[f"dropped_{step}"] = np.asarray(users, np.int64)
    save_arrays(out / "data.npz", arrays)


def _sequences(data: dict[str, np.ndarray], shape: tuple[int, int], path: Path) -> Sequences | None:
    if "seq_offsets" not in data:
        return None
    offsets, items = data["seq_offsets"], data.get("seq_items")
    ok = (
        items is not None
        and offsets.dtype.kind in "iu"
        and items.dtype.kind in "iu"
        and offsets.shape == (shape[0] + 1,)
    )
    try:
        if not ok:
            raise ValueError
        assert items is not None
        return Sequences(offsets.astype(np.int64), items.astype(np.int64), shape[1])
    except ValueError:
        raise RunFolderError(
            f"{path}: seq_offsets/seq_items do not form {shape[0]} sequences over "
            f"{shape[1]} items; the file is damaged, train the model again"
        ) from None


def _pattern(
    data: dict[str, np.ndarray], part: str, shape: tuple[int, int], path: Path
) -> sp.csr_matrix | None:
    if f"{part}_indptr" not in data:
        return None
    indices = data[f"{part}_indices"].astype(np.int64)
    indptr = data[f"{part}_indptr"].astype(np.int64)
    _check_csr(indptr, indices, shape, f"{path}: {part}_")
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=shape)


def _check_csr(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int], where: str) -> None:
    ok = (
        indptr.ndim == 1
        and len(indptr) == shape[0] + 1
        and indices.ndim == 1
        and len(indptr) > 0
        and indptr[0] == 0
        and indptr[-1] == len(indices)
        and bool(np.all(np.diff(indptr) >= 0))
        and (len(indices) == 0 or (indices.min() >= 0 and indices.max() < shape[1]))
    )
    if not ok:
        raise RunFolderError(
            f"{where}indptr/indices do not form a {shape[0]} x {shape[1]} "
            f"matrix; the file is damaged, train the model again"
        )


def load_run_data(folder: Path) -> RunData:
    """Read and check ``data.npz`` of a run folder."""
    path = folder / "data.npz"
    if not path.is_file():
        raise RunFolderError(
            f"{path}: missing; the run folder is incomplete, train the model again"
        )
    data = load_arrays(path)
    missing = [
        k for k in ("indptr", "indices", "data", "shape", "user_ids", "item_ids") if k not in data
    ]
    if missing:
        raise RunFolderError(
            f"{path}: not a genrec run data file: array {missing[0]!r} is "
            f"missing; train the model again"
        )
    shape_arr = data["shape"]
    if shape_arr.shape != (2,) or shape_arr.dtype.kind not in "iu" or shape_arr.min() < 0:
        raise RunFolderError(f"{path}: 'shape' must hold two sizes; train the model again")
    shape = (int(shape_arr[0]), int(shape_arr[1]))
    indptr = data["indptr"].astype(np.int64)
    indices = data["indices"].astype(np.int64)
    values = data["data"]
    _check_csr(indptr, indices, shape, f"{path}: ")
    if values.shape != indices.shape or values.dtype.kind != "f":
        raise RunFolderError(
            f"{path}: 'data' must hold one float per stored entry; train the model again"
        )
    if len(data["user_ids"]) != shape[0] or len(data["item_ids"]) != shape[1]:
        raise RunFolderError(
            f"{path}: {len(data['user_ids'])} user ids and "
            f"{len(data['item_ids'])} item ids for a {shape[0]} x {shape[1]} "
            f"matrix; train the model again"
        )
    train = sp.csr_matrix((values.astype(np.float32), indices, indptr), shape=shape)
    history = _pattern(data, "history", shape, path)
    known = _pattern(data, "known", shape, path)
    titles = data.get("item_titles")
    if titles is not None and len(titles) != shape[1]:
        titles = None
    hist = history if history is not None else train
    dropped = {k[len("dropped_") :]: v for k, v in data.items() if k.startswith("dropped_")}
    for step, rows in dropped.items():
        if rows.ndim != 1 or rows.dtype.kind not in "iu" or not np.all(rows < shape[0]):
            raise RunFolderError(f"{path}: 'dropped_{step}' is not a list of user rows")
    return RunData(
        train=train,
        user_ids=data["user_ids"],
        item_ids=data["item_ids"],
        history=hist,
        known=known if known is not None else hist,
        titles=titles,
        has_history=history is not None or "history_indptr" in data,
        sequences=_sequences(data, shape, path),
        dropped=dropped,
    )


# ----------------------------------------------------------------------------- staging
RUN_OWNED = ("model.json", "weights.npz", "data.npz", LOG_NAME, "checkpoint")


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for the block (``out`` is created); a RunLockedError when another
    process holds it."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLockedError(
                    f"{out}: another training run is writing this folder; "
                    f"wait for it to finish, or choose another output "
                    f"folder"
                ) from None
            raise
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def commit(stage: Path, out: Path) -> None:
    """Put the complete run staged in ``stage`` (``out/.next``) in place of the one in
    ``out``: every file is moved over its old version (``os.replace``), files of the old run
    that the new one lacks are removed, and ``run.json`` comes last. A crash in between is
    completed by :func:`recover` (the staged ``run.json`` says ``done``)."""
    owned = read_record(stage, keys=("owned",)).get("owned", [])
    for name in RUN_OWNED:
        src, dst = stage / name, out / name
        if name in owned:
            if src.exists():  # (already moved when a crash interrupted an earlier commit)
                if dst.is_dir():
                    shutil.rmtree(dst)
                os.replace(src, dst)
        elif dst.is_dir():  # a file of the earlier run that this one does not have
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
    if (stage / "run.json").exists():
        os.replace(stage / "run.json", out / "run.json")
    shutil.rmtree(stage, ignore_errors=True)


def owned_files(stage: Path) -> list[str]:
    """The run files present in ``stage`` (recorded in run.json as ``owned`` for commit)."""
    return [name for name in RUN_OWNED if (stage / name).exists()]


def stage_copy(out: Path) -> Path:
    """A fresh staging folder holding a copy of the finished run in ``out`` (to train it
    further while the finished one stays usable)."""
    stage = staging_dir(out)
    if stage.exists():
        shutil.rmtree(stage)
    try:
        with write_errors(stage):
            stage.mkdir()
            for name in (*RUN_OWNED, "run.json"):
                if (out / name).exists():
                    _copy(out / name, stage / name)
    except BaseException:  # a full disk: no half copy is left to be taken for a run
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or a folder tree (``shutil.copytree`` would gather a full disk into a
    ``shutil.Error`` without its errno)."""
    if src.is_dir():
        dst.mkdir()
        for p in src.iterdir():
            _copy(p, dst / p.name)
    else:
        shutil.copy2(src, dst)


def recover(out: Path) -> bool:
    """Complete a replacement a crash interrupted (see :func:`commit`); True if one was."""
    stage = staging_dir(out)
    if read_status(stage) == "done":
        commit(stage, out)
        return True
    return False


def sweep_temp_files(folder: Path) -> list[str]:
    """Remove temp files (``.NAME.XXXX.tmp``) that killed writers left in ``folder`` and its
    checkpoint folder; returns their names."""
    gone = []
    for d in (folder, folder / "checkpoint"):
        if not d.is_dir():
            continue
        for p in d.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                gone.append(p.name)
    return gone


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Write ``run.json`` atomically, with the SHA-256 of its contents (``record_sha256``,
    checked by :func:`read_record`)."""
    atomic_write_json(folder / "run.json", seal_record(record))

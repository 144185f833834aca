"""The checkpoint format (``genrec-checkpoint/2``): one file, a header line and a payload.

The header is ``genrec-checkpoint/2 sha256:HEX`` and a newline, HEX the SHA-256 of the
payload; the payload is a ``torch.save`` dict of tensors, numbers and JSON strings, read
back with ``weights_only=True`` (no unpickling of objects) once its digest has been checked:
a flipped bit is a :class:`~genrec.errors.CorruptFileError`, never a run that trains on
damaged weights. Files of the ``genrec-checkpoint/1`` layout (the payload alone, written by
earlier versions) are read too, unchecked.

Keys of the payload: ``format``, ``train_config`` (JSON), ``fingerprint`` (JSON or None:
what the caller says identifies the run), ``data`` (users, items, entries of the training
matrix), ``module``, ``optimizers``, ``shuffle_generator``, ``noise_generator``, ``batches``
(the batches hook's own state, or None), ``epoch``, ``step``, ``best_metric``,
``best_epoch``, ``bad_evals``, ``stopped_early``, ``best_weights``, ``history`` (JSON),
``ema``, ``ema_updates``, ``world_size`` (the processes of a distributed run; absent: 1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from genrec.errors import ConfigError, CorruptFileError, DataError
from genrec.io import atomic_write_bytes, deferred_interrupts, jsonable

from .config import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "RESUME_FREE",
    "write_checkpoint",
    "read_checkpoint",
    "check_checkpoint",
    "fingerprint_json",
]

CHECKPOINT_FORMAT = "genrec-checkpoint/2"
OLD_FORMAT = "genrec-checkpoint/1"  # the payload alone, without a header (read, not written)
_DIGEST_TAG = b" sha256:"
LOG_NAME = "train_log.jsonl"
CHECKPOINT_NAME = "checkpoint/state.pt"
#: settings a resume may change (in the train config and, by last name, in the fingerprint)
RESUME_FREE = ("epochs", "patience", "device", "eval_batch_size")


def fingerprint_json(fingerprint: Mapping[str, Any] | None) -> str | None:
    """The fingerprint as stored: canonical JSON (sorted keys), or None."""
    return None if fingerprint is None else json.dumps(jsonable(dict(fingerprint)), sort_keys=True)


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write the checkpoint ``path`` atomically: the header line, then the payload. Ctrl-C
    and SIGTERM wait until it is written (an interrupt inside ``torch.save`` could surface
    as a serializer error instead of ``KeyboardInterrupt``)."""

    def write(f: Any) -> None:
        f.write(header + b"\n")
        f.write(data)

    with deferred_interrupts():
        buf = io.BytesIO()  # serialised first: a full disk is then an OSError of the write
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, buf)
        data = buf.getbuffer()
        digest = hashlib.sha256(data).hexdigest().encode()
        header = CHECKPOINT_FORMAT.encode() + _DIGEST_TAG + digest
        atomic_write_bytes(path, write)


def _unreadable(path: Path, why: str) -> DataError:
    return DataError(
        f"{path}: the checkpoint is unreadable ({why}); delete it to restart that run from "
        f"the beginning"
    )


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint's dict, its digest checked before anything is deserialised; a
    CorruptFileError when the digest differs, a DataError when unreadable or of another
    format."""
    with open(path, "rb") as f:
        first = f.readline(200)
        if first.startswith(b"PK"):  # a zip: the genrec-checkpoint/1 layout, no header
            f.seek(0)
            expect = OLD_FORMAT
        elif first.startswith(CHECKPOINT_FORMAT.encode() + _DIGEST_TAG) and first.endswith(b"\n"):
            want = first[len(CHECKPOINT_FORMAT) + len(_DIGEST_TAG) : -1].decode("ascii", "replace")
            start = f.tell()
            h = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            if h.hexdigest() != want:
                raise CorruptFileError(
                    f"{path}: corrupt file (its SHA-256 differs from the one in its header); "
                    f"the run cannot resume from it: delete it to train that run again from "
                    f"the beginning, or start over (force)"
                )
            f.seek(start)
            expect = CHECKPOINT_FORMAT
        else:
            raise _unreadable(path, f"no {CHECKPOINT_FORMAT} header")
        try:
            ck = torch.load(f, map_location=device, weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
            raise _unreadable(path, type(e).__name__) from None
    if not isinstance(ck, dict) or ck.get("format") != expect:
        fmt = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise DataError(f"{path}: unsupported checkpoint format {fmt!r}")
    return ck


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    if not d:
        out[prefix] = {}
    return out


def _first_difference(saved: dict[str, Any], mine: dict[str, Any]) -> str | None:
    a, b = _flat(saved), _flat(mine)
    for key in sorted(set(a) | set(b)):
        if key.rstrip(".").rsplit(".", 1)[-1] in RESUME_FREE:
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            return key.rstrip(".")
    return None


def check_checkpoint(
    path: Path,
    ck: dict[str, Any],
    config: TrainConfig,
    data: list[int],
    fingerprint: Mapping[str, Any] | None,
    world: int = 1,
) -> None:
    """Refuse a checkpoint of another run: other train settings, data shape, fingerprint or
    number of processes.

    Keys in :data:`RESUME_FREE` may differ (``--set epochs=`` trains a run further).
    """
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    saved = json.loads(ck["train_config"])
    mine = dataclasses.asdict(config)
    differ = [k for k in mine if k not in RESUME_FREE and saved.get(k, fields[k]) != mine[k]]
    if differ:
        raise ConfigError(
            f"{path}: the checkpoint was trained with different "
            f"{', '.join(differ)}; resume with the same settings"
        )
    saved_world = int(ck.get("world_size", 1))
    if saved_world != world:
        raise ConfigError(
            f"{path}: the checkpoint was written by a run of {saved_world} process"
            f"{'es' if saved_world != 1 else ''}, this one has {world}; resume with "
            f"{saved_world} (each process's share of every global batch, and so the rest of "
            f"the run, depends on the number)"
        )
    saved_data = ck.get("data")
    if saved_data is not None and list(saved_data) != data:
        u, i, n = saved_data
        raise DataError(
            f"{path}: the checkpoint was trained on {u} users x {i} items "
            f"({n} entries), this data has {data[0]} x {data[1]} ({data[2]}); "
            f"resume with the same training data"
        )
    if fingerprint is None:
        return
    stored = ck.get("fingerprint")
    if stored is None:
        raise ConfigError(
            f"{path}: the checkpoint has no run fingerprint (written by an "
            f"older genrec), so it cannot be matched to this run; start over "
            f"(force)"
        )
    key = _first_difference(json.loads(stored), json.loads(str(fingerprint_json(fingerprint))))
    if key is not None:
        raise ConfigError(
            f"{path}: the checkpoint belongs to another run (its {key} differs "
            f"from this run's); resume with the same settings, or start over "
            f"(force)"
        )

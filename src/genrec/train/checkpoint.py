"""The checkpoint format: one ``torch.save`` file of tensors, numbers and JSON strings,
read back with ``weights_only=True`` (no unpickling of objects).

Keys: ``format``, ``train_config`` (JSON), ``fingerprint`` (JSON or None: what the caller
says identifies the run), ``data`` (users, items, entries of the training matrix),
``module``, ``optimizers``, ``shuffle_generator``, ``noise_generator``, ``batches`` (the
batches hook's own state, or None), ``epoch``, ``step``, ``best_metric``, ``best_epoch``,
``bad_evals``, ``stopped_early``, ``best_weights``, ``history`` (JSON), ``ema``,
``ema_updates``.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from genrec.errors import ConfigError, DataError
from genrec.io import atomic_write_bytes, jsonable

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

CHECKPOINT_FORMAT = "genrec-checkpoint/1"
LOG_NAME = "train_log.jsonl"
CHECKPOINT_NAME = "checkpoint/state.pt"
#: settings a resume may change (in the train config and, by last name, in the fingerprint)
RESUME_FREE = ("epochs", "patience", "device", "eval_batch_size")


def fingerprint_json(fingerprint: Mapping[str, Any] | None) -> str | None:
    """The fingerprint as stored: canonical JSON (sorted keys), or None."""
    return None if fingerprint is None else json.dumps(jsonable(dict(fingerprint)), sort_keys=True)


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **payload}, f))


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint's dict; a DataError when unreadable or of another format."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        raise DataError(
            f"{path}: the checkpoint is unreadable ({type(e).__name__}); delete "
            f"it to restart that run from the beginning"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
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
) -> None:
    """Refuse a checkpoint of another run: other train settings, data shape or fingerprint.

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

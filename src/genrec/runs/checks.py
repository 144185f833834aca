"""Checks a run makes before it loads data, trains or writes anything.

Each raises a one-line :class:`~genrec.errors.GenrecError`: what would otherwise fail only
after the run folder is written or after training.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from genrec.errors import ConfigError, MemoryLimitError
from genrec.evaluate import RankingTask, RatingTask, ranking_metric_names
from genrec.models import MODELS
from genrec.models.base import Recommender
from genrec.protocols import PROTOCOLS, ProtocolData
from genrec.runs import folder as rf

__all__ = [
    "check_out_dir",
    "check_protocol",
    "preflight",
    "memory_advice",
    "MIN_VALID_USERS",
    "SettingError",
]

log = logging.getLogger("genrec.runs")

MIN_VALID_USERS = 20  # fewer users with validation items: a warning that selection is noisy


class SettingError(ConfigError):
    """A ConfigError about one run setting; the message names it as ``{setting}``, which a
    caller may spell in its own terms (:meth:`render`: a command-line flag)."""

    def __init__(self, template: str, setting: str):
        self.template = template
        self.setting = setting
        super().__init__(template.format(setting=setting))

    def render(self, name: str) -> str:
        return self.template.format(setting=name)


def check_out_dir(out: Path, force: bool, say: bool = True) -> None:
    """The run folder ``out`` can take a new run: it is (or can be made) a writable folder,
    holds no unfinished run (unless ``force``), and is not a folder of other files (unless
    ``force``). ``say``: log that a finished model there will be replaced (once per run)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder; choose a folder for the run")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{out}: cannot write in this folder (permission denied); "
                f"choose a folder you can write to"
            )
    else:
        parent = next((a for a in out.parents if a.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{out}: cannot create this folder in {parent} (not a writable "
                f"folder); choose a folder you can write to"
            )
        return
    stage = rf.staging_dir(out)
    staged = rf.read_status(stage)
    if staged == "running" and not force:
        raise rf.UnfinishedRunError(
            f"{out} holds an unfinished run: resume it, or start over (force)", out
        )
    status = rf.read_status(out)
    if status == "running" and not force:
        raise rf.UnfinishedRunError(
            f"{out} holds an unfinished run: resume it, or start over (force)", out
        )
    if status is None and not force:
        others = [p.name for p in out.iterdir() if p.name not in (".lock", ".next")]
        if others:
            shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
            raise ConfigError(
                f"{out} is not empty and holds no genrec run ({shown}); choose "
                f"an empty or new folder, or start over there anyway (force)"
            )
    if status == "done" and say:
        log.info("replacing the trained model in %s once the new one is complete", out)


def _refusal(model: Recommender, protocol: str, implicit: bool) -> str | None:
    """Why ``model`` (under its config) cannot be trained and evaluated under ``protocol`` on
    data that is ``implicit`` or explicit; None when it can. The same rules as the model's
    ``check_task`` / ``check_valid_task`` and the protocol's, asked before any is built."""
    caps, selects = model.capabilities, model.selects_on()
    if caps.sequential and protocol != "seq-loo":
        return (
            f"model {model.name} reads each user's items in order, and protocol "
            f"{protocol} scores item sets"
        )
    if protocol == "rating":
        if implicit:
            return (
                "the data set is implicit (no rating column, or one value throughout), "
                "and protocol rating scores held-out ratings"
            )
        if not caps.predicts_ratings:
            return (
                f"model {model.name} does not predict ratings, and protocol rating "
                f"scores held-out ratings"
            )
        if selects == "ranking":
            return (
                f"model {model.name} selects on ranked held-out items under this "
                f"config, and protocol rating holds out ratings"
            )
        return None
    if selects == "rating":
        return (
            f"model {model.name} selects on held-out ratings (RMSE), and protocol "
            f"{protocol} holds out items to rank"
        )
    if protocol == "strong" and not caps.folds_in:
        return (
            f"model {model.name} cannot score users unseen in training, and protocol "
            f"strong evaluates such users"
        )
    return None


def _models_for(protocol: str, implicit: bool, but: str) -> list[str]:
    """The registered models (default configs) that work under ``protocol``, ``but`` left
    out."""
    return [
        name
        for name, cls in MODELS.items()
        if name != but and _refusal(cls(), protocol, implicit) is None
    ]


def _shown(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_protocol(
    cls: type[Recommender], configs: list[Any], protocol: str, implicit: bool, data: str
) -> None:
    """A ConfigError before the protocol is built unless the model (under each of
    ``configs``) can be trained and evaluated under ``protocol`` on the data set ``data``
    (``implicit`` or explicit). The message says what works: the other protocols this model
    can use on this data, and the models that can use this protocol (or, when the data
    allows neither, the models and protocols that fit the data)."""
    for cfg in configs:
        model = cls(cfg)
        why = _refusal(model, protocol, implicit)
        if why is None:
            continue
        others = [p for p in PROTOCOLS if p != protocol and _refusal(model, p, implicit) is None]
        alts = _models_for(protocol, implicit, cls.name)
        fixes = []
        if others:
            fixes.append(f"use protocol {_either(others)} with {cls.name}")
        if alts:
            fixes.append(f"use a model such as {_shown(alts)} under protocol {protocol}")
        if not fixes:  # nothing fits this protocol or this model: what fits the data
            fits = [p for p in PROTOCOLS if _models_for(p, implicit, cls.name)]
            every = set.intersection(*(set(_models_for(p, implicit, cls.name)) for p in fits))
            names = [n for n in MODELS if n in every]
            fixes.append(
                f"for {'implicit' if implicit else 'this'} data use a model such as "
                f"{_shown(names)} under protocol {_either(fits)}"
            )
        raise ConfigError(f"{data}: {why}; {', or '.join(fixes)}")


def check_refit(pdata: ProtocolData) -> None:
    """A refit needs validation data it can add to training: the rating protocol's held-out
    slice, or validation interactions of training users."""
    valid = pdata.valid
    if pdata.train_full is None and (not isinstance(valid, RankingTask) or valid.users is None):
        raise ConfigError(
            f"run.refit: protocol {pdata.config.name} keeps its validation users "
            f"apart from training, so there is nothing to add; drop refit"
        )


def preflight(
    cls: type[Recommender],
    configs: list[Any],
    pdata: ProtocolData,
    select_metric: str | None,
    select_default: bool,
    refit: bool = False,
) -> None:
    """The model (under any of ``configs``) can select on and be evaluated under the
    protocol, there is something to select on, and the selection metric is computed."""
    for task in (pdata.valid, pdata.test):
        cls.check_task(task)
    for cfg in configs:
        cls(cfg).check_valid_task(pdata.valid)
    if refit:
        check_refit(pdata)
    valid = pdata.valid
    chooses = cls.capabilities.trainer or select_metric is not None or refit
    if isinstance(valid, RankingTask) and chooses:  # the epoch or the grid is picked on it
        if valid.truth.nnz == 0:
            use = (
                "the grid selects" if select_metric is not None else (f"{cls.name} picks its epoch")
            )
            raise ConfigError(
                f"the validation part of protocol {pdata.config.name} holds no "
                f"interactions ({valid.truth.shape[0]} users, "
                f"{pdata.train.nnz} training interactions), and {use} on it; use "
                f"more data (users need more interactions for this split) or "
                f"another protocol (loo or strong)"
            )
        n_users = int((np.diff(valid.truth.indptr) > 0).sum())
        if n_users < MIN_VALID_USERS:
            log.warning(
                "the validation part holds %d interactions of %d users: the choice "
                "made on it (best epoch, grid) rests on very few users",
                valid.truth.nnz,
                n_users,
            )
    test = pdata.test
    if isinstance(test, RankingTask) and test.truth.nnz == 0:
        raise ConfigError(
            f"the test part of protocol {pdata.config.name} holds no "
            f"interactions ({test.n_users} users), so no metric can be "
            f"computed; use more data or another protocol"
        )
    if isinstance(test, RatingTask) and len(test.ratings) == 0:
        raise ConfigError(
            f"the test part of protocol {pdata.config.name} holds no ratings; use more data"
        )
    if select_metric is None:
        return
    names = (
        ["rmse", "mae"] if isinstance(pdata.valid, RatingTask) else ranking_metric_names(pdata.ks)
    )
    if select_metric not in names:
        hint = " (the default)" if select_default else ""
        raise SettingError(
            f"{{setting}} {select_metric!r}{hint} is not among the validation "
            f"metrics ({', '.join(names)}); choose one of them",
            "select",
        )


def memory_advice(error: MemoryLimitError, pdata: ProtocolData) -> SettingError:
    """``error`` (a fit that needs more memory than allowed) with the run setting that helps:
    the ``protocol.item_k`` that keeps at most ``error.max_items`` items of this data (the
    count of each item's interactions over all parts, as k-core counts them)."""
    X = pdata.positives if pdata.positives is not None else pdata.train.matrix
    counts = np.sort(np.bincount(X.indices, minlength=X.shape[1]))[::-1]  # (I,) descending
    base = str(error).split("; filter rare items")[0]
    if error.max_items < 1 or error.max_items >= len(counts):
        return SettingError(f"{base}; use a factorized model", "protocol.item_k")
    k = int(counts[error.max_items]) + 1  # the items counted k or more times fit
    kept = int((counts >= k).sum())
    return SettingError(
        f"{base}; keep the items with at least {k} interactions ({{setting}}={k} leaves "
        f"{kept:,} of {len(counts):,} items), or use a factorized model",
        "protocol.item_k",
    )

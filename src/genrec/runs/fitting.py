"""The pieces of a run that fit and score one model (used by :mod:`genrec.runs.runner`).

:func:`fit_model` fits a model with what its class asks for (the trainer's run folder and
resume flag, side features); :func:`evaluate_task` scores it on a validation or test task;
:func:`fingerprint` is what a checkpoint must match to be resumed; :func:`refit_data` and
:func:`refit_config` prepare the refit of a chosen configuration on training + validation
data; :func:`mean_sd` summarises the seeds of one configuration.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from genrec.config import build_config, config_to_dict
from genrec.data import Dataset, Sequences
from genrec.errors import ConfigError
from genrec.evaluate import (
    RankingTask,
    RatingTask,
    evaluate_ranking,
    evaluate_rating,
    evaluate_sampled,
)
from genrec.models.base import Recommender
from genrec.protocols import ProtocolConfig, ProtocolData
from genrec.runs.checks import check_refit
from genrec.runs.spec import RunSpec
from genrec.train import FitContext

if TYPE_CHECKING:
    from pathlib import Path

    from genrec.runs.runner import RunHooks

__all__ = [
    "fingerprint",
    "fit_model",
    "evaluate_task",
    "refit_data",
    "refit_sequences",
    "sampled_part",
    "refit_config",
    "mean_sd",
    "lower_is_better",
]

log = logging.getLogger("genrec.runs")

_FREE = ("epochs", "patience", "device", "eval_batch_size")  # not part of the fingerprint


def lower_is_better(metric: str) -> bool:
    return metric in ("rmse", "mae")


def fingerprint(
    spec_model: str,
    config: Any,
    protocol: ProtocolConfig,
    train: sp.csr_matrix,
    pdata: ProtocolData | None = None,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the model class, its full config (less
    the settings a resume may change), the protocol and the training data (with the order
    of the training sequences, where ``pdata`` has them)."""
    cfg = config_to_dict(config)
    for k in _FREE:
        cfg.pop(k, None)
        if isinstance(cfg.get("train"), dict):
            cfg["train"].pop(k, None)
    for where in (cfg, cfg.get("train")):  # the default noise: as runs from before it had
        if isinstance(where, dict) and where.get("noise") == "auto":
            where.pop("noise")
    h = hashlib.sha256()
    for a in (
        train.indptr.astype(np.int64),
        train.indices.astype(np.int64),
        train.data.astype(np.float32),
    ):
        h.update(np.ascontiguousarray(a).tobytes())
    seqs = None if pdata is None else pdata.train_sequences
    if seqs is not None:
        h.update(seqs.offsets.tobytes())
        h.update(seqs.items.tobytes())
    return {
        "model": spec_model,
        "config": cfg,
        "protocol": config_to_dict(protocol),
        "data": {"shape": list(train.shape), "nnz": int(train.nnz), "sha256": h.hexdigest()},
    }


def fit_model(
    model: Recommender,
    X: sp.csr_matrix,
    valid: Any,
    ds: Dataset | None,
    run_dir: Path | None = None,
    resume: bool = False,
    fp: dict[str, Any] | None = None,
    hooks: RunHooks | None = None,
    sequences: Sequences | None = None,
) -> Recommender:
    """Fit ``model`` with what its class asks for: the trainer's run folder and resume flag,
    side features; a sequential model fits on ``sequences`` instead of ``X``."""
    side: Any = None
    if (
        type(model).capabilities.side_features
        and getattr(model.config, "use_side_features", True)
        and ds is not None
    ):
        from genrec.data.features import side_features  # the FM's side information

        side = side_features(ds)
    if type(model).capabilities.item_features and ds is not None:
        from genrec.runs.item_features import item_features  # items coded from content

        side = item_features(model.config, ds, X)
    trained = type(model).capabilities.trainer
    context = FitContext(
        run_dir=run_dir if trained else None,
        resume=resume and trained,
        callbacks=tuple(hooks.callbacks) if hooks else (),
        fingerprint=fp if trained else None,
        side=side,
    )
    fit: Callable[..., Recommender] = model.fit  # a trainable or side-feature model's fit
    if type(model).capabilities.sequential:
        if sequences is None:
            raise ConfigError(
                f"model {model.name} trains on each user's items in order, and this "
                f"protocol has no order; use protocol seq-loo"
            )
        return fit(sequences, valid=valid, context=context)
    return fit(X, valid=valid, context=context)  # takes the context


def evaluate_task(
    model: Recommender,
    task: RankingTask | RatingTask,
    ks: Sequence[int],
    hooks: RunHooks | None = None,
    part: str = "test",
) -> dict[str, Any]:
    type(model).check_task(task)
    if isinstance(task, RatingTask):
        return evaluate_rating(model, task).to_dict()
    on_batch = None
    if hooks is not None and hooks.on_evaluate is not None:
        cb = hooks.on_evaluate

        def on_batch(done: int, total: int) -> None:
            cb(part, done, total)

    t0 = time.perf_counter()
    res = evaluate_ranking(model, task, ks=ks, on_batch=on_batch).to_dict()
    empty = res.get("n_empty") or 0
    log.info(
        "evaluated %s: %d users (%d averaged%s) in %.1f s",
        part,
        res["n_users"],
        res["n_evaluated"],
        f"; {empty} with no held-out items, each counted as 0" if empty else "",
        time.perf_counter() - t0,
    )
    return res


def sampled_part(model: Recommender, pdata: ProtocolData, part: str) -> dict[str, Any] | None:
    """The sampled evaluation of ``part`` ("valid" or "test") when the protocol asks for
    one (``protocol.sampled_negatives`` > 0), else None."""
    cfg = pdata.config
    task = getattr(pdata, part)
    if cfg.sampled_negatives <= 0 or not isinstance(task, RankingTask) or task.users is None:
        return None
    train = pdata.train.matrix
    res = evaluate_sampled(
        model,
        task,
        cfg.sampled_negatives,
        cfg.sampler,
        ks=pdata.ks,
        seed=cfg.seed,
        popularity=np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64),
        train=sp.csr_matrix(train[task.users]),
    )
    log.info(
        "sampled evaluation of %s (%d negatives, %s): %s; %s",
        part,
        cfg.sampled_negatives,
        cfg.sampler,
        ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items()),
        res["note"],
    )
    return res


def refit_data(pdata: ProtocolData) -> sp.csr_matrix:
    """Training + validation interactions, for a refit of the chosen configuration."""
    if pdata.train_full is not None:
        return pdata.train_full.matrix
    check_refit(pdata)
    valid = pdata.valid
    assert isinstance(valid, RankingTask) and valid.users is not None
    X = pdata.train.matrix.tolil(copy=True)
    t = valid.truth.tocoo()
    X[valid.users[t.row], t.col] = 1.0
    return sp.csr_matrix(X, dtype=np.float32)


def refit_sequences(pdata: ProtocolData) -> Sequences | None:
    """The training sequences with each evaluated user's validation item appended (the
    refit of a sequential model under seq-loo); None without training sequences."""
    train = pdata.train_sequences
    if train is None:
        return None
    valid = pdata.valid
    assert isinstance(valid, RankingTask) and valid.users is not None
    times = None
    whole = pdata.sequences  # the validation item is each evaluated user's second last
    if whole is not None and whole.times is not None:
        times = whole.times[whole.offsets[1:][valid.users] - 2]
    return train.append(valid.users, valid.truth.indices[valid.truth.indptr[:-1]], times)


def refit_config(spec: RunSpec, config: Any, model: Recommender) -> Any:
    """The chosen config for a refit: its best epoch as the number of epochs, no early
    stopping (there is no validation left)."""
    best = getattr(model, "best_epoch_", None)
    values: dict[str, Any] = {}
    fields = config_to_dict(config)
    train = fields.get("train")
    target: dict[str, Any] = train if isinstance(train, dict) else fields
    if best and "epochs" in target:
        values["epochs"] = int(best)
    if "patience" in target and isinstance(train, dict):
        values["patience"] = None
    if not values:
        return config
    nested = {"train": values} if isinstance(train, dict) else values
    return build_config(type(config), nested, base=config, where=spec.model)


def mean_sd(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for k in rows[0]:
        vals = [float(r[k]) for r in rows if r.get(k) is not None]
        if vals:
            out[k] = {
                "mean": float(np.mean(vals)),
                "sd": float(statistics.stdev(vals)) if len(vals) > 1 else 0.0,
            }
    return out

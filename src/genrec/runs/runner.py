"""The experiment runner: train, resume, load and evaluate run folders.

``train_run(spec)`` loads the data set, builds the protocol, checks everything that could
otherwise fail only after training, fits each configuration of the grid (once per seed),
selects on validation, optionally refits the chosen configuration on training + validation
data, evaluates it on test, and saves the run folder (see :mod:`genrec.runs.folder`). The
command line's ``genrec train`` is a thin layer over it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrec import __version__
from genrec.config import build_config, config_to_dict
from genrec.data import DataOptions, Dataset, load_dataset
from genrec.errors import ConfigError, CorruptFileError, DataError, MemoryLimitError
from genrec.evaluate import RankingTask
from genrec.models.base import Recommender
from genrec.protocols import ProtocolConfig, ProtocolData, build_protocol
from genrec.runs import folder as rf
from genrec.runs.checks import SettingError, check_out_dir, check_protocol, memory_advice, preflight
from genrec.runs.distributed import announce_fit
from genrec.runs.fitting import (
    evaluate_task,
    fingerprint,
    fit_model,
    lower_is_better,
    mean_sd,
    refit_config,
    refit_data,
    refit_sequences,
    sampled_part,
)
from genrec.runs.load import Run, load_run
from genrec.runs.spec import RunSpec

__all__ = [
    "RunHooks",
    "RunResult",
    "RunInterrupted",
    "train_run",
    "resume_run",
    "evaluate_run",
    "fit_model",
    "RESUME_SETTINGS",
]

log = logging.getLogger("genrec.runs")

RESUME_SETTINGS = ("epochs", "patience")  # train settings a resume may change


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; ``resumable`` when its staged state can be
    continued by :func:`resume_run` (``out``)."""

    def __init__(self, out: Path, resumable: bool):
        super().__init__(str(out))
        self.out = out
        self.resumable = resumable


@dataclass
class RunHooks:
    """Progress reporting for long work (all optional)."""

    on_download: Callable[[int, int | None], None] | None = None  # bytes done, total
    on_evaluate: Callable[[str, int, int], None] | None = None  # part, users done, total
    callbacks: Sequence[Any] = ()  # handed to the trainer (per batch / epoch progress)
    #: rank 0 of a distributed run (genrec.train.distributed.DataParallel): each fit is
    #: announced to the other ranks (genrec.runs.distributed.serve)
    group: Any = None


@dataclass
class RunResult:
    """What a run did (also written, JSON-ready, into ``run.json``)."""

    out: Path
    model: Recommender
    record: dict[str, Any]
    valid: dict[str, Any]
    test: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fit_seconds(self) -> float:
        """Seconds of fitting: the chosen configuration's fit, plus its refit if any."""
        return float(self.record.get("fit_seconds", 0.0))

    @property
    def refit_seconds(self) -> float | None:
        """Seconds of the refit on training + validation data alone (None: no refit)."""
        value = self.record.get("refit_seconds")
        return None if value is None else float(value)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- train
def _describe(spec: RunSpec, ds: Dataset, pdata: ProtocolData) -> None:
    test = (
        f", {pdata.test.n_users} test users"
        if isinstance(pdata.test, RankingTask)
        else f", {len(pdata.test.ratings)} test ratings"
    )
    log.info(
        "%s on %s (%s): %d users x %d items, %d training interactions%s",
        spec.model,
        ds.name,
        spec.protocol.name,
        pdata.train.n_users,
        pdata.train.n_items,
        pdata.train.nnz,
        test,
    )


def _new_record(spec: RunSpec, ds: Dataset, started: str | None = None) -> dict[str, Any]:
    path = Path(spec.dataset)
    return {
        "format": rf.RUN_FORMAT,
        "status": "running",
        "genrec_version": __version__,
        "model": spec.model,
        "dataset": str(path.resolve()) if path.exists() else spec.dataset,
        "dataset_name": ds.name,
        "config": config_to_dict(spec.config),
        "protocol": config_to_dict(spec.protocol),
        "data": config_to_dict(spec.data),
        "started": started or _now(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "grid": {k: list(v) for k, v in spec.grid.items()} or None,
        "seeds": list(spec.seeds) or None,
        "refit": spec.refit,
        "keep_checkpoint": spec.keep_checkpoint,
    }


def _save_data(stage: Path, pdata: ProtocolData, ds: Dataset) -> None:
    titles = ds.titles()
    rf.save_run_data(
        stage,
        pdata.train.matrix,
        pdata.train.user_ids,
        pdata.train.item_ids,
        pdata.positives,
        ds.interactions.matrix,
        titles,
        pdata.sequences,
        {f.step: f.users for f in pdata.filters},
    )


def default_out(spec: RunSpec, ds_name: str) -> Path:
    return spec.out if spec.out is not None else Path("runs") / f"{spec.model}-{ds_name}"


def train_run(spec: RunSpec, hooks: RunHooks | None = None) -> RunResult:
    """Train, select, evaluate and save the run ``spec`` describes (see the module
    docstring). A finished model already in the output folder is replaced only once the new
    run is complete; a failure leaves it as it was."""
    if spec.out is not None:
        check_out_dir(spec.out, spec.force)
    ds = load_dataset(
        spec.dataset, spec.data, progress=hooks.on_download if hooks is not None else None
    )
    configs = spec.configs()
    check_protocol(
        spec.model_class, [c for _, c in configs], spec.protocol.name, ds.implicit, ds.name
    )
    pdata = build_protocol(ds, spec.protocol)
    select = spec.select or ("rmse" if pdata.kind == "rating" else "ndcg@20")
    preflight(
        spec.model_class,
        [c for _, c in configs],
        pdata,
        select if (len(configs) > 1 or spec.seeds) else None,
        spec.select is None,
        refit=spec.refit,
    )
    out = default_out(spec, ds.name)
    if spec.out is None:
        check_out_dir(out, spec.force)
    with rf.run_lock(out):
        rf.recover(out)
        check_out_dir(out, spec.force, say=False)  # again, under the lock (said above)
        stage = rf.staging_dir(out)
        if stage.exists():
            shutil.rmtree(stage)  # a new run starts from nothing (no stale checkpoint)
        stage.mkdir(parents=True)
        record = _new_record(spec, ds)
        _describe(spec, ds, pdata)
        return _run_in(
            stage, out, spec, ds, pdata, record, select, configs, resume=False, hooks=hooks
        )


def _run_in(
    stage: Path,
    out: Path,
    spec: RunSpec,
    ds: Dataset,
    pdata: ProtocolData,
    record: dict[str, Any],
    select: str,
    configs: list[tuple[dict, Any]],
    resume: bool,
    hooks: RunHooks | None,
) -> RunResult:
    """Fit in ``stage``, then put the finished run in ``out``. Interrupted: the staged run
    stays, resumable; failed otherwise: it is marked failed (a new run replaces it)."""
    rf.sweep_temp_files(stage)
    rf.write_record(stage, record)
    _save_data(stage, pdata, ds)  # before training: a failure here costs no training
    resumable = len(configs) == 1 and not spec.seeds
    try:
        result = _fit_select(stage, spec, ds, pdata, select, configs, resumable, resume, hooks)
    except KeyboardInterrupt:
        if not resumable:
            shutil.rmtree(stage, ignore_errors=True)
        raise RunInterrupted(out, resumable) from None
    except BaseException as e:
        if resumable and (stage / rf.CHECKPOINT_NAME).is_file() and isinstance(e, OSError):
            raise  # a disk that filled up: the checkpointed epochs can still be resumed
        if resume and isinstance(e, CorruptFileError):
            raise  # a damaged checkpoint: kept as it is, to delete (or restore) and resume
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        try:
            rf.write_record(stage, record)
        except OSError:
            shutil.rmtree(stage, ignore_errors=True)
        if isinstance(e, MemoryLimitError):  # the model knows the catalogue, the run the filter
            raise memory_advice(e, pdata) from None
        raise
    model, cfg, fit_s, refit_s, valid, trials, seed_stats, chosen = result
    test = evaluate_task(model, pdata.test, pdata.ks, hooks, "test")
    sampled = sampled_part(model, pdata, "test")
    if sampled is not None:
        test = {**test, "sampled": sampled}
    if seed_stats is not None:
        test = {**test, "seeds": seed_stats["test"]}
        valid = {**valid, "seeds": seed_stats["valid"]}
    model.save(stage)
    # finished: the weights are saved, so the checkpoint goes (unless run.keep_checkpoint)
    # when the run is committed, not before: until run.json says done it can still resume
    checkpoint = (stage / rf.CHECKPOINT_NAME).parent
    owned = [n for n in rf.owned_files(stage) if spec.keep_checkpoint or n != checkpoint.name]
    record["keep_checkpoint"] = spec.keep_checkpoint
    record["processes"] = 1 if hooks is None or hooks.group is None else hooks.group.world
    record.update(
        {
            "status": "done",
            "config": config_to_dict(cfg),
            "fit_seconds": fit_s,
            "refit_seconds": refit_s,
            "finished": _now(),
            "results": {"valid": valid, "test": test},
            "protocol_description": pdata.describe(),
            "select_metric": select if (len(configs) > 1 or spec.seeds) else None,
            "trials": trials if len(trials) > 1 else None,
            "chosen": chosen,
            "fingerprint": fingerprint(spec.model, cfg, spec.protocol, pdata.train.matrix, pdata),
            "files": rf.file_digests(stage),
            "owned": owned,
        }
    )
    rf.write_record(stage, record)
    if stage != out:
        rf.commit(stage, out)  # files not owned (the checkpoint) go with the staging folder
    elif not spec.keep_checkpoint and checkpoint.is_dir():  # a genrec-run/1 run, in place
        shutil.rmtree(checkpoint)
    return RunResult(out, model, record, valid, test, trials)


def _fit_select(
    stage: Path,
    spec: RunSpec,
    ds: Dataset,
    pdata: ProtocolData,
    select: str,
    configs: list[tuple[dict, Any]],
    resumable: bool,
    resume: bool,
    hooks: RunHooks | None,
) -> tuple:
    cls = spec.model_class
    seeds: Sequence[int | None] = spec.seeds or (None,)
    trials: list[dict[str, Any]] = []
    best: tuple | None = None
    lower = lower_is_better(select)
    for params, cfg in configs:
        runs = []
        for seed in seeds:
            c = cfg if seed is None else spec.with_seed(cfg, seed)
            model = cls(c)
            t0 = time.perf_counter()
            fp = fingerprint(spec.model, c, spec.protocol, pdata.train.matrix, pdata)
            if hooks is not None and hooks.group is not None:
                announce_fit(hooks.group, spec, c, "train", stage if resumable else None, resume)
            fit_model(
                model,
                pdata.train.matrix,
                pdata.valid,
                ds,
                stage if resumable else None,
                resume,
                fp,
                hooks,
                sequences=pdata.train_sequences,
            )
            fit_s = time.perf_counter() - t0
            valid = evaluate_task(model, pdata.valid, pdata.ks, hooks, "valid")
            runs.append((seed, model, c, fit_s, valid))
        scores = [r[4]["metrics"].get(select, float("nan")) for r in runs]
        mean = float(np.mean(scores))
        sd = float(statistics.stdev(scores)) if len(scores) > 1 else 0.0
        trial = {"params": params, "valid": runs[0][4]["metrics"], "fit_seconds": runs[0][3]}
        if spec.seeds:
            trial.update({"seeds": list(spec.seeds), "select_mean": mean, "select_sd": sd})
        trials.append(trial)
        if params or spec.seeds:
            log.info(
                "%s: valid %s = %.4f%s",
                params or "config",
                select,
                mean,
                f" ± {sd:.4f} over {len(scores)} seeds" if spec.seeds else "",
            )
        if best is None or (mean < best[0] if lower else mean > best[0]):
            best = (mean, runs, params)
    assert best is not None
    _, runs, chosen = best
    seed_stats = None
    if spec.seeds:
        tests = [evaluate_task(r[1], pdata.test, pdata.ks, None, "test")["metrics"] for r in runs]
        seed_stats = {"valid": mean_sd([r[4]["metrics"] for r in runs]), "test": mean_sd(tests)}
    seed, model, cfg, fit_s, valid = runs[0]
    refit_s = None
    if spec.refit:
        cfg = refit_config(spec, cfg, model)
        model = cls(cfg)
        t0 = time.perf_counter()
        if hooks is not None and hooks.group is not None:
            announce_fit(hooks.group, spec, cfg, "refit", None, False)
        fit_model(
            model,
            refit_data(pdata),
            None,
            ds,
            None,
            False,
            None,
            hooks,
            sequences=refit_sequences(pdata),
        )
        refit_s = time.perf_counter() - t0
        fit_s += refit_s
        log.info("refitted the chosen configuration on training + validation data")
    return model, cfg, fit_s, refit_s, valid, trials, seed_stats, chosen


# ----------------------------------------------------------------------------- resume
def resume_run(
    out: str | Path,
    *,
    epochs: int | None = None,
    patience: int | None = None,
    device: str | None = None,
    keep_checkpoint: bool | None = None,
    hooks: RunHooks | None = None,
) -> RunResult | None:
    """Continue the interrupted run kept for ``out`` (or train a finished one further with a
    larger ``epochs``, when it kept its checkpoint); None when there is nothing to do (a
    finished run, no new settings). ``keep_checkpoint`` None keeps the run's own setting."""
    out = Path(out)
    more = {k: v for k, v in (("epochs", epochs), ("patience", patience)) if v is not None}
    with rf.run_lock(out):
        rf.recover(out)
        stage = rf.staging_dir(out)
        if (stage / "run.json").is_file():  # a damaged record is refused, not passed over
            rf.read_record(stage, keys=(), advice="it cannot be resumed: start over (force)")
        if rf.read_status(stage) == "running":
            where = stage
        elif rf.read_status(out) == "running":
            where = out  # a run folder written before runs were staged: resumed in place
        elif rf.read_status(out) == "done":
            where = out
        elif rf.read_status(stage) == "failed":
            rec = rf.read_record(stage, keys=())
            raise ConfigError(
                f"{out}: the last run failed ({rec.get('error', 'unknown')}); "
                f"it cannot be resumed, train it again"
            )
        else:
            rf.read_record(out, keys=("model", "status"), advice="start the run again")
            raise rf.RunFolderError(f"{out}: no run to resume here")
        prev = rf.read_record(
            where, keys=("model", "dataset", "config"), advice="start the run again"
        )
        if prev.get("grid") and prev.get("status") != "done":
            raise SettingError(
                f"{out} holds an interrupted {{setting}} search, which cannot "
                f"be resumed; run the search again from the start (force)",
                "grid",
            )
        cls_cfg = prev["config"]
        train_cfg = cls_cfg.get("train") if isinstance(cls_cfg.get("train"), dict) else cls_cfg
        absent = [k for k in more if k not in train_cfg]
        if absent:
            raise ConfigError(
                f"resume: model {prev['model']} has no "
                f"{', '.join('train.' + k for k in absent)} to change (it does "
                f"not train by epochs)"
            )
        done = rf.epochs_done(where)
        if epochs is not None and epochs <= done:
            raise ConfigError(
                f"resume: epochs={epochs} is not more than the {done} epochs "
                f"this run has trained; give a larger number to train it "
                f"further"
            )
        if prev.get("status") == "done":
            if not more:
                return None
            if not (where / rf.CHECKPOINT_NAME).is_file():
                raise SettingError(
                    f"{out}: this finished run has no training checkpoint to continue "
                    f"from (a finished run keeps it only with {{setting}}, a grid search "
                    f"never); train again with the new settings",
                    "run.keep_checkpoint",
                )
            where = rf.stage_copy(out)  # the finished model stays until this one is done
            log.info(
                "continuing the finished run in %s with %s",
                out,
                ", ".join(f"{k}={v}" for k, v in more.items()),
            )
        values = dict(prev["config"])
        nested = isinstance(values.get("train"), dict)
        upd: dict[str, Any] = dict(more)
        if device is not None:
            upd["device"] = device
        if nested:
            values["train"] = {**values["train"], **upd}
        else:
            values.update(upd)
        from genrec.models import get_model_class

        cls = get_model_class(prev["model"])
        config: Any = build_config(
            cls.config_class,
            cls.upgrade_config(values) if hasattr(cls, "upgrade_config") else values,
            where=cls.name,
        )
        spec = RunSpec(
            model=cls.name,
            dataset=prev["dataset"],
            config=config,
            data=build_config(DataOptions, prev.get("data", {}), where="data"),
            protocol=build_config(ProtocolConfig, prev.get("protocol", {}), where="protocol"),
            out=out,
            keep_checkpoint=(
                bool(prev.get("keep_checkpoint", (where / rf.CHECKPOINT_NAME).is_file()))
                if keep_checkpoint is None
                else keep_checkpoint
            ),
        )
        ds = load_dataset(
            spec.dataset, spec.data, progress=hooks.on_download if hooks is not None else None
        )
        check_protocol(cls, [config], spec.protocol.name, ds.implicit, ds.name)
        pdata = build_protocol(ds, spec.protocol)
        preflight(cls, [config], pdata, None, True)
        record = {**prev, "status": "running", "config": config_to_dict(config)}
        select = "rmse" if pdata.kind == "rating" else "ndcg@20"
        _describe(spec, ds, pdata)
        return _run_in(
            where, out, spec, ds, pdata, record, select, [({}, config)], resume=True, hooks=hooks
        )


# ----------------------------------------------------------------------------- evaluate
def evaluate_run(run: str | Path | Run, hooks: RunHooks | None = None) -> dict[str, Any]:
    """Evaluate a saved run (a folder, or a :class:`Run` already loaded) again on the
    validation and test parts of its protocol (the data set is read again; a DataError when
    it changed since training)."""
    if not isinstance(run, Run):
        run = load_run(run)
    rec = run.record
    opts = build_config(DataOptions, rec.get("data", {}), where="data")
    ds = load_dataset(
        rec["dataset"], opts, progress=hooks.on_download if hooks is not None else None
    )
    proto = build_config(ProtocolConfig, rec.get("protocol", {}), where="protocol")
    pdata = build_protocol(ds, proto)
    want = rec.get("protocol_description", {}).get("train_interactions")
    if want is not None and pdata.train.nnz != int(want):
        raise DataError(
            f"{rec['dataset']}: the data changed since training (training part "
            f"has {pdata.train.nnz} interactions, the run had {want})"
        )
    out = {}
    for part in ("valid", "test"):
        out[part] = evaluate_task(run.model, getattr(pdata, part), pdata.ks, hooks, part)
        sampled = sampled_part(run.model, pdata, part)
        if sampled is not None:
            out[part]["sampled"] = sampled
    return out

"""The study runner of ``genrec tune``: Optuna trials over a model's config, on validation.

One trial is one configuration: the base config with the space's sampled values, fitted on
the training part once per seed and scored on validation; the objective is the mean over
the seeds, the spread is kept with the trial. The test part is read once, at the end, for
the chosen configuration only, trained again with new seeds (:func:`genrec.runs.train_run`,
into ``OUT/best-run``).

Reproducible and resumable:

* the TPE sampler is seeded afresh for every trial from ``sampler_seed`` and the number of
  trials already finished, so a study's sequence of configurations depends on its history
  alone, not on how many processes ran it;
* studies live in an SQLAlchemy storage (``sqlite:///OUT/study.db`` by default). A lock file
  beside an SQLite database marks a study as running; when a study starts and the lock is
  free, any trial still marked running was cut off (a kill, a power cut): it is marked
  failed and its configuration queued again, so a killed study, restarted with the same
  command, goes on where it stopped and ends where an uninterrupted one would (with
  sequential trials: ``jobs`` > 1 runs trials side by side, whose order is not fixed);
* a trial's fits keep their trainer checkpoints in ``OUT/trials/NNNN/seed-S`` (NNNN the
  trial's first try) while it runs: the queued try of a cut-off trial takes the scores of
  the seeds already done and resumes the cut-off seed from its last epoch, so a trial
  longer than a sitting still finishes; the folder goes when the trial ends;
* pruning (Optuna's median rule) reads the first seed's validation after every epoch of
  the shared trainer; models trained otherwise are never pruned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec._optional import require
from genrec.config import build_config, config_to_dict
from genrec.data import load_dataset
from genrec.errors import ConfigError, DivergenceError, GenrecError
from genrec.io import atomic_write_json
from genrec.protocols import build_protocol
from genrec.runs import RunHooks, RunSpec, train_run
from genrec.runs.fitting import evaluate_task, fingerprint, fit_model, lower_is_better
from genrec.train.callbacks import Callback
from genrec.train.checkpoint import CHECKPOINT_NAME
from genrec.train.config import parse_metric
from genrec.tune.space import SearchSpace

__all__ = ["TuneSpec", "TuneResult", "run_study", "open_study"]

log = logging.getLogger("genrec.tune")


@dataclass(frozen=True)
class TuneSpec:
    """One study.

    Attributes
    ----------
    base : the run the trials vary (model, data set, base config, data options, protocol)
    space : the keys to search
    trials : finished trials (completed or pruned) the study ends with, earlier runs counted
    seeds : seeds each trial is trained with; the objective is the mean over them
    test_seeds : seeds of the chosen configuration's final training (None: as many new
        seeds, after the largest of ``seeds``)
    metric : the validation metric (None: ndcg@20, or rmse for rating protocols); the
        trainer's epoch is chosen on it too
    jobs : trials run side by side in processes
    storage : an SQLAlchemy URL (None: ``sqlite:///OUT/study.db``)
    study : the study's name in the storage (None: the folder's name)
    out : the study folder (best config, trials table, report, plots, the final run)
    timeout : seconds after which no new trial starts (None: no limit)
    prune : stop unpromising trials early (median rule, after 5 finished trials)
    sampler_seed : the TPE sampler's seed
    final : train the chosen configuration with ``test_seeds`` and read test
    trackers : per-epoch exporters for every fit ("tensorboard", "mlflow")
    """

    base: RunSpec
    space: SearchSpace
    trials: int = 20
    seeds: tuple[int, ...] = (0,)
    test_seeds: tuple[int, ...] | None = None
    metric: str | None = None
    jobs: int = 1
    storage: str | None = None
    study: str | None = None
    out: Path = Path("studies/study")
    timeout: float | None = None
    prune: bool = True
    sampler_seed: int = 0
    final: bool = True
    trackers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.space.model != self.base.model:
            raise ConfigError(
                f"{self.space.source}: this space is for {self.space.model}, not {self.base.model}"
            )
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"trials must be a whole number >= 1, got {self.trials!r}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ConfigError(f"jobs must be a whole number >= 1, got {self.jobs!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")
        for name, seeds in (("seeds", self.seeds), ("test_seeds", self.test_seeds or (0,))):
            if not seeds or len(set(seeds)) != len(seeds):
                raise ConfigError(f"{name}: give distinct seeds, such as 0,1,2 (got {seeds})")
        seeded = self.base.setting_key("seed") is not None
        if not seeded and (len(self.seeds) > 1 or len(self.test_seeds or ()) > 1):
            raise ConfigError(
                f"seeds: {self.base.model} has no seed (it is deterministic); give one seed"
            )
        metric = self.metric_name
        if self.base.protocol.name == "rating":
            if metric not in ("rmse", "mae"):
                raise ConfigError(f"metric {metric}: the rating protocol scores rmse or mae")
        else:
            try:
                parse_metric(metric)
            except (ValueError, ConfigError) as e:
                raise ConfigError(f"metric {metric}: {e}") from None

    @property
    def metric_name(self) -> str:
        if self.metric is not None:
            return self.metric
        return "rmse" if self.base.protocol.name == "rating" else "ndcg@20"

    @property
    def final_seeds(self) -> tuple[int, ...]:
        if self.test_seeds is not None:
            return tuple(self.test_seeds)
        start = max(self.seeds) + 1
        return tuple(range(start, start + len(self.seeds)))

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"

    @property
    def study_name(self) -> str:
        return self.study or self.out.resolve().name


@dataclass
class TuneResult:
    """What a study did: its best trial, the trials, the final run's test numbers."""

    out: Path
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    test: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)


class _Pruning(Callback):
    """Reports each validated epoch to the trial; raises TrialPruned when it should stop."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        valid = record.get("valid")
        if not valid or self.metric not in valid or not math.isfinite(valid[self.metric]):
            return
        self.trial.report(float(valid[self.metric]), int(record["epoch"]))
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")


def _sqlite_file(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :])
    return None


@contextmanager
def _study_lock(spec: TuneSpec):
    """Held while the study runs: beside an SQLite database, else in the study folder."""
    import fcntl

    db = _sqlite_file(spec.storage_url)
    path = db.with_name(db.name + ".lock") if db is not None else spec.out / "study.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{spec.storage_url}: another genrec tune is running this study; wait for it "
                f"or give another storage"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _attrs(spec: TuneSpec) -> dict[str, Any]:
    """What a stored study must agree on to be continued."""
    return {
        "genrec_model": spec.base.model,
        "genrec_dataset": spec.base.dataset,
        "genrec_protocol": config_to_dict(spec.base.protocol),
        "genrec_metric": spec.metric_name,
        "genrec_seeds": list(spec.seeds),
        "genrec_space": spec.space.to_dict(),
    }


_WHAT = {
    "genrec_model": "model",
    "genrec_dataset": "data set",
    "genrec_protocol": "protocol",
    "genrec_metric": "metric",
    "genrec_seeds": "seeds",
    "genrec_space": "search space",
}


def open_study(spec: TuneSpec) -> Any:
    """The study in its storage, created or checked against ``spec`` (a study of that name
    made for another model, data set, protocol, metric, seeds or space is refused)."""
    optuna = require("optuna", "tune", "genrec tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = spec.storage_url
    db = _sqlite_file(url)
    if spec.storage is None:
        spec.out.mkdir(parents=True, exist_ok=True)  # the default database lives there
    if db is not None and not db.parent.is_dir():
        raise ConfigError(f"storage {url}: the folder {db.parent} does not exist")
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as e:  # SQLAlchemy raises many kinds; each is a storage that won't open
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"storage {url}: cannot be opened ({reason})") from None
    direction = "minimize" if lower_is_better(spec.metric_name) else "maximize"
    names = [s.study_name for s in storage.get_all_studies()]
    want = _attrs(spec)
    if spec.study_name in names:
        study = optuna.load_study(study_name=spec.study_name, storage=storage)
        for key, value in want.items():
            if study.user_attrs.get(key) != value:
                raise ConfigError(
                    f"study {spec.study_name!r} in {url} exists with another {_WHAT[key]} "
                    f"({study.user_attrs.get(key)!r}); give another study name, or the "
                    f"same settings to continue it"
                )
        return study
    study = optuna.create_study(storage=storage, study_name=spec.study_name, direction=direction)
    for key, value in want.items():
        study.set_user_attr(key, value)
    return study


def _requeue_cut_off(study: Any) -> int:
    """Trials left running by a process that is gone: failed, their params queued again."""
    from optuna.trial import TrialState

    cut = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in cut:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(cut)


class _Trialist:
    """Runs the trials of one process: the data loaded once, one ask/tell per trial."""

    def __init__(self, spec: TuneSpec, parallel: bool):
        base = spec.base
        self.spec, self.parallel = spec, parallel
        self.cls = base.model_class
        self.ds = load_dataset(base.dataset, base.data)
        self.pdata = build_protocol(self.ds, base.protocol)
        self.metric = spec.metric_name
        self.prunable = spec.prune and self.cls.capabilities.trainer
        self.seeded = base.setting_key("seed") is not None

    def pruner(self) -> Any:
        import optuna

        if not self.prunable:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)

    def run(self, study: Any, take: Callable[[], Any | None]) -> None:
        while (trial := take()) is not None:
            self.one(study, trial)

    def one(self, study: Any, trial: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        spec, cls = self.spec, self.cls
        values = spec.space.sample(trial)
        t0 = time.perf_counter()
        try:
            cfg = chosen_config(spec, values)
        except ConfigError as e:
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d: %s", trial.number, e)
            return
        scores: list[float] = []
        epochs: list[Any] = []
        folder = self.spec.out / "trials" / f"{_first_try(study, trial):04d}"
        try:
            for i, seed in enumerate(spec.seeds):
                seed_dir = folder / f"seed-{seed}"
                done = _read_done(seed_dir)
                if done is not None:  # an earlier try of this trial scored this seed
                    scores.append(done["score"])
                    epochs.append(done["best_epoch"])
                    continue
                c = spec.base.with_seed(cfg, seed) if self.seeded else cfg
                model = cls(c)
                callbacks: list[Callback] = []
                if self.prunable and i == 0:
                    callbacks.append(_Pruning(trial, self.metric))
                if spec.trackers:
                    from genrec.train.tracking import make_trackers

                    callbacks += make_trackers(
                        spec.trackers,
                        folder=spec.out,
                        name=f"trial-{trial.number:04d}-seed-{seed}",
                        params=config_to_dict(c),
                        experiment=spec.study_name,
                        tags={"trial": str(trial.number), "seed": str(seed)},
                    )
                run_dir = seed_dir if cls.capabilities.trainer else None
                resume = run_dir is not None and (run_dir / CHECKPOINT_NAME).is_file()
                if resume:
                    log.info("trial %d: seed %s resumes from %s", trial.number, seed, run_dir)
                    trial.set_user_attr("resumed", [*trial.user_attrs.get("resumed", []), seed])
                elif run_dir is not None:  # cut off before its first checkpoint: anew
                    shutil.rmtree(run_dir, ignore_errors=True)
                fit_model(
                    model,
                    self.pdata.train.matrix,
                    self.pdata.valid,
                    self.ds,
                    run_dir,
                    resume,
                    fingerprint(
                        spec.base.model, c, spec.base.protocol, self.pdata.train.matrix, self.pdata
                    ),
                    hooks=RunHooks(callbacks=tuple(callbacks)),
                    sequences=self.pdata.train_sequences,
                )
                valid = evaluate_task(model, self.pdata.valid, self.pdata.ks, None, "valid")
                scores.append(float(valid["metrics"][self.metric]))
                epochs.append(getattr(model, "best_epoch_", None))
                if run_dir is not None:  # a later try of this trial (after a kill) reads it
                    atomic_write_json(
                        run_dir / DONE, {"score": scores[-1], "best_epoch": epochs[-1]}
                    )
        except optuna.TrialPruned as e:
            _clear(folder)
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("pruned", str(e))
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d: %s (%s)", trial.number, e, _show(values))
            return
        except DivergenceError as e:
            _clear(folder)
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d diverged: %s", trial.number, e)
            return
        _clear(folder)
        mean = statistics.fmean(scores)
        sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
        trial.set_user_attr("scores", scores)
        trial.set_user_attr("sd", sd)
        trial.set_user_attr("best_epochs", epochs)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        if not math.isfinite(mean):
            trial.set_user_attr("error", f"validation {self.metric} is not finite")
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, mean)
        log.info(
            "trial %d: valid %s %.4f%s (%s)",
            trial.number,
            self.metric,
            mean,
            f" ± {sd:.4f}" if len(scores) > 1 else "",
            _show(values),
        )


DONE = "done.json"  # a seed's validation score, in its folder of a trial's try


def _first_try(study: Any, trial: Any) -> int:
    """The number of the trial's first try: a trial cut off by a kill is queued again with
    ``retry_of`` (:func:`_requeue_cut_off`), and every try shares the first one's folder."""
    number, attrs = trial.number, dict(trial.user_attrs)
    by_number = None
    while "retry_of" in attrs:
        number = int(attrs["retry_of"])
        if by_number is None:
            by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        attrs = dict(by_number[number].user_attrs) if number in by_number else {}
    return number


def _read_done(seed_dir: Path) -> dict[str, Any] | None:
    path = seed_dir / DONE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"score": float(data["score"]), "best_epoch": data.get("best_epoch")}


def _clear(folder: Path) -> None:
    """A finished trial's folder (its seeds' checkpoints and scores) goes."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # the trials folder, once empty
        folder.parent.rmdir()


def _show(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _with_select(base: RunSpec, metric: str) -> Any:
    """The base config choosing its epoch on the study's metric (ranking protocols)."""
    key = base.setting_key("select_metric")
    if base.protocol.name == "rating" or key is None:
        return base.config
    cls = base.model_class
    return build_config(cls.config_class, {key: metric}, base=base.config)


def chosen_config(spec: TuneSpec, values: dict[str, Any]) -> Any:
    """The config a trial with ``values`` trained (before its seed is set)."""
    cls = spec.base.model_class
    base = _with_select(spec.base, spec.metric_name)
    return build_config(cls.config_class, values, base=base, where=cls.name)


def _taker(
    study: Any, spec: TuneSpec, pruner: Any, started: float, lock: Any, parallel: bool
) -> Callable[[], Any | None]:
    """A function giving the next trial to run, or None when the study has enough."""
    import optuna
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED) + ((TrialState.RUNNING,) if parallel else ())

    def take() -> Any | None:
        with lock:
            if spec.timeout is not None and time.perf_counter() - started > spec.timeout:
                return None
            n = len(study.get_trials(deepcopy=False, states=counted))
            if n >= spec.trials:
                return None
            study.sampler = optuna.samplers.TPESampler(
                seed=spec.sampler_seed * 1_000_003 + n, constant_liar=parallel
            )
            study.pruner = pruner
            return study.ask()

    return take


def _worker(spec: TuneSpec, lock: Any, started_ago: float) -> None:
    """A ``jobs`` process: its own data and study handle, the shared lock."""
    study = open_study(spec)
    runner = _Trialist(spec, parallel=True)
    started = time.perf_counter() - started_ago
    runner.run(study, _taker(study, spec, runner.pruner(), started, lock, True))


def run_study(
    spec: TuneSpec, on_trial: Callable[[dict[str, Any]], None] | None = None
) -> TuneResult:
    """Run (or continue) the study ``spec`` describes, write its folder, read test once."""
    from genrec.tune import report

    optuna = require("optuna", "tune", "genrec tune")
    started = time.perf_counter()
    with _study_lock(spec):
        study = open_study(spec)  # a storage that won't open, a clashing study: before any work
        spec.out.mkdir(parents=True, exist_ok=True)
        cut = _requeue_cut_off(study)
        if cut:
            log.info("continuing the study: %d cut-off trial(s) queued again", cut)
        done_before = len(
            study.get_trials(
                deepcopy=False,
                states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
            )
        )
        if done_before:
            log.info("continuing the study: %d trials finished before", done_before)
        if spec.jobs == 1:
            runner = _Trialist(spec, parallel=False)
            runner.run(study, _taker(study, spec, runner.pruner(), started, nullcontext(), False))
        else:
            _parallel(spec, started)
        trials = report.trial_rows(study, spec.space)
        complete = [t for t in trials if t["state"] == "COMPLETE"]
        if not complete:
            errors = [t["error"] for t in trials if t.get("error")]
            raise ConfigError(
                f"study {spec.study_name}: no trial finished"
                + (f" (first error: {errors[0]})" if errors else "")
            )
        best = report.best_row(study, spec.space)
        test = None
        if spec.final:
            test = _final(spec, best)
        files = report.write_study(spec, study, trials, best, test)
    return TuneResult(spec.out, best, trials, test, files)


def _parallel(spec: TuneSpec, started: float) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    lock = ctx.Lock()
    procs = [
        ctx.Process(target=_worker, args=(spec, lock, time.perf_counter() - started))
        for _ in range(spec.jobs)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise GenrecError(f"{len(failed)} of {spec.jobs} tune processes failed (see the log)")


def _final(spec: TuneSpec, best: dict[str, Any]) -> dict[str, Any]:
    """The chosen configuration trained with the final seeds; test read once."""
    base = spec.base
    cfg = chosen_config(spec, best["values"])
    seeds = spec.final_seeds if base.setting_key("seed") is not None else ()
    run = RunSpec(
        model=base.model,
        dataset=base.dataset,
        config=cfg,
        data=base.data,
        protocol=base.protocol,
        select=spec.metric_name if len(seeds) > 1 else None,
        seeds=seeds if len(seeds) > 1 else (),
        out=spec.out / "best-run",
        force=True,
    )
    if len(seeds) == 1:
        run = dataclasses.replace(run, config=base.with_seed(cfg, seeds[0]))
    log.info("training the chosen configuration with seeds %s; test is read once", seeds)
    result = train_run(run)
    metrics = result.test.get("seeds") or result.test["metrics"]
    return {
        "seeds": list(seeds),
        "test": metrics,
        "valid": result.valid.get("seeds") or result.valid["metrics"],
        "run": str(spec.out / "best-run"),
    }

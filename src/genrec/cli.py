"""The ``genrec`` command line. The only module that reads argv.

Each command parses its options, builds typed configs (file, then ``--set`` overrides), calls
the same public API a user would, prints a rich table and optionally writes JSON. Errors in
the user's input are printed as one line (``error: ...``) with exit status 1, no traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from genrec import __version__
from genrec.config import build_config, config_to_dict, load_toml, parse_overrides
from genrec.data import DataOptions, Dataset, IdMap, load_dataset
from genrec.errors import ConfigError, DataError, GenrecError
from genrec.evaluate import (
    RankingTask,
    RatingTask,
    evaluate_ranking,
    evaluate_rating,
    ranking_metric_names,
)
from genrec.foundations.cli import foundations_cli
from genrec.io import (
    atomic_write_files,
    atomic_write_json,
    check_writable,
    load_arrays,
    save_arrays,
    to_json,
)
from genrec.models import MODELS, get_model_class
from genrec.models.base import RatingPredictor, Recommender, resolve_device
from genrec.protocols import PROTOCOLS, ProtocolConfig, ProtocolData, build_protocol
from genrec.train import CHECKPOINT_NAME, LOG_NAME, FitContext

log = logging.getLogger("genrec")
RUN_FORMAT = "genrec-run/1"


# ----------------------------------------------------------------------------- helpers
def _console() -> Console:
    """Standard output. No markup: ids, titles and paths (``[red]x``) print as they are."""
    return Console(stderr=False, highlight=False, markup=False)


def _err_console() -> Console:
    return Console(stderr=True, highlight=False, markup=False)


def _progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
        console=_err_console(), transient=transient, disable=not sys.stderr.isatty(),
    )


def _write_output(path: str | None, payload: dict) -> None:
    if path:
        atomic_write_json(path, payload)
        _err_console().print(f"wrote {path}")


def _load_with_progress(spec: str, options: DataOptions) -> Dataset:
    prog = Progress(TextColumn("[bold]downloading {task.description}"), BarColumn(),
                    DownloadColumn(), console=_err_console(), transient=True,
                    disable=not sys.stderr.isatty())
    task_id = None

    def on_bytes(done: int, total: int | None) -> None:
        nonlocal task_id
        if task_id is None:
            prog.start()
            task_id = prog.add_task(spec, total=total)
        prog.update(task_id, completed=done)

    try:
        return load_dataset(spec, options, progress=on_bytes)
    finally:
        prog.stop()


def _split_sections(values: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Split a config mapping into (model, [protocol], [data]) parts."""
    model = {k: v for k, v in values.items() if k not in ("protocol", "data")}
    proto = values.get("protocol", {})
    data = values.get("data", {})
    for name, sec in (("protocol", proto), ("data", data)):
        if not isinstance(sec, dict):
            raise ConfigError(f"[{name}] must be a table of keys, got {sec!r}")
    return model, proto, data


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _metrics_table(title: str, results: dict[str, Any]) -> Table:
    """A table of metric rows with one column per part (valid, test)."""
    table = Table(title=title)
    table.add_column("metric")
    parts = [p for p in ("valid", "test") if p in results]
    for p in parts:
        table.add_column(p, justify="right")
    keys: list[str] = []
    for p in parts:
        for k in results[p]["metrics"]:
            if k not in keys:
                keys.append(k)
    for k in keys:
        row = [k]
        for p in parts:
            v = results[p]["metrics"].get(k)
            se = results[p].get("stderr", {}).get(k)
            if v is None:
                row.append("")
            elif se is not None and np.isfinite(se):
                row.append(f"{v:.4f} ± {se:.4f}")
            else:
                row.append(f"{v:.4f}")
        table.add_row(*row)
    return table


def _check_evaluable(cls: type[Recommender], task) -> None:
    """A model of class ``cls`` can be evaluated on ``task``, or a ConfigError says why."""
    if isinstance(task, RatingTask) and not issubclass(cls, RatingPredictor):
        raise ConfigError(f"model {cls.name} does not predict ratings; the rating "
                          f"protocol needs a rating model (biased-mf, fm, autorec)")
    if isinstance(task, RankingTask) and task.users is None and not cls.folds_in:
        raise ConfigError(f"model {cls.name} cannot score users unseen in training; the "
                          f"strong protocol needs a fold-in model (ease, mult-vae, ...)")


def _evaluate(model: Recommender, task, ks, on_batch: Callable | None = None) -> dict:
    _check_evaluable(type(model), task)
    if isinstance(task, RatingTask):
        return evaluate_rating(model, task).to_dict()
    return evaluate_ranking(model, task, ks=ks, on_batch=on_batch).to_dict()


def _evaluate_both(model: Recommender, pdata: ProtocolData) -> dict:
    out = {}
    with _progress() as prog:
        for part in ("valid", "test"):
            task = getattr(pdata, part)
            n = task.n_users if isinstance(task, RankingTask) else 1
            tid = prog.add_task(f"evaluating {part}", total=n)
            out[part] = _evaluate(model, task, pdata.config.ks,
                                  lambda done, total, t=tid: prog.update(t, completed=done))
    return out


def _save_run_data(out: Path, pdata: ProtocolData, ds: Dataset) -> None:
    """Training matrix, raw ids and titles: what recommend/predict need beside the model;
    and, for `genrec recommend --user`, each user's whole history (``history_*``: the
    positives of every part, when the protocol held some out) and every item the user has in
    the data (``known_*``, when that is more: ratings under the threshold)."""
    m = pdata.train.matrix
    arrays = {"indptr": m.indptr.astype(np.int64), "indices": m.indices.astype(np.int64),
              "data": m.data.astype(np.float32), "shape": np.array(m.shape, np.int64),
              "user_ids": pdata.train.user_ids, "item_ids": pdata.train.item_ids}
    below = m  # each pattern is kept only when it adds items to the one below it
    for name, extra in (("history", pdata.positives), ("known", ds.interactions.matrix)):
        if extra is None or extra.shape != m.shape:
            continue
        extra = sp.csr_matrix(extra)
        if extra.count_nonzero() > below.count_nonzero():
            arrays[f"{name}_indptr"] = extra.indptr.astype(np.int64)
            arrays[f"{name}_indices"] = extra.indices.astype(np.int32)
        below = extra
    titles = ds.titles()
    if titles is not None:
        arrays["item_titles"] = titles.astype(str)
    save_arrays(out / "data.npz", arrays)


def _read_run_record(run_path: Path, advice: str, keys: tuple[str, ...] = ()) -> dict:
    """The run record ``run.json`` that `genrec train` writes, holding ``keys``; a DataError
    ending in ``advice`` if it is not one."""
    try:
        run = json.loads(run_path.read_text())
        if not isinstance(run, dict):
            raise TypeError(f"a JSON {type(run).__name__}, not an object")
        missing = [k for k in keys if k not in run]
        if missing:
            raise KeyError(missing[0])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{run_path}: not a genrec run record ({type(e).__name__}: {e}); "
                        f"{advice}") from None
    return run


def _load_run(model_dir: str) -> tuple[dict, Recommender, dict]:
    d = Path(model_dir)
    run_path = d / "run.json"
    if not run_path.is_file():
        raise DataError(f"{d}: no run.json here; pass a folder written by `genrec train`")
    run = _read_run_record(run_path, "train the model again", keys=("model",))
    if run.get("status") != "done":
        raise DataError(f"{d}: training did not finish (status {run.get('status')!r}); "
                        f"continue it with `genrec train --resume {d}`")
    model = Recommender.load(d)
    data = load_arrays(d / "data.npz")
    return run, model, data


def _train_matrix(data: dict, part: str = "train") -> sp.csr_matrix:
    """The training matrix of a saved run, or its ``history`` / ``known`` pattern (0/1; the
    training matrix when the run has none, as runs before them)."""
    shape = tuple(int(x) for x in data["shape"])
    if part != "train" and f"{part}_indptr" in data:
        indices = data[f"{part}_indices"].astype(np.int64)
        return sp.csr_matrix((np.ones(len(indices), np.float32), indices,
                              data[f"{part}_indptr"]), shape=shape)
    if part == "known":
        return _train_matrix(data, "history")
    return sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=shape)


# ----------------------------------------------------------------------------- root
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genrec")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """genrec: generative recommender systems, from matrix factorization to diffusion.

    Data sets are found by name in $GENREC_DATA_DIR, then ~/.cache/genrec, and downloaded
    from GroupLens when missing; a path to a MovieLens folder, a folder of pair lists or a
    CSV/TSV/Parquet log works too.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = RichHandler(console=_err_console(), show_path=False, show_time=False)
    root = logging.getLogger("genrec")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@cli.command("models")
def models_cmd() -> None:
    """List the models and their default configs."""
    table = Table(title="models")
    table.add_column("name")
    table.add_column("class")
    table.add_column("fold-in")
    table.add_column("defaults")
    for name, cls in MODELS.items():
        defaults = ", ".join(f"{k}={v}" for k, v in config_to_dict(cls.config_class()).items())
        table.add_row(name, cls.__name__, "yes" if cls.folds_in else "no", defaults)
    _console().print(table)


# ----------------------------------------------------------------------------- data
@cli.group("data")
def data_group() -> None:
    """Inspect data sets."""


_format_option = click.option(
    "--format", "fmt", type=click.Choice(["ml-100k", "ml-1m", "ml-10m", "ml-csv", "pairs", "csv",
                                          "tsv", "parquet"]),
    default=None, help="Input format (detected from the path when omitted).")


@data_group.command("info")
@click.argument("dataset")
@_format_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of genrec train; its [data] table is used.")
@click.option("--set", "sets", multiple=True, metavar="data.KEY=VALUE",
              help="Reader options, e.g. --set data.user_col=uid.")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the summary as JSON.")
def data_info(dataset: str, fmt: str | None, config_file: str | None, sets: tuple[str, ...],
              output: str | None) -> None:
    """Users, items, interactions, density and the rating histogram of DATASET."""
    check_writable(output, "--output")
    over = parse_overrides(sets)
    if set(over) - {"data"}:
        raise ConfigError("data info takes only --set data.KEY=VALUE options")
    from_file = load_toml(config_file).get("data", {}) if config_file else {}
    _, _, data_sec = _split_sections(_merge({"data": from_file}, over))
    options = build_config(DataOptions, {**data_sec, **({"format": fmt} if fmt else {})},
                           where="data")
    ds = _load_with_progress(dataset, options)
    s = ds.summary()
    table = Table(title=f"{s['name']}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key in ("users", "items", "interactions"):
        table.add_row(key, f"{s[key]:,}")
    table.add_row("density", f"{s['density']:.4%}")
    table.add_row("implicit", str(s["implicit"]))
    table.add_row("timestamps", str(s["timestamps"]))
    table.add_row("genres", str(s["genres"]))
    table.add_row("user features", ", ".join(s["user_features"]) or "-")
    ipu = s["interactions_per_user"]
    table.add_row("interactions per user", f"min {ipu['min']}, median {ipu['median']:g}, "
                                           f"max {ipu['max']}")
    for name, parts in s["splits"].items():
        table.add_row(f"split {name}", ", ".join(f"{p} {n:,}" for p, n in parts.items()))
    _console().print(table)
    if "rating_histogram" in s:
        hist = Table(title="rating histogram")
        hist.add_column("rating", justify="right")
        hist.add_column("count", justify="right")
        hist.add_column("share", justify="right")
        total = sum(s["rating_histogram"].values())
        for r, c in s["rating_histogram"].items():
            hist.add_row(r, f"{c:,}", f"{c / total:.1%}")
        _console().print(hist)
    _write_output(output, s)


# ----------------------------------------------------------------------------- train
def _parse_grid(grid: tuple[str, ...]) -> list[dict[str, Any]]:
    """``("l2=100,500", "lr=0.1,0.01")`` -> the list of all combinations."""
    combos: list[dict[str, Any]] = [{}]
    for g in grid:
        key, eq, vals = g.partition("=")
        values = [parse_overrides([f"v={v.strip()}"])["v"] for v in vals.split(",") if v.strip()]
        if not eq or not key.strip() or not values:
            raise ConfigError(f"--grid {g!r}: expected key=v1,v2,..., e.g. --grid l2=100,500")
        combos = [{**c, key.strip(): v} for c in combos for v in values]
    return combos


MIN_VALID_USERS = 20  # fewer users with validation items: a warning that selection is noisy


def _preflight(cls: type[Recommender], configs: list, pdata: ProtocolData,
               select_metric: str | None, select_default: bool) -> None:
    """What would otherwise fail only after the run folder is written or after training: the
    model (under any of the ``configs`` to try) cannot select on or be evaluated under the
    protocol, or the selection metric (--grid) is not computed."""
    for task in (pdata.valid, pdata.test):
        _check_evaluable(cls, task)
    for cfg in configs:
        cls(cfg).check_valid_task(pdata.valid)
    valid = pdata.valid
    chooses = getattr(cls, "trainable", False) or select_metric is not None
    if isinstance(valid, RankingTask) and chooses:  # the epoch or the --grid is picked on it
        if valid.truth.nnz == 0:
            use = ("--grid selects" if select_metric is not None
                   else f"{cls.name} picks its epoch")
            raise ConfigError(f"the validation part of protocol {pdata.config.name} holds no "
                              f"interactions ({valid.truth.shape[0]} users, "
                              f"{pdata.train.nnz} training interactions), and {use} on it; use "
                              f"more data (users need more interactions for this split) or "
                              f"another protocol (--protocol loo or strong)")
        n_users = int((np.diff(valid.truth.indptr) > 0).sum())
        if n_users < MIN_VALID_USERS:
            log.warning("the validation part holds %d interactions of %d users: the choice "
                        "made on it (best epoch, --grid) rests on very few users",
                        valid.truth.nnz, n_users)
    if select_metric is None:
        return
    if isinstance(pdata.valid, RatingTask):
        names = ["rmse", "mae"]
    else:
        names = ranking_metric_names(pdata.config.ks)
    if select_metric not in names:
        hint = " (the default)" if select_default else ""
        raise ConfigError(f"--select {select_metric!r}{hint} is not among the validation "
                          f"metrics ({', '.join(names)}); pass --select with one of them")


RESUME_SETTINGS = ("epochs", "patience")  # --set keys that --resume takes


def _epochs_done(run_dir: Path) -> int:
    """The last epoch in the run's training log (0 when it has none)."""
    try:
        lines = (run_dir / LOG_NAME).read_text().splitlines()
        return int(json.loads(lines[-1])["epoch"]) if lines else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _check_out_dir(out: Path, force: bool) -> None:
    """Refuse to start over in a folder holding an unfinished (resumable) run."""
    run_path = out / "run.json"
    if not run_path.is_file():
        return
    try:
        status = _read_run_record(run_path, "").get("status")
    except (DataError, OSError):  # not a run record: nothing to resume there
        status = None
    if status == "running" and not force:
        raise ConfigError(f"{out} holds an unfinished run: continue it with `genrec train "
                          f"--resume {out}`, or pass --force to start over there")
    if status == "done":
        log.info("replacing the trained model in %s", out)


def _fit(model: Recommender, pdata: ProtocolData, ds: Dataset, run_dir: Path | None,
         resume: bool) -> None:
    side = None
    if getattr(type(model), "uses_side_features", False) and getattr(
            model.config, "use_side_features", True):
        from genrec.data.features import side_features  # the FM's side information

        side = side_features(ds)
    if not getattr(type(model), "trainable", False) and side is None:
        model.fit(pdata.train.matrix, valid=pdata.valid)
        return
    from genrec.progress_cli import RichProgress

    context = FitContext(run_dir=run_dir, resume=resume, side=side,
                         callbacks=(RichProgress(),) if sys.stderr.isatty() else ())
    model.fit(pdata.train.matrix, valid=pdata.valid, context=context)


@cli.command("train")
@click.option("--model", "model_name", help=f"Model name: {', '.join(MODELS)}.")
@click.option("--dataset", help="Known name (ml-100k, ml-1m, ...) or a path.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=None,
              help="Evaluation protocol (default diffrec; rating for rating models).")
@_format_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file: model keys at top level, [protocol] and [data] tables.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (model keys, protocol.KEY, data.KEY). Repeatable.")
@click.option("--grid", multiple=True, metavar="KEY=V1,V2",
              help="Try each value (all combinations), keep the best on validation.")
@click.option("--select", "select_metric", default=None,
              help="Validation metric for --grid (default ndcg@20, or rmse for ratings).")
@click.option("--device", type=str, default=None, help="auto, cpu or cuda (torch models).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None,
              help="Training precision (torch models).")
@click.option("--seed", type=int, default=None, help="Seed of the model and the protocol.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the trained model (default runs/MODEL-DATASET).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue an interrupted run in this folder, with its config (only "
                   "--device, --output and --set epochs=N / patience=N may be given with it; "
                   "a larger epochs also continues a finished run).")
@click.option("--force", is_flag=True,
              help="Start over in --out even if it holds an unfinished (resumable) run.")
def train_cmd(model_name, dataset, protocol, fmt, config_file, sets, grid, select_metric,
              device, precision, seed, out_dir, output, resume_dir, force) -> None:
    """Train a model, evaluate it on validation and test, and save it."""
    console = _console()
    resume = resume_dir is not None
    prev: dict = {}
    check_writable(output, "--output")
    if resume:
        given = [name for name, v in (
            ("--model", model_name), ("--dataset", dataset), ("--config", config_file),
            ("--grid", grid), ("--select", select_metric),
            ("--protocol", protocol), ("--format", fmt), ("--precision", precision),
            ("--seed", seed), ("--out", out_dir), ("--force", force or None))
            if v is not None and v != ()]
        if given:
            raise ConfigError(f"--resume takes the config of the interrupted run; do not pass "
                              f"{', '.join(given)} with it (only --device, --output and --set "
                              f"{'/'.join(RESUME_SETTINGS)} apply)")
        more = parse_overrides(sets)  # the trainer lets these change on resume
        if set(more) - set(RESUME_SETTINGS):
            raise ConfigError(f"--resume: --set may change only {', '.join(RESUME_SETTINGS)}, "
                              f"not {', '.join(sorted(set(more) - set(RESUME_SETTINGS)))}; "
                              f"for other settings train again without --resume")
        run_path = Path(resume_dir) / "run.json"
        if not run_path.is_file():
            raise DataError(f"{resume_dir}: no run.json; nothing to resume")
        prev = _read_run_record(run_path, "start the run again without --resume",
                                keys=("model", "dataset"))
        model_name, dataset = prev["model"], prev["dataset"]
        if prev.get("grid") and prev.get("status") != "done":
            raise ConfigError(f"{resume_dir} holds an interrupted --grid search "
                              f"({' '.join(prev['grid'])}), which cannot be resumed; run the "
                              f"search again with --force")
        absent = [k for k in more if k not in prev.get("config", {})]
        if absent:
            raise ConfigError(f"--resume: model {model_name} has no {', '.join(absent)} to "
                              f"change (it does not train by epochs)")
        done, n = _epochs_done(Path(resume_dir)), more.get("epochs")
        if isinstance(n, int) and not isinstance(n, bool) and n <= done:  # others: config error
            raise ConfigError(f"--resume: --set epochs={more['epochs']} is not more than the "
                              f"{done} epochs this run has trained; give a larger number to "
                              f"train it further")
        if prev.get("status") == "done":
            if not more:
                further = ("; `--set epochs=N` with --resume trains it further"
                           if "epochs" in prev.get("config", {}) else "")
                console.print(f"{resume_dir}: this run finished already; nothing to resume "
                              f"(`genrec evaluate {resume_dir}` evaluates it again{further})")
                return
            if not (Path(resume_dir) / CHECKPOINT_NAME).is_file():
                raise ConfigError(f"{resume_dir}: this finished run has no training checkpoint "
                                  f"to continue from (a --grid search keeps none); train again "
                                  f"with the new settings")
            log.info("continuing the finished run in %s with %s", resume_dir,
                     ", ".join(f"{k}={v}" for k, v in more.items()))
        values = {**prev["config"], **more, "protocol": prev["protocol"], "data": prev["data"]}
        if device is not None:  # the trainer lets the device change on resume
            values["device"] = device
        out = Path(resume_dir)
    else:
        if not model_name or not dataset:
            raise click.UsageError("--model and --dataset are required (or --resume DIR)")
        values = load_toml(config_file) if config_file else {}
        values = _merge(values, parse_overrides(sets))
        if device is not None:
            values["device"] = device
        if precision is not None:
            values["precision"] = precision
        if seed is not None:
            values["seed"] = seed
            values.setdefault("protocol", {})["seed"] = seed
        if fmt:
            values.setdefault("data", {})["format"] = fmt
        out = None
        check_writable(out_dir, "--out", folder=True)
    cls = get_model_class(model_name)
    model_vals, proto_vals, data_vals = _split_sections(values)
    for key in ("device", "precision"):
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        if key in model_vals and key not in fields:
            if key == "device" and model_vals[key] in ("auto", "cpu"):
                model_vals.pop(key)  # closed-form and numpy models run on the CPU
            else:
                raise ConfigError(f"--{key} does not apply to {cls.name}")
    model_cfg = build_config(cls.config_class, model_vals, where=cls.name)
    combos = _parse_grid(grid) if grid else [{}]
    configs = [build_config(cls.config_class, c, base=model_cfg, where=cls.name) if c
               else model_cfg for c in combos]  # every --grid value checked before any work
    if protocol is not None:
        proto_vals = {**proto_vals, "name": protocol}
    elif "name" not in proto_vals:  # the protocol the model selects on (FM: by objective)
        proto_vals = {**proto_vals, "name": "rating" if cls(model_cfg).selects_on() == "rating"
                      else "diffrec"}
    proto_cfg = build_config(ProtocolConfig, proto_vals, where="protocol")
    data_opts = build_config(DataOptions, data_vals, where="data")
    if hasattr(model_cfg, "device"):
        resolve_device(model_cfg.device)  # cuda without CUDA: say so before loading data

    ds = _load_with_progress(dataset, data_opts)
    pdata = build_protocol(ds, proto_cfg)
    kind = pdata.kind
    select_default = select_metric is None
    select_metric = select_metric or ("rmse" if kind == "rating" else "ndcg@20")
    _preflight(cls, configs, pdata, select_metric if grid else None, select_default)
    if out is None:
        base = Path(out_dir) if out_dir else Path("runs") / f"{cls.name}-{ds.name}"
        out = base
        _check_out_dir(out, force)
    out.mkdir(parents=True, exist_ok=True)
    dataset_spec = dataset if not Path(dataset).exists() else str(Path(dataset).resolve())
    run = {
        "format": RUN_FORMAT, "status": "running", "genrec_version": __version__,
        "model": cls.name, "dataset": dataset_spec, "dataset_name": ds.name,
        "config": config_to_dict(model_cfg), "protocol": config_to_dict(proto_cfg),
        "data": config_to_dict(data_opts),
        "started": (prev.get("started") if resume else None)
        or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "grid": list(grid) or None,  # a search: --resume cannot continue it
    }
    atomic_write_json(out / "run.json", run)
    _save_run_data(out, pdata, ds)  # before training: a failure here costs no training
    evaluated = (f", {pdata.test.n_users} test users" if isinstance(pdata.test, RankingTask)
                 else f", {len(pdata.test.ratings)} test ratings")
    log.info("%s on %s (%s): %d users x %d items, %d training interactions%s", cls.name,
             ds.name, proto_cfg.name, pdata.train.n_users, pdata.train.n_items, pdata.train.nnz,
             evaluated)

    trials = []
    best = None
    for combo, cfg in zip(combos, configs):
        model = cls(cfg)
        t0 = time.perf_counter()
        try:
            _fit(model, pdata, ds, out if len(combos) == 1 else None, resume)
        except KeyboardInterrupt:
            _err_console().print(
                "interrupted: a --grid search cannot be resumed; run it again with --force"
                if grid else f"interrupted: continue with `genrec train --resume {out}`",
                soft_wrap=True)  # a command to copy: not broken over lines
            raise click.exceptions.Exit(130) from None  # said: no second "aborted"
        fit_s = time.perf_counter() - t0
        valid = _evaluate(model, pdata.valid, proto_cfg.ks)
        trials.append({"params": combo, "valid": valid["metrics"], "fit_seconds": fit_s})
        score = valid["metrics"][select_metric] if grid else 0.0  # _preflight checked it
        if combo:
            log.info("%s: valid %s = %.4f", combo, select_metric, score)
        better = best is None or (score < best[0] if select_metric in ("rmse", "mae")
                                  else score > best[0])
        if better:
            best = (score, model, cfg, fit_s, valid)
    assert best is not None
    _, model, model_cfg, fit_s, valid = best
    t0 = time.perf_counter()
    test = _evaluate(model, pdata.test, proto_cfg.ks)
    results = {"valid": valid, "test": test}

    # write the final folder contents (each file atomically), run.json last
    model.save(out)
    run.update({
        "status": "done", "config": config_to_dict(model_cfg), "fit_seconds": fit_s,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": results, "protocol_description": pdata.describe(),
        "select_metric": select_metric if grid else None, "trials": trials if grid else None,
    })
    atomic_write_json(out / "run.json", run)
    console.print(_metrics_table(f"{cls.name} on {ds.name} ({proto_cfg.name})", results))
    if grid:
        chosen = next(t["params"] for t in trials if t["valid"] is valid["metrics"])
        console.print(f"selected on validation {select_metric}: {chosen}")
    console.print(f"fit {fit_s:.2f} s; model saved to {out}")
    _write_output(output, {
        "model": cls.name, "dataset": ds.name, "protocol": config_to_dict(proto_cfg),
        "protocol_description": pdata.describe(), "config": config_to_dict(model_cfg),
        "data": config_to_dict(data_opts), "valid": valid, "test": test, "fit_seconds": fit_s,
        "trials": trials if grid else None, "model_dir": str(out), "genrec_version": __version__,
    })


# ----------------------------------------------------------------------------- evaluate
@cli.command("evaluate")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--output", type=click.Path(dir_okay=False), help="Write the results as JSON.")
def evaluate_cmd(model_dir: str, output: str | None) -> None:
    """Evaluate a saved model again, on the validation and test parts of its protocol."""
    check_writable(output, "--output")
    run, model, _ = _load_run(model_dir)
    opts = build_config(DataOptions, run["data"], where="data")
    ds = _load_with_progress(run["dataset"], opts)
    proto_cfg = build_config(ProtocolConfig, run["protocol"], where="protocol")
    pdata = build_protocol(ds, proto_cfg)
    if pdata.train.nnz != int(run["protocol_description"]["train_interactions"]):
        raise DataError(f"{run['dataset']}: the data changed since training (training part has "
                        f"{pdata.train.nnz} interactions, the run had "
                        f"{run['protocol_description']['train_interactions']})")
    results = _evaluate_both(model, pdata)
    _console().print(_metrics_table(f"{run['model']} on {run['dataset_name']} "
                                    f"({proto_cfg.name})", results))
    _write_output(output, {"model": run["model"], "dataset": run["dataset_name"],
                           "protocol": run["protocol"], **results})


# ----------------------------------------------------------------------------- recommend
@cli.command("recommend")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--user", "user_id", default=None,
              help="Raw user id from the data: scored from the user's whole history (held-out "
                   "parts too); every item the user has in the data is left out.")
@click.option("--items", "items_csv", default=None,
              help="A new user's history as raw item ids, e.g. 1,50,172 (fold-in).")
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many items.")
@click.option("--include-seen", is_flag=True,
              help="Do not leave out the items the user (or --items) already has.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the list as JSON.")
def recommend_cmd(model_dir, user_id, items_csv, k, include_seen, output) -> None:
    """Top-k items for a known user (--user) or a new history (--items)."""
    check_writable(output, "--output")
    if (user_id is None) == (items_csv is None):
        raise click.UsageError("give exactly one of --user ID or --items ID,ID,...")
    run, model, data = _load_run(model_dir)
    users_map, items_map = IdMap(data["user_ids"]), IdMap(data["item_ids"])
    X = _train_matrix(data)
    exclude = None
    if user_id is not None:
        u = users_map.index(user_id, "user")
        # the user's whole history in the data (held-out parts too), and all their items
        users, history = np.array([u]), _train_matrix(data, "history")[u]
        exclude = _train_matrix(data, "known")[u]
        who = f"user {user_id}"
        if history.nnz == 0:
            part = "the data" if "history_indptr" in data else "the training part"
            _err_console().print(f"note: user {user_id} has no interactions in {part}, so "
                                 f"this is the model's answer to an empty history")
    else:
        if not type(model).folds_in:
            raise ConfigError(f"model {model.name} cannot fold in a new history; use --user")
        raw = list(dict.fromkeys(x.strip() for x in items_csv.split(",") if x.strip()))
        if not raw:
            raise click.UsageError("--items is empty; give raw item ids like 1,50,172")
        idx = items_map.indices(raw, "item")
        history = sp.csr_matrix((np.ones(len(idx), np.float32), (np.zeros(len(idx), int), idx)),
                                shape=(1, X.shape[1]))
        users = None
        who = f"history {', '.join(raw)}"
    top, scores = model.recommend(users, history, k=k, exclude_seen=not include_seen,
                                  exclude=exclude)
    titles = data.get("item_titles")
    rows = []
    for rank, (i, s) in enumerate(zip(top[0], scores[0]), 1):
        if i < 0:
            break
        row = {"rank": rank, "item": items_map.raw[i].item(), "score": float(s)}
        if titles is not None:
            row["title"] = str(titles[i])
        rows.append(row)
    if len(rows) < k:
        _err_console().print(f"note: only {len(rows)} items can be recommended "
                             f"({'all items' if include_seen else 'the unseen items'}), "
                             f"fewer than -k {k}")
    table = Table(title=f"{run['model']}: top {len(rows)} for {who}")
    table.add_column("rank", justify="right")
    table.add_column("item", justify="right")
    if titles is not None:
        table.add_column("title")
    table.add_column("score", justify="right")
    for r in rows:
        table.add_row(str(r["rank"]), str(r["item"]), *([r["title"]] if titles is not None else []),
                      f"{r['score']:.4f}")
    _console().print(table)
    _write_output(output, {  # raw ids typed as in the data (as "item" in the rows)
        "model": run["model"],
        "user": None if user_id is None else users_map.raw[users[0]].item(),
        "items": None if items_csv is None else [items_map.raw[i].item() for i in idx],
        "recommendations": rows})


# ----------------------------------------------------------------------------- predict
@cli.command("predict")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--user", "user_id", required=True, help="Raw user id.")
@click.option("--item", "item_id", required=True, help="Raw item id.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the rating as JSON.")
def predict_cmd(model_dir, user_id, item_id, output) -> None:
    """Predicted rating of one (user, item) pair, by raw ids (rating models)."""
    check_writable(output, "--output")
    run, model, data = _load_run(model_dir)
    if not isinstance(model, RatingPredictor) or model.selects_on() != "rating":
        what = ("was trained to rank (objective bpr), not to predict ratings"
                if isinstance(model, RatingPredictor) else "does not predict ratings")
        raise ConfigError(f"model {run['model']} {what}; use a rating model (biased-mf, fm, "
                          f"autorec) or `genrec recommend`")
    u = IdMap(data["user_ids"]).get(user_id)
    i = IdMap(data["item_ids"]).get(item_id)
    notes = []
    if u is None:
        notes.append(f"user {user_id} unknown: fallback prediction")
    if i is None:
        notes.append(f"item {item_id} unknown: fallback prediction")
    r = float(model.predict(np.array([-1 if u is None else u]),
                            np.array([-1 if i is None else i]))[0])
    _console().print(f"predicted rating of item {item_id} by user {user_id}: {r:.3f}"
                     + (f" ({'; '.join(notes)})" if notes else ""))
    _write_output(output, {"model": run["model"], "user": user_id, "item": item_id,
                           "rating": r, "notes": notes})


# ----------------------------------------------------------------------------- clusters
MAX_K_CANDIDATES = 100  # each candidate K is a full clustering fit


def _parse_k_range(text: str) -> list[int]:
    lo, sep, hi = text.partition("-")
    try:
        bounds = (int(lo), int(hi)) if sep else None
        ks = [] if sep else [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--k-range {text!r}: expected LO-HI (2-12) or a list (4,8,16)") from None
    if bounds is not None and bounds[0] > bounds[1]:
        raise ConfigError(f"--k-range {text!r}: LO is above HI; write it as {hi}-{lo}")
    n = bounds[1] - bounds[0] + 1 if bounds is not None else len(set(ks))
    if n > MAX_K_CANDIDATES:  # checked before a range is built: 2-10**12 would fill memory
        raise ConfigError(f"--k-range {text!r}: {n} candidates, at most {MAX_K_CANDIDATES} "
                          f"(each is a full fit); narrow it, list values (4,8,16), or use --k")
    if bounds is not None:
        ks = list(range(bounds[0], bounds[1] + 1))
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k-range {text!r}: needs cluster counts >= 1")
    return sorted(set(ks))  # a repeated K would be fitted twice


@cli.command("clusters")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--k", "k", type=int, default=None, help="Number of clusters (else chosen).")
@click.option("--k-range", default="2-12", show_default=True,
              help="Candidates when --k is not given: LO-HI or a list.")
@click.option("--criterion", type=click.Choice(["bic", "silhouette"]), default=None,
              help="How K is chosen (default bic for gmm, silhouette for kmeans).")
@click.option("--method", type=click.Choice(["gmm", "kmeans"]), default="gmm", show_default=True)
@click.option("--map", "map_method", type=click.Choice(["tsne", "umap", "none"]), default="tsne",
              show_default=True)
@click.option("--embedding", type=click.Choice(["model", "svd"]), default="model",
              show_default=True, help="The model's encoder means, or a truncated SVD.")
@click.option("--pca", "pca_dim", type=click.IntRange(min=1), default=16, show_default=True,
              help="Cluster in this many principal components of the standardized embeddings.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for clusters.csv, map.png, map.html, report.html, profiles.json.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the summary as JSON.")
def clusters_cmd(model_dir, k, k_range, criterion, method, map_method, embedding, pca_dim, seed,
                 out_dir, output) -> None:
    """Cluster a model's users in latent space, map them, and profile each cluster."""
    from genrec.analysis import (
        ItemUserMeta,
        cluster_profiles,
        embed_2d,
        fit_clusters,
        model_user_embeddings,
        reduce_dim,
        select_k,
        svd_embeddings,
    )
    from genrec.analysis.report import labels_csv, map_html, map_png, report_html

    console, err = _console(), _err_console()
    check_writable(out_dir, "--out", folder=True)
    check_writable(output, "--output")
    run, model, data = _load_run(model_dir)
    X = _train_matrix(data)
    active = np.flatnonzero(np.diff(X.indptr) > 0)
    Xa = X[active]
    user_ids = np.asarray(data["user_ids"])[active]
    n = len(active)
    if k is not None and not 1 <= k <= n:
        raise ConfigError(f"--k {k} is larger than the number of users with interactions ({n})"
                          if k > n else f"--k must be >= 1, got {k}")
    if k is not None and criterion is not None:
        raise click.UsageError("--criterion chooses K among --k-range; with --k there is "
                               "nothing to choose: drop --k or --criterion")
    ks = [k] if k is not None else _parse_k_range(k_range)
    if k is None and max(ks) > n:
        ks = [x for x in ks if x <= n]
        if not ks:
            raise ConfigError(f"--k-range {k_range}: every K exceeds the {n} users")
        err.print(f"note: --k-range {k_range}: K above the {n} users with interactions dropped")
    criterion = criterion or ("bic" if method == "gmm" else "silhouette")
    from importlib.util import find_spec

    if map_method == "umap" and find_spec("umap") is None:  # fail before the fits
        raise ConfigError("--map umap needs the optional package umap-learn "
                          "(pip install umap-learn); or use --map tsne")
    meta = None
    try:
        ds = load_dataset(run["dataset"], build_config(DataOptions, {**run["data"],
                                                                     "download": False},
                                                       where="data"))
        meta = ItemUserMeta.from_dataset(ds, np.asarray(data["item_ids"]), user_ids)
    except GenrecError as e:
        err.print(f"note: data set metadata unavailable ({e}); profiles show activity and "
                  f"items only")
    if meta is None:
        meta = ItemUserMeta(np.asarray(data["item_ids"]), user_ids,
                            data.get("item_titles"))
    if meta.genres is None:
        err.print(f"note: {run['dataset_name']} has no genre metadata; cluster profiles list "
                  f"characteristic items and demographics only")
    t0 = time.perf_counter()
    with err.status("embedding users..."):
        Z = (model_user_embeddings(model, Xa) if embedding == "model"
             else svd_embeddings(Xa, seed=seed)[0])
        Y = reduce_dim(Z, pca_dim, seed)
    with _progress() as prog:
        tid = prog.add_task("clustering", total=len(ks))
        if len(ks) == 1:
            result, k_table = fit_clusters(Y, ks[0], method, seed), None
            prog.update(tid, completed=1)
        else:
            result, k_table = select_k(Y, ks, method, criterion, seed,
                                       on_step=lambda _: prog.advance(tid))
    xy = None
    if map_method != "none":
        with err.status(f"{map_method} map of {n} users..."):
            xy = embed_2d(Y, map_method, seed)
    profiles = cluster_profiles(result.labels, Xa, meta)
    files: dict[str, str | bytes] = {
        "clusters.csv": labels_csv(user_ids, result.labels, result.proba)}
    activity = np.diff(Xa.indptr)
    top_genres = None
    if meta.genres is not None:
        g = np.asarray(Xa @ meta.genres.astype(np.float64))
        top_genres = ["/".join(meta.genre_names[j] for j in np.argsort(-row)[:2] if row[j] > 0)
                      for row in g]
    found = len(np.unique(result.labels))  # duplicate points can leave a cluster empty
    shown = f"{result.k}" if found == result.k else f"{found} (of K = {result.k})"
    if found < result.k:
        err.print(f"note: {result.k - found} of the {result.k} clusters came out empty (users "
                  f"with identical embeddings); {found} are listed")
    title = f"{run['model']} users of {run['dataset_name']}: {shown} clusters ({method})"
    space = (f"{Y.shape[1]} PCA dims" if pca_dim < min(Z.shape)
             else f"{Y.shape[1]} standardized dims (no PCA: --pca {pca_dim} >= {min(Z.shape)})")
    summary = {"model": run["model"], "dataset": run["dataset_name"], "users": n,
               "embedding": embedding, "clustering space": space,
               "method": method, "k": result.k, "clusters found": found,
               "silhouette": round(result.silhouette, 4),
               "k chosen by": criterion if k_table else ("--k" if k is not None
                                                          else "--k-range (one candidate)"),
               "map": map_method}
    if xy is not None:
        png = map_png(xy, result.labels, title)
        files["map.png"] = png
        files["map.html"] = map_html(xy, result.labels, user_ids, activity, top_genres, title)
        files["report.html"] = report_html(
            title=title, summary=summary, profiles=profiles, png=png, xy=xy,
            labels=result.labels, user_ids=user_ids, activity=activity, top_genres=top_genres,
            k_table=k_table)
    payload = {**summary, "bic": result.bic, "k_table": k_table,  # NaN silhouette -> null
               "profiles": profiles, "seconds": time.perf_counter() - t0}
    files["profiles.json"] = to_json(payload)
    out = Path(out_dir)
    atomic_write_files(out, files)  # all or nothing: every file is complete before any lands
    if xy is None:  # an earlier run's map and report would describe other clusters
        stale = [f for f in ("map.png", "map.html", "report.html") if (out / f).is_file()]
        for f in stale:
            (out / f).unlink()
        if stale:
            err.print(f"note: removed {', '.join(stale)} of an earlier run from {out}")
    table = Table(title=title + f", silhouette {result.silhouette:.3f}")
    table.add_column("cluster", justify="right")
    table.add_column("users", justify="right")
    table.add_column("mean activity", justify="right")
    table.add_column("top genres (lift)")
    table.add_column("characteristic items")
    for p in profiles:
        genres = ", ".join(f"{g} {lift:.2f}" for g, lift, _ in p.get("top_genres", [])[:3])
        items = "; ".join(str(i["title"] or i["item"]) for i in p["characteristic_items"][:2])
        table.add_row(str(p["cluster"]), str(p["size"]), f"{p['mean_activity']:.1f}",
                      genres or "-", items)
    console.print(table)
    if k_table:
        score = "bic" if criterion == "bic" else "silhouette"
        console.print(f"K = {result.k} chosen by {criterion} among "
                      + ", ".join(f"{r['k']} ({r[score]:.4g})" for r in k_table))
    console.print(f"wrote {out}/clusters.csv, profiles.json"
                  + (", map.png, map.html, report.html" if xy is not None else "")
                  + f" in {time.perf_counter() - t0:.1f} s")
    _write_output(output, payload)


cli.add_command(foundations_cli, "foundations")


# ----------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 1."""
    try:
        code = cli.main(args=argv, prog_name="genrec", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):  # click returns an Exit's code
            return code
    except click.exceptions.Abort:
        _err_console().print("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except GenrecError as e:
        _err_console().print(f"[red]Error:[/red] {escape(str(e))}", markup=True, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        _err_console().print("interrupted")
        return 130
    except OSError as e:  # a path that cannot be read or written, a full disk, ...
        where = f"{e.filename}: " if e.filename else ""
        _err_console().print(f"[red]Error:[/red] {escape(f'{where}{e.strerror or e}')}",
                             markup=True, soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

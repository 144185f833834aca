"""``genrec train``: options -> :class:`RunSpec` -> :func:`train_run` -> a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import click

from genrec.cli.data import format_option
from genrec.cli.render import (
    console,
    dotted,
    err_console,
    metrics_table,
    run_hooks,
    write_output,
)
from genrec.config import load_toml, parse_overrides
from genrec.errors import ConfigError
from genrec.io import check_writable
from genrec.models import MODELS
from genrec.protocols import PROTOCOLS
from genrec.runs import (
    RESUME_SETTINGS,
    RunInterrupted,
    RunResult,
    RunSpec,
    UnfinishedRunError,
    parse_grid,
    resume_run,
    train_run,
)
from genrec.runs.checks import SettingError
from genrec.runs.folder import read_record
from genrec.runs.spec import merge

FLAGS = {"select": "--select", "grid": "--grid", "seeds": "--seeds", "refit": "--refit"}


def _resume_settings(sets: tuple[str, ...]) -> dict[str, Any]:
    """``--set train.epochs=N`` / ``train.patience=N`` (the settings a resume may change)."""
    given = dotted(parse_overrides(sets))
    allowed = {f"train.{k}" for k in RESUME_SETTINGS}
    bad = sorted(set(given) - allowed)
    if bad:
        raise ConfigError(f"--resume: --set may change only {', '.join(sorted(allowed))}, not "
                          f"{', '.join(bad)}; for other settings train again without --resume")
    values = {k.partition(".")[2]: v for k, v in given.items()}
    for k, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"--resume: --set train.{k}={v!r}: expected an integer >= 1")
    return values


def _render(result: RunResult, output: str | None, grid: bool) -> None:
    rec = result.record
    results = {"valid": result.valid, "test": result.test}
    console().print(metrics_table(f"{rec['model']} on {rec['dataset_name']} "
                                  f"({rec['protocol']['name']})", results))
    if grid and rec.get("chosen") is not None:
        console().print(f"selected on validation {rec['select_metric']}: {rec['chosen']}")
    console().print(f"fit {result.fit_seconds:.2f} s; model saved to {result.out}")
    write_output(output, {
        "model": rec["model"], "dataset": rec["dataset_name"], "protocol": rec["protocol"],
        "protocol_description": rec.get("protocol_description"), "config": rec["config"],
        "data": rec.get("data"), "valid": result.valid, "test": result.test,
        "fit_seconds": result.fit_seconds, "trials": rec.get("trials"),
        "model_dir": str(result.out), "genrec_version": rec.get("genrec_version")})


@click.command("train")
@click.option("--model", "model_name", help=f"Model name: {', '.join(MODELS)}.")
@click.option("--dataset", help="Known name (ml-100k, ml-1m, ...) or a path.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=None,
              help="Evaluation protocol (default diffrec; rating for rating models).")
@format_option
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML run config: model keys at top level ([train] and other nested "
                   "tables), [protocol], [data] and [run] tables; may name model and dataset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (model keys, train.KEY, protocol.KEY, data.KEY). "
                   "Repeatable.")
@click.option("--grid", multiple=True, metavar="KEY=V1,V2",
              help="Try each value (all combinations), keep the best on validation.")
@click.option("--select", "select_metric", default=None,
              help="Validation metric for --grid / --seeds (default ndcg@20, or rmse).")
@click.option("--seeds", default=None, metavar="S1,S2,...",
              help="Train each configuration once per seed; select on the mean.")
@click.option("--refit", is_flag=True, default=None,
              help="Refit the chosen configuration on training + validation data.")
@click.option("--device", type=str, default=None, help="auto, cpu or cuda (torch models).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None,
              help="Training precision (torch models).")
@click.option("--seed", type=int, default=None, help="Seed of the model and the protocol.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the trained model (default runs/MODEL-DATASET).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue an interrupted run in this folder, with its config (only "
                   "--device, --output and --set train.epochs=N / train.patience=N may be "
                   "given with it; a larger train.epochs also continues a finished run).")
@click.option("--force", is_flag=True,
              help="Start over in --out even if it holds an unfinished run or other files.")
def train_cmd(model_name, dataset, protocol, fmt, config_file, sets, grid, select_metric,
              seeds, refit, device, precision, seed, out_dir, output, resume_dir,
              force) -> None:
    """Train a model, evaluate it on validation and test, and save it."""
    check_writable(output, "--output")
    if resume_dir is not None:
        given = [name for name, v in (
            ("--model", model_name), ("--dataset", dataset), ("--config", config_file),
            ("--grid", grid), ("--select", select_metric), ("--seeds", seeds),
            ("--refit", refit), ("--protocol", protocol), ("--format", fmt),
            ("--precision", precision), ("--seed", seed), ("--out", out_dir),
            ("--force", force or None)) if v is not None and v != ()]
        if given:
            raise ConfigError(f"--resume takes the config of the interrupted run; do not pass "
                              f"{', '.join(given)} with it (only --device, --output and --set "
                              f"{' / '.join('train.' + k for k in RESUME_SETTINGS)} apply)")
        more = _resume_settings(sets)
        try:
            with run_hooks() as hooks:
                result = resume_run(resume_dir, device=device, hooks=hooks, **more)
        except SettingError as e:
            raise ConfigError(e.render(FLAGS.get(e.setting, e.setting)).replace(
                "(force)", "with --force")) from None
        except RunInterrupted as e:
            _interrupted(e.out, e.resumable)
        if result is None:
            cfg = read_record(Path(resume_dir)).get("config", {})
            further = ("; `--set train.epochs=N` with --resume trains it further"
                       if "epochs" in cfg or "epochs" in cfg.get("train", {}) else "")
            console().print(f"{resume_dir}: this run finished already; nothing to resume "
                            f"(`genrec evaluate {resume_dir}` evaluates it again{further})")
            return
        _render(result, output, False)
        return
    values: dict[str, Any] = load_toml(config_file) if config_file else {}
    values = merge(values, parse_overrides(sets))
    run = dict(values.get("run", {})) if isinstance(values.get("run"), dict) else {}
    if grid:
        run["grid"] = parse_grid(grid)
    if select_metric is not None:
        run["select"] = select_metric
    if seeds is not None:
        try:
            run["seeds"] = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r}: expected integers like 0,1,2") from None
    if refit:
        run["refit"] = True
    if run:
        values["run"] = run
    if protocol is not None:
        values = merge(values, {"protocol": {"name": protocol}})
    if fmt:
        values = merge(values, {"data": {"format": fmt}})
    if not (model_name or values.get("model")) or not (dataset or values.get("dataset")):
        raise click.UsageError("--model and --dataset are required (or a --config naming "
                               "them, or --resume DIR)")
    if select_metric is not None and not run.get("grid") and not run.get("seeds"):
        raise ConfigError("--select picks among --grid configurations or --seeds; without "
                          "them there is nothing to select (the epoch is chosen by the "
                          "model's train.select_metric)")
    check_writable(out_dir, "--out", folder=True)
    spec = RunSpec.from_mapping(values, model=model_name, dataset=dataset, device=device,
                                precision=precision, seed=seed, out=out_dir, force=force,
                                where=config_file or "config")
    try:
        with run_hooks() as hooks:
            result = train_run(spec, hooks)
    except SettingError as e:
        raise ConfigError(e.render(FLAGS.get(e.setting, e.setting))) from None
    except UnfinishedRunError as e:
        raise ConfigError(f"{e.path} holds an unfinished run: continue it with `genrec train "
                          f"--resume {e.path}`, or pass --force to start over there") from None
    except RunInterrupted as e:
        _interrupted(e.out, e.resumable)
    assert result is not None
    _render(result, output, bool(spec.grid))


def _interrupted(out: Path, resumable: bool) -> NoReturn:
    err_console().print(
        f"interrupted: continue with `genrec train --resume {out}`" if resumable
        else "interrupted: a --grid or --seeds search cannot be resumed; run it again",
        soft_wrap=True)  # a command to copy: not broken over lines
    raise click.exceptions.Exit(130) from None


COMMANDS = [train_cmd]

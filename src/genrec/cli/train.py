"""``genrec train``: options -> :class:`RunSpec` -> :func:`train_run` -> a table."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from genrec.cli.data import format_option
from genrec.cli.distributed import NPROC_FLAG, joined_group, launch
from genrec.cli.render import run_hooks
from genrec.cli.train_resume import FLAGS, interrupted, render_result, resume
from genrec.config import load_toml, parse_overrides
from genrec.errors import ConfigError
from genrec.io import check_writable
from genrec.models import MODELS
from genrec.protocols import PROTOCOLS
from genrec.runs import (
    RESUME_SETTINGS,
    RunInterrupted,
    RunSpec,
    UnfinishedRunError,
    parse_grid,
    train_run,
)
from genrec.runs.checks import SettingError
from genrec.runs.distributed import serve
from genrec.runs.spec import merge
from genrec.train.tracking import TRACKERS, make_trackers


def parse_seeds(text: str, flag: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; anything else is a one-line error naming ``flag``."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected integers like 0,1,2") from None


def log_option(text: str) -> Any:
    """The --log option of train and tune."""
    return click.option("--log", "trackers", multiple=True, type=click.Choice(TRACKERS), help=text)


def check_trackers(kinds: tuple[str, ...], spec: RunSpec) -> None:
    """--log needs a model with a per-epoch log (one the shared trainer trains)."""
    if kinds and not spec.model_class.capabilities.trainer:
        raise ConfigError(
            f"--log exports the trainer's per-epoch log, and {spec.model} is not trained by "
            f"epochs of the shared trainer; drop --log"
        )


@click.command("train")
@click.option("--model", "model_name", help=f"Model name: {', '.join(MODELS)}.")
@click.option("--dataset", help="Known name (ml-100k, ml-1m, ...) or a path.")
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default=None,
    help="Evaluation protocol (default diffrec; rating for rating models).",
)
@format_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML run config: model keys at top level ([train] and other nested "
    "tables), [protocol], [data] and [run] tables; may name model and dataset.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (model keys, train.KEY, protocol.KEY, data.KEY). Repeatable.",
)
@click.option(
    "--grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Try each value (all combinations), keep the best on validation.",
)
@click.option(
    "--select",
    "select_metric",
    default=None,
    help="Validation metric for --grid / --seeds (default ndcg@20, or rmse).",
)
@click.option(
    "--seeds",
    default=None,
    metavar="S1,S2,...",
    help="Train each configuration once per seed; select on the mean.",
)
@click.option(
    "--refit",
    is_flag=True,
    default=None,
    help="Refit the chosen configuration on training + validation data.",
)
@click.option(
    "--keep-checkpoint",
    is_flag=True,
    default=None,
    help="Keep the training checkpoint of the finished run (to train it further).",
)
@click.option("--device", type=str, default=None, help="auto, cpu or cuda (torch models).")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default=None,
    help="Training precision (torch models).",
)
@click.option("--seed", type=int, default=None, help="Seed of the model and the protocol.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for the trained model (default runs/MODEL-DATASET).",
)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the results as JSON.")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    help="Continue an interrupted run in this folder, with its config (only "
    "--device, --output, --keep-checkpoint and --set train.epochs=N / "
    "train.patience=N may be given with it; a larger train.epochs also continues "
    "a finished run that kept its checkpoint).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Start over in --out even if it holds an unfinished run or other files.",
)
@log_option(
    "Also export the per-epoch log: tensorboard (event files in runs/tensorboard/NAME) or "
    "mlflow (MLFLOW_TRACKING_URI, else runs/mlflow.db). Repeatable."
)
@click.option(
    NPROC_FLAG,
    "nproc",
    type=int,
    default=None,
    metavar="N",
    help="Train data-parallel in N processes on this machine (starts torchrun; gloo on "
    "CPU, NCCL on CUDA). train.batch_size is per process.",
)
def train_cmd(
    model_name,
    dataset,
    protocol,
    fmt,
    config_file,
    sets,
    grid,
    select_metric,
    seeds,
    refit,
    keep_checkpoint,
    device,
    precision,
    seed,
    out_dir,
    output,
    resume_dir,
    force,
    trackers,
    nproc,
) -> None:
    """Train a model, evaluate it on validation and test, and save it."""
    if nproc is not None:
        launch(nproc)
    with joined_group(device) as group:
        _train(
            model_name, dataset, protocol, fmt, config_file, sets, grid, select_metric, seeds,
            refit, keep_checkpoint, device, precision, seed, out_dir, output, resume_dir, force,
            trackers, group,
        )  # fmt: skip


def _train(
    model_name, dataset, protocol, fmt, config_file, sets, grid, select_metric, seeds, refit,
    keep_checkpoint, device, precision, seed, out_dir, output, resume_dir, force, trackers,
    group,
) -> None:  # fmt: skip
    check_writable(output, "--output")
    if resume_dir is not None:
        given = [
            name
            for name, v in (
                ("--model", model_name),
                ("--dataset", dataset),
                ("--config", config_file),
                ("--grid", grid),
                ("--select", select_metric),
                ("--seeds", seeds),
                ("--refit", refit),
                ("--protocol", protocol),
                ("--format", fmt),
                ("--precision", precision),
                ("--seed", seed),
                ("--out", out_dir),
                ("--force", force or None),
                ("--log", trackers),
            )
            if v is not None and v != ()
        ]
        if given:
            raise ConfigError(
                f"--resume takes the config of the interrupted run; do not pass "
                f"{', '.join(given)} with it (only --device, --output, "
                f"--keep-checkpoint and --set "
                f"{' / '.join('train.' + k for k in RESUME_SETTINGS)} apply)"
            )
        resume(resume_dir, device, sets, output, keep_checkpoint, group)
        return
    values: dict[str, Any] = load_toml(config_file) if config_file else {}
    values = merge(values, parse_overrides(sets))
    run = dict(values.get("run", {})) if isinstance(values.get("run"), dict) else {}
    if grid:
        run["grid"] = parse_grid(grid)
    if select_metric is not None:
        run["select"] = select_metric
    if seeds is not None:
        run["seeds"] = list(parse_seeds(seeds, "--seeds"))
    if refit:
        run["refit"] = True
    if keep_checkpoint:
        run["keep_checkpoint"] = True
    if run:
        values["run"] = run
    if protocol is not None:
        values = merge(values, {"protocol": {"name": protocol}})
    if fmt:
        values = merge(values, {"data": {"format": fmt}})
    if not (model_name or values.get("model")) or not (dataset or values.get("dataset")):
        raise click.UsageError(
            "--model and --dataset are required (or a --config naming them, or --resume DIR)"
        )
    check_writable(out_dir, "--out", folder=True)
    spec = RunSpec.from_mapping(
        values,
        model=model_name,
        dataset=dataset,
        device=device,
        precision=precision,
        seed=seed,
        out=out_dir,
        force=force,
        where=config_file or "config",
    )
    if select_metric is not None and not spec.grid and not spec.seeds:
        raise ConfigError(_select_alone(spec))
    if group is not None and not group.is_main:
        serve(group)  # rank 0 runs the run; this process takes part in its fits
        return
    exporters = _trackers(trackers, spec, out_dir)
    try:
        with run_hooks() as hooks:
            hooks.callbacks = (*hooks.callbacks, *exporters)
            hooks.group = group
            result = train_run(spec, hooks)
    except SettingError as e:
        raise ConfigError(e.render(FLAGS.get(e.setting, e.setting))) from None
    except UnfinishedRunError as e:
        raise ConfigError(
            f"{e.path} holds an unfinished run: continue it with `genrec train "
            f"--resume {e.path}`, or pass --force to start over there"
        ) from None
    except RunInterrupted as e:
        interrupted(e.out, e.resumable)
    assert result is not None
    render_result(result, output, bool(spec.grid))


def _trackers(kinds: tuple[str, ...], spec: RunSpec, out_dir: str | None) -> list:
    """The --log exporters, writing beside the run folder, named after it."""
    if not kinds:
        return []
    check_trackers(kinds, spec)
    from pathlib import Path

    out = Path(out_dir) if out_dir else Path("runs") / f"{spec.model}-{Path(spec.dataset).name}"
    return make_trackers(
        kinds,
        folder=out.parent,
        name=out.name,
        params=spec.to_dict(),
        tags={"model": spec.model, "dataset": spec.dataset},
    )


def _select_alone(spec: RunSpec) -> str:
    """Why --select without --grid or --seeds selects nothing, and what the model picks on
    validation by itself (naming only the settings it has)."""
    model = spec.model_class(spec.config)
    rating = spec.protocol.name == "rating"
    if model.selects_on() is None:
        own = "is fitted once, with nothing chosen on validation"
    elif "train" in {f.name for f in dataclasses.fields(model.config)} and not rating:
        own = "picks its epoch by train.select_metric (--set train.select_metric=METRIC)"
    else:
        own = f"picks its epoch on validation {'RMSE' if rating else 'metrics'} itself"
    return (
        f"--select picks among --grid configurations or --seeds, and none are given; "
        f"{model.name} {own}; to choose among settings, add --grid KEY=V1,V2"
    )


COMMANDS = [train_cmd]

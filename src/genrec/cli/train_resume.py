"""``genrec train --resume DIR``, and what ``genrec train`` shows when a run ends: the
metrics table and the JSON of :func:`render_result`, the one line of :func:`interrupted`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import click

from genrec.cli.render import console, dotted, err_console, metrics_table, run_hooks, write_output
from genrec.config import parse_overrides
from genrec.errors import ConfigError
from genrec.runs import RESUME_SETTINGS, RunInterrupted, RunResult, resume_run
from genrec.runs.checks import SettingError
from genrec.runs.folder import CHECKPOINT_NAME, read_record

__all__ = ["resume", "resume_settings", "render_result", "interrupted", "FLAGS"]

FLAGS = {
    "select": "--select",
    "grid": "--grid",
    "seeds": "--seeds",
    "refit": "--refit",
    "run.keep_checkpoint": "--keep-checkpoint",
    "protocol.item_k": "--set protocol.item_k",
}


def resume_settings(sets: tuple[str, ...]) -> dict[str, Any]:
    """``--set train.epochs=N`` / ``train.patience=N`` (the settings a resume may change)."""
    given = dotted(parse_overrides(sets))
    allowed = {f"train.{k}" for k in RESUME_SETTINGS}
    bad = sorted(set(given) - allowed)
    if bad:
        raise ConfigError(
            f"--resume: --set may change only {', '.join(sorted(allowed))}, not "
            f"{', '.join(bad)}; for other settings train again without --resume"
        )
    values = {k.partition(".")[2]: v for k, v in given.items()}
    for k, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"--resume: --set train.{k}={v!r}: expected an integer >= 1")
    return values


def render_result(result: RunResult, output: str | None, grid: bool) -> None:
    rec = result.record
    results = {"valid": result.valid, "test": result.test}
    console().print(
        metrics_table(
            f"{rec['model']} on {rec['dataset_name']} ({rec['protocol']['name']})", results
        )
    )
    if grid and rec.get("chosen") is not None:
        console().print(f"selected on validation {rec['select_metric']}: {rec['chosen']}")
    console().print(f"fit {result.fit_seconds:.2f} s; model saved to {result.out}")
    write_output(
        output,
        {
            "model": rec["model"],
            "dataset": rec["dataset_name"],
            "protocol": rec["protocol"],
            "protocol_description": rec.get("protocol_description"),
            "config": rec["config"],
            "data": rec.get("data"),
            "valid": result.valid,
            "test": result.test,
            "fit_seconds": result.fit_seconds,
            "trials": rec.get("trials"),
            "model_dir": str(result.out),
            "genrec_version": rec.get("genrec_version"),
        },
    )


def resume(
    resume_dir: str,
    device: str | None,
    sets: tuple[str, ...],
    output: str | None,
    keep_checkpoint: bool | None = None,
    group: Any = None,
) -> None:
    """``genrec train --resume DIR``: continue the interrupted run in DIR and render it
    (rank 0 of a distributed run; the other ranks take part in its fit)."""
    more = resume_settings(sets)
    if group is not None and not group.is_main:
        from genrec.runs.distributed import serve

        serve(group)
        return
    try:
        with run_hooks() as hooks:
            hooks.group = group
            result = resume_run(
                resume_dir, device=device, keep_checkpoint=keep_checkpoint, hooks=hooks, **more
            )
    except SettingError as e:
        raise ConfigError(e.render(FLAGS.get(e.setting, e.setting))) from None
    except RunInterrupted as e:
        interrupted(e.out, e.resumable)
    if result is None:
        cfg = read_record(Path(resume_dir)).get("config", {})
        further = (
            "; `--set train.epochs=N` with --resume trains it further"
            if ("epochs" in cfg or "epochs" in cfg.get("train", {}))
            and (Path(resume_dir) / CHECKPOINT_NAME).is_file()  # kept: --keep-checkpoint
            else ""
        )
        console().print(
            f"{resume_dir}: this run finished already; nothing to resume "
            f"(`genrec evaluate {resume_dir}` evaluates it again{further})"
        )
        return
    render_result(result, output, False)


def interrupted(out: Path, resumable: bool) -> NoReturn:
    err_console().print(
        f"interrupted: continue with `genrec train --resume {out}`"
        if resumable
        else "interrupted: a --grid or --seeds search cannot be resumed; run it again",
        soft_wrap=True,
    )  # a command to copy: not broken over lines
    raise click.exceptions.Exit(130) from None

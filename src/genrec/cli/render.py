"""Rendering for the command line: consoles, tables, progress bars, JSON output."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from genrec.io import atomic_write_json
from genrec.runs import RunHooks

__all__ = ["console", "err_console", "progress", "write_output", "metrics_table", "run_hooks"]


def console() -> Console:
    """Standard output. No markup: ids, titles and paths (``[red]x``) print as they are."""
    return Console(stderr=False, highlight=False, markup=False, emoji=False)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def progress(transient: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=err_console(),
        transient=transient,
        disable=not sys.stderr.isatty(),
    )


def write_output(path: str | None, payload: dict) -> None:
    if path:
        atomic_write_json(path, payload)
        err_console().print(f"wrote {path}")


def note(text: str) -> None:
    err_console().print(f"note: {text}", soft_wrap=True)


def dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 5}}`` -> ``{"train.epochs": 5}``."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(dotted(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def metrics_table(title: str, results: dict[str, Any]) -> Table:
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
            seeds = results[p].get("seeds", {}).get(k)
            if v is None:
                row.append("")
            elif seeds is not None:
                row.append(f"{v:.4f} (seeds {seeds['mean']:.4f} ± {seeds['sd']:.4f})")
            elif se is not None and np.isfinite(se):
                row.append(f"{v:.4f} ± {se:.4f}")
            else:
                row.append(f"{v:.4f}")
        table.add_row(*row)
    counts = []
    for p in parts:
        n, m = results[p].get("n_users"), results[p].get("n_evaluated")
        empty = results[p].get("n_empty") or 0
        if n is not None:
            count = f"{m} of {n} users" if m is not None and m != n else f"{n} users"
            counts.append(count + (f" ({empty} with none held out: 0)" if empty else ""))
        elif results[p].get("n_ratings") is not None:
            counts.append(f"{results[p]['n_ratings']} ratings")
    if counts:
        table.add_row("averaged over", *counts)
    sampled = [results[p].get("sampled") for p in parts]
    first = next((x for x in sampled if x), None)
    if first is not None:  # beside full ranking, never mixed with it
        table.add_section()
        table.add_row(f"sampled: {first['n_negatives']} negatives, {first['sampler']}")
        for k in first["metrics"]:
            table.add_row(
                f"sampled {k}",
                *("" if x is None else f"{x['metrics'][k]:.4f}" for x in sampled),
            )
        table.caption = f"sampled rows: {first['note']}"
    return table


@contextmanager
def run_hooks(train_progress: bool = True) -> Iterator[RunHooks]:
    """Hooks that draw a download bar, an evaluation bar and (on a terminal) the training
    progress bar."""
    bars = progress()
    download = Progress(
        TextColumn("downloading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=err_console(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    tasks: dict[str, Any] = {}

    def on_download(done: int, total: int | None) -> None:
        if "download" not in tasks:
            download.start()
            tasks["download"] = download.add_task("data set", total=total)
        download.update(tasks["download"], completed=done)

    def on_evaluate(part: str, done: int, total: int) -> None:
        if part not in tasks:
            tasks[part] = bars.add_task(f"evaluating {part}", total=total)
        bars.update(tasks[part], completed=done)

    callbacks: list[Any] = []
    if train_progress:
        from genrec.cli.progress import LogProgress, RichProgress

        callbacks.append(RichProgress() if sys.stderr.isatty() else LogProgress())
    with bars:
        try:
            yield RunHooks(
                on_download=on_download, on_evaluate=on_evaluate, callbacks=tuple(callbacks)
            )
        finally:
            download.stop()

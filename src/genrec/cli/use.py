"""``genrec evaluate``, ``genrec recommend`` and ``genrec predict``: use a saved run."""

from __future__ import annotations

import logging
import sys

import click
from rich.table import Table

from genrec._optional import require
from genrec.cli.render import (
    console,
    err_console,
    metrics_table,
    note,
    progress,
    run_hooks,
    write_output,
)
from genrec.errors import ConfigError
from genrec.io import check_writable
from genrec.runs import (
    RecommendationRows,
    Run,
    RunNotFinishedError,
    evaluate_run,
    load_run,
    write_recommendations,
)
from genrec.runs.export import EXPORT_FORMATS, export_format

log = logging.getLogger("genrec.cli")


def _load(model_dir: str) -> Run:
    try:
        return load_run(model_dir)
    except RunNotFinishedError as e:
        raise ConfigError(f"{e}: continue it with `genrec train --resume {e.path}`") from None


@click.command("evaluate")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--output", type=click.Path(dir_okay=False), help="Write the results as JSON.")
def evaluate_cmd(model_dir: str, output: str | None) -> None:
    """Evaluate a saved model again, on the validation and test parts of its protocol."""
    check_writable(output, "--output")
    run = _load(model_dir)
    with run_hooks(train_progress=False) as hooks:
        results = evaluate_run(run, hooks)
    rec = run.record
    console().print(
        metrics_table(
            f"{rec['model']} on {rec['dataset_name']} ({rec['protocol']['name']})", results
        )
    )
    write_output(
        output,
        {
            "model": rec["model"],
            "dataset": rec["dataset_name"],
            "protocol": rec["protocol"],
            **results,
        },
    )


@click.command("recommend")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option(
    "--user",
    "user_id",
    default=None,
    help="Raw user id from the data: scored from the user's whole history (held-out "
    "parts too); every item the user has in the data is left out.",
)
@click.option(
    "--items",
    "items_csv",
    default=None,
    help="A new user's history as raw item ids, e.g. 1,50,172 (fold-in).",
)
@click.option(
    "-k",
    "--k",
    "k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many items.",
)
@click.option(
    "--include-seen",
    is_flag=True,
    help="Do not leave out the items the user (or --items) already has.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="An unknown id in --items is an error (default: left out with a note).",
)
@click.option(
    "--all-users",
    is_flag=True,
    help="Every user of the run, scored in batches, written to --output as CSV or Parquet "
    "(columns user, rank, item, score, and title when the run knows titles).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default=None,
    help="The --all-users file format (default: from the --output suffix, .csv or .parquet).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Users scored together with --all-users (default 1024, fewer for a large catalogue).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the list as JSON (with --all-users: the CSV or Parquet file).",
)
def recommend_cmd(
    model_dir, user_id, items_csv, k, include_seen, strict, all_users, fmt, batch_size, output
) -> None:
    """Top-k items for a known user (--user), a new history (--items) or every user
    (--all-users --output recs.parquet)."""
    check_writable(output, "--output")
    if all_users:
        _recommend_all(model_dir, user_id, items_csv, k, include_seen, fmt, batch_size, output)
        return
    if fmt is not None or batch_size is not None:
        flag = "--format" if fmt is not None else "--batch-size"
        raise ConfigError(f"{flag} goes with --all-users; one user's list is written as JSON")
    if (user_id is None) == (items_csv is None):
        raise click.UsageError("give exactly one of --user ID, --items ID,ID,... or --all-users")
    run = _load(model_dir)
    if items_csv is not None:
        raw = [x.strip() for x in items_csv.split(",") if x.strip()]
        if not raw:
            raise click.UsageError("--items is empty; give raw item ids like 1,50,172")
        if not run.model.folds_in():
            raise ConfigError(f"model {run.name} cannot fold in a new history; use --user")
        recs = run.recommend(
            items=raw, k=k, include_seen=include_seen, unknown_items="error" if strict else "skip"
        )
        who = f"history {', '.join(str(i) for i in recs.history or [])}"
    else:
        recs = run.recommend(user=user_id, k=k, include_seen=include_seen)
        who = f"user {user_id}"
    for text in recs.notes:
        note(text)
    titles = any("title" in r for r in recs.items)
    table = Table(title=f"{run.name}: top {len(recs.items)} for {who}")
    table.add_column("rank", justify="right")
    table.add_column("item", justify="right")
    if titles:
        table.add_column("title")
    table.add_column("score", justify="right")
    for r in recs.items:
        table.add_row(
            str(r["rank"]), str(r["item"]), *([r["title"]] if titles else []), f"{r['score']:.4f}"
        )
    console().print(table)
    write_output(
        output,
        {  # raw ids typed as in the data (as "item" in the rows)
            "model": run.name,
            "user": recs.user,
            "items": recs.history,
            "recommendations": recs.items,
            "notes": recs.notes,
        },
    )


def _recommend_all(model_dir, user_id, items_csv, k, include_seen, fmt, batch_size, output):
    """``--all-users``: every user's top k, streamed batch by batch into ``output``."""
    if user_id is not None or items_csv is not None:
        which = "--user" if user_id is not None else "--items"
        raise ConfigError(f"--all-users scores every user; leave out {which}")
    if not output:
        raise ConfigError(
            "--all-users needs --output FILE (.csv or .parquet) for the lists of every user"
        )
    kind = export_format(output, fmt)
    if kind == "parquet":  # before loading and scoring: the missing extra at once
        require("pyarrow", "parquet", f"--output {output}: writing Parquet")
    run = _load(model_dir)
    n_users = run.data.train.shape[0]
    tty = sys.stderr.isatty()
    done = [0]
    with progress() as bar:
        task = bar.add_task(f"{run.name}: top {k}", total=n_users)
        step = max(1, n_users // 10)
        if not tty:
            log.info("recommending for %d users of %s into %s", n_users, run.name, output)

        def on_batch(rows: RecommendationRows) -> None:
            before = done[0]
            done[0] += rows.n_users
            bar.update(task, advance=rows.n_users)
            if not tty and (done[0] // step > before // step or done[0] == n_users):
                log.info("%d of %d users written", done[0], n_users)

        n_rows = write_recommendations(
            output,
            run.recommend_all(k=k, batch_size=batch_size, include_seen=include_seen),
            format=kind,
            on_batch=on_batch,
        )
    err_console().print(
        f"wrote {output}: {n_rows} rows for {n_users} users ({kind})", soft_wrap=True
    )


@click.command("predict")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--user", "user_id", required=True, help="Raw user id.")
@click.option("--item", "item_id", required=True, help="Raw item id.")
@click.option(
    "--strict",
    is_flag=True,
    help="An unknown user or item id is an error (default: a fallback prediction with a note).",
)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the rating as JSON.")
def predict_cmd(model_dir, user_id, item_id, strict, output) -> None:
    """Predicted rating of one (user, item) pair, by raw ids (rating models)."""
    check_writable(output, "--output")
    run = _load(model_dir)
    r, notes = run.predict(user_id, item_id, unknown="error" if strict else "fallback")
    console().print(
        f"predicted rating of item {item_id} by user {user_id}: {r:.3f}"
        + (f" ({'; '.join(notes)})" if notes else "")
    )
    write_output(
        output, {"model": run.name, "user": user_id, "item": item_id, "rating": r, "notes": notes}
    )


COMMANDS = [evaluate_cmd, recommend_cmd, predict_cmd]

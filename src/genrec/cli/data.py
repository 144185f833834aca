"""``genrec data info`` and ``genrec models``."""

from __future__ import annotations

import click
from rich.table import Table

from genrec.cli.render import console, dotted, run_hooks, write_output
from genrec.config import build_config, config_to_dict, load_toml, parse_overrides
from genrec.data import FORMATS, DataOptions, load_dataset
from genrec.errors import ConfigError, GenrecError
from genrec.io import check_writable
from genrec.models import MODELS
from genrec.protocols import ProtocolConfig, ranking_filters
from genrec.runs.spec import merge

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default=None,
    help="Input format (detected from the path when omitted).",
)


@click.command("models")
def models_cmd() -> None:
    """List the models, their default configs and capabilities ("ordered": it reads each
    user's items in order, protocol seq-loo)."""
    table = Table(title="models")
    for col in ("name", "class", "fold-in", "defaults"):
        table.add_column(col)
    caps_table = Table(title="capabilities")
    cols = ("name", "task", "fold-in", "trainer", "side", "ratings", "ordered", "selects-on")
    for col in cols:
        caps_table.add_column(col)
    for name, cls in MODELS.items():
        defaults = ", ".join(
            f"{k}={v}"  # nested tables as --set spells them: train.epochs=200
            for k, v in dotted(config_to_dict(cls.config_class())).items()
        )
        caps = cls.capabilities
        yes = [
            "yes" if f else "no"
            for f in (
                caps.folds_in,
                caps.trainer,
                caps.side_features,
                caps.predicts_ratings,
                caps.sequential,
            )
        ]
        table.add_row(name, cls.__name__, yes[0], defaults)
        caps_table.add_row(name, caps.task, *yes, caps.selects_on or "-")
    console().print(table)
    console().print(caps_table)


@click.group("data")
def data_group() -> None:
    """Inspect data sets."""


@data_group.command("info")
@click.argument("dataset")
@format_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML file of genrec train; its [data] table is used.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="data.KEY=VALUE",
    help="Reader options, e.g. --set data.user_col=uid; protocol.binarize_threshold, "
    "protocol.user_k and protocol.item_k for what the ranking protocols would drop.",
)
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the summary as JSON.")
def data_info(
    dataset: str,
    fmt: str | None,
    config_file: str | None,
    sets: tuple[str, ...],
    output: str | None,
) -> None:
    """Users, items, interactions, density and the rating histogram of DATASET."""
    check_writable(output, "--output")
    over = parse_overrides(sets)
    if set(over) - {"data", "protocol"}:
        raise ConfigError("data info takes only --set data.KEY=VALUE and protocol.KEY=VALUE")
    protocol = build_config(ProtocolConfig, over.get("protocol", {}), where="protocol")
    from_file = load_toml(config_file).get("data", {}) if config_file else {}
    if not isinstance(from_file, dict):
        raise ConfigError(f"{config_file}: [data] must be a table of keys")
    values = merge({"data": from_file}, over)["data"]
    options = build_config(
        DataOptions, {**values, **({"format": fmt} if fmt else {})}, where="data"
    )
    with run_hooks(train_progress=False) as hooks:
        ds = load_dataset(dataset, options, progress=hooks.on_download)
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
    table.add_row(
        "interactions per user", f"min {ipu['min']}, median {ipu['median']:g}, max {ipu['max']}"
    )
    if "sequence_lengths" in s:
        sl = s["sequence_lengths"]
        table.add_row(
            "sequence length",
            f"min {sl['min']}, median {sl['median']:g}, p90 {sl['p90']:g}, max {sl['max']} "
            f"({s['sequence_events']:,} events, in order)",
        )
    for name, parts in s["splits"].items():
        table.add_row(f"split {name}", ", ".join(f"{p} {n:,}" for p, n in parts.items()))
    try:  # what binarizing and k-core would drop under the ranking protocols
        steps = ranking_filters(ds, protocol)
        s["ranking_filters"] = [f.summary() for f in steps]
        rows = [f.line().split(": ", 1) for f in steps]  # "binarized at 4.0", "kept N of M..."
    except GenrecError as e:
        rows, s["ranking_filters_error"] = [["ranking protocols", str(e)]], str(e)
    for row in rows:
        table.add_row(*row)
    console().print(table)
    if "rating_histogram" in s:
        hist = Table(title="rating histogram")
        hist.add_column("rating", justify="right")
        hist.add_column("count", justify="right")
        hist.add_column("share", justify="right")
        total = sum(s["rating_histogram"].values())
        for r, c in s["rating_histogram"].items():
            hist.add_row(r, f"{c:,}", f"{c / total:.1%}")
        console().print(hist)
    write_output(output, s)


COMMANDS = [models_cmd, data_group]

"""``genrec clusters``: options -> :func:`genrec.analysis.pipeline.cluster_users` -> files."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import TaskID
from rich.table import Table

from genrec.cli.render import console, note, progress, write_output
from genrec.cli.use import _load
from genrec.config import build_config
from genrec.data import DataOptions, load_dataset
from genrec.errors import ConfigError, GenrecError
from genrec.io import atomic_write_files, check_writable


def _cli_terms(error: ConfigError) -> ConfigError:
    message = str(error)
    for library, flag in LIBRARY_TERMS:
        message = message.replace(library, flag)
    return ConfigError(message)


def _parse_k_range(text: str) -> list[int]:
    from genrec.analysis.pipeline import MAX_K_CANDIDATES  # (not at start-up)

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
        raise ConfigError(
            f"--k-range {text!r}: {n} candidates, at most {MAX_K_CANDIDATES} "
            f"(each is a full fit); narrow it, list values (4,8,16), or use --k"
        )
    if bounds is not None:
        ks = list(range(bounds[0], bounds[1] + 1))
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k-range {text!r}: needs cluster counts >= 1")
    return sorted(set(ks))  # a repeated K would be fitted twice


#: the pipeline's words for its settings -> this command's options, in its error messages
LIBRARY_TERMS = (
    ("candidate K", "--k-range K"),
    (
        "a truncated SVD of the interactions (genrec.analysis.svd_embeddings)",
        "--embedding svd (a truncated SVD of the interactions)",
    ),
    ("(embedding='svd')", "(--embedding svd)"),
    ("or use embedding='svd'", "or use --embedding svd"),
    ("(map_method='none')", "(--map none)"),
    ("method 'gmm', or criterion 'silhouette'", "--method gmm, or --criterion silhouette"),
    ("use method 'gmm' or 'kmeans'", "use --method gmm or kmeans"),
    ("drop k and the criterion", "drop --k and --criterion"),
)


@click.command("clusters")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--k", "k", type=int, default=None, help="Number of clusters (else chosen).")
@click.option(
    "--k-range",
    default="2-12",
    show_default=True,
    help="Candidates when --k is not given: LO-HI or a list.",
)
@click.option(
    "--criterion",
    type=click.Choice(["bic", "silhouette"]),
    default=None,
    help="How K is chosen (default bic for gmm, silhouette for kmeans).",
)
@click.option(
    "--method",
    type=click.Choice(["gmm", "kmeans", "codes"]),
    default="gmm",
    show_default=True,
    help="codes: a VQ-VAE's discrete user codes are the clusters (no K to choose).",
)
@click.option(
    "--map",
    "map_method",
    type=click.Choice(["tsne", "umap", "none"]),
    default="tsne",
    show_default=True,
)
@click.option(
    "--embedding",
    type=click.Choice(["model", "svd"]),
    default="model",
    show_default=True,
    help="The model's encoder means, or a truncated SVD.",
)
@click.option(
    "--pca",
    "pca_dim",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Cluster in this many principal components of the standardized embeddings.",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for clusters.csv, map.png, map.html, report.html, profiles.json.",
)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the summary as JSON.")
def clusters_cmd(
    model_dir, k, k_range, criterion, method, map_method, embedding, pca_dim, seed, out_dir, output
) -> None:
    """Cluster a model's users in latent space, map them, and profile each cluster."""
    from genrec.analysis.pipeline import cluster_users

    check_writable(out_dir, "--out", folder=True)
    check_writable(output, "--output")
    if k is not None and criterion is not None:
        raise click.UsageError(
            "--criterion chooses K among --k-range; with --k there is "
            "nothing to choose: drop --k or --criterion"
        )
    ks = [] if k is not None else _parse_k_range(k_range)
    run = _load(model_dir)
    if embedding == "model":  # a model without user embeddings says so before the data is read
        try:
            run.user_embeddings(users=run.users.raw[:1].tolist())
        except ConfigError as e:
            raise _cli_terms(e) from None
    rec = run.record
    ds = None
    try:
        ds = load_dataset(
            rec["dataset"],
            build_config(DataOptions, {**rec.get("data", {}), "download": False}, where="data"),
        )
    except GenrecError as e:
        note(f"data set metadata unavailable ({e}); profiles show activity and items only")
    with progress() as bars:
        tasks: dict[str, TaskID] = {}

        def on_step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        try:
            report = cluster_users(
                run.model,
                run.data.train,
                run.data.user_ids,
                run.data.item_ids,
                dataset=ds,
                titles=run.data.titles,
                k=k,
                ks=ks or (2,),
                method=method,
                criterion=criterion,
                map_method=map_method,
                embedding=embedding,
                pca_dim=pca_dim,
                seed=seed,
                model_name=rec["model"],
                dataset_name=rec.get("dataset_name", rec["dataset"]),
                on_step=on_step,
                sequences=run.data.sequences,
            )
        except ConfigError as e:
            raise _cli_terms(e) from None
    for text in report.notes:
        note(text)
    out = Path(out_dir)
    atomic_write_files(out, report.files)  # all or nothing: every file complete before any lands
    if "map.png" not in report.files:  # an earlier run's map and report describe other clusters
        stale = [f for f in ("map.png", "map.html", "report.html") if (out / f).is_file()]
        for f in stale:
            (out / f).unlink()
        if stale:
            note(f"removed {', '.join(stale)} of an earlier run from {out}")
    result = report.result
    table = Table(title=report.title + f", silhouette {result.silhouette:.3f}")
    table.add_column("cluster", justify="right")
    table.add_column("users", justify="right")
    table.add_column("mean activity", justify="right")
    table.add_column("top genres (lift)")
    table.add_column("characteristic items")
    for p in report.profiles:
        genres = ", ".join(f"{g} {lift:.2f}" for g, lift, _ in p.get("top_genres", [])[:3])
        items = "; ".join(str(i["title"] or i["item"]) for i in p["characteristic_items"][:2])
        table.add_row(
            str(p["cluster"]), str(p["size"]), f"{p['mean_activity']:.1f}", genres or "-", items
        )
    console().print(table)
    if report.k_table:
        crit = report.summary["k chosen by"]
        score = "bic" if crit == "bic" else "silhouette"
        console().print(
            f"K = {result.k} chosen by {crit} among "
            + ", ".join(f"{r['k']} ({r[score]:.4g})" for r in report.k_table)
        )
    console().print(
        f"wrote {out}/clusters.csv, profiles.json"
        + (", map.png, map.html, report.html" if "map.png" in report.files else "")
        + f" in {report.seconds:.1f} s"
    )
    write_output(
        output,
        {
            **report.summary,
            "bic": result.bic,
            "k_table": report.k_table,
            "profiles": report.profiles,
            "seconds": report.seconds,
        },
    )


COMMANDS = [clusters_cmd]

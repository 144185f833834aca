"""``genrec tune``: options -> :class:`TuneSpec` -> :func:`run_study` -> a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from genrec.cli.data import format_option
from genrec.cli.render import console
from genrec.cli.train import check_trackers, log_option, parse_seeds
from genrec.config import load_toml, parse_overrides
from genrec.errors import ConfigError
from genrec.io import check_writable
from genrec.models import MODELS
from genrec.protocols import PROTOCOLS
from genrec.runs import RunSpec
from genrec.runs.spec import merge


@click.command("tune")
@click.option("--model", "model_name", help=f"Model name: {', '.join(MODELS)}.")
@click.option("--dataset", help="Known name (ml-100k, ml-1m, ...) or a path.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=None, help="Protocol.")
@format_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML run config the trials start from (the space's keys are searched over it).",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@click.option(
    "--space",
    "space_file",
    type=click.Path(dir_okay=False),
    help="TOML search space (default configs/spaces/MODEL.toml in this folder).",
)
@click.option("--trials", type=int, default=20, show_default=True, help="Finished trials.")
@click.option("--seeds", default="0", show_default=True, help="Seeds per trial (mean).")
@click.option("--test-seeds", default=None, help="Seeds of the final run (default: new ones).")
@click.option("--metric", default=None, help="Validation metric (default ndcg@20 or rmse).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Trials side by side.")
@click.option("--storage", default=None, help="SQLAlchemy URL (default sqlite:///OUT/study.db).")
@click.option("--study", "study_name", default=None, help="Study name (default OUT's name).")
@click.option("--timeout", type=float, default=None, help="Start no trial after S seconds.")
@click.option("--no-prune", is_flag=True, help="Train every trial to its end.")
@click.option("--sampler-seed", type=int, default=0, show_default=True, help="TPE's seed.")
@click.option("--no-test", is_flag=True, help="Skip the final training and test read.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Study folder (default studies/MODEL-DATASET).",
)
@log_option("Export every fit's per-epoch log (tensorboard, mlflow). Repeatable.")
def tune_cmd(
    model_name,
    dataset,
    protocol,
    fmt,
    config_file,
    sets,
    space_file,
    trials,
    seeds,
    test_seeds,
    metric,
    jobs,
    storage,
    study_name,
    timeout,
    no_prune,
    sampler_seed,
    no_test,
    out_dir,
    trackers,
) -> None:
    """Search a model's settings on validation (Optuna), read test once for the best.

    Each trial trains one configuration once per --seeds seed and scores the mean validation
    metric; unpromising trials stop early (--no-prune to keep them). The study is kept in
    --storage, so the same command continues a stopped study. The folder gets best.toml (a
    run config), trials.csv, report.md, study.json, plots, and best-run/, the chosen
    configuration trained with new seeds and evaluated on test.
    """
    from genrec.tune import load_space, report
    from genrec.tune.study import TuneSpec, run_study

    values: dict[str, Any] = load_toml(config_file) if config_file else {}
    values = merge(values, parse_overrides(sets))
    if "run" in values:
        raise ConfigError(
            f"{config_file or 'config'}: [run] (grid, seeds, refit) does not apply to a study; "
            f"the space and --seeds say what each trial runs"
        )
    if protocol is not None:
        values = merge(values, {"protocol": {"name": protocol}})
    if fmt:
        values = merge(values, {"data": {"format": fmt}})
    if not (model_name or values.get("model")) or not (dataset or values.get("dataset")):
        raise click.UsageError("--model and --dataset are required (or a --config naming them)")
    check_writable(out_dir, "--out", folder=True)
    base = RunSpec.from_mapping(
        values, model=model_name, dataset=dataset, where=config_file or "config"
    )
    if space_file is None:
        default = Path("configs") / "spaces" / f"{base.model}.toml"
        if not default.is_file():
            raise ConfigError(
                f"no search space for {base.model}: give --space FILE ({default} is not here; "
                f"the source tree's configs/spaces/ has examples)"
            )
        space_file = str(default)
    space = load_space(space_file, model=base.model, base=base.config)
    name = Path(base.dataset).name
    out = Path(out_dir) if out_dir else Path("studies") / f"{base.model}-{name}"
    spec = TuneSpec(
        base=base,
        space=space,
        trials=trials,
        seeds=parse_seeds(seeds, "--seeds"),
        test_seeds=None if test_seeds is None else parse_seeds(test_seeds, "--test-seeds"),
        metric=metric,
        jobs=jobs,
        storage=storage,
        study=study_name,
        out=out,
        timeout=timeout,
        prune=not no_prune,
        sampler_seed=sampler_seed,
        final=not no_test,
        trackers=tuple(trackers),
    )
    check_trackers(tuple(trackers), base)
    try:
        result = run_study(spec)
    except KeyboardInterrupt:
        console().print(
            f"interrupted: the study is kept in {spec.storage_url}; run the same command to "
            f"continue it"
        )
        raise click.exceptions.Exit(130) from None
    best = result.best
    console().print(
        f"study {spec.study_name}: "
        + ", ".join(f"{n} {s.lower()}" for s, n in report.state_counts(result.trials).items())
        + f"; best trial {best['number']}: valid {spec.metric_name} {best['value']:.4f}"
        + report.spread(spec, best)
    )
    console().print(f"chosen: {best['values']}")
    if result.test is not None:
        shown = {
            k: (f"{v['mean']:.4f} ± {v['sd']:.4f}" if isinstance(v, dict) else f"{v:.4f}")
            for k, v in result.test["test"].items()
            if k in ("recall@20", "ndcg@20", "recall@10", "ndcg@10", "rmse", "mae")
        }
        console().print(f"test (seeds {result.test['seeds']}): {shown}")
    console().print(f"written to {result.out}: {', '.join(result.files)}")


COMMANDS = [tune_cmd]

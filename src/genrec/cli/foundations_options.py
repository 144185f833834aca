"""What the ``genrec foundations`` commands share: the output and mixture options, the
fit of a mixture demo (:func:`run_mixture`), the writing of plots and JSON, and the
translation of a data-config range error into the option that set it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from genrec.cli.foundations_render import console, print_mixture
from genrec.errors import ConfigError
from genrec.io import atomic_write_files, atomic_write_json, check_writable

if TYPE_CHECKING:
    from genrec.foundations.demos import BetaDemo, MixtureDemo

__all__ = [
    "OUT_OPTIONS",
    "MIXTURE_OPTIONS",
    "mixture_options",
    "run_mixture",
    "data_config",
    "write_outputs",
    "one_line",
]

# the fields of SyntheticPoints / SimulatedJar and the options that set them
FLAGS = {
    "n_samples": "--n-samples",
    "true_k": "--true-k",
    "n_features": "--n-features",
    "separation": "--separation",
    "seed": "--seed",
    "rate": "--rate",
    "n_rounds": "--rounds",
    "draws_per_round": "--draws-per-round",
}


def one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg or type(exc).__name__


def data_config(cls: Callable[..., Any], **fields: Any) -> Any:
    """``cls(**fields)``; a range error names the option (``--true-k 50``, not ``true_k=50``)."""
    try:
        return cls(**fields)
    except ConfigError as e:
        raise ConfigError(
            re.sub(r"\b(\w+)=", lambda m: f"{FLAGS[m[1]]} " if m[1] in FLAGS else m[0], str(e))
        ) from None


def write_outputs(out_dir: str | None, output: str | None, demo: MixtureDemo | BetaDemo) -> None:
    """The plots land in ``out_dir`` together, all drawn before any is written (a plot that
    fails leaves the folder as it was); then the JSON."""
    written = []
    if out_dir is not None:
        files: dict[str, bytes | str] = dict(demo.plot_files())
        atomic_write_files(out_dir, files)
        written += [str(Path(out_dir) / name) for name in files]
    if output is not None:
        atomic_write_json(output, demo.payload())
        written.append(output)
    for path in written:
        console().print(f"wrote {escape(path)}")


def apply_options(func: Callable[..., Any], options: list[Any]) -> Callable[..., Any]:
    for opt in reversed(options):
        func = opt(func)
    return func


OUT_OPTIONS = [
    click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Folder for PNG plots.",
    ),
    click.option(
        "--output",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write the results as JSON to this file.",
    ),
]
MIXTURE_OPTIONS = [
    click.option(
        "--csv",
        "csv_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="CSV of points (one row per point, header optional). Default: synthetic data.",
    ),
    click.option(
        "--n-samples",
        type=click.IntRange(min=2),
        default=600,
        show_default=True,
        help="Synthetic data: number of points.",
    ),
    click.option(
        "--true-k",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="Synthetic data: number of generating components.",
    ),
    click.option(
        "--n-features",
        type=click.IntRange(min=1),
        default=2,
        show_default=True,
        help="Synthetic data: dimension.",
    ),
    click.option(
        "--separation",
        type=click.FloatRange(min=0.0),
        default=1.5,
        show_default=True,
        help="Synthetic data: minimum distance between means (1.5 overlaps them).",
    ),
    click.option(
        "-k",
        "--n-components",
        "n_components",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="Number of mixture components K.",
    ),
    click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="random_state of the data generator and of the fit.",
    ),
    click.option("--max-iter", type=click.IntRange(min=1), default=200, show_default=True),
    click.option(
        "--tol",
        type=click.FloatRange(min=0.0),
        default=None,
        help="Convergence threshold on the bound change (default: model default).",
    ),
    click.option(
        "--n-init",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Restarts (the best bound is kept).",
    ),
    click.option(
        "--init",
        "init_params",
        type=click.Choice(["k-means++", "random", "random_from_data"]),
        default="k-means++",
        show_default=True,
        help="Initial responsibilities.",
    ),
    *OUT_OPTIONS,
]


def mixture_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return apply_options(func, MIXTURE_OPTIONS)


def run_mixture(
    model_class: type,
    model_params: dict[str, Any],
    csv_path: str | None,
    n_samples: int,
    true_k: int,
    n_features: int,
    separation: float,
    n_components: int,
    seed: int,
    max_iter: int,
    tol: float | None,
    n_init: int,
    init_params: str,
    out_dir: str | None,
    output: str | None,
) -> None:
    from genrec.foundations.demos import SyntheticPoints, run_mixture_demo

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        data = (
            csv_path
            if csv_path is not None
            else data_config(
                SyntheticPoints,
                n_samples=n_samples,
                true_k=true_k,
                n_features=n_features,
                separation=separation,
                seed=seed,
            )
        )
        model = model_class(
            n_components,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            random_state=seed,
            **({} if tol is None else {"tol": tol}),
            **model_params,
        )
        demo = run_mixture_demo(model, data)
        print_mixture(console(), demo)
        write_outputs(out_dir, output, demo)
    except (ValueError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None

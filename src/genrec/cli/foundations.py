"""``genrec foundations gmm|vbgmm|beta``: options -> :func:`genrec.foundations.demos.
run_mixture_demo` / :func:`~genrec.foundations.demos.run_beta_demo` -> tables and files.

The group is ``foundations_group`` (also ``foundations_cli``), a ``click.Group`` named
``foundations``. Bad input is reported as a one-line ``click.ClickException`` (exit status 1,
no traceback); output paths are checked before anything is fitted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from genrec.cli.foundations_render import console, print_beta, print_mixture
from genrec.errors import ConfigError
from genrec.io import atomic_write_files, atomic_write_json, check_writable

if TYPE_CHECKING:
    from genrec.foundations.demos import BetaDemo, MixtureDemo

__all__ = ["foundations_group", "foundations_cli", "COMMANDS"]

# the fields of SyntheticPoints / SimulatedJar and the options that set them
_FLAGS = {"n_samples": "--n-samples", "true_k": "--true-k", "n_features": "--n-features",
          "separation": "--separation", "seed": "--seed", "rate": "--rate",
          "n_rounds": "--rounds", "draws_per_round": "--draws-per-round"}


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return msg or type(exc).__name__


def _data_config(cls: Callable[..., Any], **fields: Any) -> Any:
    """``cls(**fields)``; a range error names the option (``--true-k 50``, not ``true_k=50``)."""
    try:
        return cls(**fields)
    except ConfigError as e:
        raise ConfigError(re.sub(r"\b(\w+)=", lambda m: f"{_FLAGS[m[1]]} " if m[1] in _FLAGS
                                 else m[0], str(e))) from None


def _write(out_dir: str | None, output: str | None, demo: MixtureDemo | BetaDemo) -> None:
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


def _options(func: Callable[..., Any], options: list[Any]) -> Callable[..., Any]:
    for opt in reversed(options):
        func = opt(func)
    return func


_OUT_OPTIONS = [
    click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                 help="Folder for PNG plots."),
    click.option("--output", type=click.Path(dir_okay=False), default=None,
                 help="Write the results as JSON to this file."),
]
_MIXTURE_OPTIONS = [
    click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
                 help="CSV of points (one row per point, header optional). Default: synthetic "
                 "data."),
    click.option("--n-samples", type=click.IntRange(min=2), default=600, show_default=True,
                 help="Synthetic data: number of points."),
    click.option("--true-k", type=click.IntRange(min=1), default=3, show_default=True,
                 help="Synthetic data: number of generating components."),
    click.option("--n-features", type=click.IntRange(min=1), default=2, show_default=True,
                 help="Synthetic data: dimension."),
    click.option("--separation", type=click.FloatRange(min=0.0), default=4.0, show_default=True,
                 help="Synthetic data: minimum distance between means."),
    click.option("-k", "--n-components", "n_components", type=click.IntRange(min=1), default=3,
                 show_default=True, help="Number of mixture components K."),
    click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                 help="random_state of the data generator and of the fit."),
    click.option("--max-iter", type=click.IntRange(min=1), default=200, show_default=True),
    click.option("--tol", type=click.FloatRange(min=0.0), default=None,
                 help="Convergence threshold on the bound change (default: model default)."),
    click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Restarts (the best bound is kept)."),
    click.option("--init", "init_params",
                 type=click.Choice(["k-means++", "random", "random_from_data"]),
                 default="k-means++", show_default=True, help="Initial responsibilities."),
    *_OUT_OPTIONS,
]


def _mixture_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return _options(func, _MIXTURE_OPTIONS)


def _run_mixture(model_class: type, model_params: dict[str, Any], csv_path: str | None,
                 n_samples: int, true_k: int, n_features: int, separation: float,
                 n_components: int, seed: int, max_iter: int, tol: float | None, n_init: int,
                 init_params: str, out_dir: str | None, output: str | None) -> None:
    from genrec.foundations.demos import SyntheticPoints, run_mixture_demo

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        data = csv_path if csv_path is not None else _data_config(
            SyntheticPoints, n_samples=n_samples, true_k=true_k, n_features=n_features,
            separation=separation, seed=seed)
        model = model_class(n_components, max_iter=max_iter, n_init=n_init,
                            init_params=init_params, random_state=seed,
                            **({} if tol is None else {"tol": tol}), **model_params)
        demo = run_mixture_demo(model, data)
        print_mixture(console(), demo)
        _write(out_dir, output, demo)
    except (ValueError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from None


foundations_group = click.Group(
    "foundations",
    help="Probabilistic foundations: EM for Gaussian mixtures, variational Bayes (CAVI), "
    "and the Beta-Bernoulli cookie jar.",
)
foundations_cli = foundations_group


@foundations_group.command("gmm")
@_mixture_options
@click.option("--covariance-type", type=click.Choice(["full", "tied", "diag", "spherical"]),
              default="full", show_default=True)
@click.option("--reg-covar", type=click.FloatRange(min=0.0), default=1e-6, show_default=True,
              help="Covariance floor added to every diagonal.")
def gmm_command(covariance_type: str, reg_covar: float, **options: Any) -> None:
    """Fit a Gaussian mixture by EM; print parameters and the log-likelihood trace."""
    from genrec.foundations.gmm import GaussianMixture

    _run_mixture(GaussianMixture, {"covariance_type": covariance_type, "reg_covar": reg_covar},
                 **options)


@foundations_group.command("vbgmm")
@_mixture_options
@click.option("--prior-type", type=click.Choice(["dirichlet_process", "dirichlet_distribution"]),
              default="dirichlet_process", show_default=True,
              help="Stick-breaking (truncated DP) or Dirichlet prior on the weights.")
@click.option("--weight-concentration", type=click.FloatRange(min=0.0, min_open=True),
              default=None, help="gamma (DP) or alpha_0 (Dirichlet); default 1/K.")
@click.option("--covariance-type", type=click.Choice(["full"]), default="full",
              show_default=True, help="Only 'full' (Normal-Wishart prior).")
def vbgmm_command(prior_type: str, weight_concentration: float | None, covariance_type: str,
                  **options: Any) -> None:
    """Fit a Bayesian Gaussian mixture by CAVI; print parameters and the ELBO trace.

    Set -k larger than the truth: superfluous components end with weights near zero.
    """
    from genrec.foundations.vbgmm import BayesianGaussianMixture

    _run_mixture(BayesianGaussianMixture,
                 {"covariance_type": covariance_type, "weight_concentration_prior_type":
                  prior_type, "weight_concentration_prior": weight_concentration}, **options)


_POSITIVE = click.FloatRange(min=0.0, min_open=True)


@foundations_group.command("beta")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="CSV of draws: one column of 0/1 (split by --draws-per-round) or two "
              "columns round,outcome. Default: simulated jar.")
@click.option("--rate", type=click.FloatRange(0.0, 1.0), default=0.7, show_default=True,
              help="Simulated jar: true fraction of chocolate cookies.")
@click.option("--rounds", "n_rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--draws-per-round", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--prior-a", type=_POSITIVE, default=1.0, show_default=True)
@click.option("--prior-b", type=_POSITIVE, default=1.0, show_default=True)
@click.option("--estimator", type=click.Choice(["reparam", "score"]), default="reparam",
              show_default=True, help="Gradient estimator of the variational fit.")
@click.option("--steps", type=click.IntRange(min=1), default=800, show_default=True,
              help="Adam steps per round.")
@click.option("--mc-samples", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=_POSITIVE, default=0.1, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@_OUT_OPTIONS[0]
@_OUT_OPTIONS[1]
def beta_command(csv_path: str | None, rate: float, n_rounds: int, draws_per_round: int,
                 prior_a: float, prior_b: float, estimator: str, steps: int, mc_samples: int,
                 lr: float, seed: int, out_dir: str | None, output: str | None) -> None:
    """The cookie jar: exact Beta posterior vs. a variational Beta fit, round by round."""
    from genrec.foundations.demos import SimulatedJar, run_beta_demo

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        data = csv_path if csv_path is not None else _data_config(
            SimulatedJar, rate=rate, n_rounds=n_rounds, draws_per_round=draws_per_round,
            seed=seed)
        demo = run_beta_demo(data, prior_a=prior_a, prior_b=prior_b, estimator=estimator,
                             steps=steps, mc_samples=mc_samples, lr=lr, seed=seed,
                             draws_per_round=draws_per_round)
        print_beta(console(), demo)
        _write(out_dir, output, demo)
    except (ValueError, OSError) as exc:
        raise click.ClickException(_one_line(exc)) from None


COMMANDS = [foundations_group]

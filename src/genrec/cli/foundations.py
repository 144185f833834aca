"""``genrec foundations gmm|vbgmm|beta``: options -> :func:`genrec.foundations.demos.
run_mixture_demo` / :func:`~genrec.foundations.demos.run_beta_demo` -> tables and files.

The group is ``foundations_group`` (also ``foundations_cli``), a ``click.Group`` named
``foundations``. Bad input is reported as a one-line ``click.ClickException`` (exit status 1,
no traceback); output paths are checked before anything is fitted.
"""

from __future__ import annotations

from typing import Any

import click

from genrec.cli.foundations_options import (
    OUT_OPTIONS,
    data_config,
    mixture_options,
    one_line,
    run_mixture,
    write_outputs,
)
from genrec.cli.foundations_render import console, print_beta
from genrec.io import check_writable

__all__ = ["foundations_group", "foundations_cli", "COMMANDS"]

foundations_group = click.Group(
    "foundations",
    help="Probabilistic foundations: EM for Gaussian mixtures, variational Bayes (CAVI), "
    "and the Beta-Bernoulli cookie jar.",
)
foundations_cli = foundations_group


@foundations_group.command("gmm")
@mixture_options
@click.option(
    "--covariance-type",
    type=click.Choice(["full", "tied", "diag", "spherical"]),
    default="full",
    show_default=True,
)
@click.option(
    "--reg-covar",
    type=click.FloatRange(min=0.0),
    default=1e-6,
    show_default=True,
    help="Covariance floor added to every diagonal.",
)
def gmm_command(covariance_type: str, reg_covar: float, **options: Any) -> None:
    """Fit a Gaussian mixture by EM; print parameters and the log-likelihood trace."""
    from genrec.foundations.gmm import GaussianMixture

    run_mixture(
        GaussianMixture, {"covariance_type": covariance_type, "reg_covar": reg_covar}, **options
    )


@foundations_group.command("vbgmm")
@mixture_options
@click.option(
    "--prior-type",
    type=click.Choice(["dirichlet_process", "dirichlet_distribution"]),
    default="dirichlet_process",
    show_default=True,
    help="Stick-breaking (truncated DP) or Dirichlet prior on the weights.",
)
@click.option(
    "--weight-concentration",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="gamma (DP) or alpha_0 (Dirichlet); default 1/K.",
)
@click.option(
    "--covariance-type",
    type=click.Choice(["full"]),
    default="full",
    show_default=True,
    help="Only 'full' (Normal-Wishart prior).",
)
def vbgmm_command(
    prior_type: str, weight_concentration: float | None, covariance_type: str, **options: Any
) -> None:
    """Fit a Bayesian Gaussian mixture by CAVI; print parameters and the ELBO trace.

    Set -k larger than the truth: superfluous components end with weights near zero.
    """
    from genrec.foundations.vbgmm import BayesianGaussianMixture

    run_mixture(
        BayesianGaussianMixture,
        {
            "covariance_type": covariance_type,
            "weight_concentration_prior_type": prior_type,
            "weight_concentration_prior": weight_concentration,
        },
        **options,
    )


_POSITIVE = click.FloatRange(min=0.0, min_open=True)


@foundations_group.command("beta")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of draws: one column of 0/1 (split by --draws-per-round) or two "
    "columns round,outcome. Default: simulated jar.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.7,
    show_default=True,
    help="Simulated jar: true fraction of chocolate cookies.",
)
@click.option("--rounds", "n_rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--draws-per-round", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--prior-a", type=_POSITIVE, default=1.0, show_default=True)
@click.option("--prior-b", type=_POSITIVE, default=1.0, show_default=True)
@click.option(
    "--estimator",
    type=click.Choice(["reparam", "score"]),
    default="reparam",
    show_default=True,
    help="Gradient estimator of the variational fit.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=800,
    show_default=True,
    help="Adam steps per round.",
)
@click.option("--mc-samples", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--lr", type=_POSITIVE, default=0.1, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@OUT_OPTIONS[0]
@OUT_OPTIONS[1]
def beta_command(
    csv_path: str | None,
    rate: float,
    n_rounds: int,
    draws_per_round: int,
    prior_a: float,
    prior_b: float,
    estimator: str,
    steps: int,
    mc_samples: int,
    lr: float,
    seed: int,
    out_dir: str | None,
    output: str | None,
) -> None:
    """The cookie jar: exact Beta posterior vs. a variational Beta fit, round by round."""
    from genrec.foundations.demos import SimulatedJar, run_beta_demo

    try:
        check_writable(out_dir, "--out", folder=True)
        check_writable(output, "--output", folder=False)
        data = (
            csv_path
            if csv_path is not None
            else data_config(
                SimulatedJar,
                rate=rate,
                n_rounds=n_rounds,
                draws_per_round=draws_per_round,
                seed=seed,
            )
        )
        demo = run_beta_demo(
            data,
            prior_a=prior_a,
            prior_b=prior_b,
            estimator=estimator,
            steps=steps,
            mc_samples=mc_samples,
            lr=lr,
            seed=seed,
            draws_per_round=draws_per_round,
        )
        print_beta(console(), demo)
        write_outputs(out_dir, output, demo)
    except (ValueError, OSError) as exc:
        raise click.ClickException(one_line(exc)) from None


COMMANDS = [foundations_group]

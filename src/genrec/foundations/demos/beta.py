"""The Beta-Bernoulli cookie jar demonstration: rounds of draws (simulated or a CSV), the
posterior per round and what ``genrec foundations beta`` shows of it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from genrec.errors import ConfigError
from genrec.foundations.demos._common import ElboSplit, _now, _png

if TYPE_CHECKING:
    from genrec.foundations.beta_bernoulli import BetaBernoulliJar

BETA_TRACE_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # 0-based, plus the last


# --------------------------------------------------------------------------- the cookie jar
@dataclass(frozen=True)
class SimulatedJar:
    """A simulated jar (:func:`~genrec.foundations.beta_bernoulli.simulate_jar`)."""

    rate: float = 0.7  # true fraction of chocolate cookies
    n_rounds: int = 5  # rounds of draws
    draws_per_round: int = 10  # cookies drawn per round
    seed: int | None = 0  # random_state of the simulation

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ConfigError(f"rate={self.rate} must be in [0, 1]")
        for name in ("n_rounds", "draws_per_round"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")


def read_jar_csv(path: str | os.PathLike[str], draws_per_round: int) -> list[np.ndarray]:
    """Rounds of draws from a CSV: one column of 0/1 outcomes, cut into rounds of
    ``draws_per_round`` (the last may be shorter), or two columns ``round,outcome``
    (rounds in order of first appearance).

    Returns
    -------
    list of ndarray of int64, one per round, values 0 (vanilla) or 1 (chocolate)

    Raises
    ------
    ValueError
        A malformed CSV, another number of columns, or an outcome other than 0/1.
    """
    from genrec.foundations.io import read_points_csv

    if int(draws_per_round) < 1:
        raise ConfigError(f"draws_per_round={draws_per_round} must be >= 1")
    data = read_points_csv(path)
    if data.shape[1] == 1:
        outcomes = data[:, 0]
        groups = [
            outcomes[i : i + draws_per_round] for i in range(0, len(outcomes), draws_per_round)
        ]
    elif data.shape[1] == 2:
        ids = data[:, 0]
        _, first = np.unique(ids, return_index=True)
        groups = [data[ids == ids[i], 1] for i in sorted(first)]
    else:
        raise ValueError(
            f"{path}: expected 1 column (outcomes) or 2 columns (round, outcome); "
            f"found {data.shape[1]}"
        )
    rounds = []
    for r, g in enumerate(groups, start=1):
        if not np.all(np.isin(g, (0.0, 1.0))):
            raise ValueError(
                f"{path}: round {r} has outcomes other than 0 (vanilla) / 1 (chocolate)"
            )
        rounds.append(g.astype(np.int64))
    return rounds


@dataclass(frozen=True)
class BetaRound:
    """One round of the jar: the draws, the exact and the fitted posterior, the KLs.

    ``kl_start*`` compare the q the round began from (the previous fit, or the prior) with
    the round's exact posterior: in closed form and by Monte Carlo (with its standard error).
    """

    draws: np.ndarray  # (n_draws,) 0/1
    counts: tuple[int, int]  # chocolate, vanilla so far
    exact_posterior: tuple[float, float]  # Beta(a, b)
    variational_posterior: tuple[float, float]  # fitted q = Beta(a, b)
    kl: float  # KL(q || p), closed form
    kl_start: float  # KL(q0 || p), closed form
    kl_start_mc: float
    kl_start_mc_se: float
    log_evidence: float
    elbo: float
    elbo_trace: tuple[float, ...]  # per step


@dataclass(frozen=True)
class BetaDemo:
    """The fitted jar and everything ``genrec foundations beta`` shows of it.

    Attributes
    ----------
    description : str
    prior : (float, float)
    estimator : {'reparam', 'score'}
    jar : BetaBernoulliJar, fitted
    rounds : tuple of BetaRound
    final_trace : tuple of (step, ELBO, log evidence - ELBO)
        Selected steps (1-based) of the last round's fit, the last step included.
    mc_draws : int
        Draws of each Monte-Carlo KL.
    created : str
    elbo_splits : tuple of ElboSplit
        Per round, the fitted q's ELBO in its terms: E_q[log p(x | theta)] and
        -KL(q || prior), with log p(x) = ELBO + KL(q || exact posterior).
    """

    description: str
    prior: tuple[float, float]
    estimator: str
    jar: BetaBernoulliJar
    rounds: tuple[BetaRound, ...]
    final_trace: tuple[tuple[int, float, float], ...]
    mc_draws: int
    created: str
    elbo_splits: tuple[ElboSplit, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The results as plain data, for :func:`genrec.io.atomic_write_json`."""
        return {
            "command": "beta",
            "created": self.created,
            "data": self.description,
            "prior": list(self.prior),
            "estimator": self.estimator,
            "rounds": [
                {
                    "draws": r.draws,
                    "counts": list(r.counts),
                    "exact_posterior": list(r.exact_posterior),
                    "variational_posterior": list(r.variational_posterior),
                    "kl_closed_form": r.kl,
                    "kl_start_closed_form": r.kl_start,
                    "kl_start_monte_carlo": r.kl_start_mc,
                    "kl_start_monte_carlo_se": r.kl_start_mc_se,
                    "log_evidence": r.log_evidence,
                    "elbo": r.elbo,
                    "elbo_trace": list(r.elbo_trace),
                }
                for r in self.rounds
            ],
            "elbo_terms": [split.payload() for split in self.elbo_splits],
        }

    def plot_files(self) -> dict[str, bytes]:
        """``beta_posteriors.png`` (densities per round, KL beside them) and
        ``beta_trace.png`` (the ELBO per step, rounds one after another), as PNG bytes."""
        from genrec.foundations import plots

        rs = self.rounds
        all_trace = [x for r in rs for x in r.elbo_trace]
        return {
            "beta_posteriors.png": _png(
                lambda p: plots.plot_jar_posteriors(
                    [r.exact_posterior for r in rs],
                    [r.variational_posterior for r in rs],
                    [r.kl for r in rs],
                    [r.counts for r in rs],
                    p,
                    self.prior,
                    kl_before=[r.kl_start for r in rs],
                )
            ),
            "beta_trace.png": _png(
                lambda p: plots.plot_trace(
                    all_trace, p, "ELBO (closed form)", "ELBO per step (rounds one after another)"
                )
            ),
        }


JarSource = str | os.PathLike[str] | SimulatedJar | Sequence[Sequence[int]]


def run_beta_demo(
    data: JarSource,
    *,
    prior_a: float = 1.0,
    prior_b: float = 1.0,
    estimator: str = "reparam",
    steps: int = 800,
    mc_samples: int = 64,
    lr: float = 0.1,
    seed: int = 0,
    draws_per_round: int = 10,
    mc_draws: int = 4096,
) -> BetaDemo:
    """Fit the Beta-Bernoulli jar round by round and compare each fit with the exact posterior.

    Parameters
    ----------
    data : str, PathLike, SimulatedJar or sequence of 0/1 sequences
        A CSV of draws (see :func:`read_jar_csv`), a simulated jar, or the rounds themselves.
    prior_a, prior_b : float
        The Beta prior.
    estimator : {'reparam', 'score'}
        Gradient estimator of the variational fit.
    steps : int
        Adam steps per round.
    mc_samples : int
        Monte-Carlo samples per gradient step.
    lr : float
        Adam's learning rate.
    seed : int
        random_state of the fit; the Monte-Carlo KLs use ``seed + 1``.
    draws_per_round : int
        Round length of a one-column CSV.
    mc_draws : int
        Draws of each Monte-Carlo KL estimate.

    Returns
    -------
    BetaDemo

    Raises
    ------
    ValueError
        A malformed CSV, invalid parameters, or a fit that diverged (lower ``lr``).
    """
    import torch

    from genrec.foundations.beta_bernoulli import (
        BetaBernoulliJar,
        beta_elbo_terms,
        kl_beta_monte_carlo,
        simulate_jar,
    )

    rounds: list[np.ndarray]
    if isinstance(data, SimulatedJar):
        rounds = simulate_jar(
            data.rate, data.n_rounds, data.draws_per_round, random_state=data.seed
        )
        desc = (
            f"simulated jar, P(chocolate) = {data.rate}, {data.n_rounds} rounds of "
            f"{data.draws_per_round}"
        )
    elif isinstance(data, (str, os.PathLike)):
        rounds = read_jar_csv(data, draws_per_round)
        desc = f"{data} ({len(rounds)} rounds)"
    else:
        rounds = [np.asarray(r) for r in data]
        desc = f"{len(rounds)} given rounds"
    jar = BetaBernoulliJar(
        prior_a,
        prior_b,
        estimator=estimator,
        n_mc_samples=mc_samples,
        n_steps=steps,
        lr=lr,
        random_state=seed,
    ).fit(cast("list[Any]", rounds))
    gen = torch.Generator().manual_seed(seed + 1)
    out, splits = [], []
    for r, draws in enumerate(rounds):
        ae, be = jar.exact_posteriors_[r]
        a0, b0 = (prior_a, prior_b) if r == 0 else jar.variational_posteriors_[r - 1]
        mc, se = kl_beta_monte_carlo(a0, b0, ae, be, mc_draws, gen)
        c, v = jar.counts_[r]
        aq, bq = jar.variational_posteriors_[r]
        expected, kl_prior = beta_elbo_terms(aq, bq, prior_a, prior_b, c, v)
        splits.append(
            ElboSplit(
                f"round {r + 1}",
                (("E_q[log p(x|theta)]", expected), ("-KL(q||p(theta))", -kl_prior)),
                float(jar.kl_[r]),
                float(jar.log_evidence_[r]),
            )
        )
        out.append(
            BetaRound(
                np.asarray(draws),
                (int(c), int(v)),
                (float(ae), float(be)),
                (float(aq), float(bq)),
                float(jar.kl_[r]),
                float(jar.kl_before_[r]),
                float(mc),
                float(se),
                float(jar.log_evidence_[r]),
                float(jar.elbo_[r]),
                tuple(float(x) for x in jar.elbo_traces_[r]),
            )
        )
    last, evidence = out[-1].elbo_trace, out[-1].log_evidence
    steps_shown = sorted({*BETA_TRACE_STEPS, len(last) - 1} & set(range(len(last))))
    final = tuple((s + 1, last[s], evidence - last[s]) for s in steps_shown)
    return BetaDemo(
        desc,
        (float(prior_a), float(prior_b)),
        estimator,
        jar,
        tuple(out),
        final,
        mc_draws,
        _now(),
        tuple(splits),
    )

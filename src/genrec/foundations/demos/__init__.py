"""The foundations demonstrations as library code: what ``genrec foundations gmm|vbgmm|beta``
runs, usable from Python.

:func:`run_mixture_demo` fits a :class:`~genrec.foundations.gmm.GaussianMixture` (EM) or a
:class:`~genrec.foundations.vbgmm.BayesianGaussianMixture` (CAVI) to points read from a CSV
or drawn from a known mixture (:class:`SyntheticPoints`), and returns a :class:`MixtureDemo`:
the fitted model, the bound per iteration, per-component summaries, the JSON payload and,
on request, the plots as PNG bytes. :func:`run_beta_demo` does the same for the
Beta-Bernoulli cookie jar (:class:`SimulatedJar` or a CSV of draws) and returns a
:class:`BetaDemo`.

>>> from genrec.foundations import GaussianMixture
>>> demo = run_mixture_demo(GaussianMixture(2, random_state=0),
...                         SyntheticPoints(n_samples=200, true_k=2, seed=0))
>>> demo.kind, len(demo.components), demo.model.converged_
('gmm', 2, True)

Nothing here writes files: ``payload()`` is plain data for :func:`genrec.io.atomic_write_json`
and ``plot_files()`` a ``{name: bytes}`` mapping for :func:`genrec.io.atomic_write_files`.
"""

from __future__ import annotations

from genrec.foundations.demos._common import ElboSplit
from genrec.foundations.demos._common import _now as _now
from genrec.foundations.demos._common import _png as _png
from genrec.foundations.demos.beta import BETA_TRACE_STEPS as BETA_TRACE_STEPS
from genrec.foundations.demos.beta import (
    BetaDemo,
    BetaRound,
    SimulatedJar,
    read_jar_csv,
    run_beta_demo,
)
from genrec.foundations.demos.beta import JarSource as JarSource
from genrec.foundations.demos.mixture import EFFECTIVE_WEIGHT as EFFECTIVE_WEIGHT
from genrec.foundations.demos.mixture import (
    ComponentSummary,
    MixtureDemo,
    Points,
    SyntheticPoints,
    Trace,
    component_summaries,
    fit_capturing_warnings,
    gmm_elbo_splits,
    load_points,
    run_mixture_demo,
    vbgmm_elbo_split,
)
from genrec.foundations.demos.mixture import Mixture as Mixture
from genrec.foundations.demos.mixture import PointsSource as PointsSource

__all__ = [
    "SyntheticPoints",
    "Points",
    "load_points",
    "ComponentSummary",
    "component_summaries",
    "fit_capturing_warnings",
    "Trace",
    "ElboSplit",
    "gmm_elbo_splits",
    "vbgmm_elbo_split",
    "MixtureDemo",
    "run_mixture_demo",
    "SimulatedJar",
    "read_jar_csv",
    "BetaRound",
    "BetaDemo",
    "run_beta_demo",
]

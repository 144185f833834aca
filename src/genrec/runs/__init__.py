"""The experiment runner as library code: what ``genrec train``, ``evaluate`` and
``recommend`` do, callable from Python.

>>> from genrec.runs import RunSpec, train_run, load_run          # doctest: +SKIP
>>> spec = RunSpec.from_mapping({"model": "ease", "dataset": "ml-100k", "l2": 500.0})
>>> result = train_run(spec)                                      # doctest: +SKIP
>>> load_run(result.out).recommend(user=196, k=10).items          # doctest: +SKIP

The run-folder format is described in ``docs/run-format.md`` and read and written by
:mod:`genrec.runs.folder` alone.
"""

from genrec.runs.export import RecommendationRows, write_recommendations
from genrec.runs.fitting import fit_model
from genrec.runs.folder import RunFolderError, RunLockedError, UnfinishedRunError
from genrec.runs.load import Recommendations, Run, RunNotFinishedError, load_run
from genrec.runs.runner import (
    RESUME_SETTINGS,
    RunHooks,
    RunInterrupted,
    RunResult,
    evaluate_run,
    resume_run,
    train_run,
)
from genrec.runs.spec import MAX_GRID, RunSpec, parse_grid

__all__ = [
    "RunSpec",
    "RunHooks",
    "RunInterrupted",
    "RunResult",
    "Run",
    "Recommendations",
    "RecommendationRows",
    "write_recommendations",
    "train_run",
    "resume_run",
    "evaluate_run",
    "load_run",
    "fit_model",
    "parse_grid",
    "MAX_GRID",
    "RESUME_SETTINGS",
    "RunFolderError",
    "RunLockedError",
    "RunNotFinishedError",
    "UnfinishedRunError",
]

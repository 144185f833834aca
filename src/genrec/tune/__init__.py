"""Hyperparameter search (``genrec tune``): search spaces read from TOML and checked against
a model's config (:mod:`genrec.tune.space`), Optuna studies over :mod:`genrec.runs` that
continue after a kill (:mod:`genrec.tune.study`), and the study folder they write
(:mod:`genrec.tune.report`). Optuna is the ``tune`` extra, imported when a study runs.
See ``docs/tuning.md``.
"""

from genrec.tune.space import Param, SearchSpace, load_space, space_from_mapping

__all__ = ["Param", "SearchSpace", "load_space", "space_from_mapping"]

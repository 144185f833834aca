"""Models, and the registry that maps CLI names to model classes.

The registry is an explicit dict: adding a model means importing its class here and adding
one line. ``Recommender.load`` rebuilds saved models through it.
"""

from __future__ import annotations

from genrec.errors import ConfigError
from genrec.models.base import RatingPredictor, Recommender
from genrec.models.ease import EASE, EASEConfig
from genrec.models.popularity import Popularity, PopularityConfig

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "ease": EASE,
}


def get_model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name`` (case-insensitive, '-' and '_' alike)."""
    key = name.lower().replace("_", "-")
    aliases = {k.replace("_", "-"): v for k, v in MODELS.items()}
    if key not in aliases:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return aliases[key]


__all__ = [
    "MODELS",
    "get_model_class",
    "Recommender",
    "RatingPredictor",
    "EASE",
    "EASEConfig",
    "Popularity",
    "PopularityConfig",
]

"""A :class:`Dataset`: all interactions of a source, its metadata and any predefined splits.

Every part (the whole log, each predefined split) shares one id space: row i is the same
user and column j the same item everywhere, so masks and truths line up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genrec.data.interactions import Interactions
from genrec.data.sequences import Sequences

__all__ = ["Dataset"]

#: genre labels that mean "no genre" (ML-100K's "unknown", ML-20M's "(no genres listed)")
_NO_GENRE = {"unknown", "(no genres listed)"}


@dataclass
class Dataset:
    """Interactions plus what is known about users and items.

    Attributes
    ----------
    name : str
    interactions : Interactions
        Every interaction (ratings, or 1.0 for implicit data), all users and items.
    items : DataFrame or None
        One row per item column, in column order: ``item_id`` and, where known, ``title``
        and ``genres`` ("Action|Comedy").
    users : DataFrame or None
        One row per user row, in row order: ``user_id`` and, where known, ``age``,
        ``gender``, ``occupation``, ``zip``.
    splits : dict of str -> dict of str -> Interactions
        Splits that come with the data: ``{"given": {"train", "valid", "test"}}`` for pair
        lists, ``{"u1": {"train", "test"}, ...}`` for ML-100K's canonical folds.
    implicit : bool
        True when the source has no ratings (every value is 1).
    rating_range : (float, float) or None
        Smallest and largest possible rating.
    source : str
        Where it was read from.
    sequences : Sequences or None
        Each user's items in consumption order (rows and columns as in ``interactions``),
        where the source orders them: a time column, ``user i1 i2 ... in`` lines, or a log
        read with ``data.ordered`` (see :mod:`genrec.data.sequences`); None otherwise.
    """

    name: str
    interactions: Interactions
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    splits: dict[str, dict[str, Interactions]] = field(default_factory=dict)
    implicit: bool = False
    rating_range: tuple[float, float] | None = None
    source: str = ""
    sequences: Sequences | None = None

    @property
    def genre_names(self) -> list[str]:
        """Sorted genre names, or [] when the data set has no genre metadata."""
        if self.items is None or "genres" not in self.items:
            return []
        names: set[str] = set()
        for g in self.items["genres"].dropna():
            names.update(x for x in str(g).split("|") if x and x not in _NO_GENRE)
        return sorted(names)

    def genre_matrix(self) -> np.ndarray:
        """Boolean (n_items, n_genres) matrix in :attr:`genre_names` order."""
        names = self.genre_names
        col = {g: j for j, g in enumerate(names)}
        out = np.zeros((self.interactions.n_items, len(names)), dtype=bool)
        if names and self.items is not None:  # names come from self.items
            for i, g in enumerate(self.items["genres"].fillna("")):
                for x in str(g).split("|"):
                    if x in col:
                        out[i, col[x]] = True
        return out

    def titles(self) -> np.ndarray | None:
        """Item titles in column order, or None."""
        if self.items is None or "title" not in self.items:
            return None
        return self.items["title"].astype(str).to_numpy()

    def summary(self) -> dict:
        """Users, items, interactions, density and the rating histogram."""
        inter = self.interactions
        out: dict = {
            "name": self.name,
            "source": self.source,
            "users": inter.n_users,
            "items": inter.n_items,
            "interactions": inter.nnz,
            "density": inter.density,
            "implicit": self.implicit,
            "timestamps": inter.times is not None,
            "genres": len(self.genre_names),
            "user_features": []
            if self.users is None
            else [c for c in self.users.columns if c != "user_id"],
            "splits": {k: {p: v.nnz for p, v in parts.items()} for k, parts in self.splits.items()},
        }
        if not self.implicit and inter.nnz:
            vals, counts = np.unique(inter.matrix.data, return_counts=True)
            out["rating_histogram"] = {f"{v:g}": int(c) for v, c in zip(vals, counts)}
        per_user = np.diff(inter.matrix.indptr)
        out["interactions_per_user"] = {
            "min": int(per_user.min()) if len(per_user) else 0,
            "median": float(np.median(per_user)) if len(per_user) else 0.0,
            "max": int(per_user.max()) if len(per_user) else 0,
        }
        if self.sequences is not None:
            out["sequence_lengths"] = self.sequences.length_stats()
            out["sequence_events"] = self.sequences.n_events
        return out

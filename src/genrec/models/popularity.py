"""Popularity: every user gets the items ranked by how many training users chose them.

The baseline any model must beat. Scores are the training interaction counts (or the sum of
ratings with ``weight="sum"``), the same for every user, so it folds in trivially.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from typing_extensions import Self

from genrec.models.base import ArraySpec, Capabilities, Recommender, as_csr


@dataclass(frozen=True)
class PopularityConfig:
    weight: Literal["count", "sum"] = "count"  # count interactions, or sum their values
    seed: int = 0  # unused (deterministic); kept so every config has a seed


class Popularity(Recommender):
    """Most-popular items.

    Attributes
    ----------
    item_scores_ : ndarray, shape (n_items,)
        Training popularity of each item.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [0, 1, 0]])
    >>> Popularity().fit(X).recommend(None, X, k=1)[0].tolist()
    [[2], [0]]
    """

    name = "popularity"
    config_class = PopularityConfig
    fitted_attributes = ("n_items_", "item_scores_")
    capabilities = Capabilities()
    item_scores_: np.ndarray  # (I,)

    def __init__(self, config: PopularityConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)

    def fit(self, X: Any, *, valid: Any = None, context: Any = None) -> Self:
        X = as_csr(X)
        if self.config.weight == "count":
            counts = np.bincount(X.indices, minlength=X.shape[1])
        else:
            counts = np.asarray(X.sum(axis=0)).ravel()
        self.item_scores_ = counts.astype(np.float32)  # (I,)
        self.n_items_ = X.shape[1]
        return self

    def score(self, users, X_users) -> np.ndarray:
        users, X = self._check_users(users, X_users)
        return np.broadcast_to(self.item_scores_, (X.shape[0], self.n_items_)).copy()  # (B, I)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def state_arrays(self) -> dict[str, ArraySpec]:
        return {"item_scores": ArraySpec((self.n_items_,))}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores_ = state["item_scores"].astype(np.float32)

"""A first-order transition baseline: what followed the user's last item, backed off to
popularity.

Dimensions: I items.

From the training sequences, ``C[a, b]`` counts how often item ``b`` came right after item
``a`` and ``n[b]`` how often ``b`` occurs. A user whose last item is ``a`` is scored with
the transition estimate smoothed towards popularity (a Dirichlet prior of strength
``smoothing`` centred on the popularity distribution p_pop(b) = n[b] / sum n):

    s(b | a) = (C[a, b] + smoothing * p_pop(b)) / (sum_b' C[a, b'] + smoothing)

so an item never seen after ``a`` is ranked by popularity below every seen successor
(for smoothing small against the counts), and an item ``a`` with no recorded successor,
or an empty history, gets the popularity ranking. Cheap, and on some Amazon sets hard to
beat for the next item (the last item says most of what a short history says).

Not from one paper: the first-order Markov chain is the base of FPMC (Rendle et al., WWW
2010) and of the "last item" baselines of the sequential-recommendation literature; the
popularity back-off is the usual smoothing. ``repeats`` (default false) leaves a -> a
transitions out, since the protocol masks the history anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import scipy.sparse as sp
import torch
from typing_extensions import Self

from genrec.config import Range, check_ranges
from genrec.errors import DataError
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.saved import csr_from_state
from genrec.models.sequential import SequentialRecommender, as_sequences

__all__ = ["Transition", "TransitionConfig"]


@dataclass(frozen=True)
class TransitionConfig:
    smoothing: Annotated[float, Range(gt=0)] = 1.0  # prior strength
    repeats: bool = False  # count a -> a transitions
    seed: int = 0  # unused (deterministic); kept so every config has a seed

    def __post_init__(self) -> None:
        check_ranges(self)


class Transition(SequentialRecommender):
    """Next-item counts from the last item, backed off to popularity.

    Attributes
    ----------
    transitions_ : csr_matrix (I, I), float32
        ``C[a, b]``, the training transitions a -> b.
    popularity_ : ndarray (I,), float32
        Occurrences of each item in the training sequences.

    Examples
    --------
    >>> from genrec.data import Sequences
    >>> seqs = Sequences.from_lists([[0, 1, 2], [0, 1], [2, 0, 1]], n_items=3)
    >>> m = Transition().fit(seqs)
    >>> m.recommend(None, Sequences.from_lists([[0]], 3), k=1)[0].tolist()
    [[1]]
    """

    name = "transition"
    config_class = TransitionConfig
    fitted_attributes = ("n_items_", "transitions_", "popularity_")
    capabilities = Capabilities(sequential=True)
    transitions_: sp.csr_matrix
    popularity_: np.ndarray

    def __init__(self, config: TransitionConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)

    def fit(self, X: Any, *, valid: Any = None, context: Any = None) -> Self:
        seqs = as_sequences(X)
        first = np.ones(seqs.n_events, bool)
        first[seqs.offsets[:-1][seqs.lengths > 0]] = False  # an event with a predecessor
        b = seqs.items[first]
        a = seqs.items[np.flatnonzero(first) - 1]
        if not self.config.repeats:
            a, b = a[a != b], b[a != b]
        n = seqs.n_items
        C = sp.csr_matrix((np.ones(len(a), np.float32), (a, b)), shape=(n, n))
        C.sum_duplicates()
        self.transitions_ = C
        self.popularity_ = np.bincount(seqs.items, minlength=n).astype(np.float32)
        self.n_items_ = n
        return self

    def score(self, users: np.ndarray | None, X_users: Any) -> torch.Tensor:
        """s(b | last item) (B, I), float32; popularity for an empty history."""
        _, seqs = self._check_users(users, X_users)
        total = float(self.popularity_.sum())
        prior = torch.from_numpy(self.popularity_ / max(total, 1.0))  # (I,)
        lam = self.config.smoothing
        has = seqs.lengths > 0
        ends = np.maximum(seqs.offsets[1:] - 1, 0)
        last = np.where(has, seqs.items[ends], 0) if seqs.n_events else np.zeros_like(ends)
        rows = self.transitions_[last]
        rows = sp.diags(has.astype(np.float32)) @ rows  # no history: no transitions
        out = torch.from_numpy(rows.toarray())  # (B, I)
        denom = torch.from_numpy(np.asarray(rows.sum(axis=1), np.float32)) + lam  # (B, 1)
        return out.add_(prior, alpha=lam).div_(denom)

    def item_embeddings(self) -> np.ndarray:
        """Each item's outgoing transition counts, normalised (I, I): a sparse-friendly
        embedding for maps of small catalogues."""
        self._check_fitted()
        C = self.transitions_.toarray()
        return (C / np.maximum(C.sum(axis=1, keepdims=True), 1.0)).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, np.ndarray]:
        C = self.transitions_
        return {
            "C_indptr": C.indptr.astype(np.int64),
            "C_indices": C.indices.astype(np.int64),
            "C_data": C.data.astype(np.float32),
            "C_shape": np.asarray(C.shape, np.int64),
            "popularity": self.popularity_,
        }

    def state_arrays(self) -> dict[str, ArraySpec]:
        return {
            "C_indptr": ArraySpec((self.n_items_ + 1,), "i"),
            "C_indices": ArraySpec(("nnz",), "i"),
            "C_data": ArraySpec(("nnz",)),
            "C_shape": ArraySpec((2,), "i"),
            "popularity": ArraySpec((self.n_items_,)),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        C = csr_from_state(state, "C_")
        if C.shape != (self.n_items_, self.n_items_):
            raise DataError(
                f"{self.name}: saved transitions of shape {C.shape} for {self.n_items_} "
                f"items; save the model again"
            )
        self.transitions_ = C
        self.popularity_ = state["popularity"].astype(np.float32)

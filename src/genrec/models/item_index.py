r"""Item indexing for language-model recommenders (Hua et al., "How to Index Item IDs for
Recommendation Foundation Models", SIGIR-AP 2023).

A model that reads and writes items as text (P5) names every item by a short tuple of
tokens. How the tuples are chosen decides what the model can learn from the names alone,
and can leak the answer: the Amazon 5-core files number items in order of first appearance,
so under P5's own "sequential" numbering the next item's number is often just above the
history's largest (the audit :func:`next_number_audit` measures it: on Beauty, "the 5
numbers above the history's largest" hits 4.5% of the test items, about TIGER's Recall@5).

An :class:`ItemIndex` holds every item's tuple ``codes`` (I, T), each row unique, and
whether the tuple is a number's digits (``digits``: one set of ten digit tokens serves every
position, as numbers in text do) or T codes each with its own tokens (level ``t``'s code
``c`` is a token of its own). The indexings:

* ``random`` (the default): items re-numbered by a seeded random permutation, written as
  zero-padded decimal digits. Nothing about an item is in its number: no leak. With
  ``number_base`` 100 a number is written in two-digit pieces (as T5's SentencePiece cuts
  numbers), each position with tokens of its own: half the tokens.
* ``sequential``: P5's numbering, by first appearance in the training sequences read user by
  user; consecutive items of a sequence get consecutive numbers. It leaks on files numbered
  that way (above); kept to reproduce P5 and for the audit.
* ``collaborative``: Hua et al.'s CID: items that occur in the same users' histories share
  prefixes. The co-occurrence graph's spectral embedding (the leading eigenvectors of its
  normalised adjacency) is clustered hierarchically by k-means into ``n_clusters`` per
  level for ``levels - 1`` levels; the last code numbers the items within their leaf
  cluster in a seeded random order (numbered in the data's order, the leaf would carry the
  file's first-appearance numbers). Departure: Hua et al. recurse spectral clustering until
  a cluster has at most ``n_clusters`` items (tuples of varying length); here every tuple has
  the same length, and items that co-occur with no other share one leaf.
* ``independent``: one new token per item (T = 1).
* ``semantic``: the semantic IDs of the generative-retrieval models (an RQ-VAE or residual
  k-means on item features, with the extra token that makes tuples unique:
  :mod:`genrec.models.semantic_ids`), built by the model that has the features.

``numbers()`` reads each tuple as one integer (the number for digit indexings, the tuple in
mixed radix otherwise), which is what the audit's rule ranks by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from genrec.data.sequences import Sequences
from genrec.errors import ConfigError, DataError

__all__ = [
    "IndexKind",
    "ItemIndex",
    "digit_codes",
    "random_index",
    "sequential_index",
    "independent_index",
    "collaborative_index",
    "next_number_audit",
]

IndexKind = Literal["random", "sequential", "collaborative", "independent", "semantic"]
KINDS: tuple[str, ...] = ("random", "sequential", "collaborative", "independent", "semantic")


@dataclass(frozen=True, eq=False)
class ItemIndex:
    """Every item's token tuple.

    kind : how the tuples were chosen (the module docstring).
    codes : (I, T) int64, non-negative, every row unique.
    digits : True when each row is a number's decimal digits (one digit token set for every
        position); False when position ``t`` has tokens of its own.
    """

    kind: str
    codes: np.ndarray
    digits: bool

    def __post_init__(self) -> None:
        c = np.asarray(self.codes, dtype=np.int64)
        object.__setattr__(self, "codes", c)
        if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
            raise ValueError(f"ItemIndex.codes must be (n_items, n_tokens), got {c.shape}")
        if (c < 0).any() or (self.digits and (c > 9).any()):
            raise ValueError("ItemIndex.codes must be non-negative (digits: 0-9)")
        if len(np.unique(c, axis=0)) != len(c):
            raise ValueError("ItemIndex.codes: two items share a tuple")

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_tokens(self) -> int:
        """T, the tokens that name one item."""
        return int(self.codes.shape[1])

    @property
    def level_sizes(self) -> list[int]:
        """The codes each position takes (10 for digits)."""
        if self.digits:
            return [10] * self.n_tokens
        return [int(v) + 1 for v in self.codes.max(0)]

    def numbers(self) -> np.ndarray:
        """(I,) int64: each tuple read as one number (mixed radix, the first code highest)."""
        out = np.zeros(self.n_items, dtype=np.int64)
        for t, size in enumerate(self.level_sizes):
            out = out * size + self.codes[:, t]
        return out


def digit_codes(numbers: np.ndarray, width: int | None = None, base: int = 10) -> np.ndarray:
    """(I, width) the digits in ``base`` of ``numbers`` (I,), zero-padded on the left (width:
    as many digits as the largest number needs)."""
    n = np.asarray(numbers, dtype=np.int64)
    top = int(n.max()) if len(n) else 0
    need = 1
    while base**need <= top:
        need += 1
    w = width if width is not None else need
    if need > w:
        raise ValueError(f"digit_codes: {top} has more than {w} digits in base {base}")
    powers = base ** np.arange(w - 1, -1, -1, dtype=np.int64)
    return (n[:, None] // powers[None, :]) % base


def _numbered(kind: str, numbers: np.ndarray, base: int) -> ItemIndex:
    """Items named by ``numbers``: decimal digits (one digit token set), or with ``base``
    100 two-digit pieces, each position with tokens of its own (as T5's SentencePiece cuts
    numbers into pieces; half the tokens of the decimal digits)."""
    if base == 10:
        return ItemIndex(kind, digit_codes(numbers), digits=True)
    if base != 100:
        raise ConfigError(f"number_base must be 10 or 100, got {base}")
    return ItemIndex(kind, digit_codes(numbers, base=100), digits=False)


def random_index(n_items: int, seed: int = 0, base: int = 10) -> ItemIndex:
    """Items numbered by a random permutation of 0 .. I-1 (seeded), as decimal digits (or
    two-digit pieces: ``base`` 100)."""
    perm = np.random.default_rng(seed).permutation(n_items)
    return _numbered("random", perm, base)


def sequential_index(seqs: Sequences, base: int = 10) -> ItemIndex:
    """P5's numbering: by first appearance in the sequences, user by user (items that never
    appear numbered after, in index order), as decimal digits (or pieces: ``base`` 100)."""
    _, first = np.unique(seqs.items, return_index=True)  # each seen item's first position
    seen = np.unique(seqs.items)
    order = seen[np.argsort(first, kind="stable")]
    unseen = np.setdiff1d(np.arange(seqs.n_items), seen)
    numbers = np.empty(seqs.n_items, dtype=np.int64)
    numbers[np.concatenate([order, unseen])] = np.arange(seqs.n_items)
    return _numbered("sequential", numbers, base)


def independent_index(n_items: int) -> ItemIndex:
    """One token per item (T = 1)."""
    return ItemIndex("independent", np.arange(n_items, dtype=np.int64)[:, None], digits=False)


def spectral_embedding(seqs: Sequences, dim: int, seed: int = 0) -> np.ndarray:
    """(I, dim) the leading eigenvectors of the item co-occurrence graph's normalised
    adjacency D^-1/2 C D^-1/2 (C: the users two items share; an item with no co-occurrence
    gets a zero row), each weighted by its eigenvalue (a diffusion map's step: the coarse
    structure first), each row scaled to unit length."""
    from scipy.sparse.linalg import ArpackError, eigsh

    if seqs.n_items < 3:
        raise DataError(f"collaborative indexing needs at least 3 items, got {seqs.n_items}")
    X = seqs.to_csr()
    X.data[:] = 1.0
    C = (X.T @ X).tocsr().astype(np.float64)
    C.setdiag(0.0)
    C.eliminate_zeros()
    if C.nnz == 0:
        raise DataError(
            "collaborative indexing: no two items occur in one user's history, so there is "
            "nothing to cluster; use index = random"
        )
    deg = np.asarray(C.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    A = sp.diags(inv) @ C @ sp.diags(inv)
    k = min(dim, max(1, A.shape[0] - 2))
    v0 = np.random.default_rng(seed).standard_normal(A.shape[0])
    try:
        vals, vecs = eigsh(A, k=k, which="LA", v0=v0)
    except ArpackError as e:
        raise DataError(f"collaborative indexing: the spectral embedding failed ({e})") from None
    vecs = vecs * np.clip(vals, 0.0, None)[None, :]
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return np.where(norms > 0, vecs / np.maximum(norms, 1e-12), 0.0)


def collaborative_index(
    seqs: Sequences, n_clusters: int = 32, levels: int = 3, dim: int = 32, seed: int = 0
) -> ItemIndex:
    """Hua et al.'s collaborative indexing (the module docstring): the co-occurrence graph's
    spectral embedding, clustered hierarchically into ``n_clusters`` per level for
    ``levels - 1`` levels; the last code numbers the items within their leaf cluster in a
    seeded random order."""
    import torch

    from genrec.models.quantize import kmeans

    if levels < 1 or n_clusters < 2:
        raise ConfigError(
            f"collaborative indexing needs levels >= 1 and n_clusters >= 2, got {levels} and "
            f"{n_clusters}"
        )
    emb = torch.from_numpy(spectral_embedding(seqs, dim, seed))
    n = seqs.n_items
    codes = np.zeros((n, levels), dtype=np.int64)
    groups = [np.arange(n)]
    for level in range(levels - 1):
        nxt = []
        for g in groups:
            if len(g) <= 1:
                nxt.append(g)
                continue
            k = min(n_clusters, len(g))
            _, assign = kmeans(emb[g], k, seed=seed + level)
            a = assign.numpy()
            codes[g, level] = a
            nxt.extend(g[a == c] for c in range(k) if (a == c).any())
        groups = nxt
    rng = np.random.default_rng(seed)
    for g in groups:  # the leaf: a random order within the cluster (not the file's: it leaks)
        codes[g, levels - 1] = rng.permutation(len(g))
    return ItemIndex("collaborative", codes, digits=False)


def next_number_audit(
    inputs: Sequences, targets: np.ndarray, numbers: np.ndarray, k: int = 5
) -> tuple[float, float]:
    """(hit rate, chance) of the rule "the ``k`` numbers above the history's largest": the
    share of users whose ``targets`` (B,) item has one of the ``k`` numbers just above the
    largest number among their ``inputs`` items (``numbers`` (I,) each item's number); the
    chance level is k / I, the hit rate of ``k`` items drawn at random. Users without
    history items are left out."""
    num = np.asarray(numbers, dtype=np.int64)
    lens = inputs.lengths
    keep = lens > 0
    starts = inputs.offsets[:-1][keep]
    top = np.maximum.reduceat(num[inputs.items], starts) if keep.any() else np.zeros(0)
    gap = num[np.asarray(targets)[keep]] - top
    hits = (gap >= 1) & (gap <= k)
    return float(hits.mean()) if len(hits) else 0.0, k / inputs.n_items

"""Item content for item codes: attribute lists as a sparse matrix, and dense features from it.

The semantic item IDs of generative retrieval (TIGER) are codes of an item feature vector.
This module builds such vectors from content:

* :func:`read_item_attributes` reads an item -> attribute-list JSON file (the format of the
  ``*_item2attributes.json`` files beside the Amazon 5-core sets: ``{"4": [1, 2, 3], ...}``,
  item ids as in the interaction file, attribute ids anonymous) into a multi-hot matrix whose
  rows follow an :class:`~genrec.data.IdMap` of items. Items of the file that the data does not
  have are left out; items of the data that the file lacks get an empty row; both counts are
  returned so the caller can say them.
* :func:`dense_features` turns any sparse item x token matrix (attributes, title words,
  genres) into dense rows: TF-IDF weights (the smoothed idf, ``log((1 + n) / (1 + df)) + 1``),
  unit-length rows, then a truncated SVD to ``dim`` columns (rows of ``U S``), each column's
  sign fixed so that its largest entry is positive (the result does not depend on the solver's
  sign choice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from genrec.data.interactions import IdMap
from genrec.errors import DataError

__all__ = ["ItemAttributes", "read_item_attributes", "tfidf_rows", "dense_features"]


@dataclass
class ItemAttributes:
    """A multi-hot item x attribute matrix.

    matrix : csr_matrix (n_items, n_attributes), float32, rows in the item map's order.
    names : the raw attribute id of each column, as strings.
    unknown_items : items of the file that the data does not have (left out).
    missing_items : items of the data without an entry in the file (empty rows).
    """

    matrix: sp.csr_matrix
    names: list[str]
    unknown_items: int
    missing_items: int


def read_item_attributes(path: str | Path, items: IdMap) -> ItemAttributes:
    """The attribute lists of ``path`` (a JSON object: item id -> list of attribute ids) as a
    multi-hot matrix with one row per item of ``items``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: no such file; give the item -> attributes JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = (
            f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        )
        raise DataError(
            f"{p}: not a JSON file{where}; it should map item ids to lists of attribute ids, "
            f'as {{"4": [1, 2, 3]}}'
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"{p}: the JSON is a {type(data).__name__}, not an object mapping item ids to "
            f'lists of attribute ids (as {{"4": [1, 2, 3]}})'
        )
    columns: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    unknown = 0
    seen = np.zeros(len(items), dtype=bool)
    for item, attrs in data.items():
        if not isinstance(attrs, list) or not all(
            isinstance(a, (str, int)) and not isinstance(a, bool) for a in attrs
        ):
            raise DataError(
                f"{p}: item {item!r} has {json.dumps(attrs)[:60]}, not a list of attribute ids; "
                f"each value should be a list such as [1, 2, 3]"
            )
        i = items.get(item)
        if i is None:
            unknown += 1
            continue
        seen[i] = True
        for a in dict.fromkeys(str(a) for a in attrs):  # each attribute once per item
            rows.append(i)
            cols.append(columns.setdefault(a, len(columns)))
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (np.array(rows, int), np.array(cols, int))),
        shape=(len(items), len(columns)),
    )
    matrix.sum_duplicates()  # two keys of one item ("4" and "04"): their lists merge
    matrix.data[:] = 1.0  # multi-hot
    return ItemAttributes(matrix, list(columns), unknown, int((~seen).sum()))


def tfidf_rows(X: sp.spmatrix) -> sp.csr_matrix:
    """TF-IDF weights with the smoothed idf ``log((1 + n) / (1 + df)) + 1``, rows scaled to
    unit length (an empty row stays empty): float64 CSR, as scikit-learn's
    ``TfidfTransformer()`` weighs counts."""
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    X.eliminate_zeros()  # stored zeros are not occurrences
    n, m = X.shape
    df = np.bincount(X.indices, minlength=m)  # (m,) items holding each token
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    W = sp.csr_matrix(X.multiply(idf[None, :]))
    norms = np.sqrt(np.asarray(W.multiply(W).sum(axis=1)).ravel())  # (n,)
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ W)


def dense_features(X: sp.spmatrix, dim: int, seed: int = 0) -> np.ndarray:
    """:func:`tfidf_rows`, then the rank-``dim`` truncated SVD: (n_items, dim) float32, the
    rows of ``U S`` (``dim`` is capped at ``min(X.shape) - 1``; an empty row stays zero)."""
    n, m = X.shape
    if n == 0 or m == 0:
        raise DataError("dense_features: the item x token matrix is empty")
    if dim < 1:
        raise DataError(f"dense_features: dim must be positive, got {dim}")
    W = tfidf_rows(X)
    k = min(dim, min(n, m) - 1)
    if k < 1:
        raise DataError(
            f"dense_features: a {n} x {m} matrix has no rank-{dim} reduction; give more "
            f"items or tokens"
        )
    v0 = np.random.default_rng(seed).standard_normal(min(n, m))
    U, S, _ = svds(W, k=k, v0=v0)
    order = np.argsort(-S)
    F = U[:, order] * S[order]  # (n, k)
    signs = np.sign(F[np.abs(F).argmax(axis=0), np.arange(k)])
    return (F * np.where(signs == 0, 1.0, signs)).astype(np.float32)

"""Item features for the models that code items from content (TIGER's semantic IDs).

A model with ``capabilities.item_features`` names its sources in ``config.item_features``;
:func:`item_features` reads each into one row per item of the data, in the data's item
order, and joins them side by side, each source's rows scaled to unit length first (so each
source weighs the same):

* an ``.json`` file mapping item ids to attribute lists (the ``*_item2attributes.json`` of
  the Amazon 5-core sets): TF-IDF, then a truncated SVD to ``config.feature_dim`` columns
  (:func:`genrec.data.item_content.dense_features`);
* a ``.npy`` matrix, one row per item in the data's item order (read without pickles);
* a run folder (``genrec train``'s output): its model's ``item_embeddings()``, matched to the
  data's items by raw id (collaborative codes). Its run must have been trained on the same
  training split (the same data and protocol, no refit on validation data): embeddings
  that have seen the held-out items leak them into the codes;
* ``"interactions"``: the items' columns of the training matrix (the run's training split
  only), TF-IDF and a truncated SVD to ``config.feature_dim`` columns (collaborative codes
  without another run).

An item a source does not cover gets a zero row from it; how many is logged, so the user
knows those items are coded from their other sources, or by the token that makes tuples
unique alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec.data.dataset import Dataset
from genrec.data.interactions import IdMap
from genrec.data.item_content import dense_features, read_item_attributes
from genrec.errors import ConfigError, DataError

__all__ = ["item_features"]

log = logging.getLogger("genrec.runs")


def _unit_rows(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return (a / np.maximum(n, 1e-12)).astype(np.float32)


def _from_run(path: Path, items: IdMap) -> tuple[np.ndarray, int]:
    from genrec.runs.load import load_run

    run = load_run(path)
    try:
        emb = np.asarray(run.model.item_embeddings(), dtype=np.float32)
    except (NotImplementedError, AttributeError, ConfigError) as e:
        raise ConfigError(
            f"item_features: the run {path} ({run.name}) has no item embeddings ({e}); "
            f"name a run of a model that has them (sasrec, mult-vae, ...)"
        ) from None
    index = {raw: j for j, raw in enumerate(run.items.raw.tolist())}
    where = np.array([index.get(raw, -1) for raw in items.raw.tolist()], dtype=np.int64)
    out = np.where(where[:, None] >= 0, emb[np.clip(where, 0, None)], 0.0)
    return out.astype(np.float32), int((where < 0).sum())


def _one(source: str, items: IdMap, dim: int, train: sp.spmatrix | None) -> tuple[np.ndarray, int]:
    """(rows (I, d), items without a row) of one source."""
    if source == "interactions":
        if train is None:
            raise ConfigError("item_features: 'interactions' needs the training matrix")
        cols = sp.csr_matrix(train).T.tocsr()
        return dense_features(cols, dim), int((np.diff(cols.indptr) == 0).sum())
    p = Path(source)
    if p.is_dir():
        return _from_run(p, items)
    if not p.suffix and not p.exists():
        raise DataError(f"item_features: {source}: no such run folder (or file)")
    if p.suffix == ".json":
        attrs = read_item_attributes(p, items)
        return dense_features(attrs.matrix, dim), attrs.missing_items
    if p.suffix == ".npy":
        if not p.is_file():
            raise DataError(f"{p}: no such file; give a .npy matrix with one row per item")
        try:
            a = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{p}: not a plain .npy array ({e})") from None
        if a.ndim != 2 or a.shape[0] != len(items):
            raise DataError(
                f"{p}: a matrix of shape {a.shape}, and the data has {len(items)} items; "
                f"give one row per item, in the data's item order"
            )
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise DataError(f"{p}: the matrix has NaN, infinite or non-numeric values")
        return a.astype(np.float32), 0
    raise ConfigError(
        f"item_features: {source!r} is not a .json attribute file, a .npy matrix, a run "
        f"folder or 'interactions'"
    )


def item_features(config: Any, ds: Dataset, train: sp.spmatrix | None = None) -> np.ndarray | None:
    """The item feature matrix (I, d) of ``config.item_features`` for ``ds`` (``train``: the
    run's training matrix, for the ``"interactions"`` source), or None when the config names
    no source."""
    sources = tuple(getattr(config, "item_features", ()) or ())
    if not sources:
        return None
    items = ds.interactions.item_map
    parts = []
    for source in sources:
        rows, missing = _one(source, items, int(getattr(config, "feature_dim", 64)), train)
        if missing:
            log.warning(
                "item_features %s: %d of %d items have no features there (a zero row); "
                "they are coded from the other sources, or told apart by the extra token",
                source,
                missing,
                len(items),
            )
        parts.append(_unit_rows(rows))
    return np.concatenate(parts, axis=1)

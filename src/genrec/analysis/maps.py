"""2-D maps of embeddings: t-SNE (openTSNE when installed, else scikit-learn) or UMAP."""

from __future__ import annotations

from typing import Literal

import numpy as np

from genrec._optional import require
from genrec.errors import ConfigError

__all__ = ["embed_2d"]


def embed_2d(
    Y: np.ndarray, method: Literal["tsne", "umap"] = "tsne", seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """Coordinates (n, 2) of the rows of Y (n, d)."""
    Y = np.asarray(Y, dtype=np.float64)
    n = len(Y)
    if n < 5:
        raise ConfigError(f"a map needs at least 5 users, got {n}; use no map (map_method='none')")
    # t-SNE needs about 3 * perplexity neighbours per point: clamp for small n (openTSNE
    # would otherwise lower it itself, printing a notice on stdout)
    perplexity = float(min(perplexity, (n - 1) / 3))
    if method == "tsne":
        try:
            from openTSNE import TSNE as OpenTSNE
        except ImportError:  # without openTSNE, scikit-learn's (both are in genrec[analysis])
            TSNE = require("sklearn.manifold", "analysis", "A t-SNE map").TSNE

            return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(Y)
        emb = OpenTSNE(
            n_components=2, perplexity=perplexity, random_state=seed, n_jobs=-1, verbose=False
        ).fit(Y)
        return np.asarray(emb)
    if method == "umap":
        umap = require("umap", "analysis", "A UMAP map")
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(Y)
    raise ConfigError(f"map must be tsne or umap, got {method!r}")

"""Semantic item IDs: the health report on known codes, an RQ-VAE that learns clustered
features (reconstruction falls, every tuple unique, same seed same codes), residual k-means
codes, and refused settings."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.models.quantize import kmeans
from genrec.models.semantic_ids import (
    SemanticIdConfig,
    code_health,
    fit_semantic_ids,
    kmeans_semantic_ids,
)

SMALL = SemanticIdConfig(
    hidden_dims=(32,),
    code_dim=4,
    n_levels=2,
    n_codes=8,
    epochs=40,
    batch_size=64,
    optimizer="adam",
    lr=1e-2,
    seed=0,
)


def _clustered(n_items: int = 256, seed: int = 0) -> np.ndarray:
    """Items around 8 x 8 nested centres in 6 dimensions."""
    rng = np.random.default_rng(seed)
    top = rng.normal(0, 3, (8, 6))
    sub = rng.normal(0, 1, (8, 8, 6))
    a, b = rng.integers(0, 8, n_items), rng.integers(0, 8, n_items)
    return (top[a] + sub[a, b] + rng.normal(0, 0.05, (n_items, 6))).astype(np.float32)


def test_code_health_on_known_codes():
    codes = np.array([[0, 1], [0, 1], [1, 1], [2, 0]])
    h = code_health(codes, n_codes=4)
    assert h["code_usage"] == [0.75, 0.5]
    p = np.array([2, 1, 1]) / 4
    assert h["perplexity"][0] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert h["collisions"] == 1 and h["max_items_per_tuple"] == 2
    assert h["unique_after_extra_token"] == 1.0 and h["healthy"] is False
    with pytest.raises(ValueError, match="n_items, n_levels"):
        code_health(np.array([1, 2]), 4)


def test_an_rq_vae_learns_clustered_features_reproducibly():
    x = _clustered()
    model, sid = fit_semantic_ids(x, SMALL)
    assert sid.codes.shape == (256, 3)
    assert len({tuple(r) for r in sid.codes.tolist()}) == 256  # the extra token
    first, last = sid.history[0]["reconstruction"], sid.history[-1]["reconstruction"]
    assert last < 0.2 * first
    assert sid.health["code_usage"][0] >= 0.5
    _, again = fit_semantic_ids(x, SMALL)
    np.testing.assert_array_equal(sid.codes, again.codes)
    _, other = fit_semantic_ids(x, SemanticIdConfig(**{**SMALL.__dict__, "seed": 1}))
    assert not np.array_equal(sid.codes, other.codes)


def test_kmeans_codes_start_with_the_first_level_kmeans():
    import torch

    x = _clustered(200, seed=1)
    sid = kmeans_semantic_ids(x, n_levels=2, n_codes=8, seed=0)
    _, first = kmeans(torch.as_tensor(x, dtype=torch.float64), 8, seed=0)
    np.testing.assert_array_equal(sid.codes[:, 0], first.numpy())
    assert sid.codes.shape == (200, 3) and sid.health["unique_after_extra_token"] == 1.0
    assert sid.health["reconstruction"] < float(((x - x.mean(0)) ** 2).sum(1).mean())


def test_bad_settings_and_features_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        SemanticIdConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="n_codes"):
        SemanticIdConfig(n_codes=0)
    with pytest.raises(ValueError, match="finite"):
        fit_semantic_ids(np.array([[np.nan, 1.0]]), SMALL)
    assert SemanticIdConfig.paper().epochs == 20_000

"""VQ-VAE over histories: the discrete code separates taste groups, each bottleneck saves
and loads to the same scores, and the training log carries the codebook's health."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.errors import ConfigError
from genrec.models import VQVAE, Recommender
from genrec.testing import checkerboard

TRAIN = {"epochs": 40, "batch_size": 16, "lr": 1e-2, "device": "cpu", "seed": 0}


def _model(**kw) -> VQVAE:
    return VQVAE(hidden_dims=(16,), code_dim=4, n_codes=4, dropout=0.2, train=TRAIN, **kw)


def test_users_of_one_taste_share_a_code_and_get_their_block():
    X, withheld = checkerboard(n_groups=3, users_per_group=10, items_per_group=6)
    groups = np.repeat(np.arange(3), 10)
    m = _model().fit(X)
    codes = m.user_codes(X)
    assert codes.shape == (30,)
    by_group = [set(codes[groups == g].tolist()) for g in range(3)]
    assert all(len(s) == 1 for s in by_group)  # one code per group
    assert len(set.union(*by_group)) == 3  # and a different one for each
    top, _ = m.recommend(None, X, k=1)  # an unseen item of the user's own block: the withheld
    np.testing.assert_array_equal(top[:, 0], withheld)
    assert {"perplexity", "code_usage", "vq", "recon"} <= set(m.history_[-1])


@pytest.mark.parametrize(
    "kw, width",
    [({"quantizer": "product", "n_parts": 2}, 2), ({"quantizer": "residual", "n_levels": 3}, 3)],
)
def test_product_and_residual_codes_save_and_load(kw, width, tmp_path):
    X, _ = checkerboard(n_groups=2, users_per_group=8, items_per_group=5)
    m = _model(**kw).fit(X)
    codes = m.user_codes(X)
    assert codes.shape == (16, width) and codes.dtype == np.int64
    again = Recommender.load(m.save(tmp_path / "m"))
    np.testing.assert_array_equal(again.score(None, X).numpy(), m.score(None, X).numpy())
    np.testing.assert_array_equal(again.user_codes(X), codes)
    assert again.user_codes(X[:0]).shape == (0, width)


def test_a_code_that_does_not_split_is_refused():
    with pytest.raises(ConfigError, match="multiple of n_parts"):
        VQVAE(quantizer="product", code_dim=6, n_parts=4)

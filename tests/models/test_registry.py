"""Every registered model has a tiny config here and passes the shipped conformance suite.

Adding a model to ``genrec.models.MODELS`` without an entry in :data:`TINY` fails
``test_every_registered_model_has_a_tiny_config``, naming it. The configs are those of the
golden-score table (benchmarks/golden.py), so one set of tiny settings serves both.
"""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks.golden import GOLDEN_CONFIGS, build_model, one_thread

from genrec.config import build_config
from genrec.models import MODELS, RatingPredictor
from genrec.testing import (
    check_rating_predictor,
    check_recommender,
    check_sequential_recommender,
)

#: registered name -> settings of a model that trains in well under a second (0.1.0's flat
#: spelling, as in the golden table; build_model maps them as saved configs are upgraded)
TINY: dict[str, dict[str, Any]] = {
    "popularity": GOLDEN_CONFIGS["popularity"],
    "ease": GOLDEN_CONFIGS["ease"],
    "gaussian-vae": GOLDEN_CONFIGS["gaussian-vae"],
    "mult-vae": GOLDEN_CONFIGS["mult-vae"],
    "mult-dae": GOLDEN_CONFIGS["mult-dae"],
    "vq-vae": GOLDEN_CONFIGS["vq-vae"],
    "recvae": GOLDEN_CONFIGS["recvae"],
    "cdae": GOLDEN_CONFIGS["cdae"],
    "diffrec": GOLDEN_CONFIGS["diffrec"],
    "ldiffrec": GOLDEN_CONFIGS["ldiffrec"],
    "biased-mf": GOLDEN_CONFIGS["biased-mf"],
    "bpr-mf": GOLDEN_CONFIGS["bpr-mf"],
    "fm": GOLDEN_CONFIGS["fm"],
    "autorec": GOLDEN_CONFIGS["autorec"],
}

#: sequential models (``capabilities.sequential``): the ordered-history suite, on cycles
TINY_SEQUENTIAL: dict[str, dict[str, Any]] = {
    "transition": {},
    "gru4rec": {
        "hidden_dim": 16,
        "embedding_dim": 16,
        "dropout_hidden": 0.0,
        "train": {"epochs": 20, "batch_size": 16, "lr": 1e-2, "device": "cpu"},
    },
    "bert4rec": {
        "max_len": 6,
        "hidden_dim": 32,
        "ffn_dim": 64,
        "n_layers": 1,
        "mask_prob": 0.5,
        "last_only_prob": 0.2,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        # 120 epochs: at 80, AVX512's rounding left 5 of 32 users wrong (AVX2's: none)
        "train": {"epochs": 120, "batch_size": 4, "lr": 3e-3, "weight_decay": 0.0, "device": "cpu"},
    },
    "hstu": {
        "max_len": 8,
        "dim": 16,
        "n_blocks": 1,
        "n_heads": 1,
        "qk_dim": 8,
        "v_dim": 8,
        "dropout": 0.1,
        "block_dropout": 0.1,
        "n_negatives": 8,
        "train": {"epochs": 20, "batch_size": 8, "lr": 1e-2, "device": "cpu"},
    },
    "sasrec": {
        "dim": 16,
        "max_len": 8,
        "loss": "ce",
        "dropout": 0.1,
        "attn_dropout": 0.1,
        "train": {"epochs": 30, "batch_size": 8, "lr": 1e-2, "device": "cpu"},
    },
    "tiger": {
        "dim": 32,
        "n_layers": 1,
        "n_heads": 2,
        "head_dim": 16,
        "ffn_dim": 64,
        "max_items": 6,
        "user_buckets": 0,  # a user token would make a training user's scores its own
        "beam": 24,  # the whole catalogue: every item is ranked by its tuple
        "dropout": 0.0,
        "feature_dim": 8,
        "tokenizer": "kmeans",
        "semantic": {"n_levels": 2, "n_codes": 4},
        "train": {"epochs": 30, "batch_size": 32, "lr": 3e-3, "device": "cpu"},
    },
    "p5": {
        "dim": 32,
        "n_layers": 1,
        "n_heads": 4,  # 4 heads of 8 learn the cycles from every seed tried (2 of 16: not)
        "head_dim": 8,
        "ffn_dim": 64,
        "max_items": 5,  # every recency embedding read in scoring is trained
        "user_ids": False,  # a user's number would make a training user's scores their own
        "tasks": ["sequential"],  # a direct prompt without the user's number has no answer
        "beam": 24,  # the whole catalogue: every item is ranked by its tuple
        "dropout": 0.0,
        "direct_train_candidates": 4,
        "train": {"epochs": 40, "batch_size": 16, "lr": 3e-3, "device": "cpu"},
    },
}
TINY.update(TINY_SEQUENTIAL)

#: models that rank every user alike: the withheld-item check does not apply
NOT_PERSONALIZED = {"popularity"}


def test_every_registered_model_has_a_tiny_config():
    missing = sorted(set(MODELS) - set(TINY))
    assert not missing, (
        f"registered models without an entry in TINY "
        f"(tests/models/test_registry.py): {', '.join(missing)}"
    )
    stale = sorted(set(TINY) - set(MODELS))
    assert not stale, f"TINY has entries for unregistered models: {', '.join(stale)}"
    assert NOT_PERSONALIZED <= set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_registered_model_passes_the_conformance_suite(name):
    cls = MODELS[name]

    def make_model(seed: int = 0):
        if name in TINY_SEQUENTIAL:  # the seed where the config keeps it (train.seed)
            return cls(
                build_config(cls.config_class, cls.upgrade_config({"seed": seed, **TINY[name]}))
            )
        return build_model(name, TINY[name], seed=seed)

    if cls.capabilities.sequential:
        with one_thread():
            check_sequential_recommender(make_model)
        return

    with one_thread():  # tiny networks: one thread avoids spin-waits, and is reproducible
        if issubclass(cls, RatingPredictor) and make_model().selects_on() == "rating":
            check_rating_predictor(make_model, personalized=name not in NOT_PERSONALIZED)
        else:
            check_recommender(make_model, personalized=name not in NOT_PERSONALIZED)

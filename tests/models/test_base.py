import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError
from genrec.io import seal_record
from genrec.models import EASE, MODELS, Recommender, get_model_class
from genrec.models.base import resolve_device

FLAT = Path(__file__).resolve().parents[1] / "fixtures" / "flat_configs"


def test_registry_lookup_is_case_and_separator_insensitive():
    assert get_model_class("EASE") is EASE
    for name, cls in MODELS.items():
        assert cls.name == name and get_model_class(name.replace("-", "_")) is cls


def test_load_refuses_foreign_folders(tmp_path):
    with pytest.raises(DataError, match="not a saved genrec model"):
        Recommender.load(tmp_path)
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    EASE(l2=1.0).fit(X).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["format"] = "something-else/9"
    (tmp_path / "m" / "model.json").write_text(json.dumps(seal_record(meta)))
    with pytest.raises(DataError, match="unsupported format"):
        Recommender.load(tmp_path / "m")


def test_saved_weights_are_plain_npz_without_pickle(tmp_path):
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    EASE(l2=1.0).fit(X).save(tmp_path / "m")
    with np.load(tmp_path / "m" / "weights.npz", allow_pickle=False) as z:
        assert z["B"].shape == (3, 3)
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused_by_name(bad):
    X = sp.random(20, 10, density=0.3, format="csr", random_state=0)
    X.data[3] = bad
    r, c = X.tocoo().row[3], X.tocoo().col[3]
    with pytest.raises(DataError, match=f"1 values that are NaN or infinite.*row {r}, column {c}"):
        get_model_class("mult-vae")(train={"epochs": 1, "device": "cpu"}).fit(X)
    with pytest.raises(DataError, match="NaN or infinite"):
        EASE().fit(X)


def test_a_model_class_loads_only_its_own_saved_models(tmp_path):
    from genrec.models import MultDAE, MultVAE

    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    MultDAE(latent_dim=2, train={"epochs": 1, "device": "cpu"}).fit(X).save(tmp_path / "m")
    assert type(Recommender.load(tmp_path / "m")) is MultDAE
    assert type(MultVAE.load(tmp_path / "m")) is MultDAE  # a subclass is a MultVAE
    with pytest.raises(DataError, match="saved mult-dae model .MultDAE., not a EASE"):
        EASE.load(tmp_path / "m")


def test_weights_that_do_not_fit_the_config_are_a_data_error(tmp_path):
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    get_model_class("mult-dae")(latent_dim=2, train={"epochs": 1, "device": "cpu"}).fit(X).save(
        tmp_path / "m"
    )
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["latent_dim"] = 3
    (tmp_path / "m" / "model.json").write_text(json.dumps(seal_record(meta)))
    with pytest.raises(DataError, match="weights do not match"):
        Recommender.load(tmp_path / "m")


@pytest.mark.parametrize("k", [0, 2.5, True])
def test_recommend_refuses_a_k_that_is_not_a_positive_integer(k):
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        EASE(l2=1.0).fit(X).recommend(None, X, k=k)


def test_resolve_device_checks_the_device_name_and_the_cuda_index(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "cpu:0", None):
        with pytest.raises(ConfigError, match="auto, cpu or cuda"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="1 CUDA device.*cuda:0"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["mult-vae", "diffrec"])
def test_a_model_saved_with_flat_configs_still_loads(name):
    # saved by genrec before the trainer's and the diffusion settings became nested tables
    saved = json.loads((FLAT / name / "model.json").read_text())["config"]
    assert "epochs" in saved and "train" not in saved
    m = Recommender.load(FLAT / name)
    assert type(m) is get_model_class(name)
    train = m.config.train
    for key in ("epochs", "batch_size", "lr", "patience", "eval_every", "device", "seed"):
        assert getattr(train, key) == saved[key], key
    if name == "diffrec":
        d = m.config.diffusion
        assert (d.steps, d.noise_scale, d.noise_min, d.noise_max) == (3, 0.1, 0.01, 0.1)
        assert (d.dims, d.emb_size) == ((4,), 2)
    expected = json.loads((FLAT / name / "expected_scores.json").read_text())
    got = np.asarray(m.score(None, np.asarray(expected["history"], np.float32)))
    np.testing.assert_allclose(got, np.asarray(expected["scores"]), rtol=1e-5, atol=1e-6)


def test_upgrade_config_moves_flat_keys_into_nested_tables():
    from genrec.models import DiffRec, MultVAE

    flat = {"latent_dim": 3, "epochs": 7, "seed": 2, "train": {"lr": 0.5}}
    assert MultVAE.upgrade_config(flat) == {
        "latent_dim": 3,
        "train": {"epochs": 7, "seed": 2, "lr": 0.5},
    }
    assert flat == {"latent_dim": 3, "epochs": 7, "seed": 2, "train": {"lr": 0.5}}  # a copy
    up = DiffRec.upgrade_config({"dims": [8], "dropout": 0.1, "steps": 4, "epochs": 3})
    assert up == {"diffusion": {"dims": [8], "dropout": 0.1, "steps": 4}, "train": {"epochs": 3}}
    from genrec.models import LDiffRec

    up = LDiffRec.upgrade_config({"vae_dropout": 0.2, "dropout": 0.1, "seed": 4})
    assert up == {"vae_dropout": 0.2, "diffusion": {"dropout": 0.1}, "train": {"seed": 4}}
    assert EASE.upgrade_config({"l2": 5.0}) == {"l2": 5.0}  # nothing nested: unchanged
    today = {"latent_dim": 3, "train": {"epochs": 7}}
    assert MultVAE.upgrade_config(today) == today


def test_a_saved_nested_config_round_trips(tmp_path):
    from genrec.models import DiffRec

    X = sp.csr_matrix(np.eye(5, dtype=np.float32))
    m = DiffRec(diffusion={"dims": (4,), "steps": 3}, train={"epochs": 1, "device": "cpu"})
    m.fit(X).save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["config"]["train"]["epochs"] == 1
    assert Recommender.load(tmp_path / "m").config == m.config


def test_an_old_flat_key_in_a_saved_model_is_upgraded_not_refused(tmp_path):
    shutil.copytree(FLAT / "mult-vae", tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["epochz"] = 1  # not a field anywhere: still an error
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="unknown key epochz"):
        Recommender.load(tmp_path / "m")


def test_recommend_with_a_k_past_the_item_count_returns_every_item_without_allocating_k():
    # issue 28, defect 6: recommend(k=10**12) asked the allocator for a (B, 10**12) list
    X = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 1, 0]], dtype=np.float32))
    m = EASE(l2=1.0).fit(X)
    items, scores = m.recommend(None, X, k=10**12)
    want_items, want_scores = m.recommend(None, X, k=4)
    assert items.shape == scores.shape == (2, 4)
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_array_equal(scores, want_scores)
    assert (items[0] >= 0).sum() == 3 and (items[1] >= 0).sum() == 2  # seen items left out

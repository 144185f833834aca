import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError
from genrec.models import EASE, MODELS, Recommender, get_model_class
from genrec.models.base import resolve_device


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
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
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
        get_model_class("mult-vae")(epochs=1, device="cpu").fit(X)
    with pytest.raises(DataError, match="NaN or infinite"):
        EASE().fit(X)


def test_a_model_class_loads_only_its_own_saved_models(tmp_path):
    from genrec.models import MultDAE, MultVAE

    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    MultDAE(epochs=1, latent_dim=2, device="cpu").fit(X).save(tmp_path / "m")
    assert type(Recommender.load(tmp_path / "m")) is MultDAE
    assert type(MultVAE.load(tmp_path / "m")) is MultDAE  # a subclass is a MultVAE
    with pytest.raises(DataError, match="saved mult-dae model .MultDAE., not a EASE"):
        EASE.load(tmp_path / "m")


def test_weights_that_do_not_fit_the_config_are_a_data_error(tmp_path):
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    get_model_class("mult-dae")(epochs=1, latent_dim=2, device="cpu").fit(
        X).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["latent_dim"] = 3
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
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

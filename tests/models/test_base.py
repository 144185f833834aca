import json

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.errors import DataError
from genrec.models import EASE, MODELS, Recommender, get_model_class


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
        get_model_class("mult-vae")(epochs=1, device="cpu").fit(X, progress=False)
    with pytest.raises(DataError, match="NaN or infinite"):
        EASE().fit(X)

"""Folders saved by genrec 0.1.0 load with the current code and answer as they did (to a few
float32 rounding steps, which another CPU's kernels may take).

tests/fixtures/v0.1.0/ was written by tests/fixtures/make_v0_1_0.py on the 0.1.0 tree: one
fitted model folder (``model.save``) per entry, with the scores (and, for rating models, the
predictions) it gave on a fixed input, and one whole ``genrec train`` run folder (EASE on a
CSV log) with the list ``genrec recommend`` printed. Each test works on a copy, so that
nothing the loader might rewrite reaches the fixtures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.cli import main
from genrec.models import RatingPredictor, Recommender, get_model_class

FIXTURES = Path(__file__).parent / "fixtures" / "v0.1.0"
FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if (p / "model.json").is_file())
RUN = "run-ease"
#: the models registered in 0.1.0: each has a folder
V0_1_0_MODELS = (
    "autorec",
    "biased-mf",
    "bpr-mf",
    "cdae",
    "diffrec",
    "ease",
    "fm",
    "gaussian-vae",
    "ldiffrec",
    "mult-dae",
    "mult-vae",
    "popularity",
    "recvae",
)


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def test_every_0_1_0_model_has_a_folder():
    saved = {json.loads((FIXTURES / f / "model.json").read_text())["model"] for f in FOLDERS}
    assert saved >= set(V0_1_0_MODELS), sorted(set(V0_1_0_MODELS) - saved)
    assert RUN in FOLDERS


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_loads_and_gives_the_saved_scores(folder, tmp_path):
    path = _copy(folder, tmp_path)
    saved_as = json.loads((path / "model.json").read_text())["model"]
    model = Recommender.load(path)
    assert type(model) is get_model_class(saved_as)
    with np.load(path / "expected_scores.npz", allow_pickle=False) as z:
        expected = {k: z[k] for k in z.files}
    X = sp.csr_matrix(
        (expected["data"], expected["indices"], expected["indptr"]), shape=tuple(expected["shape"])
    )
    with torch.no_grad():
        scores = torch.as_tensor(model.score(expected["users"], X)).detach().cpu().numpy()
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected["scores"], rtol=0, atol=_ulps(expected["scores"]))
    assert isinstance(model, RatingPredictor) == ("predictions" in expected)
    if "predictions" in expected:
        pred = np.asarray(model.predict(expected["predict_users"], expected["predict_items"]))
        want = expected["predictions"]
        np.testing.assert_allclose(pred.astype(np.float64), want, rtol=0, atol=_ulps(want))


def _ulps(expected: np.ndarray) -> float:
    """A few float32 rounding steps at the scale of ``expected``: the saved weights load
    bitwise, but another CPU's kernels round the sums that score with them differently
    (seen: 4 steps at most); a wrong, misplaced or mis-typed array is far off."""
    return 8 * float(np.finfo(np.float32).eps) * max(1.0, float(np.abs(expected).max()))


def test_run_folder_recommends_the_saved_list(tmp_path):
    path = _copy(RUN, tmp_path)
    stored = json.loads((path / "expected_recommend.json").read_text())
    argv = [str(path) if a == RUN else a for a in stored["argv"]]
    out = tmp_path / "rec.json"
    assert main([*argv, "--output", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["model"] == "ease"
    assert got["recommendations"] == stored["recommendations"]
    assert len(got["recommendations"]) == 5

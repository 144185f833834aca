"""Tiny runs trained once per test session on synthetic MovieLens-shaped data, and clients
of the service over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import write_ml100k

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

N_USERS, N_ITEMS = 300, 60

#: served name (the run folder's name) -> the run's settings
SPECS = {
    "ease": {"model": "ease"},
    "vae": {
        "model": "mult-vae",
        "hidden_dims": [16],
        "latent_dim": 8,
        "train": {"epochs": 2, "device": "cpu"},
    },
    "bpr": {"model": "bpr-mf", "n_factors": 8, "train": {"epochs": 2, "device": "cpu"}},
    "bmf": {"model": "biased-mf", "protocol": {"name": "rating"}, "train": {"epochs": 2}},
    "seq": {"model": "transition", "protocol": {"name": "seq-loo"}},
}


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    from genrec.runs import RunSpec, train_run

    root = tmp_path_factory.mktemp("serve")
    data = write_ml100k(root / "ml", n_users=N_USERS, n_items=N_ITEMS)
    out = {}
    for name, spec in SPECS.items():
        out[name] = root / "runs" / name
        train_run(RunSpec.from_mapping({**spec, "dataset": str(data)}, out=out[name]))
    return out


@pytest.fixture(scope="session")
def catalog(run_dirs):
    from genrec.serve import ServeConfig
    from genrec.serve.service import Catalog

    return Catalog.load(ServeConfig(tuple(run_dirs.values())))


@pytest.fixture(scope="module")
def client(catalog):
    from fastapi.testclient import TestClient

    from genrec.serve.app import create_app

    with TestClient(create_app(catalog=catalog)) as c:
        yield c


def error_of(response, status: int, code: str) -> str:
    """The message of an error response, after checking its status, code and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message
    return message

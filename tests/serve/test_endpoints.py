"""Every endpoint of the service answers in the documented shape, with the model's answer."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.runs import load_run
from genrec.serve import schemas
from tests.serve.conftest import SPECS


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready").json()
    assert r == {"status": "ready", "models": sorted(SPECS)}


def test_models_lists_every_run_with_its_record(client, run_dirs):
    body = schemas.ModelList.model_validate(client.get("/v1/models").json())
    assert [m.name for m in body.models] == sorted(SPECS)
    for m in body.models:
        run = load_run(run_dirs[m.name])
        assert m.model == SPECS[m.name]["model"] == run.name
        assert m.sizes.users == run.train_matrix.shape[0]
        assert m.sizes.items == run.train_matrix.shape[1]
        assert m.sizes.train_interactions == run.train_matrix.nnz
        assert m.protocol == run.record["protocol"] and m.trained == run.record["finished"]
        assert m.test_metrics == run.record["results"]["test"]["metrics"]
        assert m.capabilities.titles and m.dataset == "ml-100k"
    one = client.get("/v1/models/vae").json()
    assert one == client.get("/v1/models").json()["models"][list(sorted(SPECS)).index("vae")]
    caps = {m.name: m.capabilities for m in body.models}
    assert caps["ease"].fold_in and not caps["ease"].similar_items
    assert not caps["bpr"].fold_in and caps["bpr"].similar_items
    assert caps["bmf"].predict and not caps["ease"].predict and caps["seq"].sequential


def test_user_recommendations_leave_out_what_the_user_has(client, run_dirs):
    run = load_run(run_dirs["ease"])
    r = client.get("/v1/models/ease/users/7/recommendations", params={"k": 5})
    body = schemas.RecommendationsResponse.model_validate(r.json())
    assert body.user == 7 and body.items is None and body.unknown_items == []
    assert [x.rank for x in body.recommendations] == [1, 2, 3, 4, 5]
    scores = [x.score for x in body.recommendations]
    assert scores == sorted(scores, reverse=True)
    seen = set(run.items.raw[run.data.known[run.users.index(7)].indices].tolist())
    assert seen and not seen & {x.item for x in body.recommendations}
    titles = run.data.titles
    for x in body.recommendations:
        assert x.title == str(titles[run.items.index(x.item)])
    kept = client.get(
        "/v1/models/ease/users/7/recommendations", params={"k": 60, "include_seen": "true"}
    ).json()
    assert seen <= {x["item"] for x in kept["recommendations"]}  # every item, seen ones too


def test_posted_history_lists_unknown_items_and_skips_them(client):
    r = client.post("/v1/models/vae/recommendations", json={"items": ["1", 2, "nope", "1"], "k": 4})
    body = schemas.RecommendationsResponse.model_validate(r.json())
    assert body.user is None and body.items == [1, 2] and body.unknown_items == ["nope"]
    assert any("nope" in n for n in body.notes)
    assert len(body.recommendations) == 4
    assert not {1, 2} & {x.item for x in body.recommendations}
    again = client.post("/v1/models/vae/recommendations", json={"items": ["1", "2"], "k": 4})
    assert again.json()["recommendations"] == r.json()["recommendations"]  # skipped: no effect


def test_batch_answers_each_request_in_order_as_the_single_endpoints(client):
    reqs = [{"user": "3"}, {"items": ["4", "9", "x"]}, {"user": 11}, {"items": [5]}]
    r = client.post("/v1/models/ease/recommendations/batch", json={"requests": reqs, "k": 6})
    body = schemas.BatchResponse.model_validate(r.json())
    assert len(body.results) == 4
    singles = [
        client.get("/v1/models/ease/users/3/recommendations", params={"k": 6}).json(),
        client.post(
            "/v1/models/ease/recommendations", json={"items": ["4", "9", "x"], "k": 6}
        ).json(),
        client.get("/v1/models/ease/users/11/recommendations", params={"k": 6}).json(),
        client.post("/v1/models/ease/recommendations", json={"items": [5], "k": 6}).json(),
    ]
    for got, want in zip(r.json()["results"], singles):
        assert {k: v for k, v in got.items() if k != "recommendations"} == {
            k: v for k, v in want.items() if k != "recommendations"
        }
        assert [x["item"] for x in got["recommendations"]] == [
            x["item"] for x in want["recommendations"]
        ]
        np.testing.assert_allclose(
            [x["score"] for x in got["recommendations"]],
            [x["score"] for x in want["recommendations"]],
            rtol=1e-5,
            atol=1e-6,
        )


def test_batch_of_users_is_one_model_call(catalog, monkeypatch):
    m = catalog.get("ease")
    calls = []
    real = m.run.model.recommend

    def counted(users, X, **kw):
        calls.append(X.shape[0])
        return real(users, X, **kw)

    monkeypatch.setattr(m.run.model, "recommend", counted)
    catalog.batch("ease", [{"user": u, "items": None} for u in range(1, 41)], 10, False)
    assert calls == [40]
    calls.clear()
    mixed = [{"user": 1, "items": None}, {"user": None, "items": ["2", "3"]}] * 5
    catalog.batch("ease", mixed, 10, False)
    assert sorted(calls) == [5, 5]  # the users in one call, the histories in another


def test_similar_items_are_the_nearest_by_cosine(client, run_dirs):
    run = load_run(run_dirs["bpr"])
    r = client.get("/v1/models/bpr/items/3/similar", params={"k": 5})
    body = schemas.SimilarResponse.model_validate(r.json())
    assert body.item == 3 and body.title == "Movie 3 (1995)"
    E = run.model.item_embeddings()
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    cos = E @ E[run.items.index(3)]
    cos[run.items.index(3)] = -np.inf
    want = run.items.raw[np.argsort(-cos, kind="stable")[:5]].tolist()
    assert [x.item for x in body.similar] == want
    np.testing.assert_allclose([x.score for x in body.similar], np.sort(cos)[::-1][:5], rtol=1e-5)


def test_predict_gives_the_models_rating(client, run_dirs):
    run = load_run(run_dirs["bmf"])
    r = client.post("/v1/models/bmf/predict", json={"user": "5", "item": 7})
    body = schemas.PredictResponse.model_validate(r.json())
    want, notes = run.predict("5", 7)
    assert body.rating == pytest.approx(want) and body.notes == notes == []
    assert body.user == 5 and body.item == 7  # typed as in the data
    fallback = client.post("/v1/models/bmf/predict", json={"user": "new", "item": 7}).json()
    assert any("user new unknown" in n for n in fallback["notes"]) and fallback["user"] == "new"


def test_item_search_by_title_and_by_id(client):
    body = client.get("/v1/models/ease/items", params={"q": "movie 4", "limit": 5}).json()
    assert [x["item"] for x in body["items"]] == [4, 40, 41, 42, 43]
    assert body["items"][0]["title"] == "Movie 4 (1995)"
    assert client.get("/v1/models/ease/items", params={"q": "12"}).json()["items"][0]["item"] == 12
    assert client.get("/v1/models/ease/items", params={"q": "zzz"}).json()["items"] == []


def test_docs_and_openapi_are_served(client):
    spec = client.get("/openapi.json").json()
    for path in (
        "/health",
        "/ready",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/users/{user_id}/recommendations",
        "/v1/models/{name}/recommendations",
        "/v1/models/{name}/recommendations/batch",
        "/v1/models/{name}/items/{item_id}/similar",
        "/v1/models/{name}/predict",
    ):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_try_it_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '"v1/models"' in page.text  # the JSON API, relative to where the page is served
    for outside in ("http:", "https:", "<link", "src=", "@import", "//cdn"):
        assert outside not in page.text, outside  # nothing loaded from elsewhere


def test_importing_the_package_and_the_cli_needs_no_fastapi():
    import subprocess
    import sys

    code = (
        "import sys, genrec.serve, genrec.cli, genrec.serve.service; "
        "print(any(m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

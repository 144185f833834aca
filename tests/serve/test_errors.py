"""Every error of the service is JSON {"error": {"code", "message"}} with the right status,
and bad input never reaches a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from genrec.serve import Limits, ServeConfig
from genrec.serve.app import create_app
from genrec.serve.service import Catalog
from tests.serve.conftest import error_of

USER = "/v1/models/ease/users/{}/recommendations"
POST = "/v1/models/ease/recommendations"
BATCH = "/v1/models/ease/recommendations/batch"


def test_unknown_model_lists_the_served_names(client):
    msg = error_of(client.get("/v1/models/nope"), 404, "unknown_model")
    assert "'nope'" in msg and "bmf, bpr, ease, seq, vae" in msg
    error_of(client.get("/v1/models/nope/users/1/recommendations"), 404, "unknown_model")
    error_of(
        client.post("/v1/models/nope/recommendations", json={"items": ["1"]}), 404, "unknown_model"
    )


def test_unknown_user_says_how_to_fold_in(client):
    msg = error_of(client.get(USER.format("ghost")), 404, "unknown_user")
    assert "'ghost'" in msg and "POST" in msg and "/v1/models/ease/recommendations" in msg
    msg = error_of(client.get("/v1/models/bpr/users/ghost/recommendations"), 404, "unknown_user")
    assert "cannot fold in" in msg
    body = {"requests": [{"user": "1"}, {"user": "ghost"}]}
    msg = error_of(client.post(BATCH, json=body), 404, "unknown_user")
    assert msg.startswith("requests[1]: unknown user 'ghost'")


def test_unknown_routes_and_methods(client):
    msg = error_of(client.get("/v2/whatever"), 404, "not_found")
    assert "GET /v2/whatever" in msg
    error_of(client.get("/v1/models/ease/users/1"), 404, "not_found")
    r = client.delete("/v1/models/ease")
    assert "GET" in error_of(r, 405, "method_not_allowed") and r.headers["allow"] == "GET"
    error_of(client.get(POST), 405, "method_not_allowed")
    error_of(client.put("/health"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "body, where",
    [
        ({}, "body.items"),
        ({"items": []}, "body.items"),
        ({"items": "1,2"}, "body.items"),
        ({"items": [True]}, "body.items[0]"),
        ({"items": [1.5]}, "body.items[0]"),
        ({"items": [None]}, "body.items[0]"),
        ({"items": [""]}, "body.items[0]"),
        ({"items": ["x" * 300]}, "body.items[0]"),
        ({"items": ["1"], "k": 0}, "body.k"),
        ({"items": ["1"], "k": -3}, "body.k"),
        ({"items": ["1"], "k": "10"}, "body.k"),
        ({"items": ["1"], "k": 2.5}, "body.k"),
        ({"items": ["1"], "include_seen": "yes"}, "body.include_seen"),
        ({"items": ["1"], "user": "3"}, "body.user"),
        ([1, 2], "body"),
    ],
)
def test_malformed_history_bodies_are_422_naming_the_field(client, body, where):
    msg = error_of(client.post(POST, json=body), 422, "invalid_request")
    assert msg.startswith(where), msg


@pytest.mark.parametrize(
    "body, where",
    [
        ({"requests": []}, "body.requests"),
        ({"requests": [{}]}, "body.requests[0]"),
        ({"requests": [{"user": "1", "items": ["2"]}]}, "body.requests[0]"),
        ({"requests": [{"user": ["1"]}]}, "body.requests[0].user"),
        ({"requests": [{"user": "1"}], "k": "a"}, "body.k"),
        ({"requests": [{"user": "1", "k": 3}]}, "body.requests[0].k"),
        ({"requests": "all"}, "body.requests"),
    ],
)
def test_malformed_batch_bodies_are_422(client, body, where):
    msg = error_of(client.post(BATCH, json=body), 422, "invalid_request")
    assert msg.startswith(where), msg


def test_bodies_that_are_not_json_are_422(client):
    for content in (b"{not json", b"", b"\xff\xfe"):
        r = client.post(POST, content=content, headers={"content-type": "application/json"})
        error_of(r, 422, "invalid_request")
    r = client.post(POST, content=b"items=1", headers={"content-type": "text/plain"})
    error_of(r, 422, "invalid_request")


@pytest.mark.parametrize("k", ["0", "-1", "ten", "1.5", ""])
def test_query_k_out_of_range_or_not_a_number_is_422(client, k):
    msg = error_of(client.get(USER.format(1), params={"k": k}), 422, "invalid_request")
    assert msg.startswith("query.k")
    error_of(client.get("/v1/models/vae/items/1/similar", params={"k": k}), 422, "invalid_request")


def test_other_bad_queries_are_422(client):
    r = client.get(USER.format(1), params={"include_seen": "maybe"})
    assert error_of(r, 422, "invalid_request").startswith("query.include_seen")
    error_of(client.get("/v1/models/ease/items"), 422, "invalid_request")  # no q
    error_of(
        client.get("/v1/models/ease/items", params={"q": "a", "limit": 0}), 422, "invalid_request"
    )


def test_histories_with_no_known_item_are_422(client):
    msg = error_of(client.post(POST, json={"items": ["x", "y"]}), 422, "no_known_items")
    assert "x, y" in msg
    body = {"requests": [{"items": ["1"]}, {"items": ["zz"]}]}
    assert error_of(client.post(BATCH, json=body), 422, "no_known_items").startswith(
        "requests[1].items"
    )


def test_capabilities_a_model_lacks_are_409(client):
    msg = error_of(client.get("/v1/models/ease/items/1/similar"), 409, "no_item_embeddings")
    assert "ease" in msg and "item embeddings" in msg
    msg = error_of(
        client.post("/v1/models/vae/predict", json={"user": 1, "item": 2}),
        409,
        "not_a_rating_model",
    )
    assert "does not predict ratings" in msg
    msg = error_of(
        client.post("/v1/models/bpr/recommendations", json={"items": ["1"]}), 409, "cannot_fold_in"
    )
    assert "/v1/models/bpr/users/{user_id}/recommendations" in msg
    error_of(
        client.post("/v1/models/bpr/recommendations/batch", json={"requests": [{"items": ["1"]}]}),
        409,
        "cannot_fold_in",
    )


def test_unknown_item_for_similar_is_404(client):
    assert "'nope'" in error_of(
        client.get("/v1/models/vae/items/nope/similar"), 404, "unknown_item"
    )


def test_predict_bodies_are_checked(client):
    for body in ({"user": 1}, {"user": 1, "item": [2]}, {"user": True, "item": 2}):
        error_of(client.post("/v1/models/bmf/predict", json=body), 422, "invalid_request")


@pytest.fixture(scope="module")
def small(catalog):
    limits = Limits(max_k=5, max_history=3, max_batch=2, max_body_bytes=400)
    with TestClient(create_app(catalog=Catalog(catalog.models, limits))) as c:
        yield c


def test_each_limit_is_413(small):
    msg = error_of(small.get(USER.format(1), params={"k": 6}), 413, "limit_exceeded")
    assert "k=6" in msg and "(max_k)" in msg
    assert small.get(USER.format(1), params={"k": 5}).status_code == 200
    error_of(small.post(POST, json={"items": ["1"], "k": 6}), 413, "limit_exceeded")
    error_of(small.get("/v1/models/vae/items/1/similar", params={"k": 6}), 413, "limit_exceeded")
    four = {"items": ["1", "2", "3", "4"], "k": 2}
    msg = error_of(small.post(POST, json=four), 413, "limit_exceeded")
    assert "4 item ids" in msg and "(max_history)" in msg
    assert small.post(POST, json={"items": ["1", "2", "3"], "k": 2}).status_code == 200
    three = {"requests": [{"user": "1"}, {"user": "2"}, {"user": "3"}], "k": 2}
    msg = error_of(small.post(BATCH, json=three), 413, "limit_exceeded")
    assert "3 entries" in msg and "(max_batch)" in msg
    long = {"requests": [{"items": ["1", "2", "3", "4"]}], "k": 2}
    assert error_of(small.post(BATCH, json=long), 413, "limit_exceeded").startswith(
        "requests[0].items"
    )
    big = {"items": [str(i) for i in range(100)]}
    msg = error_of(small.post(POST, json=big), 413, "limit_exceeded")
    assert "400 bytes" in msg and "(max_body_bytes)" in msg


def test_a_body_without_content_length_is_counted_too(small):
    def chunks():
        yield b'{"items": ['
        for _ in range(100):
            yield b'"1",'
        yield b'"2"]}'

    r = small.post(POST, content=chunks(), headers={"content-type": "application/json"})
    error_of(r, 413, "limit_exceeded")


@pytest.fixture(scope="module")
def keyed(catalog, run_dirs):
    mp = pytest.MonkeyPatch()
    mp.setenv("GENREC_TEST_KEY", "s3cret-key")
    config = ServeConfig((run_dirs["ease"],), api_key_env="GENREC_TEST_KEY")
    app = create_app(config, catalog=catalog)
    mp.undo()  # the key is read once, at start-up
    with TestClient(app) as c:
        yield c


def test_api_key_is_needed_on_every_v1_request(keyed):
    for path in ("/v1/models", USER.format(1), "/v1/nothing-here"):
        r = keyed.get(path)
        assert "API key" in error_of(r, 401, "unauthorized") and r.headers["www-authenticate"]
    for headers in (
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "s3cret-ke"},
        {"Authorization": "Basic s3cret-key"},
        {"Authorization": "s3cret-key"},
    ):
        error_of(keyed.get("/v1/models", headers=headers), 401, "unauthorized")
    assert (
        keyed.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    )
    assert keyed.get(USER.format(1), headers={"X-API-Key": "s3cret-key"}).status_code == 200
    r = keyed.post(POST, json={"items": ["1"]}, headers={"X-API-Key": "s3cret-key"})
    assert r.status_code == 200
    for path in ("/health", "/ready", "/", "/docs", "/openapi.json"):  # outside /v1: open
        assert keyed.get(path).status_code == 200, path
    schemes = keyed.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)


def test_without_a_key_configured_no_key_is_asked(client):
    assert client.get("/v1/models").status_code == 200


def test_an_unset_key_variable_is_a_start_up_error(run_dirs, monkeypatch):
    from genrec.errors import ConfigError

    monkeypatch.delenv("GENREC_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="GENREC_NO_SUCH_KEY is unset or empty"):
        create_app(ServeConfig((run_dirs["ease"],), api_key_env="GENREC_NO_SUCH_KEY"))


def test_serve_config_refuses_bad_names_and_limits(run_dirs, tmp_path):
    from genrec.errors import ConfigError

    with pytest.raises(ConfigError, match="two run folders are both named 'ease'"):
        ServeConfig((run_dirs["ease"], tmp_path / "x" / "ease"))
    with pytest.raises(ConfigError, match="max_k must be a positive integer"):
        Limits(max_k=0)
    with pytest.raises(ConfigError, match="at least one run folder"):
        ServeConfig(())
    with pytest.raises(ConfigError, match="cannot be a model name"):
        ServeConfig((tmp_path / "my run",))


def test_an_unexpected_error_is_a_json_500_not_a_traceback(catalog, monkeypatch):
    m = catalog.get("ease")

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(m.run.model, "recommend", broken)
    with TestClient(create_app(catalog=catalog), raise_server_exceptions=False) as c:
        msg = error_of(c.get(USER.format(1)), 500, "internal_error")
    assert "boom" not in msg

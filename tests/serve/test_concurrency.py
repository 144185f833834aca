"""Scoring runs in the thread pool: the event loop answers /health while a batch is being
scored; and the config reaches worker processes intact."""

from __future__ import annotations

import asyncio
import threading

import httpx

from genrec.serve import Limits, ServeConfig
from genrec.serve.app import create_app


def test_health_answers_while_a_batch_is_scored(catalog, monkeypatch):
    m = catalog.get("ease")
    real = m.run.model.recommend
    entered, release = threading.Event(), threading.Event()

    def slow(users, X, **kw):  # holds its thread until /health has been answered
        entered.set()
        assert release.wait(30), "/health was not answered while scoring: the loop blocked"
        return real(users, X, **kw)

    monkeypatch.setattr(m.run.model, "recommend", slow)
    app = create_app(catalog=catalog)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            batch = asyncio.create_task(
                c.post(
                    "/v1/models/ease/recommendations/batch",
                    json={"requests": [{"user": 1}, {"user": 2}], "k": 3},
                )
            )
            while not entered.is_set():
                await asyncio.sleep(0.01)
            health = await c.get("/health")
            release.set()
            return health, await batch

    health, batch = asyncio.run(scenario())
    assert health.json() == {"status": "ok"}
    assert batch.status_code == 200 and len(batch.json()["results"]) == 2


def test_the_config_travels_to_workers_as_json(run_dirs):
    config = ServeConfig(
        (run_dirs["ease"], run_dirs["vae"]), Limits(max_k=7, max_batch=3), "SOME_VAR"
    )
    assert ServeConfig.from_json(config.to_json()) == config
    assert "SOME_VAR" in config.to_json()

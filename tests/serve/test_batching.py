"""Requests waiting together are scored by one model call (genrec.serve.batching): grouped
by model, kind, k and include_seen, each handed its own answers, a failure handed to the
requests of its call only, and --batch-users 1 scoring every request alone."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import pytest

from genrec.errors import ConfigError
from genrec.serve import ServeConfig
from genrec.serve.app import create_app
from genrec.serve.batching import Scorer


class _Recorder:
    """A score function that records its calls and answers each row with itself; the first
    call can be held until released."""

    def __init__(self, hold_first: bool = False):
        self.calls: list[tuple[str, str, list, int, bool]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, kind, model, rows, k, include_seen):
        self.calls.append((kind, model, list(rows), k, include_seen))
        self.entered.set()
        assert self.release.wait(30)
        if any(r == "bad" for r in rows):
            raise ValueError("a bad row")
        return [{"row": r, "k": k, "kind": kind} for r in rows]


async def _submit_while_held(scorer: Scorer, rec: _Recorder, jobs: list[tuple]) -> list:
    """The first job starts a call that is held; the rest queue behind it; then release."""
    first = asyncio.create_task(scorer.submit(*jobs[0]))
    while not rec.entered.is_set():
        await asyncio.sleep(0.005)
    rest = [asyncio.create_task(scorer.submit(*j)) for j in jobs[1:]]
    await asyncio.sleep(0.05)  # every job is in the queue
    rec.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_jobs_queued_behind_a_call_share_the_next_one_in_order():
    rec = _Recorder(hold_first=True)
    scorer = Scorer(rec, max_users=256)
    jobs = [("users", "m", [0], 10, False)] + [
        ("users", "m", [i, i + 100], 10, False) for i in (1, 2, 3)
    ]
    got = asyncio.run(_submit_while_held(scorer, rec, jobs))
    scorer.stop()
    assert [c[2] for c in rec.calls] == [[0], [1, 101, 2, 102, 3, 103]]
    assert got[0] == [{"row": 0, "k": 10, "kind": "users"}]
    for i, answer in zip((1, 2, 3), got[1:]):
        assert [a["row"] for a in answer] == [i, i + 100]


def test_groups_split_by_model_kind_k_and_include_seen():
    rec = _Recorder(hold_first=True)
    scorer = Scorer(rec)
    jobs = [
        ("users", "m", [0], 10, False),
        ("users", "m", [1], 10, False),
        ("users", "m", [2], 5, False),
        ("histories", "m", [[7, 8]], 10, False),
        ("users", "other", [3], 10, False),
        ("users", "m", [4], 10, True),
        ("users", "m", [5], 10, False),
    ]
    got = asyncio.run(_submit_while_held(scorer, rec, jobs))
    scorer.stop()
    assert rec.calls[1:] == [
        ("users", "m", [1, 5], 10, False),
        ("users", "m", [2], 5, False),
        ("histories", "m", [[7, 8]], 10, False),
        ("users", "other", [3], 10, False),
        ("users", "m", [4], 10, True),
    ]
    assert [a[0]["row"] for a in got] == [0, 1, 2, [7, 8], 3, 4, 5]
    assert got[2][0]["k"] == 5 and got[3][0]["kind"] == "histories"


def test_a_failure_reaches_the_requests_of_its_call_only():
    rec = _Recorder(hold_first=True)
    scorer = Scorer(rec)
    jobs = [
        ("users", "m", [0], 10, False),
        ("users", "m", ["bad"], 10, False),
        ("users", "m", [1], 10, False),
        ("users", "m", [2], 3, False),
    ]
    got = asyncio.run(_submit_while_held(scorer, rec, jobs))
    assert isinstance(got[1], ValueError) and isinstance(got[2], ValueError)  # one call
    assert got[0][0]["row"] == 0 and got[3][0]["row"] == 2
    # the thread goes on scoring after a failure
    assert asyncio.run(scorer.submit("users", "m", [9], 10, False))[0]["row"] == 9
    scorer.stop()


def test_max_users_caps_a_call_and_one_scores_each_request_alone():
    for cap, calls in ((1, [[0], [1], [2], [3]]), (2, [[0], [1, 2], [3]])):
        rec = _Recorder(hold_first=True)
        scorer = Scorer(rec, max_users=cap)
        jobs = [("users", "m", [i], 10, False) for i in range(4)]
        asyncio.run(_submit_while_held(scorer, rec, jobs))
        scorer.stop()
        assert [c[2] for c in rec.calls] == calls, cap
    with pytest.raises(ValueError, match="max_users"):
        Scorer(rec, max_users=0)


def test_a_job_larger_than_the_cap_is_scored_whole():
    rec = _Recorder()
    scorer = Scorer(rec, max_users=2)
    got = asyncio.run(scorer.submit("users", "m", list(range(5)), 10, False))
    scorer.stop()
    assert [a["row"] for a in got] == list(range(5)) and len(rec.calls) == 1


def test_concurrent_requests_to_the_app_share_model_calls_and_get_their_own_lists(
    catalog, monkeypatch
):
    m = catalog.get("ease")
    real = m.run.model.recommend
    entered, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def held(users, X, **kw):  # the first call waits until the others are queued
        sizes.append(X.shape[0])
        entered.set()
        assert release.wait(30)
        return real(users, X, **kw)

    monkeypatch.setattr(m.run.model, "recommend", held)
    app = create_app(catalog=catalog)
    users = m.run.users.raw.tolist()[:40]

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:

            def get(u):
                return c.get(f"/v1/models/ease/users/{u}/recommendations", params={"k": 5})

            first = asyncio.create_task(get(users[0]))
            while not entered.is_set():
                await asyncio.sleep(0.005)
            rest = [asyncio.create_task(get(u)) for u in users[1:]]
            await asyncio.sleep(0.2)
            release.set()
            return await asyncio.gather(first, *rest)

    answers = asyncio.run(scenario())
    app.state.scorer.stop()
    assert sizes == [1, len(users) - 1]  # the 39 waiting requests: one model call
    monkeypatch.setattr(m.run.model, "recommend", real)
    for u, r in zip(users, answers):
        assert r.status_code == 200
        want = m.run.recommend(user=u, k=5).items
        got = r.json()["recommendations"]
        assert r.json()["user"] == u and len(got) == len(want)
        np.testing.assert_allclose(
            [x["score"] for x in got], [x["score"] for x in want], rtol=1e-5, atol=1e-6
        )


def test_batch_users_is_checked_and_travels_to_workers(run_dirs):
    config = ServeConfig((run_dirs["ease"],), batch_users=8)
    assert ServeConfig.from_json(config.to_json()).batch_users == 8
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ConfigError, match="batch_users"):
            ServeConfig((run_dirs["ease"],), batch_users=bad)


class _Fatal(BaseException):
    pass


def test_a_fatal_error_fails_its_requests_and_the_thread_goes_on():
    def score(kind, model, rows, k, include_seen):
        if rows == ["fatal"]:
            raise _Fatal("not an Exception")
        if rows == ["stop"]:
            raise StopIteration
        return [{"row": r} for r in rows]

    scorer = Scorer(score)

    async def scenario():
        out = []
        for rows in (["fatal"], ["stop"], [1]):
            try:
                out.append(await scorer.submit("users", "m", rows, 10, False))
            except RuntimeError as e:
                out.append(str(e))
        return out

    got = asyncio.run(scenario())
    assert "_Fatal" in got[0] and "StopIteration" in got[1]
    assert got[2] == [{"row": 1}]
    scorer.stop()


def test_a_group_is_answered_without_waiting_for_the_next_group():
    first_group_answered, release, entered = threading.Event(), threading.Event(), threading.Event()

    def score(kind, model, rows, k, include_seen):
        if k == 0:  # the call that holds the thread while the next two requests queue
            entered.set()
            assert release.wait(10)
        if k == 2:  # the second group waits until the first one's request has its answer
            assert first_group_answered.wait(10), "the first group waited for the second"
        return [{"row": r, "k": k} for r in rows]

    scorer = Scorer(score)

    async def scenario():
        blocker = asyncio.create_task(scorer.submit("users", "m", [0], 0, False))
        while not entered.is_set():
            await asyncio.sleep(0.005)
        a = asyncio.create_task(scorer.submit("users", "m", [1], 1, False))
        b = asyncio.create_task(scorer.submit("users", "m", [2], 2, False))
        await asyncio.sleep(0.05)  # both queued: the next drain takes them together
        release.set()
        await blocker
        got_a = await a
        first_group_answered.set()
        return got_a, await b

    got_a, got_b = asyncio.run(scenario())
    assert got_a == [{"row": 1, "k": 1}] and got_b == [{"row": 2, "k": 2}]
    scorer.stop()


def test_a_stopped_scorer_starts_again_for_the_next_request():
    scorer = Scorer(lambda kind, model, rows, k, seen: [{"row": r} for r in rows])
    assert asyncio.run(scorer.submit("users", "m", [1], 10, False)) == [{"row": 1}]
    scorer.stop()
    scorer.stop()  # twice is harmless
    assert asyncio.run(scorer.submit("users", "m", [2], 10, False)) == [{"row": 2}]
    scorer.stop()

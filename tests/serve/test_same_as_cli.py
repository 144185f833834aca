"""The service recommends what ``genrec recommend`` recommends: for a few hundred known
users and for posted histories, single and batched, for EASE and Mult-VAE, and a sequential
model reads a posted history in the order given."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec.cli import main
from genrec.runs import load_run

K = 10


def _cli(capsys, tmp_path, run_dir, *args: str) -> dict:
    out = tmp_path / "recs.json"
    code = main(["recommend", str(run_dir), *args, "-k", str(K), "--output", str(out)])
    capsys.readouterr()
    assert code == 0
    return json.loads(out.read_text())


def _same_ranking(got: list[dict], want: list[dict], tol: float = 1e-5) -> None:
    """Equal lists, but for neighbours whose scores tie to float precision (a batched
    product may round them the other way)."""
    assert len(got) == len(want)
    g = np.array([x["score"] for x in got])
    w = np.array([x["score"] for x in want])
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    for a, b in zip(got, want):
        if a["item"] != b["item"]:
            assert abs(a["score"] - b["score"]) <= tol * max(1.0, abs(b["score"])), (a, b)


@pytest.mark.parametrize("name", ["ease", "vae"])
def test_known_users_get_the_cli_lists_single_and_batched(name, client, run_dirs, capsys, tmp_path):
    run = load_run(run_dirs[name])
    users = run.users.raw.tolist()
    assert len(users) >= 250
    batch = client.post(
        f"/v1/models/{name}/recommendations/batch",
        json={"requests": [{"user": str(u)} for u in users], "k": K},
    ).json()["results"]
    assert len(batch) == len(users)
    for j, (u, batched) in enumerate(zip(users, batch)):
        # the command line itself for every tenth user (each call loads the run), and for
        # all of them the library call it prints, Run.recommend
        want = run.recommend(user=u, k=K)
        if j % 10 == 0:
            cli = _cli(capsys, tmp_path, run_dirs[name], "--user", str(u))
            assert cli["recommendations"] == want.items and cli["notes"] == want.notes
        single = client.get(f"/v1/models/{name}/users/{u}/recommendations", params={"k": K})
        single = single.json()
        assert single["recommendations"] == want.items, u
        assert single["user"] == want.user == u and single["notes"] == want.notes
        assert batched["user"] == u and batched["notes"] == want.notes
        _same_ranking(batched["recommendations"], want.items)


@pytest.mark.parametrize("name", ["ease", "vae"])
def test_posted_histories_get_the_cli_lists(name, client, run_dirs, capsys, tmp_path):
    run = load_run(run_dirs[name])
    rng = np.random.default_rng(1)
    items = run.items.raw.tolist()
    histories = [
        [str(x) for x in rng.choice(items, size=rng.integers(1, 12), replace=False)]
        for _ in range(40)
    ]
    histories[0] = histories[0] + ["unknown-1"]
    batch = client.post(
        f"/v1/models/{name}/recommendations/batch",
        json={"requests": [{"items": h} for h in histories], "k": K},
    ).json()["results"]
    for h, batched in zip(histories, batch):
        cli = _cli(capsys, tmp_path, run_dirs[name], "--items", ",".join(h))
        single = client.post(f"/v1/models/{name}/recommendations", json={"items": h, "k": K}).json()
        assert single["recommendations"] == cli["recommendations"]
        assert single["items"] == batched["items"] == cli["items"]
        assert single["notes"] == batched["notes"] == cli["notes"]
        _same_ranking(batched["recommendations"], cli["recommendations"])
    assert batch[0]["unknown_items"] == ["unknown-1"]


def test_a_sequential_model_reads_the_history_in_the_order_posted(
    client, run_dirs, capsys, tmp_path
):
    run = load_run(run_dirs["seq"])
    assert run.model.capabilities.sequential
    changed = 0
    rng = np.random.default_rng(2)
    items = run.items.raw.tolist()
    for _ in range(20):
        h = [str(x) for x in rng.choice(items, size=4, replace=False)]
        for order in (h, h[::-1]):
            cli = _cli(capsys, tmp_path, run_dirs["seq"], "--items", ",".join(order))
            got = client.post("/v1/models/seq/recommendations", json={"items": order, "k": K})
            batched = client.post(
                "/v1/models/seq/recommendations/batch",
                json={"requests": [{"items": order}], "k": K},
            ).json()["results"][0]
            assert got.json()["recommendations"] == cli["recommendations"]
            assert got.json()["items"] == [int(x) for x in order]
            _same_ranking(batched["recommendations"], cli["recommendations"])
        forward = client.post("/v1/models/seq/recommendations", json={"items": h, "k": K})
        backward = client.post("/v1/models/seq/recommendations", json={"items": h[::-1], "k": K})
        changed += forward.json()["recommendations"] != backward.json()["recommendations"]
    assert changed > 0  # the order reaches the model


def test_sequential_known_users_match_the_cli(client, run_dirs, capsys, tmp_path):
    run = load_run(run_dirs["seq"])
    users = run.users.raw.tolist()[:30]
    batch = client.post(
        "/v1/models/seq/recommendations/batch",
        json={"requests": [{"user": u} for u in users], "k": K},
    ).json()["results"]
    for u, batched in zip(users, batch):
        cli = _cli(capsys, tmp_path, run_dirs["seq"], "--user", str(u))
        _same_ranking(batched["recommendations"], cli["recommendations"])
        assert batched["notes"] == cli["notes"]

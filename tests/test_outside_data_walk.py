"""Regression tests from a new user's walk through outside data (issue 27's acceptance):
Amazon-style logs with string ids, header-less TSVs, split folders. Each test is named after
what went wrong."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError
from genrec.models import EASE
from genrec.models.ease import ease_max_items, ease_memory_bytes, ease_weights, gram_matrix
from genrec.runs import RunSpec, load_run, train_run
from tests._cli import run_cli as _cli


def _log(seed: int = 0, n_users: int = 60, n_items: int = 40, per_user: int = 8) -> pd.DataFrame:
    """An implicit ``user item time`` log with string ids and a skewed item popularity."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False, p=p / p.sum())
        for j, i in enumerate(items):
            rows.append((f"A{u:04d}", f"B{i:05d}", 1_300_000_000 + 1000 * u + 60 * j))
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("walk") / "log.csv"
    _log().to_csv(path, index=False)
    return path


# ------------------------------------------- EASE's memory refusal names protocol.item_k
def test_ease_max_items_inverts_the_memory_need():
    for n in (1, 7, 2810, 20000):
        limit = ease_memory_bytes(n)
        assert ease_max_items(limit) == n and ease_max_items(limit - 1) == n - 1


def test_ease_max_items_leaves_room_for_b_over_the_whole_id_space():
    n_all = 100
    for n in (0, 10, 50):
        limit = ease_memory_bytes(n, n_all)
        assert ease_max_items(limit, n_all) == n
    assert ease_max_items(ease_memory_bytes(n_all), n_all) == n_all
    assert ease_max_items(4 * n_all * n_all - 1, n_all) == 0  # not even B fits


def test_ease_without_item_interactions_solves_over_the_others_alone():
    # before: the solve ran over every item of the id space, so protocol.item_k (which
    # empties rare items' columns but keeps the ids) could not bring EASE under its limit
    rng = np.random.default_rng(4)
    dense = (rng.random((30, 12)) < 0.3).astype(np.float32)
    dense[:, [2, 7, 8]] = 0
    X = sp.csr_matrix(dense)
    active = np.array([i for i in range(12) if i not in (2, 7, 8)])
    full = ease_weights(gram_matrix(X), 5.0).float()  # the whole id space, as before
    model = EASE(l2=5.0).fit(X)
    np.testing.assert_allclose(model.B_.numpy(), full.numpy(), atol=1e-6)
    assert not model.B_[[2, 7, 8]].any() and not model.B_[:, [2, 7, 8]].any()
    gb = ease_memory_bytes(len(active), 12) / 2**30  # room for 9 items, not for 12
    assert ease_memory_bytes(12) / 2**30 > gb
    EASE(l2=5.0, max_memory_gb=gb).fit(X)
    assert torch.equal(EASE(l2=5.0).fit(sp.csr_matrix((2, 3))).B_, torch.zeros(3, 3))


def test_ease_memory_refusal_names_the_protocol_item_k_that_fits(tmp_path, capsys, log_csv):
    gb = ease_memory_bytes(25) / 2**30
    fits = ease_max_items(gb * 2**30, 40)  # items with interactions, beside B over all 40
    assert 0 < fits < 25
    spec = {"model": "ease", "dataset": str(log_csv), "max_memory_gb": gb}
    with pytest.raises(ConfigError) as e:
        train_run(RunSpec.from_mapping(spec, out=tmp_path / "a"))
    msg = str(e.value)
    assert "needs about" in msg and "protocol.item_k=" in msg and "\n" not in msg, msg
    k = int(msg.split("protocol.item_k=")[1].split()[0])
    counts = _log()["item"].value_counts()  # every part, as k-core counts
    assert (counts >= k).sum() <= fits < (counts >= k - 1).sum()  # the smallest k that fits
    assert f"leaves {(counts >= k).sum():,} of {len(counts):,} items" in msg
    # following the advice works
    done = train_run(RunSpec.from_mapping({**spec, "protocol": {"item_k": k}}, out=tmp_path / "b"))
    train = load_run(done.out).train_matrix
    assert len(np.unique(train.indices)) <= fits < train.shape[1]  # the ids stay, the solve shrank
    code, _, err = _cli(
        capsys,
        *("train", "--model", "ease", "--dataset", str(log_csv), "--out", str(tmp_path / "c")),
        *("--set", f"max_memory_gb={gb}"),
    )
    assert code != 0 and f"--set protocol.item_k={k} leaves" in " ".join(err.split()), err


# ------------------------------------- embeddings and clusters of a sequential run
@pytest.fixture(scope="module")
def gru_run(tmp_path_factory, log_csv):
    out = tmp_path_factory.mktemp("gru") / "run"
    spec = {
        "model": "gru4rec",
        "dataset": str(log_csv),
        "hidden_dim": 8,
        "embedding_dim": 8,
        "protocol": {"name": "seq-loo"},
        "train": {"epochs": 1, "device": "cpu"},
    }
    train_run(RunSpec.from_mapping(spec, out=out))
    return out


def test_run_user_embeddings_of_a_sequential_run_read_the_ordered_histories(gru_run):
    # before: "X_users: a sequential model reads each user's items in order ... pass
    # genrec.data.Sequences", to a caller who passed no X_users
    run = load_run(gru_run)
    users = [run.users.raw[3].item(), run.users.raw[0].item()]
    rows = run.users.indices(users, "user")
    want = run.model.user_embeddings(run.data.sequences.take(rows), users=rows)
    np.testing.assert_array_equal(run.user_embeddings(users), want)
    assert run.user_embeddings().shape == (len(run.users), 8)


def test_clusters_of_a_sequential_run_embed_its_ordered_histories(tmp_path, capsys, gru_run):
    # before: genrec clusters on a GRU4Rec run failed with the same library-terms message
    code, out, err = _cli(
        capsys, "clusters", str(gru_run), "--k", "2", "--map", "none", "--out", str(tmp_path / "c")
    )
    assert code == 0, err
    labels = pd.read_csv(tmp_path / "c" / "clusters.csv")
    assert len(labels) == len(load_run(gru_run).users)


def test_clusters_refuse_a_model_without_user_embeddings_before_reading_the_data(
    tmp_path, capsys, log_csv, monkeypatch
):
    out = tmp_path / "ease"
    train_run(RunSpec.from_mapping({"model": "ease", "dataset": str(log_csv)}, out=out))
    import genrec.cli.clusters as clusters_cli

    def no_reading(*args, **kwargs):
        raise AssertionError("the data set was read before the refusal")

    monkeypatch.setattr(clusters_cli, "load_dataset", no_reading)
    code, _, err = _cli(capsys, "clusters", str(out), "--k", "2", "--out", str(tmp_path / "c"))
    msg = " ".join(err.split())
    assert code != 0 and "has no user embeddings" in msg and "--embedding svd" in msg, err
    assert "genrec.analysis" not in msg


def test_clusters_log_each_stage_with_its_time_without_a_terminal(tmp_path, capsys, log_csv):
    # before: 300 s of t-SNE on 22,363 users showed nothing when stderr was not a terminal
    out = tmp_path / "bpr"
    spec = {
        "model": "bpr-mf",
        "dataset": str(log_csv),
        "n_factors": 4,
        "protocol": {"name": "loo"},
        "train": {"epochs": 1, "device": "cpu"},
    }
    train_run(RunSpec.from_mapping(spec, out=out))
    code, _, err = _cli(
        capsys, "clusters", str(out), "--k-range", "2-3", "--out", str(tmp_path / "c")
    )
    assert code == 0, err
    text = " ".join(err.split())
    stages = [
        r"clusters: model embeddings of 60 users \(4 dims\)",
        r"clusters: gmm, K = [23] chosen among 2 candidates",
        r"clusters: tsne map of 60 users",
        r"clusters: profiles of [23] clusters, files",
    ]
    for stage in stages:
        assert len(re.findall(stage + r" [0-9]+\.[0-9]s", text)) == 1, (stage, text)


@pytest.mark.parametrize("sparse", [True, False])
def test_clusters_say_where_the_characteristic_items_rule_is_relaxed(sparse):
    # before: profiles.json held items_rule, the table listed items 1-2% of the cluster chose
    # with nothing said, while docs/analysis.md promises items chosen by at least 10%
    from genrec.analysis.pipeline import cluster_users

    rng = np.random.default_rng(5)
    n_users, n_items = 200, 300 if sparse else 12
    rows = np.repeat(np.arange(n_users), 5)
    cols = np.concatenate([rng.choice(n_items, 5, replace=False) for _ in range(n_users)])
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    report = cluster_users(
        None, X, np.arange(n_users), np.arange(n_items), k=2, map_method="none", embedding="svd"
    )
    relaxed = [p for p in report.profiles if "items_rule" in p]
    said = [n for n in report.notes if "no item is chosen by 10%" in n]
    assert bool(relaxed) == sparse and len(said) == int(sparse)
    if sparse:
        assert said[0].startswith(f"in {len(relaxed)} of 2 clusters"), said


# ------------------------------------------- predict: the unknown-id rule of recommend
def test_predict_makes_an_unknown_id_an_error_when_asked_as_recommend_does(
    tmp_path, capsys, log_csv
):
    # before: recommend --items had --strict (unknown_items="error"); predict had no way
    # to refuse an unknown id, only a fallback prediction
    from genrec.errors import DataError

    log = _log().assign(rating=lambda d: 1 + np.arange(len(d)) % 5)
    path = tmp_path / "ratings.csv"
    log.to_csv(path, index=False)
    spec = {"model": "biased-mf", "dataset": str(path), "train": {"epochs": 1, "device": "cpu"}}
    out = train_run(RunSpec.from_mapping(spec, out=tmp_path / "run")).out
    run = load_run(out)
    user, item = log["user"][0], log["item"][0]
    r, notes = run.predict(user, "NOPE")
    assert np.isfinite(r) and notes == ["item NOPE unknown: fallback prediction"]
    with pytest.raises(DataError, match="unknown item 'NOPE'"):
        run.predict(user, "NOPE", unknown="error")
    with pytest.raises(DataError, match="unknown user 'nobody'"):
        run.predict("nobody", item, unknown="error")
    assert run.predict(user, item, unknown="error") == run.predict(user, item)
    with pytest.raises(ConfigError, match="'fallback' or 'error'"):
        run.predict(user, item, unknown="skip")
    args = ("predict", str(out), "--user", user, "--item", "NOPE")
    code, _, err = _cli(capsys, *args, "--strict")
    assert code != 0 and "unknown item 'NOPE'" in err, err
    code, text, _ = _cli(capsys, *args)
    assert code == 0 and "fallback prediction" in " ".join(text.split())


# --------------------------------------- long epochs without a terminal say where they are
def test_a_long_epoch_without_a_terminal_logs_its_batches_every_minute(caplog):
    # before: GRU4Rec on Sports trained 450 s with no line until "epoch 1/1 ..." when
    # stderr was a file; the progress bar is drawn only on a terminal
    import logging

    from genrec.cli.progress import LogProgress
    from genrec.cli.render import run_hooks

    now = [0.0]
    cb = LogProgress(every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="genrec"):
        cb.on_train_begin(epochs=3, start_epoch=0, select=None)
        cb.on_epoch_begin(1, 700)
        for step in range(700):
            now[0] += 0.5  # 350 s in all: a line at 60, 120, ..., 300 s
            cb.on_batch(step, 9.0 - step / 1000)
    lines = [r.getMessage() for r in caplog.records if "batch" in r.getMessage()]
    assert len(lines) == 5, lines
    assert lines[0].startswith("epoch 2/3  batch 120/700  loss 8.88") and "60s so far" in lines[0]
    with run_hooks() as hooks:  # what genrec train passes to fit without a terminal
        assert any(isinstance(c, LogProgress) for c in hooks.callbacks)

"""Regression tests of issue 27 ("real logs, real users"): what a new user's first runs on a
rating log with string ids say, each named after the defect it pins."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from genrec.data import DataOptions, load_dataset
from genrec.errors import DataError
from genrec.models import EASE
from genrec.protocols import ProtocolConfig, build_protocol
from genrec.runs import RunSpec, load_run, train_run
from tests._cli import run_cli as _cli

LOW = "c7"  # rates everything below the default binarize threshold (4.0)


def _ratings(seed: int = 0) -> pd.DataFrame:
    """60 customers x 40 SKUs, 12 ratings each (1..5, times); customer c7 rates 1..3 only,
    and c11 likes only two items (a user k-core with user_k=3 removes)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(60):
        for j, i in enumerate(rng.choice(40, 12, replace=False)):
            r = int(rng.integers(1, 6))
            if u == 7:
                r = int(rng.integers(1, 4))
            elif u == 11:
                r = 5 if j < 2 else int(rng.integers(1, 4))
            else:
                r = max(r, 4) if j < 6 else r  # everyone else likes at least 6 items
            rows.append((f"c{u}", f"sku-{i}", r, 1_600_000_000 + 100 * u + j))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "ratings.csv"
    _ratings().to_csv(path, index=False)
    return path


def _k_core_users(df: pd.DataFrame, user_k: int, item_k: int) -> set[str]:
    """Brute force: the users left after iterative k-core filtering of ``df``."""
    while True:
        uc, ic = (
            df["user"].map(df["user"].value_counts()),
            df["item"].map(df["item"].value_counts()),
        )
        keep = (uc >= user_k) & (ic >= item_k)
        if keep.all():
            return set(df["user"])
        df = df[keep]


# --------------------------------------------------------------------- 1: --select alone
def test_select_without_grid_on_ease_names_only_settings_ease_has(tmp_path, capsys, log_csv):
    out = tmp_path / "o"
    code, _, err = _cli(
        capsys, "train", "--model", "ease", "--dataset", str(log_csv), "--select", "recall@20",
        "--out", str(out),
    )  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "train.select_metric" not in err  # EASE has no [train] table
    assert "ease is fitted once, with nothing chosen on validation" in err
    assert "--grid" in err and not out.exists()
    code, _, err = _cli(
        capsys, "train", "--model", "mult-vae", "--dataset", str(log_csv), "--select",
        "recall@20", "--out", str(out),
    )  # fmt: skip
    assert code == 1 and "mult-vae picks its epoch by train.select_metric" in err, err


# ------------------------------------------------- 2: a user whose ratings were all dropped
def test_recommend_for_a_user_whose_ratings_all_fall_below_the_threshold(tmp_path, capsys, log_csv):
    df = _ratings()
    n_low = int((df["user"] == LOW).sum())
    assert n_low == 12 and (df.loc[df["user"] == LOW, "rating"] < 4).all()
    out = tmp_path / "run"
    train_run(RunSpec.from_mapping({"model": "ease", "dataset": str(log_csv)}, out=out))
    want = (
        f"user {LOW} is in the data but all their {n_low} interactions were dropped by "
        f"protocol.binarize_threshold=4.0"
    )
    notes = load_run(out).recommend(user=LOW, k=3).notes
    assert any(n.startswith(want) for n in notes), notes
    code, _, err = _cli(capsys, "recommend", str(out), "--user", LOW, "-k", "3")
    assert code == 0 and want in " ".join(err.split()), err
    code, _, err = _cli(capsys, "recommend", str(out), "--user", "c0", "-k", "3")
    assert code == 0 and "dropped" not in err  # a user with positives gets no note


def test_recommend_for_a_user_removed_by_k_core_names_the_k_core_settings(tmp_path, log_csv):
    df = _ratings()
    liked = df[df["rating"] >= 4]
    kept = _k_core_users(liked, 3, 0)
    assert "c11" in set(liked["user"]) and "c11" not in kept  # 2 liked items < user_k 3
    out = tmp_path / "run"
    spec = {"model": "ease", "dataset": str(log_csv), "protocol": {"user_k": 3}}
    train_run(RunSpec.from_mapping(spec, out=out))
    run = load_run(out)
    (note,) = run.recommend(user="c11", k=3).notes
    assert note.startswith(
        "user c11 is in the data but all their 12 interactions were dropped by "
        "protocol.binarize_threshold=4.0 and k-core filtering (protocol.user_k=3, "
        "protocol.item_k=0)"
    ), note
    (note,) = run.recommend(user=LOW, k=3).notes  # binarizing alone emptied this one
    assert "protocol.binarize_threshold=4.0, so" in note and "k-core" not in note


# ------------------------------------------------------- 3: what binarizing and k-core drop
def test_binarize_and_k_core_summaries_count_what_they_dropped(tmp_path, caplog, log_csv):
    df = _ratings()
    ds = load_dataset(str(log_csv))
    with caplog.at_level(logging.INFO, logger="genrec"):
        pdata = build_protocol(ds, ProtocolConfig(user_k=3, item_k=2))
    liked = df[df["rating"] >= 4]
    binarize, k_core = pdata.filters
    assert (binarize.step, binarize.kept, binarize.of) == ("binarize", len(liked), len(df))
    emptied = sorted(set(df["user"]) - set(liked["user"]))
    assert sorted(ds.interactions.user_ids[binarize.users].tolist()) == emptied == [LOW]
    assert binarize.items == len(set(df["item"]) - set(liked["item"]))
    kept_users = _k_core_users(liked, 3, 2)
    assert k_core.step == "k_core" and k_core.of == len(liked)
    gone = sorted(set(liked["user"]) - kept_users)
    assert sorted(ds.interactions.user_ids[k_core.users].tolist()) == gone and gone
    assert k_core.kept == pdata.positives.nnz
    lines = [r.getMessage() for r in caplog.records if "left with none" in r.getMessage()]
    assert lines == [
        f"ratings: binarized at 4.0: kept {len(liked)} of {len(df)} interactions; 1 user "
        f"and {binarize.items} item{'s' * (binarize.items != 1)} left with none",
        f"ratings: {k_core.line()}",
    ]
    assert k_core.line().startswith(f"k-core (users >= 3, items >= 2): kept {k_core.kept} of")
    summary = pdata.describe()["filters"]
    assert summary[0] == {
        "step": "binarize",
        "threshold": 4.0,
        "kept": len(liked),
        "of": len(df),
        "users_left_empty": 1,
        "items_left_empty": binarize.items,
    }
    assert summary[1]["users_left_empty"] == len(gone) and summary[1]["user_k"] == 3
    # and run.json keeps it
    out = tmp_path / "run"
    spec = {"model": "ease", "dataset": str(log_csv), "protocol": {"user_k": 3, "item_k": 2}}
    train_run(RunSpec.from_mapping(spec, out=out))
    record = json.loads((out / "run.json").read_text())
    assert record["protocol_description"]["filters"] == summary


def test_implicit_data_and_the_rating_protocol_record_no_filter(tmp_path, log_csv):
    ds = load_dataset(str(log_csv), DataOptions(rating_col=""))
    assert ds.implicit and build_protocol(ds, ProtocolConfig()).filters == ()
    ds = load_dataset(str(log_csv))
    assert build_protocol(ds, ProtocolConfig(name="rating")).filters == ()
    assert "filters" not in build_protocol(ds, ProtocolConfig(name="rating")).describe()


# ----------------------------------------------------------------------- 4: EASE progress
def test_ease_fit_logs_the_gram_matrix_and_the_inverse_with_their_times(caplog):
    rng = np.random.default_rng(0)
    X = (rng.random((50, 30)) < 0.2).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="genrec"):
        EASE(l2=3.0).fit(X)
    lines = [r.getMessage() for r in caplog.records if r.name == "genrec.models.ease"]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"ease: Gram matrix X^T X of 30 items ({int(X.sum())} interactions)")
    assert lines[1].startswith("ease: weights, (X^T X + l2 I)^-1 at l2=3 ")
    assert all(line.endswith("s") and float(line.rsplit(" ", 1)[1][:-1]) >= 0 for line in lines)


def test_ease_progress_shows_in_the_cli_log_without_a_terminal(tmp_path, capsys, log_csv):
    code, _, err = _cli(
        capsys, "train", "--model", "ease", "--dataset", str(log_csv), "--out", str(tmp_path / "o")
    )
    assert code == 0 and "ease: Gram matrix X^T X of" in err and "ease: weights" in err, err


# ------------------------------------------------------ 5: the training matrix of a run
def test_run_gives_each_users_training_matrix_and_user_embeddings(tmp_path, log_csv):
    out = tmp_path / "run"
    spec = {
        "model": "bpr-mf",
        "dataset": str(log_csv),
        "n_factors": 8,
        "protocol": {"name": "loo"},
        "train": {"epochs": 2, "device": "cpu"},
    }
    train_run(RunSpec.from_mapping(spec, out=out))
    run = load_run(out)
    X = run.train_matrix
    assert X.shape == (len(run.users), len(run.items)) and (X != run.data.train).nnz == 0
    users = ["c3", "c0"]
    rows = run.users.indices(users, "user")
    want = run.model.user_embeddings(X[rows], users=rows)
    np.testing.assert_array_equal(run.user_embeddings(users), want)
    assert run.user_embeddings().shape == (len(run.users), 8)
    with pytest.raises(DataError, match="unknown user 'nobody'"):
        run.user_embeddings(["nobody"])


@pytest.mark.parametrize("given", ["run.data", "dataset"])
def test_user_embeddings_given_a_dataset_says_which_matrix_to_pass(tmp_path, log_csv, given):
    out = tmp_path / "run"
    spec = {
        "model": "bpr-mf",
        "dataset": str(log_csv),
        "n_factors": 4,
        "train": {"epochs": 1, "device": "cpu"},
    }
    train_run(RunSpec.from_mapping({**spec, "protocol": {"name": "loo"}}, out=out))
    run = load_run(out)
    wrong = run.data if given == "run.data" else load_dataset(str(log_csv))
    with pytest.raises(DataError) as e:
        run.model.user_embeddings(wrong, users=np.arange(3))
    msg = str(e.value)
    assert "\n" not in msg and type(wrong).__name__ in msg
    assert "Interactions.matrix" in msg and "Run.train_matrix" in msg


def test_data_info_shows_what_the_ranking_protocols_would_drop(tmp_path, capsys, log_csv):
    res = tmp_path / "info.json"
    code, out, err = _cli(
        capsys, "data", "info", str(log_csv), "--set", "protocol.user_k=3", "--output", str(res)
    )
    assert code == 0, err
    ds = load_dataset(str(log_csv))
    pdata = build_protocol(ds, ProtocolConfig(user_k=3))
    assert json.loads(res.read_text())["ranking_filters"] == pdata.describe()["filters"]
    assert "binarized at 4.0" in out and "k-core (users >= 3, items >= 0)" in out
    code, out, err = _cli(
        capsys, "data", "info", str(log_csv), "--set", "protocol.binarize_threshold=6"
    )
    assert code == 0 and "no interaction has a rating >= 6.0" in " ".join(out.split()), out

"""The seq-loo protocol, sampled evaluation, and sequential models through the runner."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.cli import main
from genrec.data import Dataset, Interactions, Sequences
from genrec.errors import ConfigError, DataError
from genrec.evaluate import RankingTask, evaluate_ranking, evaluate_sampled
from genrec.models import EASE, Transition
from genrec.protocols import ProtocolConfig, build_protocol
from genrec.runs import RunSpec, load_run, train_run


def _dataset(lists: list[list[int]], n_items: int, ordered: bool = True) -> Dataset:
    seqs = Sequences.from_lists(lists, n_items)
    m = seqs.to_csr()
    inter = Interactions(m, np.arange(len(lists)) + 1, np.arange(n_items) + 100)
    return Dataset("toy", inter, implicit=True, sequences=seqs if ordered else None)


def _write_lines(path, lists):
    path.write_text(
        "".join(f"{u + 1} " + " ".join(str(i + 1) for i in r) + "\n" for u, r in enumerate(lists))
    )
    return path


def walks(n_users: int = 60, n_items: int = 30, seed: int = 0) -> list[list[int]]:
    """Users walking i -> i + 1 (mod n_items) from random starts, 5 to 9 steps: the next item
    is predictable from the last one."""
    rng = np.random.default_rng(seed)
    starts, lengths = rng.integers(0, n_items, n_users), rng.integers(5, 10, n_users)
    return [[(s + t) % n_items for t in range(n)] for s, n in zip(starts, lengths)]


def test_seq_loo_tasks_follow_the_protocol():
    ds = _dataset([[0, 1, 2, 3], [4, 5], [6, 7, 8], [1, 1, 2]], 9)
    p = build_protocol(ds, ProtocolConfig(name="seq-loo"))
    assert p.ks == (5, 10, 20)
    assert p.n_not_evaluated == 1 and p.describe()["not_evaluated"] == 1
    assert p.valid.users.tolist() == [0, 2, 3]
    assert p.train.matrix.toarray()[1].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0]  # short: whole
    assert [p.test.sequences.row(j).tolist() for j in range(3)] == [[0, 1, 2], [6, 7], [1, 1]]
    assert [p.valid.sequences.row(j).tolist() for j in range(3)] == [[0, 1], [6], [1]]
    assert p.test.truth.indices.tolist() == [3, 8, 2] and p.valid.truth.indices.tolist() == [
        2,
        7,
        1,
    ]
    assert (p.test.exclude != p.test.inputs).nnz == 0  # the input is masked by default
    keep = build_protocol(ds, ProtocolConfig(name="seq-loo", mask_history=False))
    assert keep.test.exclude.nnz == 0


def test_seq_loo_without_order_names_the_settings():
    ds = _dataset([[0, 1, 2]], 3, ordered=False)
    with pytest.raises(DataError, match="data.time_col.*data.format=sequences.*data.ordered"):
        build_protocol(ds, ProtocolConfig(name="seq-loo"))


def test_short_users_are_counted_in_a_warning(caplog):
    ds = _dataset([[0, 1, 2], [1], [2, 0]], 3)
    with caplog.at_level(logging.WARNING):
        build_protocol(ds, ProtocolConfig(name="seq-loo"))
    assert "2 users with fewer than 3 items are trained on and not evaluated" in caplog.text


class FixedScores:
    """A model whose scores are a fixed (n_users, n_items) matrix, by task row."""

    def __init__(self, S):
        self.S = S
        self.row = 0

    def score(self, users, X):
        out = self.S[users]
        return out


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "sasrec"])
def test_sampled_metrics_equal_a_brute_force_computation(sampler):
    rng = np.random.default_rng(1)
    n, n_items = 40, 25
    S = rng.normal(size=(n, n_items)).astype(np.float32)
    S[:, 3] = S[:, 7]  # ties
    inputs = sp.random(n, n_items, density=0.2, random_state=2, format="csr", dtype=np.float32)
    inputs.data[:] = 1
    target = rng.integers(0, n_items, n)
    inputs = inputs.tolil()
    inputs[np.arange(n), target] = 0
    inputs = sp.csr_matrix(inputs)
    inputs.eliminate_zeros()
    truth = sp.csr_matrix((np.ones(n, np.float32), target, np.arange(n + 1)), shape=(n, n_items))
    task = RankingTask(np.arange(n), inputs, inputs, truth, "skip", "test")
    pop = rng.integers(1, 50, n_items).astype(float)
    train = inputs.tolil()
    train[:, :5] = 0  # the sasrec preset excludes these rows only
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    res = evaluate_sampled(
        FixedScores(S),
        task,
        30,
        sampler,
        ks=(5, 10),
        seed=4,
        popularity=pop,
        train=train,
        batch_size=16,
        keep_negatives=True,
    )
    negs = res["negatives"]
    assert negs.shape == (n, 30)
    dense_in, dense_train = inputs.toarray() > 0, train.toarray() > 0
    hr5 = nd10 = mrr = 0.0
    for u in range(n):
        banned = dense_train[u] if sampler == "sasrec" else dense_in[u]
        assert not banned[negs[u]].any(), "a negative from the excluded items"
        if sampler != "sasrec":
            assert target[u] not in negs[u]
        rank = sum(1 for j in negs[u] if S[u, j] >= S[u, target[u]])
        hr5 += rank < 5
        nd10 += (rank < 10) / np.log2(rank + 2)
        mrr += 1 / (rank + 1)
    m = res["metrics"]
    assert m["hit_rate@5"] == pytest.approx(hr5 / n)
    assert m["ndcg@10"] == pytest.approx(nd10 / n)
    assert m["mrr"] == pytest.approx(mrr / n)
    assert "Krichene and Rendle" in res["note"]


def test_popularity_sampler_draws_in_proportion():
    n, n_items = 200, 4
    inputs = sp.csr_matrix((n, n_items), dtype=np.float32)
    truth = sp.csr_matrix(
        (np.ones(n, np.float32), np.zeros(n, int), np.arange(n + 1)), shape=(n, n_items)
    )
    task = RankingTask(np.arange(n), inputs, inputs, truth)
    pop = np.array([5.0, 1.0, 2.0, 7.0])  # item 0 is every target: never drawn
    res = evaluate_sampled(
        FixedScores(np.zeros((n, n_items), np.float32)),
        task,
        50,
        "popularity",
        popularity=pop,
        keep_negatives=True,
    )
    freq = np.bincount(res["negatives"].ravel(), minlength=4) / res["negatives"].size
    assert freq[0] == 0
    np.testing.assert_allclose(freq[1:], np.array([1, 2, 7]) / 10, atol=0.01)


def test_every_model_trains_under_seq_loo_and_order_matters(tmp_path):
    lists = walks()
    data = _write_lines(tmp_path / "walks.txt", lists)
    rows = {}
    for model in ("transition", "ease", "popularity"):
        res = train_run(
            RunSpec(
                model=model,
                dataset=str(data),
                protocol=ProtocolConfig(name="seq-loo"),
                out=tmp_path / model,
            )
        )
        rows[model] = res.test["metrics"]["mrr@5"]
    # the next item follows the last one: a sequential model ranks it first; a set model
    # sees a walk with two unseen neighbours (before its start, after its end), not which
    assert rows["transition"] == 1.0
    assert rows["ease"] < 0.9 and rows["popularity"] < 0.5


def test_fold_in_of_an_ordered_list_equals_the_training_user(tmp_path):
    lists = walks()
    data = _write_lines(tmp_path / "walks.txt", lists)
    train_run(
        RunSpec(
            model="transition",
            dataset=str(data),
            protocol=ProtocolConfig(name="seq-loo"),
            out=tmp_path / "t",
        )
    )
    run = load_run(tmp_path / "t")
    user = run.recommend(user=1, k=5)
    whole = [str(i + 1) for i in lists[0]]
    folded = run.recommend(items=whole, k=5)
    assert [r["item"] for r in user.items] == [r["item"] for r in folded.items]
    assert user.items[0]["item"] == (lists[0][-1] + 1) % 30 + 1
    reordered = run.recommend(items=whole[::-1], k=5)
    assert [r["item"] for r in reordered.items] != [r["item"] for r in folded.items]


def test_set_models_refuse_sequences_and_sequential_models_refuse_set_tasks():
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    task = RankingTask(np.arange(3), X, X, X)
    with pytest.raises(ConfigError, match="seq-loo"):
        Transition.check_task(task)
    m = Transition().fit(Sequences.from_lists([[0, 1, 2]], 3))
    with pytest.raises(ConfigError, match="Sequences"):
        m.score(None, X)
    with pytest.raises(ConfigError, match="use protocol seq-loo"):
        evaluate_ranking(m, task)
    EASE().fit(X)  # a set model still fits the matrix of the same split


def test_cli_trains_a_sequential_model_with_sampled_numbers_beside(tmp_path, capsys):
    data = _write_lines(tmp_path / "walks.txt", walks())
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "transition",
            "--dataset",
            str(data),
            "--protocol",
            "seq-loo",
            "--out",
            str(out),
            "--set",
            "protocol.sampled_negatives=10",
            "--output",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "sampled: 10 negatives, uniform" in printed and "Krichene" in printed
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["test"]["sampled"]["metrics"]["hit_rate@5"] == 1.0
    assert main(["recommend", str(out), "--items", "3,4,nope", "-k", "2"]) == 0
    said = capsys.readouterr()
    assert "nope" in said.out + said.err


def test_refit_sequences_append_the_validation_item_to_evaluated_users():
    from genrec.runs.fitting import refit_sequences

    ds = _dataset([[0, 1, 2, 3], [4, 5], [6, 7, 8]], 9)
    p = build_protocol(ds, ProtocolConfig(name="seq-loo"))
    refit = refit_sequences(p)
    assert [refit.row(u).tolist() for u in range(3)] == [[0, 1, 2], [4, 5], [6, 7]]
    assert [p.test.sequences.row(j).tolist() for j in range(2)] == [[0, 1, 2], [6, 7]]


def test_test_inputs_and_refit_sequences_keep_the_timestamps():
    # a time-aware model (HSTU) reads the gaps: the validation item appended to the test
    # inputs and to the refit sequences carries its own time, not none
    lists = [[0, 1, 2, 3], [4, 5], [6, 7, 8]]
    times = [[10.0, 20.0, 30.0, 40.0], [1.0, 2.0], [5.0, 6.0, 9.0]]
    seqs = Sequences.from_lists(lists, 9)
    seqs = Sequences(seqs.offsets, seqs.items, 9, np.concatenate(times))
    inter = Interactions(seqs.to_csr(), np.arange(3) + 1, np.arange(9) + 100)
    p = build_protocol(
        Dataset("toy", inter, implicit=True, sequences=seqs), ProtocolConfig(name="seq-loo")
    )
    test = p.test.sequences
    assert test.times is not None
    assert [test.times[test.offsets[j] : test.offsets[j + 1]].tolist() for j in range(2)] == [
        [10.0, 20.0, 30.0],
        [5.0, 6.0],
    ]
    from genrec.runs.fitting import refit_sequences

    refit = refit_sequences(p)
    assert refit.times is not None
    assert refit.times.tolist() == [10.0, 20.0, 30.0, 1.0, 2.0, 5.0, 6.0]
    assert [refit.row(u).tolist() for u in range(3)] == [[0, 1, 2], [4, 5], [6, 7]]

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data import load_dataset
from genrec.errors import DataError, DivergenceError
from genrec.evaluate import RankingTask, evaluate_ranking
from genrec.metrics import ndcg_at_k, recall_at_k
from genrec.models import EASE, Popularity
from genrec.models.base import Capabilities
from genrec.protocols import ProtocolConfig, build_protocol
from tests.synthetic import write_ml100k, write_pair_lists


class FixedScores:
    """A fake model returning a fixed score matrix; records the batches it saw."""

    capabilities = Capabilities(folds_in=True)

    def __init__(self, S):
        self.S = S
        self.batches = []

    def score(self, users, X):
        self.batches.append(X.shape[0])
        return self.S[users] if users is not None else self.S[: X.shape[0]]


def _task(rng, U=37, I=15):
    S = rng.random((U, I)).astype(np.float32)
    X = sp.csr_matrix((rng.random((U, I)) < 0.2).astype(np.float32))
    truth = sp.csr_matrix(((rng.random((U, I)) < 0.2) & (X.toarray() == 0)).astype(np.float32))
    return S, RankingTask(np.arange(U), X, X, truth, "zero")


def test_batched_evaluation_equals_unbatched_metric_functions():
    rng = np.random.default_rng(0)
    S, task = _task(rng)
    masked = np.where(task.exclude.toarray() > 0, -np.inf, S)
    want_r = recall_at_k(masked, task.truth, 5)
    want_n = ndcg_at_k(masked, task.truth, 10)
    for bs in (1, 8, 100):
        model = FixedScores(S)
        res = evaluate_ranking(model, task, ks=(5, 10), batch_size=bs)
        assert max(model.batches) <= bs  # never the whole matrix beyond one batch
        np.testing.assert_allclose(res.per_user["recall@5"], want_r)
        np.testing.assert_allclose(res.per_user["ndcg@10"], want_n)
        assert res.metrics["recall@5"] == pytest.approx(want_r.mean())


def test_excluded_items_never_recommended():
    rng = np.random.default_rng(1)
    S, task = _task(rng)
    # give excluded items the best scores: they must still not count as hits
    S = S + 10 * task.exclude.toarray()
    truth = task.exclude  # a truth equal to the mask can never be hit
    t = RankingTask(task.users, task.inputs, task.exclude, truth, "zero")
    res = evaluate_ranking(FixedScores(S), t, ks=(5,))
    assert res.metrics["hit_rate@5"] == 0.0


def test_empty_truth_policies():
    rng = np.random.default_rng(2)
    S, task = _task(rng)
    truth = task.truth.tolil()
    truth[0, :] = 0
    truth = truth.tocsr()
    truth.eliminate_zeros()
    zero = evaluate_ranking(
        FixedScores(S), RankingTask(task.users, task.inputs, task.exclude, truth, "zero"), ks=(5,)
    )
    skip = evaluate_ranking(
        FixedScores(S), RankingTask(task.users, task.inputs, task.exclude, truth, "skip"), ks=(5,)
    )
    assert zero.n_evaluated == task.n_users
    assert skip.n_evaluated == (np.diff(truth.indptr) > 0).sum() < task.n_users
    v = zero.per_user["recall@5"]
    assert v[0] == 0.0 and zero.metrics["recall@5"] == pytest.approx(v.mean())
    assert skip.metrics["recall@5"] == pytest.approx(np.nanmean(skip.per_user["recall@5"]))
    assert np.isnan(skip.per_user["recall@5"][0])


def test_diffrec_protocol_masks(tmp_path):
    ds = load_dataset(write_pair_lists(tmp_path / "p"))
    p = build_protocol(ds, ProtocolConfig(name="diffrec"))
    parts = ds.splits["given"]
    assert (p.valid.exclude != parts["train"].matrix).nnz == 0
    assert (p.test.exclude != (parts["train"].matrix + parts["valid"].matrix)).nnz == 0
    assert (p.test.inputs != parts["train"].matrix).nnz == 0
    assert p.valid.empty_truth == p.test.empty_truth == "zero"
    res = evaluate_ranking(EASE(l2=1.0).fit(p.train.matrix), p.test)
    pop = evaluate_ranking(Popularity().fit(p.train.matrix), p.test)
    assert res.metrics["recall@10"] > pop.metrics["recall@10"]  # two taste groups


def test_diffrec_protocol_on_ratings_binarizes_and_splits_by_time(tmp_path):
    ds = load_dataset(write_ml100k(tmp_path / "m"))
    p = build_protocol(ds, ProtocolConfig(name="diffrec", binarize_threshold=4.0))
    assert set(np.unique(p.train.matrix.data)) == {1.0}
    kept = (ds.interactions.matrix.data >= 4).sum()
    assert p.train.nnz + p.valid.truth.nnz + p.test.truth.nnz == kept


def test_strong_protocol_uses_heldout_users(tmp_path):
    ds = load_dataset(write_ml100k(tmp_path / "m"))
    p = build_protocol(ds, ProtocolConfig(name="strong", n_heldout=6, binarize_threshold=None))
    assert p.valid.users is None and p.test.users is None
    assert p.valid.n_users == 6 and p.test.n_users == 6
    assert (p.valid.inputs.multiply(p.valid.truth)).nnz == 0
    res = evaluate_ranking(EASE(l2=1.0).fit(p.train.matrix), p.test)
    assert res.n_evaluated == 6


def test_rating_protocol_uses_canonical_fold(tmp_path):
    ds = load_dataset(write_ml100k(tmp_path / "m"))
    p = build_protocol(ds, ProtocolConfig(name="rating", fold=2))
    assert len(p.test.ratings) == ds.splits["u2"]["test"].nnz
    assert p.train.nnz + len(p.valid.ratings) == ds.splits["u2"]["train"].nnz
    assert p.train_full.nnz == ds.splits["u2"]["train"].nnz


def _rated_split(folder, parts):
    """Text pair lists with ratings: {part: [(user, item, rating), ...]}."""
    folder.mkdir()
    for name, rows in parts.items():
        (folder / f"{name}.txt").write_text("".join(f"{u} {i} {r}\n" for u, i, r in rows))
    return folder


def test_rating_protocol_keeps_a_given_train_test_split(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(u, i, int(rng.integers(1, 6))) for u in range(30) for i in range(20) if (u + i) % 3]
    train, test = rows[::2] + rows[1::4], rows[3::4]
    ds = load_dataset(_rated_split(tmp_path / "given", {"train": train, "test": test}))
    p = build_protocol(ds, ProtocolConfig(name="rating"))
    test_pairs = {
        (ds.interactions.user_ids[u], ds.interactions.item_ids[i])
        for u, i in zip(p.test.users, p.test.items)
    }
    assert test_pairs == {(u, i) for u, i, _ in test}
    assert sorted(p.test.ratings.tolist()) == sorted(float(r) for *_, r in test)
    assert p.train_full.nnz == len(train)
    assert p.train.nnz + len(p.valid.ratings) == len(train)
    assert len(p.valid.ratings) == round(0.05 * len(train))


def test_diffrec_binarizes_given_rated_parts_at_the_threshold(tmp_path):
    rows = [(u, i, 1 + (u + i) % 5) for u in range(20) for i in range(15)]
    ds = load_dataset(
        _rated_split(
            tmp_path / "given", {"train": rows[::3], "valid": rows[1::3], "test": rows[2::3]}
        )
    )
    p = build_protocol(ds, ProtocolConfig(name="diffrec", binarize_threshold=4))
    liked = [sum(r >= 4 for *_, r in rows[k::3]) for k in range(3)]
    assert [p.train.nnz, p.valid.truth.nnz, p.test.truth.nnz] == liked
    assert set(np.unique(p.train.matrix.data)) == {1.0}
    disliked = _rated_split(
        tmp_path / "low", {"train": rows, "valid": [(0, 1, 2)], "test": [(1, 1, 5)]}
    )
    with pytest.raises(DataError, match="the given valid part has no rating >= 4"):
        build_protocol(load_dataset(disliked), ProtocolConfig(name="diffrec"))


def test_diffrec_averages_only_users_left_with_interactions(tmp_path):
    log = tmp_path / "log.csv"  # user u has 1 + u % 12 items: user_k=6 drops the light ones
    log.write_text(
        "user,item\n"
        + "".join(f"{u},{(u + j) % 30}\n" for u in range(48) for j in range(1 + u % 12))
    )
    ds = load_dataset(log)
    full = build_protocol(ds, ProtocolConfig(name="diffrec"))
    p = build_protocol(ds, ProtocolConfig(name="diffrec", user_k=6))
    counts = np.zeros(p.train.n_users, int)
    for m, users in (
        (p.train.matrix, None),
        (p.test.truth, p.test.users),
        (p.valid.truth, p.valid.users),
    ):
        rows = np.diff(m.indptr)
        counts[np.arange(len(rows)) if users is None else users] += rows
    assert 0 < p.test.n_users == int((counts > 0).sum()) < full.test.n_users
    assert p.valid.users.tolist() == p.test.users.tolist() == np.flatnonzero(counts).tolist()
    res = evaluate_ranking(Popularity().fit(p.train.matrix), p.test)
    assert res.n_evaluated == p.test.n_users


def test_rating_protocol_uses_a_given_validation_part(tmp_path):
    rows = [(u, i, 1 + (u * i) % 5) for u in range(20) for i in range(15)]
    train, valid, test = rows[::3], rows[1::3], rows[2::3]
    ds = load_dataset(
        _rated_split(tmp_path / "given", {"train": train, "valid": valid, "test": test})
    )
    p = build_protocol(ds, ProtocolConfig(name="rating"))
    assert p.train.nnz == len(train) and len(p.valid.ratings) == len(valid)
    assert len(p.test.ratings) == len(test)
    assert p.train_full.nnz == len(train) + len(valid)
    full = p.train_full.matrix.toarray()
    for u, i, r in valid[:5] + train[:5]:
        assert full[p.train.user_map.index(u), p.train.item_map.index(i)] == r
    clash = _rated_split(
        tmp_path / "clash", {"train": train, "valid": valid + [train[0]], "test": test}
    )
    with pytest.raises(DataError, match="both the given train and valid parts"):
        build_protocol(load_dataset(clash), ProtocolConfig(name="rating"))


def test_rating_protocol_refuses_implicit_data(tmp_path):
    ds = load_dataset(write_pair_lists(tmp_path / "p"))
    with pytest.raises(DataError, match="needs explicit ratings"):
        build_protocol(ds, ProtocolConfig(name="rating"))


def test_ranking_metric_names_are_the_keys_evaluate_ranking_writes():
    from genrec.evaluate import ranking_metric_names

    X = sp.random(30, 12, density=0.3, format="csr", random_state=1)
    X.data[:] = 1
    task = RankingTask(np.arange(30), X, X, X, "zero")
    res = evaluate_ranking(EASE(l2=1.0).fit(X), task, ks=(5, 3, 5))
    assert ranking_metric_names((5, 3, 5)) == list(res.metrics)


@pytest.mark.parametrize("bad", [1.5, 0.0, -2.0, 1.0 + 1e-9])
def test_strong_n_heldout_is_a_fraction_or_a_whole_count(bad):
    with pytest.raises(ValueError, match="n_heldout must be a fraction in \\(0, 1\\) or a whole"):
        ProtocolConfig(name="strong", n_heldout=bad)
    assert ProtocolConfig(name="strong", n_heldout=6.0).n_heldout == 6.0


def test_a_cut_off_past_the_item_count_runs_without_allocating_k():
    # issue 28, defect 6: ks=[10**12] ended in an allocator traceback and ks=[100000] held
    # users x 100000 lists; the lists now hold at most the catalogue, the values stay exact
    import tracemalloc

    rng = np.random.default_rng(5)
    S, task = _task(rng)
    masked = np.where(task.exclude.toarray() > 0, -np.inf, S)
    hits = (task.truth.toarray() > 0).sum(1)  # every unmasked item is ranked
    n = np.diff(task.truth.indptr)
    tracemalloc.start()
    try:
        res = evaluate_ranking(FixedScores(S), task, ks=(5, 100_000, 10**12))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # 37 users x 100000 ranks alone would be 33 MB
    np.testing.assert_allclose(res.per_user["recall@5"], recall_at_k(masked, task.truth, 5))
    for k in (100_000, 10**12):
        np.testing.assert_allclose(
            res.per_user[f"recall@{k}"], np.where(n > 0, hits / np.maximum(n, 1), 0)
        )
        np.testing.assert_allclose(res.per_user[f"precision@{k}"], np.where(n > 0, hits / k, 0))
        np.testing.assert_allclose(res.per_user[f"ndcg@{k}"], ndcg_at_k(masked, task.truth, 15))
        assert res.metrics[f"coverage@{k}"] == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_scores_are_a_divergence_error_not_a_traceback(bad):
    # issue 28, defect 9: NaN scores were a bare ValueError from the top-k; -inf still masks
    rng = np.random.default_rng(6)
    S, task = _task(rng)
    S[3, 2] = bad
    with pytest.raises(DivergenceError, match="FixedScores gives NaN or infinite values for 1 of"):
        evaluate_ranking(FixedScores(S), task, ks=(5,))
    S[3, 2] = -np.inf
    evaluate_ranking(FixedScores(S), task, ks=(5,))


def test_users_without_held_out_items_are_counted_where_they_count_as_zero():
    """Short histories leave some users no validation item; under "zero" they are averaged
    as 0, and the result says how many (issue 27: validation numbers that mislead)."""
    rng = np.random.default_rng(3)
    S, task = _task(rng)
    truth = task.truth.tolil()
    truth[[0, 4, 9], :] = 0
    truth = truth.tocsr()
    truth.eliminate_zeros()
    n_empty = int((np.diff(truth.indptr) == 0).sum())
    assert n_empty >= 3
    zero = evaluate_ranking(
        FixedScores(S), RankingTask(task.users, task.inputs, task.exclude, truth, "zero"), ks=(5,)
    )
    skip = evaluate_ranking(
        FixedScores(S), RankingTask(task.users, task.inputs, task.exclude, truth, "skip"), ks=(5,)
    )
    assert zero.n_empty == n_empty and zero.to_dict()["n_empty"] == n_empty
    assert skip.n_empty == 0  # those users are not averaged there
    import io

    from rich.console import Console

    from genrec.cli.render import metrics_table  # the CLI's table says it beside the count

    out = io.StringIO()
    Console(file=out, width=200).print(metrics_table("t", {"valid": zero.to_dict()}))
    assert f"{task.n_users} users ({n_empty} with none held out: 0)" in out.getvalue()

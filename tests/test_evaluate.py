import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data import load_dataset
from genrec.errors import DataError
from genrec.evaluate import RankingTask, evaluate_ranking
from genrec.metrics import ndcg_at_k, recall_at_k
from genrec.models import EASE, Popularity
from genrec.protocols import ProtocolConfig, build_protocol
from tests.synthetic import write_ml100k, write_pair_lists


class FixedScores:
    """A fake model returning a fixed score matrix; records the batches it saw."""

    folds_in = True

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
    zero = evaluate_ranking(FixedScores(S), RankingTask(task.users, task.inputs, task.exclude,
                                                        truth, "zero"), ks=(5,))
    skip = evaluate_ranking(FixedScores(S), RankingTask(task.users, task.inputs, task.exclude,
                                                        truth, "skip"), ks=(5,))
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

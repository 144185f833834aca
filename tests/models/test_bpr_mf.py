import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError, DivergenceError
from genrec.evaluate import RankingTask, RatingTask
from genrec.models import BPRMF, get_model_class
from genrec.models._shallow import gather_rows, sample_negatives
from genrec.models.bpr_mf import bpr_loss
from genrec.testing import RecommenderConformance, checkerboard
from genrec.train import Callback, FitContext
from tests.models.nested import nested


class TestBPRMF(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return nested(
            BPRMF, n_factors=8, lr=0.05, epochs=20, batch_size=64, l2=1e-4, seed=seed, device="cpu"
        )


def test_bpr_loss_is_minus_log_sigmoid_of_the_difference():
    x = torch.tensor([-2.0, 0.0, 3.0])
    expect = -sum(np.log(1 / (1 + np.exp(-v))) for v in x.tolist())
    assert float(bpr_loss(x)) == pytest.approx(expect, rel=1e-6)
    big = torch.tensor([-200.0])  # no overflow for large negative differences
    assert float(bpr_loss(big)) == pytest.approx(200.0)


def test_negatives_are_never_training_items():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((50, 20)) < 0.5).astype(np.float32))
    users = np.repeat(np.arange(50), 40)
    j = sample_negatives(X, users, rng)
    assert not X[users, j].A1.any()
    # uniform over the user's non-items: 2000 draws hit each of them about equally
    u0 = sample_negatives(X, np.zeros(2000, np.int64), rng)
    free = np.flatnonzero(X[0].toarray()[0] == 0)
    counts = np.bincount(u0, minlength=20)[free]
    assert counts.sum() == 2000 and counts.min() > 0.5 * 2000 / len(free)


def test_validation_keeps_the_best_epoch_and_its_factors():
    X, withheld = checkerboard()
    truth = sp.csr_matrix(
        (np.ones(len(withheld), np.float32), (np.arange(len(withheld)), withheld)), shape=X.shape
    )
    task = RankingTask(np.arange(X.shape[0]), X, X, truth, name="valid")
    m = nested(
        BPRMF,
        n_factors=4,
        lr=0.05,
        epochs=8,
        batch_size=32,
        patience=None,
        device="cpu",
        valid_metric="ndcg@2",
    ).fit(X, valid=task)
    assert len(m.valid_history_) == 8
    assert m.best_epoch_ == int(np.argmax(m.valid_history_)) + 1
    from genrec.evaluate import evaluate_ranking

    got = evaluate_ranking(m, task, ks=(2,), metrics=("ndcg",)).metrics["ndcg@2"]
    assert got == pytest.approx(max(m.valid_history_))


def test_unknown_users_are_refused_by_score_and_predicted_with_the_mean_factor():
    X, _ = checkerboard()
    m = nested(BPRMF, n_factors=4, epochs=3, device="cpu").fit(X)
    with pytest.raises(ConfigError, match="cannot score or embed users unseen"):
        m.score(None, X[:1])
    with pytest.raises(DataError, match="is not a training user"):
        m.score(np.array([-1]), X[:1])
    expect = (m.user_factors_.mean(0) @ m.item_factors_.T).numpy()  # predict's fallback
    got = m.predict(np.full(X.shape[1], -1), np.arange(X.shape[1]))
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-7)
    assert m.predict(np.array([0, -1]), np.array([-1, 2])).shape == (2,)


def test_users_without_items_get_the_mean_user():
    X, _ = checkerboard()
    X = X.tolil()
    X[3, :] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    m = nested(BPRMF, n_factors=4, epochs=3, device="cpu").fit(X)
    others = np.r_[0:3, 4 : X.shape[0]]
    torch.testing.assert_close(m.user_factors_[3], m.user_factors_[others].mean(0))


def test_item_bias_is_learned_when_asked():
    X, _ = checkerboard()
    plain = nested(BPRMF, n_factors=2, epochs=2, device="cpu").fit(X)
    assert float(plain.item_bias_.abs().sum()) == 0
    m = nested(BPRMF, n_factors=2, epochs=2, item_bias=True, lr=0.05, device="cpu").fit(X)
    assert float(m.item_bias_.abs().sum()) > 0


def test_errors():
    X, _ = checkerboard()
    with pytest.raises(ConfigError, match="selects on a RankingTask"):
        nested(BPRMF, epochs=1).fit(X, valid=RatingTask(np.zeros(1), np.zeros(1), np.ones(1)))
    with pytest.raises(ConfigError, match="select_metric"):
        BPRMF(train={"select_metric": "recall"})
    with pytest.raises(DataError, match="at least one"):
        nested(BPRMF).fit(sp.csr_matrix((2, 2), dtype=np.float32))


def test_registered():
    assert get_model_class("bpr-mf") is BPRMF


def test_sampler_handles_unsorted_csr_indices():
    X = sp.csr_matrix(
        (np.ones(3, np.float32), np.array([2, 0, 1]), np.array([0, 3, 3])), shape=(2, 4)
    )
    assert not X.has_sorted_indices
    j = sample_negatives(X, np.zeros(200, np.int64), np.random.default_rng(1))
    assert set(j) == {3}


@pytest.mark.parametrize(
    "kw",
    [
        dict(l2=float("nan")),
        dict(l2=float("inf")),
        dict(train={"lr": float("inf")}),
        dict(init_std=float("inf")),
    ],
)
def test_non_finite_settings_are_config_errors_not_divergence(kw):
    with pytest.raises(ConfigError, match="finite"):
        BPRMF(**kw)


@pytest.mark.parametrize("metric", ["bogus@20", "recall@x", "ndcg@0"])
def test_select_metric_is_checked_at_construction(metric):
    with pytest.raises(ConfigError, match="select_metric"):
        BPRMF(train={"select_metric": metric})


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_same_seed_same_factors_with_two_threads(two_threads):
    """Batches big enough for torch's parallel backward of a gather (B * K >= 32,768): the
    factors still repeat bit for bit (``P[u]``'s backward adds atomically across threads)."""
    rng = np.random.default_rng(0)
    X = sp.random(300, 200, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = 1

    def fit():
        return nested(
            BPRMF, n_factors=64, batch_size=4096, epochs=4, lr=0.01, device="cpu", seed=0
        ).fit(X)

    first = fit()
    for _ in range(2):
        again = fit()
        assert torch.equal(first.user_factors_, again.user_factors_)
        assert torch.equal(first.item_factors_, again.item_factors_)


def test_gather_rows_is_indexing_with_a_reproducible_gradient(two_threads):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(500, 64, generator=g, requires_grad=True)
    index = torch.randint(0, 500, (2048, 3), generator=g)  # repeats in every column
    weight = torch.randn(2048, 3, 64, generator=g)
    assert torch.equal(gather_rows(table, index), table[index])
    (table[index] * weight).sum().backward()
    reference = table.grad.clone()
    grads = []
    for _ in range(10):
        table.grad = None
        (gather_rows(table, index) * weight).sum().backward()
        grads.append(table.grad.clone())
    torch.testing.assert_close(grads[0], reference)
    assert all(torch.equal(grads[0], g_) for g_ in grads[1:])
    vector = torch.arange(5.0)
    assert torch.equal(
        gather_rows(vector, torch.tensor([[4, 0], [1, 1]])), torch.tensor([[4.0, 0.0], [1.0, 1.0]])
    )


class _StopAfter(Callback):
    """Interrupts training after epoch ``k`` (as Ctrl-C would), once its checkpoint is written."""

    def __init__(self, k: int):
        self.k = k

    def on_epoch_end(self, record):
        if record["epoch"] == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_after_interruption_ends_at_the_same_scores(tmp_path, ema):
    X, withheld = checkerboard()
    truth = sp.csr_matrix(
        (np.ones(len(withheld), np.float32), (np.arange(len(withheld)), withheld)), shape=X.shape
    )
    task = RankingTask(np.arange(X.shape[0]), X, X, truth, name="valid")

    def make():
        return nested(
            BPRMF,
            n_factors=4,
            lr=0.05,
            epochs=6,
            batch_size=16,
            device="cpu",
            patience=None,
            valid_metric="ndcg@2",
            ema_decay=ema,
        )

    ref = make().fit(X, valid=task, context=FitContext(run_dir=tmp_path / "ref"))
    with pytest.raises(KeyboardInterrupt):
        make().fit(
            X, valid=task, context=FitContext(run_dir=tmp_path / "run", callbacks=(_StopAfter(3),))
        )
    resumed = make().fit(X, valid=task, context=FitContext(run_dir=tmp_path / "run", resume=True))
    users = np.arange(X.shape[0])
    assert torch.equal(resumed.score(users, X), ref.score(users, X))
    assert resumed.valid_history_ == ref.valid_history_
    assert resumed.best_epoch_ == ref.best_epoch_


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    X, _ = checkerboard()
    m = nested(BPRMF, n_factors=4, epochs=1, device="cpu")
    m.fit(X, context=FitContext(run_dir=tmp_path, fingerprint={"config": {"l2": 1e-5}}))
    with pytest.raises(ConfigError, match=r"config\.l2 differs"):
        nested(BPRMF, n_factors=4, epochs=2, device="cpu").fit(
            X,
            context=FitContext(run_dir=tmp_path, resume=True, fingerprint={"config": {"l2": 1e-3}}),
        )


def test_upgrade_config_maps_the_flat_keys_of_old_saves():
    old = {
        "n_factors": 8,
        "l2": 1e-4,
        "item_bias": False,
        "optimizer": "sgd",
        "lr": 0.01,
        "batch_size": 512,
        "epochs": 30,
        "eval_every": 2,
        "patience": 0,
        "init_std": 0.1,
        "valid_metric": "ndcg@10",
        "seed": 3,
        "device": "cpu",
    }
    new = BPRMF.upgrade_config(old)
    assert new == {
        "n_factors": 8,
        "l2": 1e-4,
        "item_bias": False,
        "init_std": 0.1,
        "train": {
            "optimizer": "sgd",
            "lr": 0.01,
            "batch_size": 512,
            "epochs": 30,
            "eval_every": 2,
            "patience": None,
            "select_metric": "ndcg@10",
            "seed": 3,
            "device": "cpu",
        },
    }
    cfg = BPRMF(**new).config  # the dict builds the nested TrainConfig
    assert cfg.train.select_metric == "ndcg@10" and cfg.train.patience is None
    assert BPRMF.upgrade_config(new) == new  # already nested: unchanged


def test_weight_averaging_and_divergence():
    X, _ = checkerboard()
    avg = nested(BPRMF, n_factors=4, epochs=3, device="cpu", ema_decay=0.5).fit(X)
    raw = nested(BPRMF, n_factors=4, epochs=3, device="cpu").fit(X)
    assert not torch.equal(avg.item_factors_, raw.item_factors_)
    with pytest.raises(DivergenceError, match="lower train.lr"):
        nested(BPRMF, n_factors=4, epochs=3, lr=1e30, device="cpu", init_std=1e10).fit(X)


def test_a_train_table_keeps_the_models_own_defaults():
    cfg = BPRMF(train={"epochs": 3}).config.train
    assert cfg.epochs == 3
    assert (cfg.select_metric, cfg.batch_size, cfg.patience) == ("recall@20", 2048, 10)

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec.data.features import SideFeatures
from genrec.errors import ConfigError, DataError
from genrec.evaluate import RankingTask, RatingTask
from genrec.models import FM, Recommender, get_model_class
from genrec.models.fm import (
    design_matrix,
    fm_feature_blocks,
    fm_padded,
    fm_pairwise,
    fm_pairwise_naive,
    fm_penalty,
    fm_predict,
    padded_rows,
)
from genrec.testing import (
    RatingConformance,
    RecommenderConformance,
    checkerboard,
    rating_checkerboard,
)
from genrec.train import Callback, FitContext
from tests.models.nested import nested


class TestFMRegression(RatingConformance):
    def make_model(self, seed: int = 0):
        return nested(
            FM,
            n_factors=4,
            lr=0.05,
            epochs=40,
            batch_size=32,
            l2_w=1e-4,
            l2_v=1e-4,
            use_side_features=False,
            seed=seed,
            device="cpu",
        )


class TestFMBPR(RecommenderConformance):
    def make_model(self, seed: int = 0):
        return nested(
            FM,
            objective="bpr",
            n_factors=4,
            lr=0.05,
            epochs=20,
            batch_size=32,
            l2_w=1e-4,
            l2_v=1e-4,
            use_side_features=False,
            seed=seed,
            device="cpu",
        )


def _side(U, I, rng):
    """Random side features: a one-hot user attribute (3 values), two-hot item sets (4)."""
    user = sp.csr_matrix(np.eye(3, dtype=np.float32)[rng.integers(0, 3, U)])
    item = sp.csr_matrix((rng.random((I, 4)) < 0.4).astype(np.float32))
    return SideFeatures(user, item, [f"a={k}" for k in range(3)], [f"g={k}" for k in range(4)])


# ----------------------------------------------------------------------------- the identity
def test_pairwise_identity_equals_the_naive_double_sum():
    rng = np.random.default_rng(0)
    X = sp.random(20, 12, density=0.3, format="csr", random_state=1, dtype=np.float64)
    X.data = rng.normal(size=X.nnz)  # real-valued features, not only 0/1
    V = torch.from_numpy(rng.normal(size=(12, 5)))
    naive = fm_pairwise_naive(torch.from_numpy(X.toarray()), V)
    # the definition written as two loops, on a couple of rows
    Xd = X.toarray()
    for n in range(3):
        s = sum(
            float(V[j] @ V[l]) * Xd[n, j] * Xd[n, l] for j in range(12) for l in range(j + 1, 12)
        )
        assert float(naive[n]) == pytest.approx(s, rel=1e-10)
    # the sparse path (genrec.models._sparse.sparse_matmul)
    torch.testing.assert_close(fm_pairwise(X, V), naive, rtol=1e-5, atol=1e-5)
    idx, val = padded_rows(X)
    pair = fm_padded(idx[:-1], val[:-1].double(), 0.0, torch.zeros(12, dtype=torch.float64), V)
    torch.testing.assert_close(pair, naive)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), F=st.integers(1, 8), K=st.integers(1, 4), seed=st.integers(0, 99))
def test_pairwise_identity_property(n, F, K, seed):
    rng = np.random.default_rng(seed)
    Xd = np.where(rng.random((n, F)) < 0.5, rng.normal(size=(n, F)), 0.0)
    V = torch.from_numpy(rng.normal(size=(F, K)))
    torch.testing.assert_close(
        fm_pairwise(sp.csr_matrix(Xd), V),
        fm_pairwise_naive(torch.from_numpy(Xd), V),
        rtol=1e-5,
        atol=1e-5,
    )
    idx, val = padded_rows(sp.csr_matrix(Xd))
    pair = fm_padded(idx[:-1], val[:-1].double(), 0.0, torch.zeros(F, dtype=torch.float64), V)
    torch.testing.assert_close(pair, fm_pairwise_naive(torch.from_numpy(Xd), V))


def test_design_matrix_is_one_hots_then_side_features():
    rng = np.random.default_rng(1)
    U, I = 4, 5
    side = _side(U, I, rng)
    ub, ib = fm_feature_blocks(U, I, side)
    X = design_matrix(np.array([2, 0]), np.array([1, 4]), ub, ib).toarray()
    F = U + I + 3 + 4
    assert X.shape == (2, F)
    for row, (u, i) in enumerate([(2, 1), (0, 4)]):
        expect = np.concatenate(
            [np.eye(U)[u], np.eye(I)[i], side.user[u].toarray()[0], side.item[i].toarray()[0]]
        )
        np.testing.assert_array_equal(X[row], expect)
    Xunk = design_matrix(np.array([-1]), np.array([3]), ub, ib).toarray()[0]
    assert Xunk[:U].sum() == 0 and Xunk[U + 3] == 1 and Xunk[U + I : U + I + 3].sum() == 0


# ----------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def fitted_with_side():
    X, _ = rating_checkerboard()
    side = _side(*X.shape, np.random.default_rng(2))
    m = nested(FM, n_factors=4, lr=0.05, epochs=15, batch_size=32, device="cpu", clip=False)
    return m.fit(X, context=FitContext(side=side)), X, side


def test_predict_equals_the_formula_on_the_design_matrix(fitted_with_side):
    m, X, side = fitted_with_side
    c = X.tocoo()
    D = design_matrix(c.row, c.col, m.user_block_, m.item_block_)
    ref = fm_predict(D, m.w0_, m.w_, m.V_).numpy()
    np.testing.assert_allclose(m.predict(c.row, c.col), ref, rtol=1e-5, atol=1e-5)
    assert m.user_block_.shape[1] == X.shape[0] + X.shape[1] + 3 + 4


def test_score_equals_predict_for_every_pair(fitted_with_side):
    m, X, _ = fitted_with_side
    users = np.array([0, 5, 13, X.shape[0] - 1])
    s = np.asarray(m.score(users, X[:4]))
    uu = np.repeat(users, X.shape[1])
    ii = np.tile(np.arange(X.shape[1]), len(users))
    np.testing.assert_allclose(s.ravel(), m.predict(uu, ii), rtol=1e-5, atol=1e-5)


def test_unknown_user_falls_back_to_w0_plus_item_terms(fitted_with_side):
    m, X, _ = fitted_with_side
    i = 3
    row = m.item_block_[i]
    lin = float((row @ m.w_.numpy())[0])
    a = row @ m.V_.numpy()  # (1, K)
    own = 0.5 * (float((a**2).sum()) - float((row.multiply(row) @ (m.V_.numpy() ** 2).sum(1))[0]))
    expect = float(m.w0_) + lin + own
    assert m.predict(np.array([-1]), np.array([i]))[0] == pytest.approx(expect, rel=1e-5)
    assert m.predict(np.array([-1]), np.array([-1]))[0] == pytest.approx(float(m.w0_))


def test_side_features_survive_save_and_load(fitted_with_side, tmp_path):
    m, X, side = fitted_with_side
    m.save(tmp_path / "fm")
    loaded = Recommender.load(tmp_path / "fm")
    c = X.tocoo()
    np.testing.assert_array_equal(m.predict(c.row, c.col), loaded.predict(c.row, c.col))
    assert loaded.feature_names_[-4:] == side.item_names
    assert (loaded.user_block_ != m.user_block_).nnz == 0


def test_side_features_are_ignored_when_switched_off():
    X, _ = rating_checkerboard()
    side = _side(*X.shape, np.random.default_rng(3))
    m = nested(FM, n_factors=2, epochs=2, use_side_features=False, device="cpu").fit(
        X, context=FitContext(side=side)
    )
    assert m.user_block_.shape[1] == X.shape[0] + X.shape[1]


def test_features_no_training_row_uses_are_zero():
    X, _ = rating_checkerboard()
    X = X.tolil()
    X[:, 2] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    m = nested(FM, n_factors=3, epochs=3, use_side_features=False, device="cpu").fit(X)
    col = X.shape[0] + 2  # item 2's one-hot column
    assert float(m.w_[col]) == 0.0 and float(m.V_[col].abs().max()) == 0.0


def test_predictions_are_clipped_for_regression():
    X, _ = rating_checkerboard()
    m = nested(FM, n_factors=2, epochs=2, use_side_features=False, device="cpu").fit(X)
    with torch.no_grad():
        m.module_.w0.fill_(100.0)
    assert (m.predict(np.arange(4), np.arange(4)) == 5.0).all()


def test_side_feature_shape_mismatch_is_an_error():
    X, _ = rating_checkerboard()
    side = _side(X.shape[0] + 1, X.shape[1], np.random.default_rng(0))
    with pytest.raises(DataError, match="side features have"):
        nested(FM, epochs=1).fit(X, context=FitContext(side=side))


def test_bpr_objective_selects_on_a_ranking_task():
    X, withheld = checkerboard()
    truth = sp.csr_matrix(
        (np.ones(len(withheld), np.float32), (np.arange(len(withheld)), withheld)), shape=X.shape
    )
    task = RankingTask(np.arange(X.shape[0]), X, X, truth, name="valid")
    m = nested(
        FM,
        objective="bpr",
        n_factors=4,
        lr=0.05,
        epochs=6,
        batch_size=32,
        patience=None,
        use_side_features=False,
        valid_metric="recall@1",
        device="cpu",
    ).fit(X, valid=task)
    assert len(m.valid_history_) == 6
    assert m.best_epoch_ == int(np.argmax(m.valid_history_)) + 1
    with pytest.raises(ConfigError, match="fm selects on a RankingTask.*ranking protocol"):
        nested(FM, objective="bpr", epochs=1).fit(X, valid=object())


def test_penalty_sums_the_features_each_row_uses():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    V = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    idx = torch.tensor([[0, 2, 3], [1, 1, 0]])
    val = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 0.0]])  # value 0 = padding, not used
    # row 0 uses features 0 and 2; row 1 uses feature 1 twice
    expect_w = (1 + 9) + (4 + 4)
    expect_v = (1 + 2) + (4 + 4)
    got = fm_penalty(idx, val, w, V, l2_w=0.1, l2_v=0.01)
    torch.testing.assert_close(got, torch.tensor(0.1 * expect_w + 0.01 * expect_v))


def test_bpr_triple_penalizes_its_user_features_once(monkeypatch):
    """A (u, i, j) triple uses u's features once and both items' (not u's twice)."""
    import genrec.models.fm as fm_module

    seen = []

    def recording(idx, val, *args):
        seen.append(idx.clone())
        return fm_penalty(idx, val, *args)

    monkeypatch.setattr(fm_module, "fm_penalty", recording)
    X, _ = checkerboard()
    U, I = X.shape
    nested(
        FM,
        objective="bpr",
        n_factors=4,
        epochs=1,
        batch_size=1000,
        use_side_features=False,
        device="cpu",
    ).fit(X)
    (idx,) = seen  # one batch: one penalty over all triples
    assert idx.shape == (X.nnz, 3)  # one-hot user, positive item, negative item
    u, i = X.nonzero()
    assert sorted(map(tuple, idx[:, :2].tolist())) == sorted(zip(u.tolist(), (U + i).tolist()))
    assert ((idx[:, 2] >= U) & (idx[:, 2] < U + I)).all()
    assert (idx[:, 0] < U).all()


def test_registered_and_flags():
    assert get_model_class("fm") is FM
    assert FM.capabilities.side_features is True


@pytest.mark.parametrize(
    "kw",
    [
        dict(l2_w=float("nan")),
        dict(l2_v=float("inf")),
        dict(train={"lr": float("inf")}),
        dict(init_std=float("inf")),
        dict(train={"select_metric": "ndcg@x"}),
        dict(train={"select_metric": "bogus@20"}),
    ],
)
def test_non_finite_settings_and_bad_metrics_are_config_errors(kw):
    with pytest.raises(ConfigError):
        FM(**kw)


class _StopAfter(Callback):
    """Interrupts training after epoch ``k`` (as Ctrl-C would), once its checkpoint is written."""

    def __init__(self, k: int):
        self.k = k

    def on_epoch_end(self, record):
        if record["epoch"] == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("objective", ["regression", "bpr"])
def test_resume_after_interruption_ends_at_the_same_scores(tmp_path, objective):
    if objective == "regression":
        X, _ = rating_checkerboard()
        u, i = X.nonzero()
        valid = RatingTask(u[::3], i[::3], np.asarray(X[u[::3], i[::3]]).ravel())
    else:
        X, withheld = checkerboard()
        truth = sp.csr_matrix(
            (np.ones(len(withheld), np.float32), (np.arange(len(withheld)), withheld)),
            shape=X.shape,
        )
        valid = RankingTask(np.arange(X.shape[0]), X, X, truth, name="valid")

    def make():  # lr_decay and weight averaging: both must resume exactly
        return nested(
            FM,
            objective=objective,
            n_factors=3,
            lr=0.05,
            epochs=6,
            batch_size=16,
            patience=None,
            use_side_features=False,
            device="cpu",
            lr_decay=0.9,
            ema_decay=0.8,
        )

    ref = make().fit(X, valid=valid, context=FitContext(run_dir=tmp_path / "ref"))
    with pytest.raises(KeyboardInterrupt):
        make().fit(
            X, valid=valid, context=FitContext(run_dir=tmp_path / "run", callbacks=(_StopAfter(2),))
        )
    resumed = make().fit(X, valid=valid, context=FitContext(run_dir=tmp_path / "run", resume=True))
    users = np.arange(X.shape[0])
    assert torch.equal(resumed.score(users, X), ref.score(users, X))
    assert resumed.valid_history_ == ref.valid_history_ and len(ref.valid_history_) == 6
    assert resumed.best_epoch_ == ref.best_epoch_


def test_regression_selects_the_epoch_of_lowest_validation_rmse():
    X, _ = rating_checkerboard()
    u, i = X.nonzero()
    valid = RatingTask(u[::2], i[::2], np.asarray(X[u[::2], i[::2]]).ravel())
    m = nested(
        FM,
        n_factors=2,
        lr=0.05,
        epochs=8,
        batch_size=16,
        patience=None,
        use_side_features=False,
        device="cpu",
    ).fit(X, valid=valid)
    assert len(m.valid_history_) == 8
    assert m.best_epoch_ == int(np.argmin(m.valid_history_)) + 1
    from genrec.metrics import rmse

    assert rmse(m.predict(valid.users, valid.items), valid.ratings) == pytest.approx(
        min(m.valid_history_), rel=1e-6
    )


def test_upgrade_config_maps_the_flat_keys_of_old_saves():
    old = {
        "objective": "bpr",
        "n_factors": 8,
        "use_side_features": True,
        "l2_w": 0.01,
        "l2_v": 0.01,
        "optimizer": "adam",
        "lr": 0.001,
        "lr_decay": 0.95,
        "batch_size": 1024,
        "epochs": 100,
        "patience": 5,
        "init_std": 0.1,
        "valid_metric": "recall@20",
        "clip": True,
        "rating_range": None,
        "seed": 0,
        "device": "auto",
    }
    new = FM.upgrade_config(old)
    assert new["train"] == {
        "optimizer": "adam",
        "lr": 0.001,
        "lr_decay": 0.95,
        "batch_size": 1024,
        "epochs": 100,
        "patience": 5,
        "select_metric": "recall@20",
        "seed": 0,
        "device": "auto",
    }
    assert {k: v for k, v in new.items() if k != "train"} == {
        k: v for k, v in old.items() if k not in new["train"] and k != "valid_metric"
    }
    assert FM(**new).config.train.lr_decay == 0.95
    assert FM.upgrade_config({**old, "patience": 0})["train"]["patience"] is None

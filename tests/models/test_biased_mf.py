import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError, DivergenceError
from genrec.evaluate import RatingTask
from genrec.models import BiasedMF, get_model_class
from genrec.models.biased_mf import als_half_step, mf_predict, sgd_loss, sgd_step
from genrec.testing import RatingConformance, rating_checkerboard
from genrec.train import FitContext
from tests.models.nested import nested


class TestBiasedMFSGD(RatingConformance):
    def make_model(self, seed: int = 0):
        return nested(
            BiasedMF,
            n_factors=4,
            solver="sgd",
            lr=0.02,
            batch_size=32,
            epochs=60,
            l2=0.01,
            l2_bias=0.01,
            seed=seed,
            device="cpu",
        )


class TestBiasedMFALS(RatingConformance):
    def make_model(self, seed: int = 0):
        return nested(
            BiasedMF,
            n_factors=4,
            solver="als",
            epochs=10,
            l2=0.05,
            l2_bias=0.05,
            seed=seed,
            device="cpu",
        )


def _random_ratings(rng, U=9, I=7, p=0.5):
    mask = rng.random((U, I)) < p
    mask[0] = False  # a user without ratings
    R = np.where(mask, rng.integers(1, 6, (U, I)), 0).astype(np.float32)
    return sp.csr_matrix(R)


@pytest.mark.parametrize("weighting", ["count", "uniform"])
def test_als_half_step_equals_solve_of_normal_equations(weighting):
    rng = np.random.default_rng(0)
    R = _random_ratings(rng)
    K, mu, l2, l2b = 3, 3.2, 0.3, 0.1
    Q = torch.from_numpy(rng.normal(size=(R.shape[1], K))).double()
    bi = torch.from_numpy(rng.normal(size=R.shape[1])).double()
    P, bu = als_half_step(R, Q, bi, mu, l2, l2b, weighting, budget=8)  # tiny budget: many blocks
    A_all = torch.cat([torch.ones(R.shape[1], 1, dtype=torch.float64), Q], 1)
    for u in range(R.shape[0]):
        items = R[u].indices
        if len(items) == 0:
            assert torch.all(P[u] == 0) and bu[u] == 0
            continue
        A = A_all[items]  # (n_u, K+1)
        y = torch.from_numpy(R[u].data).double() - mu - bi[items]
        c = len(items) if weighting == "count" else 1
        Lam = torch.diag(torch.tensor([l2b] + [l2] * K, dtype=torch.float64)) * c
        x = torch.linalg.solve(A.T @ A + Lam, A.T @ y)
        torch.testing.assert_close(bu[u], x[0])
        torch.testing.assert_close(P[u], x[1:])


def test_als_half_step_minimizes_the_row_objective():
    """Perturbing the solution never lowers the penalized squared error of a row."""
    rng = np.random.default_rng(1)
    R = _random_ratings(rng)
    Q = torch.from_numpy(rng.normal(size=(R.shape[1], 2))).double()
    bi = torch.zeros(R.shape[1], dtype=torch.float64)
    P, bu = als_half_step(R, Q, bi, 3.0, 0.5, 0.5, "uniform")

    def obj(u, b, p):
        items = R[u].indices
        err = torch.from_numpy(R[u].data).double() - 3.0 - b - Q[items] @ p
        return float((err**2).sum() + 0.5 * b**2 + 0.5 * (p**2).sum())

    for u in range(1, R.shape[0]):
        base = obj(u, bu[u], P[u])
        for _ in range(5):
            d = torch.from_numpy(rng.normal(size=3) * 0.05)
            assert obj(u, bu[u] + d[0], P[u] + d[1:]) >= base - 1e-12


def test_sgd_step_on_one_rating_is_funks_update():
    g = torch.Generator().manual_seed(0)
    bu, bi = torch.randn(3, generator=g), torch.randn(4, generator=g)
    P, Q = torch.randn(3, 2, generator=g), torch.randn(4, 2, generator=g)
    b0, c0, p0, q0 = bu.clone(), bi.clone(), P.clone(), Q.clone()
    mu, lr, l2, l2b = 3.5, 0.1, 0.2, 0.05
    u, i, r = torch.tensor([1]), torch.tensor([2]), torch.tensor([4.0])
    sgd_step(mu, bu, bi, P, Q, u, i, r, lr, l2, l2b, torch.ones(3), torch.ones(4))
    e = 4.0 - (mu + b0[1] + c0[2] + p0[1] @ q0[2])
    torch.testing.assert_close(bu[1], b0[1] + lr * (e - l2b * b0[1]))
    torch.testing.assert_close(bi[2], c0[2] + lr * (e - l2b * c0[2]))
    torch.testing.assert_close(P[1], p0[1] + lr * (e * q0[2] - l2 * p0[1]))
    torch.testing.assert_close(Q[2], q0[2] + lr * (e * p0[1] - l2 * q0[2]))
    torch.testing.assert_close(P[0], p0[0])  # untouched rows stay


@pytest.mark.parametrize("uniform", [False, True])
def test_a_gradient_step_on_sgd_loss_is_sgd_step(uniform):
    """The trainer's plain SGD step on sgd_loss is the written-out update, repeats included."""
    g = torch.Generator().manual_seed(1)
    tables = [
        torch.randn(3, generator=g),
        torch.randn(4, generator=g),
        torch.randn(3, 2, generator=g),
        torch.randn(4, 2, generator=g),
    ]
    u, i = torch.tensor([0, 1, 1, 2, 0]), torch.tensor([2, 2, 3, 0, 1])  # user 0, 1 twice
    r = torch.tensor([4.0, 3.0, 5.0, 1.0, 2.0])
    su = torch.tensor([0.5, 0.25, 1.0]) if uniform else torch.ones(3)
    si = torch.tensor([1.0, 0.5, 0.2, 1.0]) if uniform else torch.ones(4)
    mu, lr, l2, l2b = 3.0, 0.1, 0.2, 0.05
    ref = [t.clone() for t in tables]
    e_ref = sgd_step(mu, *ref, u, i, r, lr, l2, l2b, su, si)
    params = [torch.nn.Parameter(t.clone()) for t in tables]
    loss, e = sgd_loss(mu, *params, u, i, r, l2, l2b, su, si)
    loss.backward()
    torch.optim.SGD(params, lr=lr).step()
    torch.testing.assert_close(e, e_ref)
    for got, want in zip(params, ref):
        torch.testing.assert_close(got.detach(), want)


def test_sgd_resume_after_interruption_ends_at_the_same_predictions(tmp_path):
    from genrec.train import Callback

    class StopAfter(Callback):
        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt

    X, _ = rating_checkerboard()
    uu, ii = X.nonzero()
    valid = RatingTask(uu[::3], ii[::3], np.asarray(X[uu[::3], ii[::3]]).ravel())

    def make():
        return nested(
            BiasedMF,
            n_factors=3,
            lr=0.02,
            batch_size=8,
            epochs=5,
            lr_decay=0.9,
            patience=None,
            device="cpu",
        )

    ref = make().fit(X, valid=valid, context=FitContext(run_dir=tmp_path / "ref"))
    with pytest.raises(KeyboardInterrupt):
        make().fit(
            X, valid=valid, context=FitContext(run_dir=tmp_path / "run", callbacks=(StopAfter(),))
        )
    again = make().fit(X, valid=valid, context=FitContext(run_dir=tmp_path / "run", resume=True))
    np.testing.assert_array_equal(again.predict(uu, ii), ref.predict(uu, ii))
    assert again.valid_rmse_ == ref.valid_rmse_ and len(ref.valid_rmse_) == 5


def test_upgrade_config_maps_the_flat_keys_of_old_saves():
    old = {
        "n_factors": 100,
        "solver": "sgd",
        "l2": 0.02,
        "l2_bias": 0.02,
        "l2_weighting": "count",
        "lr": 0.005,
        "lr_decay": 0.9,
        "batch_size": 256,
        "epochs": 20,
        "patience": 0,
        "init_std": 0.1,
        "clip": True,
        "rating_range": None,
        "seed": 1,
        "device": "cpu",
    }
    new = BiasedMF.upgrade_config(old)
    assert new["train"] == {
        "lr": 0.005,
        "lr_decay": 0.9,
        "batch_size": 256,
        "epochs": 20,
        "patience": None,
        "seed": 1,
        "device": "cpu",
    }
    assert set(new) == {
        "n_factors",
        "solver",
        "l2",
        "l2_bias",
        "l2_weighting",
        "init_std",
        "clip",
        "rating_range",
        "train",
    }
    cfg = BiasedMF(**new).config
    assert cfg.train.lr_decay == 0.9 and cfg.train.optimizer == "sgd"  # the model's default


@pytest.mark.parametrize("solver", ["sgd", "als"])
def test_recovers_a_low_rank_rating_matrix(solver):
    rng = np.random.default_rng(3)
    U, I = 40, 30
    full = 3 + rng.normal(size=(U, 2)) @ rng.normal(size=(2, I)) * 0.5
    mask = rng.random((U, I)) < 0.6
    X = sp.csr_matrix(np.where(mask, full, 0).astype(np.float32))
    m = nested(
        BiasedMF,
        n_factors=2,
        solver=solver,
        l2=0.001,
        l2_bias=0.001,
        lr=0.02,
        epochs=100,
        batch_size=16,
        clip=False,
        device="cpu",
    ).fit(X)
    uu, ii = np.nonzero(~mask)
    err = m.predict(uu, ii) - full[uu, ii]
    assert np.sqrt(np.mean(err**2)) < 0.25  # held-out entries, vs ~0.6 for the biases alone


def test_unknown_users_and_items_fall_back_to_biases():
    X, _ = rating_checkerboard()
    m = nested(BiasedMF, n_factors=3, solver="als", epochs=3, device="cpu").fit(X)
    U, I = X.shape
    mu, bu, bi = m.mu_, m.user_bias_.numpy(), m.item_bias_.numpy()
    pred = m.predict(np.array([-1, U, 2, 2, -1]), np.array([4, 4, -1, I + 3, I]))
    expect = np.clip([mu + bi[4], mu + bi[4], mu + bu[2], mu + bu[2], mu], 1, 5)
    np.testing.assert_allclose(pred, expect, rtol=1e-6)


def test_predictions_are_clipped_and_scores_are_not():
    X, _ = rating_checkerboard()
    m = nested(BiasedMF, n_factors=3, solver="als", epochs=3, device="cpu").fit(X)
    m.mu_ = 100.0
    assert (m.predict(np.arange(4), np.arange(4)) == 5.0).all()
    assert float(torch.as_tensor(m.score(np.arange(2), X[:2])).min()) > 50
    m.mu_ = -100.0
    assert (m.predict(np.arange(4), np.arange(4)) == 1.0).all()


def test_rating_range_from_config_overrides_the_data():
    X, _ = rating_checkerboard()
    m = nested(
        BiasedMF, n_factors=2, solver="als", epochs=2, rating_range=(0.0, 10.0), device="cpu"
    ).fit(X)
    m.mu_ = 100.0
    assert (m.predict(np.arange(3), np.arange(3)) == 10.0).all()


def test_unknown_users_are_refused_by_score_and_predicted_as_mu_plus_item_bias():
    # score cannot fold in a new history (it gave every such row mu + b_i); predict's
    # documented fallback for an unknown user stays mu + b_i
    X, _ = rating_checkerboard()
    m = nested(BiasedMF, n_factors=3, solver="als", epochs=3, device="cpu").fit(X)
    with pytest.raises(ConfigError, match="cannot score or embed users unseen"):
        m.score(None, X[:2])
    with pytest.raises(DataError, match="is not a training user"):
        m.score(np.array([-1, X.shape[0]]), X[:2])
    expect = (m.mu_ + m.item_bias_).numpy()
    items = np.arange(X.shape[1])
    got = m.predict(np.full(X.shape[1], -1), items)
    if m.config.clip:
        expect = np.clip(expect, *m.rating_range_)
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_score_matches_predict_before_clipping():
    X, _ = rating_checkerboard()
    m = nested(BiasedMF, n_factors=3, solver="sgd", epochs=3, clip=False, device="cpu").fit(X)
    s = np.asarray(m.score(np.arange(5), X[:5]))
    uu, ii = np.meshgrid(np.arange(5), np.arange(X.shape[1]), indexing="ij")
    np.testing.assert_allclose(
        s, m.predict(uu.ravel(), ii.ravel()).reshape(s.shape), rtol=1e-5, atol=1e-5
    )


def test_rows_without_training_ratings_keep_their_fallback():
    X, _ = rating_checkerboard()
    X = X.tolil()
    X[:, 3] = 0  # item 3 unrated
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    m = nested(BiasedMF, n_factors=3, solver="sgd", epochs=5, device="cpu").fit(X)
    assert float(m.item_factors_[3].abs().max()) == 0.0
    assert float(m.item_bias_[3]) == 0.0


def test_validation_keeps_the_best_epoch():
    X, _ = rating_checkerboard()
    c = X.tocoo()
    rng = np.random.default_rng(0)
    hold = rng.random(X.nnz) < 0.2
    train = sp.csr_matrix((c.data[~hold], (c.row[~hold], c.col[~hold])), shape=X.shape)
    valid = RatingTask(c.row[hold], c.col[hold], c.data[hold], "valid")
    m = nested(
        BiasedMF, n_factors=4, solver="sgd", lr=0.05, epochs=30, patience=None, device="cpu"
    ).fit(train, valid=valid)
    assert len(m.valid_rmse_) == 30
    assert m.best_epoch_ == int(np.argmin(m.valid_rmse_)) + 1
    got = np.sqrt(np.mean((m.predict(valid.users, valid.items) - valid.ratings) ** 2))
    assert got == pytest.approx(min(m.valid_rmse_), rel=1e-5)


def test_early_stopping_stops():
    X, _ = rating_checkerboard()
    c = X.tocoo()
    valid = RatingTask(c.row[:10], c.col[:10], np.full(10, 3.0, np.float32))
    m = nested(BiasedMF, n_factors=2, epochs=200, patience=2, device="cpu").fit(X, valid=valid)
    assert len(m.valid_rmse_) < 200


def test_ranking_task_is_refused():
    from genrec.evaluate import RankingTask

    X, _ = rating_checkerboard()
    t = RankingTask(np.arange(2), X[:2], X[:2], X[:2])
    with pytest.raises(ConfigError, match="selects on a RatingTask.*rating protocol"):
        nested(BiasedMF, epochs=1).fit(X, valid=t)


def test_config_checks():
    with pytest.raises(ConfigError, match="solver als needs l2 > 0"):
        nested(BiasedMF, solver="als", l2=0.0)
    with pytest.raises(ConfigError, match="lr_decay"):
        BiasedMF(train={"lr_decay": 1.5})
    with pytest.raises(ConfigError, match="rating_range"):
        nested(BiasedMF, rating_range=(5.0, 1.0))
    with pytest.raises(ConfigError, match="unknown key"):
        BiasedMF(n_factor=3)


def test_mf_predict_zeroes_unknown_terms():
    bu, bi = torch.tensor([1.0]), torch.tensor([2.0])
    P, Q = torch.ones(1, 2), torch.ones(1, 2)
    z = torch.tensor([0])
    out = mf_predict(3.0, bu, bi, P, Q, z, z, torch.tensor([False]), torch.tensor([True]))
    assert float(out) == 5.0  # mu + b_i


def test_registered():
    assert get_model_class("biased-mf") is BiasedMF
    assert get_model_class("biased_mf") is BiasedMF


def test_divergence_is_reported_naming_the_learning_rate():
    X, _ = rating_checkerboard()
    with pytest.raises(DivergenceError, match="diverged; lower train.lr"):
        nested(BiasedMF, n_factors=4, lr=50.0, batch_size=64, epochs=20, device="cpu").fit(X)


@pytest.mark.parametrize(
    "kw",
    [
        dict(l2=float("nan")),
        dict(l2=float("inf")),
        dict(l2_bias=float("nan")),
        dict(train={"lr": float("inf")}),
        dict(init_std=float("inf")),
        dict(solver="als", l2=float("inf")),
    ],
)
def test_non_finite_settings_are_config_errors_not_divergence(kw):
    # before: accepted, then "diverged ... lower lr" at fit (or a Cholesky error for ALS)
    with pytest.raises(ConfigError, match="finite"):
        BiasedMF(**kw)


def test_predict_takes_whole_number_indices_only():
    X = sp.csr_matrix(np.array([[5, 0, 3], [0, 4, 1]], dtype=np.float32))
    m = nested(BiasedMF, n_factors=2, solver="als", epochs=2, device="cpu", seed=0).fit(X)
    exact = m.predict(np.array([0, 1]), np.array([2, 0]))
    np.testing.assert_array_equal(m.predict(np.array([0.0, 1.0]), np.array([2.0, 0.0])), exact)
    np.testing.assert_array_equal(m.predict([0, 1], [2, 0]), exact)
    for bad in ([0.5, 1.0], [np.nan, 1.0], ["a", "b"]):
        with pytest.raises(ValueError, match="indices must be"):
            m.predict(np.array(bad), np.array([2, 0]))


def test_als_with_a_vanishing_l2_on_users_with_few_ratings_is_a_divergence_error():
    # issue 28, defect 9: users with fewer ratings than n_factors + 1 have singular normal
    # equations without the penalty; l2=1e-30 was a LinAlgError traceback
    R = sp.csr_matrix(
        (np.array([5.0, 3, 4, 1, 2], np.float32), ([0, 1, 2, 3, 3], [0, 1, 2, 3, 4])), shape=(4, 6)
    )
    m = nested(BiasedMF, n_factors=4, solver="als", epochs=2, l2=1e-30, l2_bias=1e-30, device="cpu")
    with pytest.raises(
        DivergenceError, match="singular to working precision at l2 = 1e-30.*raise l2"
    ):
        m.fit(R)

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec.errors import ConfigError, DataError, DivergenceError
from genrec.evaluate import RatingTask
from genrec.models import AutoRec, get_model_class
from genrec.models.autorec import (
    AutoRecNet,
    autorec_objective,
    masked_sse,
    rescale_rows,
)
from genrec.models.nn_blocks import dropout_values
from genrec.testing import RatingConformance, rating_checkerboard


class TestIAutoRec(RatingConformance):
    def make_model(self, seed: int = 0):
        return AutoRec(hidden=16, l2=0.1, epochs=60, eval_every=20, seed=seed, device="cpu")


class TestUAutoRec(RatingConformance):
    def make_model(self, seed: int = 0):
        return AutoRec(
            variant="user", hidden=16, l2=0.1, epochs=60, eval_every=20, seed=seed, device="cpu"
        )

    def test_user_variant_folds_in(self):
        fitted, (X, _) = self.fitted, self.data
        np.testing.assert_allclose(
            np.asarray(fitted.score(np.arange(4), X[:4])),
            np.asarray(fitted.score(None, X[:4])),
            rtol=1e-6,
        )


def _net_and_data(seed=0, B=6, D=9, H=5):
    g = torch.Generator().manual_seed(seed)
    net = AutoRecNet(D, H, "sigmoid", "identity", g)
    mask = torch.rand(B, D, generator=g) < 0.4
    mask[:, 0] = False  # a column observed nowhere
    r = torch.where(mask, torch.randint(1, 6, (B, D), generator=g).float(), torch.zeros(B, D))
    return net, r, mask


def test_masked_sse_gradient_comes_only_from_observed_entries():
    net, r, mask = _net_and_data()
    out = net(r).detach().requires_grad_(True)
    masked_sse(out, r, mask).backward()
    assert torch.all(out.grad[~mask] == 0)
    assert torch.all(out.grad[mask] != 0)
    # what the target says at unobserved entries changes nothing
    noisy = torch.where(mask, r, torch.full_like(r, 99.0))
    with torch.no_grad():
        assert float(masked_sse(out, noisy, mask)) == pytest.approx(float(masked_sse(out, r, mask)))


def test_decoder_rows_of_never_observed_outputs_get_only_the_weight_decay_gradient():
    net, r, mask = _net_and_data()
    l2 = 0.7
    autorec_objective(net, r, mask, l2).backward()
    W = net.decode.weight  # (D, H); row 0 decodes the never-observed column
    torch.testing.assert_close(W.grad[0], l2 * W[0].detach())
    assert float(net.decode.bias.grad[0]) == 0.0
    assert not torch.allclose(W.grad[1:], l2 * W[1:].detach())


def test_objective_is_masked_sse_plus_half_lambda_frobenius():
    net, r, mask = _net_and_data(seed=1)
    l2 = 2.5
    with torch.no_grad():
        sse = ((net(r) - r)[mask] ** 2).sum()
        pen = (net.encode.weight**2).sum() + (net.decode.weight**2).sum()
        torch.testing.assert_close(autorec_objective(net, r, mask, l2), sse + l2 / 2 * pen)


def test_item_autorec_predicts_the_item_reconstruction():
    X, _ = rating_checkerboard()
    m = AutoRec(hidden=8, epochs=10, device="cpu", clip=False).fit(X)
    i, u = 5, 7
    with torch.no_grad():
        rec = m.net_(torch.from_numpy(X[:, i].toarray().T))  # (1, U): item i's vector
    assert m.predict(np.array([u]), np.array([i]))[0] == pytest.approx(float(rec[0, u]), rel=1e-5)


def test_rescale_rows_sets_each_row_norm_and_keeps_zero_rows():
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    y = rescale_rows(x, 10.0)
    torch.testing.assert_close(
        y, torch.tensor([[6.0, 8.0, 0.0], [0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    )
    assert rescale_rows(x, 0.0) is x


@pytest.mark.parametrize("variant", ["item", "user"])
def test_input_norm_feeds_rescaled_rows_and_fits_raw_targets(variant):
    X, _ = rating_checkerboard()
    m = AutoRec(
        variant=variant, hidden=8, l2=0.1, epochs=40, input_norm=5.0, device="cpu", clip=False
    ).fit(X)
    rows = X.T.toarray() if variant == "item" else X.toarray()  # (N, D)
    r, c = 5, 7
    x = torch.from_numpy(rows[r : r + 1].astype(np.float32))
    with torch.no_grad():
        rec = m.net_(x * (5.0 / x.norm()))  # the rescaled row, not the raw one
        raw = m.net_(x)
    u, i = (c, r) if variant == "item" else (r, c)
    got = m.predict(np.array([u]), np.array([i]))[0]
    assert got == pytest.approx(float(rec[0, c]), rel=1e-5)
    assert got != pytest.approx(float(raw[0, c]), rel=1e-3)
    # the targets are the raw ratings: the fit reconstructs them, not the rescaled inputs
    co = X.tocoo()
    err = np.mean((m.predict(co.row, co.col) - co.data) ** 2)
    assert err < 0.1 * np.var(co.data)


def test_input_dropout_zeroes_a_fraction_p_and_rescales_the_rest():
    x = torch.full((200, 300), 2.0)
    assert dropout_values(x, 0.0, None) is x
    y = dropout_values(x, 0.4, torch.Generator().manual_seed(0))
    assert float((y == 0).float().mean()) == pytest.approx(0.4, abs=0.01)
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(2.0 / 0.6)))


@pytest.mark.parametrize("variant", ["item", "user"])
def test_input_dropout_trains_on_dropped_rescaled_inputs_and_predicts_without(variant):
    X, _ = rating_checkerboard()
    kw = dict(
        variant=variant,
        hidden=6,
        l2=0.5,
        input_norm=4.0,
        optimizer="rprop",
        epochs=1,
        eval_every=1,
        device="cpu",
        clip=False,
        seed=3,
    )
    m = AutoRec(input_dropout=0.5, **kw).fit(X)
    # replay the one Rprop step: the same initialisation, then a dropout mask from the same
    # generator over the rescaled rows; Rprop's first step is -lr * sign(gradient)
    rows = torch.from_numpy(
        (X.T.toarray() if variant == "item" else X.toarray()).astype(np.float32)
    )  # (N, D)
    gen = torch.Generator().manual_seed(3)
    net = AutoRecNet(rows.shape[1], 6, "sigmoid", "identity", gen)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    xin = dropout_values(rescale_rows(rows, 4.0), 0.5, gen)
    (masked_sse(net(xin), rows, rows != 0) + 0.25 * net.penalty()).backward()
    grads = {k: p.grad for k, p in net.named_parameters()}
    for k, v in m.net_.state_dict().items():
        torch.testing.assert_close(v, init[k] - 0.01 * grads[k].sign())
    # without dropout the first step differs
    m0 = AutoRec(**kw).fit(X)
    assert not torch.equal(m0.net_.encode.weight, m.net_.encode.weight)
    # prediction uses no dropout: deterministic, the rescaled rows' reconstruction
    with torch.no_grad():
        full = m.net_(rescale_rows(rows, 4.0))  # (N, D)
    co = X.tocoo()
    got = m.predict(co.row, co.col)
    want = (full[co.col, co.row] if variant == "item" else full[co.row, co.col]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, m.predict(co.row, co.col))


def test_unseen_users_and_items_get_the_default_rating():
    X, _ = rating_checkerboard()
    X = X.tolil()
    X[2, :] = 0
    X[:, 4] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    m = AutoRec(hidden=8, epochs=5, device="cpu").fit(X)
    pred = m.predict(np.array([2, 0, -1, 0, X.shape[0]]), np.array([0, 4, 1, -1, 1]))
    np.testing.assert_array_equal(pred, np.full(5, 3.0, np.float32))  # midpoint of 1..5
    m2 = AutoRec(hidden=8, epochs=5, default_rating=2.5, device="cpu").fit(X)
    assert m2.predict(np.array([2]), np.array([0]))[0] == 2.5
    s = np.asarray(m.score(np.arange(3), X[:3]))
    assert (s[:, 4] == 3.0).all()


def test_predictions_are_clipped():
    X, _ = rating_checkerboard()
    m = AutoRec(hidden=8, epochs=5, device="cpu").fit(X)
    with torch.no_grad():
        m.net_.decode.bias.fill_(100.0)
    assert (m.predict(np.arange(5), np.arange(5)) == 5.0).all()
    with torch.no_grad():
        m.net_.decode.bias.fill_(-100.0)
    assert (m.predict(np.arange(5), np.arange(5)) == 1.0).all()


def test_training_users_without_ratings_rank_by_mean_predicted_rating():
    X, _ = rating_checkerboard()
    X = X.tolil()
    X[0, :] = 0  # user 0 has no training rating
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    m = AutoRec(hidden=8, epochs=5, device="cpu").fit(X)
    s0 = np.asarray(m.score(np.array([0]), X[0]))[0]
    rest = np.vstack([np.asarray(m.score(np.array([u]), X[u])) for u in range(1, X.shape[0])])
    np.testing.assert_allclose(s0, rest.mean(0), rtol=1e-5)


def test_item_autorec_refuses_new_users_and_user_autorec_folds_them_in():
    X, _ = rating_checkerboard()
    item = AutoRec(hidden=8, epochs=5, device="cpu").fit(X)
    assert not item.folds_in()
    with pytest.raises(ConfigError, match="autorec cannot score or embed users unseen"):
        item.score(None, X[:2])
    with pytest.raises(DataError, match="is not a training user"):
        item.recommend(np.array([X.shape[0]]), X[:1], k=2)
    user = AutoRec(hidden=8, epochs=5, device="cpu", variant="user").fit(X)
    assert user.folds_in()
    np.testing.assert_allclose(
        np.asarray(user.score(None, X[:2])), np.asarray(user.score(np.arange(2), X[:2]))
    )


@pytest.mark.parametrize("optimizer", ["lbfgs", "rprop", "adam"])
def test_each_optimizer_lowers_the_objective(optimizer):
    X, _ = rating_checkerboard()
    kw = dict(hidden=8, l2=0.1, device="cpu", optimizer=optimizer, clip=False)
    if optimizer == "adam":
        kw.update(lr=0.01, batch_size=8)
    before = AutoRec(epochs=1, **kw).fit(X)
    after = AutoRec(epochs=40, **kw).fit(X)
    c = X.tocoo()

    def err(m):
        return np.mean((m.predict(c.row, c.col) - c.data) ** 2)

    assert err(after) < 0.5 * err(before)


def test_validation_keeps_the_best_check():
    X, _ = rating_checkerboard()
    c = X.tocoo()
    hold = np.random.default_rng(0).random(X.nnz) < 0.2
    train = sp.csr_matrix((c.data[~hold], (c.row[~hold], c.col[~hold])), shape=X.shape)
    valid = RatingTask(c.row[hold], c.col[hold], c.data[hold], "valid")
    m = AutoRec(hidden=8, epochs=40, eval_every=5, patience=0, device="cpu").fit(train, valid=valid)
    assert len(m.valid_rmse_) == 8
    assert m.best_epoch_ == 5 * (int(np.argmin(m.valid_rmse_)) + 1)
    got = np.sqrt(np.mean((m.predict(valid.users, valid.items) - valid.ratings) ** 2))
    assert got == pytest.approx(min(m.valid_rmse_), rel=1e-5)


def test_config_checks_and_errors():
    with pytest.raises(ConfigError, match="hidden"):
        AutoRec(hidden=0)
    with pytest.raises(ConfigError, match="input_norm"):
        AutoRec(input_norm=-1.0)
    with pytest.raises(ConfigError, match="input_dropout"):
        AutoRec(input_dropout=1.0, optimizer="rprop")
    with pytest.raises(ConfigError, match="input_dropout"):
        AutoRec(input_dropout=0.5)  # L-BFGS, the default optimizer
    with pytest.raises(ConfigError, match="seed must be in"):  # was an overflow in fit
        AutoRec(seed=2**64)
    with pytest.raises(ConfigError, match="device must be auto, cpu or cuda"):  # was: in fit
        AutoRec(device="gpu")
    with pytest.raises(ConfigError, match="variant"):
        AutoRec(variant="both")
    with pytest.raises(DataError, match="at least one"):
        AutoRec().fit(sp.csr_matrix((3, 3), dtype=np.float32))


def test_registered():
    assert get_model_class("autorec") is AutoRec


@pytest.mark.parametrize(
    "kw",
    [
        dict(l2=float("nan")),
        dict(l2=float("inf")),
        dict(lr=float("inf")),
        dict(input_norm=float("inf")),
        dict(default_rating=float("nan")),
        dict(default_rating=float("inf")),
    ],
)
def test_non_finite_settings_are_config_errors(kw):
    # before: NaN default_rating gave NaN predictions for unseen items, lr=inf with L-BFGS
    # returned a model with NaN weights and no error
    with pytest.raises(ConfigError, match="finite"):
        AutoRec(**kw)


def test_non_finite_weights_after_fit_are_an_error(monkeypatch):
    X, _ = rating_checkerboard()
    real_step = torch.optim.LBFGS.step

    def poisoned(self, closure):  # an L-BFGS run whose last step blows up the weights
        out = real_step(self, closure)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.LBFGS, "step", poisoned)
    with pytest.raises(DivergenceError, match="non-finite weights.*lower lr"):
        AutoRec(hidden=4, epochs=3, device="cpu").fit(X)


def test_autorec_with_a_huge_learning_rate_is_a_divergence_error_naming_lr():
    # issue 28, defect 9: Adam at lr=1e30 diverged as a ConfigError, not the DivergenceError
    # of every other model
    X, _ = rating_checkerboard()
    with pytest.raises(DivergenceError, match=r"diverged.*lower lr \(now 1e\+30\)"):
        AutoRec(hidden=4, epochs=20, optimizer="adam", lr=1e30, device="cpu").fit(X)

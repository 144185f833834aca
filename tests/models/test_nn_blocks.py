"""Math checks of the pure functions shared by the autoencoders (models/nn_blocks.py)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import genrec.models.nn_blocks as nn_blocks
from genrec.models.nn_blocks import (
    BlockedLinear,
    MLPAutoencoder,
    SparseInputLinear,
    dropout_values,
    gaussian_kl_to_std_normal,
    log_normal_pdf,
    make_linear,
    multinomial_log_lik,
    multinomial_log_lik_sparse,
    normalize_rows,
    reparameterize,
    row_ids,
)
from genrec.train import Batch


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _random_csr(seed=0, B=7, I=13, p=0.3):
    rng = np.random.default_rng(seed)
    X = (rng.random((B, I)) < p).astype(np.float32)
    X[3] = 0  # an empty row
    return sp.csr_matrix(X)


def test_gaussian_kl_equals_torch_distributions():
    g = _gen()
    mu = torch.randn(5, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(5, 4, generator=g, dtype=torch.float64)
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl_to_std_normal(mu, logvar), expected)


def test_gaussian_kl_is_zero_at_the_prior():
    z = torch.zeros(3, 6)
    assert torch.all(gaussian_kl_to_std_normal(z, z) == 0)


def test_reparameterize_moments_and_gradient():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[math.log(4.0), math.log(0.25)]], requires_grad=True)
    z = reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2), _gen(1))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([2.0, 0.5]), atol=0.02, rtol=0)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    torch.testing.assert_close(mu.grad, torch.tensor([[200_000.0, 200_000.0]]))


def test_reparameterize_uses_only_the_given_generator():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = reparameterize(mu, logvar, _gen(5))
    assert torch.equal(torch.get_rng_state(), before)
    torch.testing.assert_close(a, reparameterize(mu, logvar, _gen(5)), rtol=0, atol=0)
    assert torch.equal(reparameterize(mu, logvar, _gen(5), noise_scale=0.0), mu)


def test_log_normal_pdf_equals_torch_distributions():
    g = _gen(2)
    z, mu, logvar = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)
    torch.testing.assert_close(log_normal_pdf(z, mu, logvar), expected)


def test_multinomial_log_lik_equals_direct_computation():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 6))
    x = rng.integers(0, 3, size=(4, 6)).astype(np.float64)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    direct = (x * np.log(p)).sum(1)
    got = multinomial_log_lik(torch.from_numpy(logits), torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), direct, rtol=1e-6)


def test_multinomial_log_lik_matches_torch_multinomial_up_to_the_count_term():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 2.0, 1.0]], dtype=torch.float64)
    dist = torch.distributions.Multinomial(total_count=4, logits=logits[0])
    log_coef = math.lgamma(5) - sum(math.lgamma(v + 1) for v in x[0].tolist())
    torch.testing.assert_close(
        multinomial_log_lik(logits, x)[0].double(), dist.log_prob(x[0]) - log_coef
    )


def test_sparse_multinomial_log_lik_equals_dense_with_gradients():
    X = _random_csr(4)
    batch = Batch.from_csr(X)
    logits = torch.randn(X.shape, generator=_gen(4), requires_grad=True)
    dense = multinomial_log_lik(logits, torch.from_numpy(X.toarray()))
    dense.sum().backward()
    g_dense = logits.grad.clone()
    logits.grad = None
    sparse = multinomial_log_lik_sparse(logits, batch.indptr, batch.indices, batch.values)
    sparse.sum().backward()
    torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(logits.grad, g_dense)


def test_row_ids_and_batch_dense():
    X = _random_csr(5)
    batch = Batch.from_csr(X)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    assert row_ids(batch.indptr).tolist() == rows.tolist()
    np.testing.assert_array_equal(batch.dense().numpy(), X.toarray())
    np.testing.assert_allclose(batch.row_sums().numpy(), np.asarray(X.sum(1)).ravel())


def test_normalize_rows_equals_dense_l2_normalize():
    X = _random_csr(6)
    batch = Batch.from_csr(X)
    vals = normalize_rows(batch.indptr, batch.values)
    got = sp.csr_matrix((vals.numpy(), X.indices, X.indptr), shape=X.shape).toarray()
    expected = F.normalize(torch.from_numpy(X.toarray()), dim=1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_dropout_values_keep_rate_and_scale():
    v = torch.ones(100_000)
    out = dropout_values(v, 0.5, _gen(7))
    kept = out > 0
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    assert torch.all(out[kept] == 2.0)
    assert dropout_values(v, 0.0, _gen(7)) is v


def test_sparse_input_linear_equals_dense_product_with_gradients():
    X = _random_csr(8)
    batch = Batch.from_csr(X)
    layer = SparseInputLinear(X.shape[1], 5, _gen(8))
    x = torch.from_numpy(X.toarray())
    dense = layer.forward_dense(x)
    dense.square().sum().backward()
    g_dense = layer.weight.grad.clone()
    layer.weight.grad = None
    sparse = layer(batch.indptr, batch.indices, batch.values)
    sparse.square().sum().backward()
    torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(layer.weight.grad, g_dense)


def test_init_draws_from_the_generator_only():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = make_linear(30, 20, _gen(9))
    assert torch.equal(torch.get_rng_state(), before)
    b = make_linear(30, 20, _gen(9))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    bound = math.sqrt(6 / 50)  # Glorot uniform
    assert a.weight.abs().max() <= bound and a.bias.abs().max() <= 0.002
    t = make_linear(30, 20, _gen(9), scheme="torch")
    assert t.weight.abs().max() <= 1 / math.sqrt(30)
    with pytest.raises(ValueError, match="unknown init"):
        make_linear(3, 2, _gen(0), scheme="he")


@pytest.mark.parametrize("rows", [1, 3, 7, 10])
def test_blocked_linear_equals_f_linear_with_gradients(monkeypatch, rows):
    monkeypatch.setattr(nn_blocks, "TILE", 3)  # 11 outputs > 2 * 3: ragged 3 x 3 tiles
    layer = make_linear(5, 11, _gen(11))
    assert isinstance(layer, BlockedLinear)
    x = torch.randn(rows, 5, generator=_gen(12), requires_grad=True)
    calls = []
    monkeypatch.setattr(
        nn_blocks._BlockedAddmm,
        "apply",
        lambda *a, _f=nn_blocks._BlockedAddmm.apply: calls.append(1) or _f(*a),
    )
    out = layer(x)
    assert calls, "the tiled path was not taken"
    g = torch.randn(out.shape, generator=_gen(13))
    (out * g).sum().backward()
    grads = [t.grad.clone() for t in (x, layer.weight, layer.bias)]
    x.grad = layer.weight.grad = layer.bias.grad = None
    ref = F.linear(x, layer.weight, layer.bias)
    (ref * g).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, (x.grad, layer.weight.grad, layer.bias.grad)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # the same state as nn.Linear: a saved model loads into either
    assert list(layer.state_dict()) == list(torch.nn.Linear(5, 11).state_dict())


def test_blocked_linear_falls_back_to_f_linear(monkeypatch):
    monkeypatch.setattr(nn_blocks, "TILE", 3)
    calls = []
    monkeypatch.setattr(nn_blocks._BlockedAddmm, "apply", lambda *a: calls.append(1))
    wide, narrow = make_linear(5, 11, _gen(14)), make_linear(5, 6, _gen(14))
    narrow(torch.randn(4, 5))  # 6 outputs: not wider than 2 * TILE
    wide(torch.randn(2, 4, 5))  # 3-D input
    wide.double()(torch.randn(4, 5, dtype=torch.float64))  # float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        wide.float()(torch.randn(4, 5))  # autocast decides the precision
    assert calls == []


@pytest.mark.parametrize("variational", [True, False])
def test_mlp_autoencoder_shapes(variational):
    X = _random_csr(10)
    net = MLPAutoencoder(X.shape[1], (8,), 3, variational, "tanh", _gen(10))
    batch = Batch.from_csr(X)
    mu, logvar = net.encode(batch.indptr, batch.indices, batch.values)
    assert mu.shape == (X.shape[0], 3)
    assert (logvar is not None) == variational
    if not variational:  # the DAE code is tanh-ed
        assert mu.abs().max() < 1
    assert net.decode(mu).shape == X.shape

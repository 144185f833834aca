"""HSTU: the pointwise attention and the biases against direct loops, causality, left
padding, the losses against a brute-force computation, exact resume, fold-in, long
histories, timestamps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrec.data import Sequences
from genrec.errors import ConfigError
from genrec.models import HSTU
from genrec.models.hstu import (
    length_sorted_order,
    pointwise_attention,
    position_bias,
    positions_from_first,
    time_bucket,
)
from genrec.models.sequential import SeqBatch, tokens
from genrec.testing.sequential import cycles
from genrec.train import BatchContext, FitContext, StepContext

TINY = dict(max_len=8, dim=8, n_blocks=2, n_heads=2, qk_dim=4, v_dim=3, n_negatives=5)


def tiny(**kw):
    train = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "device": "cpu", "seed": 0}
    train.update(kw.pop("train", {}))
    return HSTU(**{**TINY, **kw}, train=train)


def fitted(**kw):
    seqs, _ = cycles()
    return tiny(**kw).fit(seqs), seqs


# ---------------------------------------------------------------- pure functions


def test_pointwise_attention_equals_a_direct_loop():
    g = torch.Generator().manual_seed(0)
    B, L, H, dq, dv, n = 2, 5, 2, 3, 4, 7
    q, k = torch.randn(B, L, H, dq, generator=g), torch.randn(B, L, H, dq, generator=g)
    v = torch.randn(B, L, H, dv, generator=g)
    bias = torch.randn(B, L, L, generator=g)
    valid = torch.tensor([[False, False, True, True, True], [True] * 5])
    got = pointwise_attention(q, k, v, bias, valid, n)
    want = torch.zeros(B, L, H * dv)
    for b in range(B):
        for i in range(L):
            for h in range(H):
                acc = torch.zeros(dv)
                for j in range(i + 1):  # causal: j <= i, padding keys left out
                    if valid[b, j]:
                        s = float(q[b, i, h] @ k[b, j, h]) + float(bias[b, i, j])
                        acc += s / (1 + math.exp(-s)) / n * v[b, j, h]  # SiLU(s) / n
                want[b, i, h * dv : (h + 1) * dv] = acc
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_position_bias_is_one_weight_per_distance():
    w = torch.arange(6, dtype=torch.float32) + 1.0
    got = position_bias(w, 4)
    for i in range(4):
        for j in range(4):
            assert float(got[i, j]) == (float(w[i - j]) if j <= i else 0.0)


def test_time_bucket_is_the_log_of_the_gap():
    times = torch.tensor([[0.0, 1.0, 10.0, 1000.0, 1e9]], dtype=torch.float64)
    got = time_bucket(times, 40)
    for i in range(5):
        for j in range(5):
            dt = max(abs(float(times[0, i] - times[0, j])), 1.0)
            assert int(got[0, i, j]) == min(int(math.floor(math.log(dt) / 0.301)), 40)
    assert int(time_bucket(times, 10)[0, 4, 0]) == 10  # clamped to the last bucket


def test_positions_count_from_the_first_real_item():
    valid = torch.tensor([[False, False, True, True], [True, True, True, True]])
    assert positions_from_first(valid).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_length_sorted_order_is_a_permutation_sorted_within_pools():
    g = torch.Generator().manual_seed(0)
    lengths = np.random.default_rng(0).integers(2, 30, 50)
    order = torch.randperm(50, generator=g)
    got = length_sorted_order(order, lengths, 4, 3, g).numpy()
    assert sorted(got.tolist()) == list(range(50))
    pools = [set(order[s : s + 12].tolist()) for s in range(0, 50, 12)]
    for s in range(0, 48, 4):  # every full batch: one pool's users, lengths in order
        batch = got[s : s + 4]
        assert any(set(batch.tolist()) <= p for p in pools)
        assert (np.diff(lengths[batch]) >= 0).all()
    assert got[48:].tolist() == sorted(order[48:].tolist(), key=lambda u: lengths[u])


# ---------------------------------------------------------------- the network


def test_outputs_are_causal():
    m, _ = fitted()
    net = m.module_.eval()
    a = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]])
    for t in range(7):
        b = a.clone()
        b[0, t + 1 :] = torch.tensor([20, 21, 22, 23, 24, 1, 2][: 7 - t])
        with torch.no_grad():
            ha, hb = net(a), net(b)
        torch.testing.assert_close(ha[0, : t + 1], hb[0, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(ha[0, t + 1 :], hb[0, t + 1 :])


def test_left_padding_does_not_change_the_last_output():
    m, _ = fitted()
    net = m.module_.eval()
    seq = torch.tensor([[5, 9, 2, 7]])
    times = torch.tensor([[10.0, 200.0, 3000.0, 40000.0]], dtype=torch.float64)
    with torch.no_grad():
        for pad in (1, 4):
            padded = F.pad(seq, (pad, 0))
            padded_t = F.pad(times, (pad, 0))
            torch.testing.assert_close(net(seq)[:, -1], net(padded)[:, -1], rtol=0, atol=1e-6)
            torch.testing.assert_close(
                net(seq, times)[:, -1], net(padded, padded_t)[:, -1], rtol=0, atol=1e-6
            )


def test_time_bias_changes_the_outputs_only_where_configured():
    m, _ = fitted()
    net = m.module_.eval()
    seq = torch.tensor([[5, 9, 2, 7]])
    t1 = torch.tensor([[0.0, 10.0, 20.0, 30.0]], dtype=torch.float64)
    t2 = torch.tensor([[0.0, 1e3, 1e6, 1e8]], dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(net(seq, t1), net(seq, t2))
    m0, _ = fitted(time_buckets=0)
    assert "blocks.0.time_w" not in m0.module_.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(m0.module_.eval()(seq, t1), m0.module_(seq, t2))


def test_training_and_scoring_batches_carry_the_times():
    seqs = Sequences.from_lists([[0, 1, 2], [2, 1]], 3, times=[[5.0, 6.0, 9.0], [1.0, 4.0]])
    m = tiny(max_len=3)
    ctx = BatchContext(torch.Generator().manual_seed(0), 8, torch.device("cpu"), 0)
    (b,) = list(m.batches(seqs, ctx))
    by_user = {int(u): i for i, u in enumerate(b.users)}
    assert b.times[by_user[0]].tolist() == [0.0, 5.0, 6.0]  # the inputs' times, left-padded
    assert b.times[by_user[1]].tolist() == [0.0, 0.0, 1.0]
    m.fit(seqs)
    (sb,) = list(m._batches(seqs))
    assert sb.times.tolist() == [[5.0, 6.0, 9.0], [0.0, 1.0, 4.0]]


# ---------------------------------------------------------------- the losses


def _loss_batch(m):
    seqs, _ = cycles()
    t = torch.from_numpy(tokens(seqs.take(np.arange(6)), m.config.max_len + 1))
    t[0, :4] = 0  # a short history: padded positions have no target
    return SeqBatch(t[:, :-1], t[:, 1:])


def _ctx(seed, X=None):
    g = torch.Generator().manual_seed(seed)
    return StepContext(0, 0, None, g, torch.device("cpu"), "fp32", X)  # type: ignore[arg-type]


@pytest.mark.parametrize("shared", [False, True])
def test_sampled_softmax_loss_equals_a_direct_computation(shared):
    m, _ = fitted(dropout=0.0, block_dropout=0.0, shared_negatives=shared)
    batch = _loss_batch(m)
    got = float(m.train_step(batch, _ctx(5))["loss"].detach())
    with torch.no_grad():
        h = m.module_(batch.inputs)  # no dropout drawn: the generator only draws negatives
        K = m.config.n_negatives
        at = (batch.targets != 0) & (batch.inputs != 0)  # real inputs with a next item
        N = int(at.sum())
        g = torch.Generator().manual_seed(5)
        neg = torch.randint(m.n_items_, (K,) if shared else (N, K), generator=g)
        emb = m.module_.item_emb.weight
        tau = m.config.temperature
        losses, n = [], 0
        for b in range(len(h)):
            for i in range(h.shape[1]):
                target = int(batch.targets[b, i])
                if not at[b, i]:
                    continue
                u = h[b, i].double()
                cos = [
                    float(u @ emb[j + 1].double() / emb[j + 1].double().norm())
                    for j in [target - 1, *(neg if shared else neg[n]).tolist()]
                ]
                terms = [math.exp(cos[0] / tau)]
                terms += [
                    math.exp(c / tau)
                    for j, c in zip((neg if shared else neg[n]).tolist(), cos[1:])
                    if j != target - 1  # an accidental hit is not a negative
                ]
                losses.append(-math.log(terms[0] / sum(terms)))
                n += 1
    assert n == N
    assert got == pytest.approx(float(np.mean(losses)), rel=1e-5)


def test_full_softmax_loss_equals_a_direct_computation():
    m, _ = fitted(dropout=0.0, block_dropout=0.0, loss="ce")
    batch = _loss_batch(m)
    got = float(m.train_step(batch, _ctx(0))["loss"].detach())
    with torch.no_grad():
        h = m.module_(batch.inputs).double()
        E = m.module_.item_emb.weight[1:].double()
        E = E / E.norm(dim=1, keepdim=True)
        losses = []
        at = (batch.targets != 0) & (batch.inputs != 0)  # real inputs with a next item
        assert int(at.sum()) < int((batch.targets != 0).sum())  # a target at padding left out
        for b, i in zip(*np.nonzero(at.numpy())):
            logits = (E @ h[b, i]) / m.config.temperature
            losses.append(float(torch.logsumexp(logits, 0) - logits[batch.targets[b, i] - 1]))
    assert got == pytest.approx(float(np.mean(losses)), rel=1e-5)


# ---------------------------------------------------------------- the model


def test_resume_to_4_epochs_equals_4_epochs_straight(tmp_path):
    seqs, _ = cycles()
    kw = dict(length_pool=2, train={"epochs": 4, "batch_size": 4})
    full = tiny(**kw).fit(seqs, context=FitContext(run_dir=tmp_path / "a"))
    tiny(length_pool=2, train={"epochs": 2, "batch_size": 4}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "b")
    )
    resumed = tiny(**kw).fit(seqs, context=FitContext(run_dir=tmp_path / "b", resume=True))
    a, b = full.module_.state_dict(), resumed.module_.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fold_in_of_an_ordered_list_equals_the_training_user():
    m, seqs = fitted()
    users = np.arange(5)
    lists = [seqs.row(u).tolist() for u in users]
    as_training = m.score(users, seqs.take(users)).numpy()
    folded = m.score(None, lists).numpy()  # plain lists of item indices, oldest first
    np.testing.assert_array_equal(as_training, folded)


def test_a_long_history_keeps_its_most_recent_items():
    m, _ = fitted()
    long = [list(range(20)) + [3, 4, 5, 6, 7, 8, 9, 10]]  # 28 items, max_len 8
    recent = [long[0][-8:]]
    np.testing.assert_array_equal(m.score(None, long).numpy(), m.score(None, recent).numpy())
    assert not np.allclose(m.score(None, long).numpy(), m.score(None, [long[0][-7:]]).numpy())


def test_scores_are_cosines_against_the_item_table():
    m, seqs = fitted()
    s = m.score(None, seqs.take([0, 1])).numpy()
    assert np.abs(s).max() <= 1.0 + 1e-5
    np.testing.assert_allclose(np.linalg.norm(m.item_embeddings(), axis=1), 1.0, rtol=1e-5)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="loss"):
        HSTU(loss="bce")
    with pytest.raises(ConfigError, match="temperature"):
        HSTU(temperature=0.0)
    with pytest.raises(ConfigError, match="max_len"):
        HSTU(max_len=0)

"""SASRec: causality, padding, the four losses against direct computations, negatives,
exact resume, fold-in and long histories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec.data import Sequences
from genrec.errors import ConfigError
from genrec.models import SASRec
from genrec.models.sasrec import (
    SASRecConfig,
    SASRecNet,
    attention,
    bce_negatives,
    causal_mask,
    next_item_loss,
    target_positions,
)
from genrec.models.sequential import SeqBatch, trim_padding
from genrec.testing.sequential import cycles
from genrec.train import FitContext, Phase, StepContext

N_ITEMS = 30


def _net(norm: str = "pre", n_heads: int = 1, **kw) -> SASRecNet:
    if norm == "bert":  # the BERT-style block (post-LN), 4x feed-forward width
        norm, kw = "post", {"block": "bert", "ffn_dim": 32, **kw}
    c = SASRecConfig(dim=8, n_heads=n_heads, max_len=6, norm=norm, **kw)
    return SASRecNet(N_ITEMS, c, torch.Generator().manual_seed(0)).eval()


def _tokens(rows: list[list[int]], L: int) -> torch.Tensor:
    """Left-padded token windows (item + 1, 0 = padding)."""
    out = torch.zeros(len(rows), L, dtype=torch.int64)
    for b, r in enumerate(rows):
        if r:
            out[b, L - len(r) :] = torch.tensor(r) + 1
    return out


def _model(**kw) -> SASRec:
    train = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "device": "cpu", **kw.pop("train", {})}
    return SASRec(
        **{"dim": 8, "max_len": 5, "dropout": 0.2, "attn_dropout": 0.2, **kw}, train=train
    )


# ----------------------------------------------------------------------------- the network
@pytest.mark.parametrize("norm, heads", [("pre", 1), ("post", 1), ("pre", 2), ("bert", 2)])
def test_changing_later_items_changes_no_earlier_output(norm, heads):
    net = _net(norm, heads)
    a = _tokens([[1, 2, 3, 4, 5, 6], [7, 8, 9]], 6)
    b = a.clone()
    b[:, 4:] = torch.tensor([[20, 21], [22, 23]])  # positions 4 and 5 changed
    with torch.no_grad():
        ha, hb = net(a), net(b)  # (2, 6, 8)
    torch.testing.assert_close(ha[:, :4], hb[:, :4], rtol=0, atol=0)
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])


@pytest.mark.parametrize("norm", ["pre", "post", "bert"])
def test_left_padding_does_not_change_the_last_output(norm):
    net = _net(norm)
    rows = [[3, 1, 4], [1, 5, 9, 2, 6], []]
    with torch.no_grad():
        full = net(_tokens(rows, 6))[:, -1]  # (3, D)
        short = net(_tokens(rows[:2], 5))[:, -1]  # one padding column fewer
        alone = torch.cat([net(_tokens([r], 6))[:, -1] for r in rows])  # no batch neighbours
    torch.testing.assert_close(full[:2], short, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(full, alone, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(full[2]).all()  # an empty window stays finite


@pytest.mark.parametrize(
    "norm, heads, blocks", [("pre", 1, 2), ("post", 2, 2), ("pre", 2, 1), ("bert", 2, 2)]
)
def test_the_last_query_alone_equals_the_last_position_of_the_full_pass(norm, heads, blocks):
    net = _net(norm, heads, n_blocks=blocks)
    x = _tokens([[3, 1, 4], [1, 5, 9, 2, 6, 5], [], [7]], 6)
    with torch.no_grad():
        full, last = net(x)[:, -1], net(x, last_only=True)  # (4, D), (4, 1, D)
    assert last.shape == (4, 1, 8)
    torch.testing.assert_close(last[:, 0], full, rtol=1e-6, atol=1e-6)
    model = _model(n_heads=heads, n_blocks=blocks)
    model.module_ = net
    torch.testing.assert_close(model._last_hidden(x, None), full, rtol=1e-6, atol=1e-6)


def test_causal_mask_allows_earlier_items_and_the_query_itself():
    keep = torch.tensor([[False, False, True, True]])
    m = causal_mask(keep)[0]
    want = torch.tensor(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool
    )  # padding queries see only themselves; items see the items up to them
    assert torch.equal(m, want)


def _attention_brute(q, k, v, allowed):
    B, H, L, d = q.shape
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                js = [j for j in range(L) if allowed[b, i, j]]
                s = torch.tensor([float(q[b, h, i] @ k[b, h, j]) / math.sqrt(d) for j in js])
                w = torch.exp(s - s.max())
                w = w / w.sum()
                out[b, h, i] = sum(w[n] * v[b, h, j] for n, j in enumerate(js))
    return out


def test_attention_paths_equal_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 4, 3, generator=g) for _ in range(3))
    allowed = causal_mask(torch.tensor([[False, True, True, True], [True, False, True, True]]))
    want = _attention_brute(q, k, v, allowed)
    torch.testing.assert_close(attention(q, k, v, allowed), want, rtol=1e-5, atol=1e-6)
    # the explicit path (used for attention dropout), with a rate too small to drop anything
    explicit = attention(q, k, v, allowed, p=1e-12, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(explicit, want, rtol=1e-5, atol=1e-6)


def test_attention_dropout_draws_from_the_generator():
    q, k, v = (
        torch.randn(1, 1, 5, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    allowed = causal_mask(torch.ones(1, 5, dtype=torch.bool))
    a = attention(q, k, v, allowed, 0.5, torch.Generator().manual_seed(7))
    b = attention(q, k, v, allowed, 0.5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, attention(q, k, v, allowed))


def test_padding_embedding_and_embedding_scale():
    net = _net()
    assert torch.equal(net.item_emb.weight[0], torch.zeros(8))
    x = _tokens([[4]], 6)
    ref = SASRecNet(N_ITEMS, SASRecConfig(dim=8, max_len=6), torch.Generator().manual_seed(0))
    assert torch.equal(ref.item_emb.weight, net.item_emb.weight)  # the seed draws the weights
    with torch.no_grad():  # the item embedding enters scaled by sqrt(D): zero the blocks' input
        e = net.item_emb(x)[0, -1] * math.sqrt(8) + net.pos_emb.weight[-1]
        net.blocks = torch.nn.ModuleList()
        torch.testing.assert_close(net(x)[0, -1], net.final_norm(e))


# ----------------------------------------------------------------------------- losses
def _loss_brute(hidden, inputs, targets, E, loss, neg, beta):
    """Mean over the positions with an input item and a target, one position at a time."""
    total, n, row = 0.0, 0, 0
    for b in range(inputs.shape[0]):
        for pos in range(inputs.shape[1]):
            if inputs[b, pos] == 0 or targets[b, pos] == 0:
                continue
            h, t = hidden[b, pos].double(), int(targets[b, pos]) - 1
            s = (E.double() @ h).tolist()  # every item's score
            if loss == "ce":
                z = max(s)
                total += -(s[t] - z - math.log(sum(math.exp(x - z) for x in s)))
            elif loss == "bce":
                j = int(neg[row])
                total += -math.log(1 / (1 + math.exp(-s[t]))) - math.log(
                    1 - 1 / (1 + math.exp(-s[j]))
                )
            else:
                others = [s[int(j)] for j in neg[row] if int(j) != t]  # accidental hits out
                if loss == "sampled_softmax":
                    total += -s[t] + math.log(math.exp(s[t]) + sum(math.exp(x) for x in others))
                else:
                    total += -beta * math.log(1 / (1 + math.exp(-s[t]))) - sum(
                        math.log(1 - 1 / (1 + math.exp(-x))) for x in others
                    )
            n, row = n + 1, row + 1
    return total / n


def _loss_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    window = _tokens([[1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 11], [12]], 7)  # (4, L + 1)
    inputs, targets = window[:, :-1], window[:, 1:]
    hidden = torch.randn(4, 6, 5, generator=g)
    E = torch.randn(N_ITEMS, 5, generator=g) * 0.5
    return inputs, targets, hidden, E, g


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_softmax", "gbce"])
def test_each_loss_equals_a_direct_computation(loss):
    inputs, targets, hidden, E, g = _loss_batch()
    h, t, has = target_positions(hidden, inputs, targets)
    assert len(t) == 5 + 2 + 1  # each history's first item has no target; [12] none at all
    K = 6
    neg = None
    if loss == "bce":
        neg = torch.randint(N_ITEMS, (len(t),), generator=g)
    elif loss != "ce":
        neg = torch.randint(N_ITEMS, (len(t), K), generator=g)
        neg[0, 0] = t[0]  # an accidental hit, left out
    I_minus_1 = N_ITEMS - 1
    alpha = K / I_minus_1
    beta = alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)  # gSASRec's beta for t = 0.75
    got = next_item_loss(h, E, t, loss, neg, beta)
    want = _loss_brute(hidden, inputs, targets, E, loss, neg, beta)
    assert float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_softmax", "gbce"])
def test_the_loss_ignores_padding_positions(loss):
    inputs, targets, hidden, E, g = _loss_batch()
    h, t, has = target_positions(hidden, inputs, targets)
    neg = None if loss == "ce" else torch.randint(N_ITEMS, (len(t),) + ((3,) * (loss != "bce")))
    other = hidden.clone()
    other[~has] = torch.randn(int((~has).sum()), 5) * 100  # padding and first-item positions
    h2, t2, _ = target_positions(other, inputs, targets)
    a = next_item_loss(h, E, t, loss, neg, 0.5)
    assert torch.equal(a, next_item_loss(h2, E, t2, loss, neg, 0.5))
    # leading all-padding columns are trimmed and change nothing
    wide_in = torch.cat([torch.zeros(4, 3, dtype=torch.int64), inputs], 1)
    wide_t = torch.cat([torch.zeros(4, 3, dtype=torch.int64), targets], 1)
    i2, t3 = trim_padding(wide_in, wide_t)
    i1, t1 = trim_padding(inputs, targets)
    assert torch.equal(i2, i1) and torch.equal(t3, t1)
    assert i1.shape[1] == 5 and (i1[:, 0] != 0).any()  # up to the first column with an item


def test_train_step_ce_equals_a_direct_computation():
    seqs, _ = cycles(users_per_group=4)
    m = _model(loss="ce", dropout=0.0, attn_dropout=0.0, train={"epochs": 1}).fit(seqs)
    window = _tokens([seqs.row(u).tolist() for u in range(5)], 6)
    batch = SeqBatch(window[:, :-1], window[:, 1:])
    ctx = StepContext(0, 0, Phase(), torch.Generator(), torch.device("cpu"), "fp32", seqs)
    m.module_.train()
    got = m.train_step(batch, ctx)["loss"].detach()
    with torch.no_grad():
        hidden = m.module_(batch.inputs)  # no dropout: the same states
    E = m.module_.item_table().detach()
    want = _loss_brute(hidden, batch.inputs, batch.targets, E, "ce", None, 1.0)
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_bce_negatives_avoid_the_window_and_are_uniform_over_the_rest():
    window = _tokens([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], 6).repeat(200, 1)  # (400, 6)
    neg = bce_negatives(window, 20, torch.Generator().manual_seed(0))  # (400, 5)
    assert neg.shape == (400, 5)
    first, second = neg[0::2].reshape(-1), neg[1::2].reshape(-1)
    assert not torch.isin(first, torch.arange(5)).any()
    assert not torch.isin(second, torch.arange(5, 10)).any()
    counts = torch.bincount(first, minlength=20)[5:]  # 1000 draws over 15 items: ~67 each
    assert counts.min() > 35 and counts.max() < 100, counts.tolist()
    # without redraws the window's items are drawn as often as the others
    plain = bce_negatives(window, 20, torch.Generator().manual_seed(0), rounds=0)
    assert torch.isin(plain[0::2], torch.arange(5)).float().mean() > 0.15


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("loss", ["bce", "sampled_softmax", "gbce"])
def test_each_loss_learns_the_cycles(loss):
    seqs, nxt = cycles()
    m = SASRec(
        dim=16,
        max_len=8,
        loss=loss,
        n_negatives=8,
        dropout=0.1,
        attn_dropout=0.1,
        train={"epochs": 30, "batch_size": 8, "lr": 1e-2, "device": "cpu"},
    ).fit(seqs)
    items, _ = m.recommend(None, seqs, k=1)
    assert (items[:, 0] == nxt).mean() >= 0.9


def test_resume_equals_the_straight_run(tmp_path):
    seqs, _ = cycles(users_per_group=8)
    straight = _model(train={"epochs": 4}).fit(seqs)
    _model(train={"epochs": 2}).fit(seqs, context=FitContext(run_dir=tmp_path))
    resumed = _model(train={"epochs": 4}).fit(
        seqs, context=FitContext(run_dir=tmp_path, resume=True)
    )
    for (k, a), (_, b) in zip(
        straight.module_.state_dict().items(), resumed.module_.state_dict().items()
    ):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(
        straight.score(None, seqs).numpy(), resumed.score(None, seqs).numpy()
    )


def test_fold_in_of_a_list_equals_scoring_the_training_user():
    seqs, _ = cycles(users_per_group=4)
    m = _model().fit(seqs)
    u = 3
    as_user = m.score(np.array([u]), seqs.take([u])).numpy()
    folded = m.score(None, [seqs.row(u).tolist()]).numpy()
    np.testing.assert_array_equal(as_user, folded)


def test_a_long_history_keeps_its_most_recent_items():
    seqs, _ = cycles(users_per_group=4)
    m = _model().fit(seqs)  # max_len 5
    long = [0, 1, 2, 3, 4, 5, 6, 7, 8]
    s = m.score(None, [long]).numpy()
    np.testing.assert_array_equal(s, m.score(None, [long[-5:]]).numpy())
    assert not np.allclose(s, m.score(None, [long[:5]]).numpy())


def test_adam_beta2_reaches_the_optimizer():
    seqs, _ = cycles(users_per_group=4)
    m = _model(adam_beta2=0.9, train={"epochs": 1}).fit(seqs)
    opt = m.build_optimizers(m.config.train)["main"]
    assert opt.param_groups[0]["betas"] == (0.9, 0.9)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="dim .*n_heads"):
        SASRec(dim=10, n_heads=3)
    with pytest.raises(ConfigError, match="loss"):
        SASRec(loss="bpr")
    with pytest.raises(ConfigError, match="dropout"):
        SASRec(dropout=1.0)
    with pytest.raises(ConfigError, match='block = "bert" is the post-LN block: set norm'):
        SASRec(block="bert")


def _bert_brute(net: SASRecNet, x: torch.Tensor) -> torch.Tensor:
    """The BERT-style network of the S3-Rec authors' code, written out: LN(E[s] + P), then per
    block LN(h + W_o MHA(h)) and LN(a + W_2 GELU(W_1 a)); one row, no padding."""

    def ln(v, mod):
        return torch.nn.functional.layer_norm(v, (v.shape[-1],), mod.weight, mod.bias, 1e-12)

    L = x.shape[0]
    h = ln(net.item_emb.weight[x] + net.pos_emb.weight[net.max_len - L :], net.emb_norm)
    for b in net.blocks:
        D, H = h.shape[1], b.n_heads
        q, k, v = (h @ w.T + bias for w, bias in zip(b.qkv.weight.split(D), b.qkv.bias.split(D)))
        heads = []
        for j in range(H):
            sl = slice(j * D // H, (j + 1) * D // H)
            w = q[:, sl] @ k[:, sl].T / math.sqrt(D // H)
            w = w.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
            heads.append(w.softmax(-1) @ v[:, sl])
        a = ln(h + b.out(torch.cat(heads, dim=1)), b.attn_norm)
        h = ln(a + b.ffn2(torch.nn.functional.gelu(b.ffn1(a))), b.ffn_norm)
    return h


def test_the_bert_block_equals_a_direct_computation():
    net = _net("bert", 2)
    x = torch.tensor([3, 1, 4, 1, 5, 9])
    with torch.no_grad():
        torch.testing.assert_close(net(x[None] + 1)[0], _bert_brute(net, x + 1))
    assert net.emb_norm is not None and net.final_norm is None
    w = net.item_emb.weight[1:]  # N(0, 0.02^2) weights, not Xavier's
    assert abs(float(w.detach().std()) - 0.02) < 0.005 and net.scale == 1.0


def test_saved_arrays_match_the_state_dict():
    for norm, kw in (("pre", {}), ("post", {}), ("post", {"block": "bert", "ffn_dim": 12})):
        c = SASRecConfig(dim=8, n_blocks=3, max_len=4, norm=norm, **kw)
        net = SASRecNet(N_ITEMS, c, torch.Generator().manual_seed(0))
        specs = SASRecNet.arrays(N_ITEMS, c)
        state = net.state_dict()
        assert set(specs) == set(state)
        for k, spec in specs.items():
            assert tuple(state[k].shape) == spec.shape, k


def test_sequences_are_required():
    seqs, _ = cycles(users_per_group=4)
    with pytest.raises(ConfigError, match="Sequences"):
        _model().fit(seqs.to_csr())
    assert isinstance(seqs, Sequences)

"""BERT4Rec: the masking rule, the encoder against a per-head reference written out, the
[MASK] output reading the whole window and not the padding, the loss against a direct
computation, the scoring window, resume, fold-in, long histories."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from genrec.data import Sequences
from genrec.errors import ConfigError
from genrec.models import BERT4Rec
from genrec.models.bert4rec import mask_windows, n_masked
from genrec.models.sequential import SeqBatch
from genrec.testing.sequential import cycles
from genrec.train import BatchContext, FitContext, Phase, StepContext

N_ITEMS = 13
L = 7


def _data(seed: int = 0, n_users: int = 20) -> Sequences:
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, N_ITEMS, rng.integers(2, 10)).tolist() for _ in range(n_users)]
    return Sequences.from_lists(lists, N_ITEMS)


def _fitted(**kw) -> BERT4Rec:
    cfg = dict(max_len=L, hidden_dim=8, n_heads=2, ffn_dim=12, n_layers=2, init_std=0.3)
    cfg.update(kw)
    return BERT4Rec(**cfg, train={"epochs": 1, "batch_size": 8, "device": "cpu"}).fit(_data())


def _ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight.double() + norm.bias.double()


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _lin(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return x @ layer.weight.double().T + layer.bias.double()


def _encode_by_hand(m: BERT4Rec, window: list[int]) -> torch.Tensor:
    """Encoder outputs (L, D) of one token window, head by head, over the full width: the
    reference for the batched, trimmed forward."""
    net = m.module_
    t = torch.tensor(window)
    keys = t != 0
    x = _ln(net.tok.double()[t] + net.pos.double()[: len(t)], net.emb_norm)
    for blk in net.blocks:
        D = x.shape[1]
        h = blk.n_heads
        q, k, v = _lin(x, blk.qkv).split(D, dim=1)
        heads = []
        for i in range(h):
            sl = slice(i * D // h, (i + 1) * D // h)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(D // h)  # (L, L)
            s[:, ~keys] = -math.inf
            heads.append(torch.softmax(s, 1) @ v[:, sl])
        x = _ln(x + _lin(torch.cat(heads, 1), blk.proj), blk.norm1)
        x = _ln(x + _lin(_gelu(_lin(x, blk.ff1)), blk.ff2), blk.norm2)
    return x


def _predict_by_hand(m: BERT4Rec, x: torch.Tensor) -> torch.Tensor:
    net = m.module_
    return _ln(_gelu(_lin(x, net.head)), net.head_norm)


def _window(items: list[int], width: int, mask: bool = False) -> list[int]:
    toks = [i + 1 for i in items][-(width - mask) :] + ([N_ITEMS + 1] if mask else [])
    return [0] * (width - len(toks)) + toks


# ------------------------------------------------------------------------- masking
def test_n_masked_is_round_n_rho_at_least_one_at_most_the_cap():
    n = torch.arange(0, 60)
    for rho, cap in [(0.6, 30), (0.2, 5), (1.0, 100), (0.25, 30)]:
        want = [min(cap, max(1, round(int(v) * rho))) for v in n]
        assert n_masked(n, rho, cap).tolist() == want


def test_mask_windows_masks_the_rule_s_count_of_real_positions():
    g = torch.Generator().manual_seed(0)
    lengths = [1, 2, 5, 7, 7, 3]
    t = torch.tensor([_window(list(range(n)), L) for n in lengths])
    mask = N_ITEMS + 1
    for _ in range(20):
        inputs, targets = mask_windows(t, mask, 0.6, 3, 0.0, g)
        masked = inputs == mask
        assert torch.equal(masked, targets != 0)
        assert torch.equal(targets[masked], t[masked])  # the target is the hidden item
        assert torch.equal(inputs[~masked], t[~masked])  # the rest is left as it is
        assert not masked[t == 0].any()  # padding is never masked
        assert masked.sum(1).tolist() == [min(3, max(1, round(n * 0.6))) for n in lengths]


def test_mask_windows_draws_positions_uniformly_and_reproducibly():
    t = torch.tensor([_window([0, 1, 2, 3, 4], L)] * 4000)
    a = mask_windows(t, 99, 0.4, 30, 0.0, torch.Generator().manual_seed(1))
    b = mask_windows(t, 99, 0.4, 30, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    freq = (a[0] == 99).double().mean(0)[2:]  # each of 5 items masked with prob 2 / 5
    torch.testing.assert_close(freq, torch.full((5,), 0.4, dtype=torch.float64), atol=0.03, rtol=0)


def test_last_only_windows_mask_exactly_the_last_item():
    t = torch.tensor([_window([3, 1, 4, 1], L)] * 50)
    inputs, targets = mask_windows(t, 99, 0.6, 30, 1.0, torch.Generator())
    assert (targets[:, :-1] == 0).all() and torch.equal(targets[:, -1], t[:, -1])
    _, part = mask_windows(t, 99, 0.6, 30, 0.5, torch.Generator().manual_seed(0))
    only_last = ((part != 0).sum(1) == 1) & (part[:, -1] != 0)
    assert 0 < only_last.sum() < 50


def test_the_batches_hook_is_reproducible_from_the_generator():
    m = _fitted()
    seqs = _data()

    def draw(seed: int) -> list[torch.Tensor]:
        ctx = BatchContext(torch.Generator().manual_seed(seed), 8, torch.device("cpu"), 0)
        return [b.inputs for b in m.batches(seqs, ctx)]

    a, b, c = draw(0), draw(0), draw(1)
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


# ------------------------------------------------------------------------- network
def test_encoder_equals_the_per_head_reference():
    m = _fitted()
    windows = [_window([3, 1, 4, 1, 5], L, mask=True), _window([2, 7], L, mask=True)]
    with torch.no_grad():
        got = m._hidden(torch.tensor(windows)).double()  # (2, L, D)
    for b, w in enumerate(windows):
        real = torch.tensor(w) != 0
        want = _encode_by_hand(m, w)
        torch.testing.assert_close(got[b][real], want[real], rtol=1e-5, atol=1e-5)
        assert (got[b][~real] == 0).all()


def test_mask_output_reads_every_position_of_the_window():
    m = _fitted()
    base = [3, 1, 4, 1, 5, 9]
    with torch.no_grad():
        h0 = m._hidden(torch.tensor([_window(base, L, mask=True)]))[0, -1]
        for j in range(len(base)):
            other = base.copy()
            other[j] = 12
            h = m._hidden(torch.tensor([_window(other, L, mask=True)]))[0, -1]
            assert not torch.allclose(h, h0, atol=1e-6), f"position {j} is not read"


def test_padding_keys_change_no_output():
    m = _fitted()
    w = torch.tensor([_window([2, 7, 5], L, mask=True)])
    with torch.no_grad():
        h = m._hidden(w)[0]
        m.module_.tok[0] += 5.0  # whatever the padding embeds, it is never attended to
        h2 = m._hidden(w)[0]
        wide = m._hidden(torch.cat([w, torch.tensor([_window(list(range(8)), L, True)])]))[0]
    real = w[0] != 0
    torch.testing.assert_close(h2[real], h[real], rtol=0, atol=1e-6)
    torch.testing.assert_close(wide[real], h[real], rtol=1e-5, atol=1e-6)  # not trimmed


def test_loss_equals_the_cross_entropy_at_the_masked_positions():
    m = _fitted()
    m.module_.bias.data.normal_(0, 1, generator=torch.Generator().manual_seed(2))
    mk = N_ITEMS + 1
    inputs = torch.tensor([[0, 0, 4, mk, 2, mk, 6], [0, 0, 0, 0, 0, 3, mk]])
    targets = torch.tensor([[0, 0, 0, 9, 0, 1, 0], [0, 0, 0, 0, 0, 0, 13]])
    ctx = StepContext(0, 0, Phase(), torch.Generator(), torch.device("cpu"), "fp32", None)
    m.config = dataclasses.replace(m.config, dropout=0.0, attention_dropout=0.0)
    loss = m.train_step(SeqBatch(inputs, targets), ctx)["loss"]
    E, bias = m.module_.tok.double()[1 : N_ITEMS + 1], m.module_.bias.double()
    terms = []
    for b in range(2):
        z = _predict_by_hand(m, _encode_by_hand(m, inputs[b].tolist()))  # (L, D)
        for j in torch.nonzero(targets[b]).flatten().tolist():
            logits = E @ z[j] + bias
            terms.append(torch.logsumexp(logits, 0) - logits[targets[b, j] - 1])
    assert len(terms) == 3
    torch.testing.assert_close(loss.double(), torch.stack(terms).mean(), rtol=1e-5, atol=1e-5)


def test_scores_read_the_last_items_then_mask():
    m = _fitted()
    items = [5, 6, 7, 8, 9, 10, 11, 0, 1, 2]  # longer than max_len: the last L - 1 are kept
    s = m.score(None, [items])[0].double()
    z = _predict_by_hand(m, _encode_by_hand(m, _window(items, L, mask=True)))[-1]
    E, bias = m.module_.tok.double()[1 : N_ITEMS + 1], m.module_.bias.double()
    torch.testing.assert_close(s, E @ z + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        m.score(None, [items]).numpy(), m.score(None, [items[-(L - 1) :]]).numpy(), atol=1e-6
    )
    assert not np.allclose(m.score(None, [items]).numpy(), m.score(None, [items[-4:]]).numpy())


def test_fold_in_of_an_ordered_list_equals_the_training_user():
    m = _fitted()
    seqs = _data()
    users = np.arange(seqs.n_users)
    np.testing.assert_allclose(
        m.score(users, seqs).numpy(),
        m.score(None, [seqs.row(u).tolist() for u in users]).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )


def test_config_checks_heads_divide_the_width():
    with pytest.raises(ConfigError, match="n_heads"):
        BERT4Rec(hidden_dim=10, n_heads=3)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    seqs, _ = cycles(users_per_group=6)
    cfg = dict(max_len=6, hidden_dim=8, ffn_dim=8, n_layers=1)
    train = {"batch_size": 4, "device": "cpu"}
    full = BERT4Rec(**cfg, train={**train, "epochs": 4}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "a")
    )
    BERT4Rec(**cfg, train={**train, "epochs": 2}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "b")
    )
    resumed = BERT4Rec(**cfg, train={**train, "epochs": 4}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "b", resume=True)
    )
    a, b = full.module_.state_dict(), resumed.module_.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

"""GRU4Rec: the alignment helpers, the recurrence against the GRU equations written out,
causality, padding, the loss against a direct computation, resume, fold-in, long histories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.data import Sequences
from genrec.errors import ConfigError
from genrec.models import GRU4Rec
from genrec.models.gru4rec import left_align, right_align
from genrec.models.seq_losses import with_bias
from genrec.models.sequential import SeqBatch
from genrec.testing.sequential import cycles
from genrec.train import FitContext, Phase, StepContext

N_ITEMS = 11


def _data(seed: int = 0, n_users: int = 20) -> Sequences:
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, N_ITEMS, rng.integers(2, 9)).tolist() for _ in range(n_users)]
    return Sequences.from_lists(lists, N_ITEMS)


def _fitted(**kw) -> GRU4Rec:
    cfg = dict(max_len=6, hidden_dim=5, embedding_dim=4, n_layers=2, dropout_hidden=0.0)
    cfg.update(kw)
    train = {"epochs": 1, "batch_size": 8, "device": "cpu", **cfg.pop("train", {})}
    return GRU4Rec(**cfg, train=train).fit(_data())


def _gru_by_hand(m: GRU4Rec, items: list[int]) -> torch.Tensor:
    """The states (n, H) after each item, from h_0 = 0, by the GRU equations (torch's gate
    order r, z, n) with the model's weights: the reference for the packed recurrence."""
    net = m.module_
    x = net.embed[torch.tensor(items) + 1].double()  # (n, E)
    for gru in net.grus:
        W, U = gru.weight_ih_l0.double(), gru.weight_hh_l0.double()
        b, c = gru.bias_ih_l0.double(), gru.bias_hh_l0.double()
        H = U.shape[1]
        h = torch.zeros(H, dtype=torch.float64)
        out = []
        for t in range(len(x)):
            gi, gh = W @ x[t] + b, U @ h + c  # (3H,), (3H,)
            r = torch.sigmoid(gi[:H] + gh[:H])
            z = torch.sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
            n = torch.tanh(gi[2 * H :] + r * gh[2 * H :])
            h = (1 - z) * n + z * h  # torch's z keeps the old state
            out.append(h)
        x = torch.stack(out)  # (n, H), the next layer's input
    return x


def _window(items: list[int], L: int) -> torch.Tensor:
    return torch.tensor([[0] * (L - len(items)) + [i + 1 for i in items]])  # (1, L)


def test_right_and_left_align_move_the_real_entries_and_invert_each_other():
    x = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 7]])
    n = torch.tensor([2, 4, 0, 1])
    r = right_align(x, n)
    for b in range(4):
        real = x[b, 4 - n[b] :].tolist()
        assert r[b, : n[b]].tolist() == real
    assert torch.equal(left_align(r, n), x)
    x3 = torch.arange(4 * 4 * 2).view(4, 4, 2)  # trailing dimensions move along
    assert torch.equal(left_align(right_align(x3, n), n), x3)


def test_hidden_states_equal_the_gru_equations_from_the_first_item():
    m = _fitted()
    items = [3, 1, 4, 1, 5]
    with torch.no_grad():
        got = m._hidden(_window(items, 6))[0].double()  # (L, H)
    want = _gru_by_hand(m, items)
    torch.testing.assert_close(got[1:], want, rtol=1e-5, atol=1e-6)
    assert torch.equal(got[0], torch.zeros_like(got[0]))  # the padding position


def test_padding_in_front_changes_no_state():
    m = _fitted()
    items = [2, 7, 7, 0]
    with torch.no_grad():
        short = m.module_(_window(items, 4))[0]
        long = m.module_(_window(items, 30))[0]
        batch = m.module_(torch.cat([_window(items, 6), _window([1, 2, 3, 4, 5, 6], 6)]))
    torch.testing.assert_close(long[-4:], short, rtol=0, atol=1e-6)
    torch.testing.assert_close(batch[0, -4:], short, rtol=0, atol=1e-6)


def test_causal_later_items_change_no_earlier_state():
    m = _fitted()
    a, b = [1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 0, 10]
    with torch.no_grad():
        ha, hb = m._hidden(_window(a, 6))[0], m._hidden(_window(b, 6))[0]
    torch.testing.assert_close(ha[:3], hb[:3], rtol=0, atol=1e-7)
    assert not torch.allclose(ha[3:], hb[3:])


def test_loss_equals_the_cross_entropy_computed_directly():
    m = _fitted(output_bias=True)
    m.module_.bias.data.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8], [9, 0]]
    L = 6
    inputs = torch.cat([_window(s[:-1], L) for s in seqs])
    targets = torch.cat([_window(s[1:], L) for s in seqs])
    ctx = StepContext(0, 0, Phase(), torch.Generator(), torch.device("cpu"), "fp32", None)
    loss = m.train_step(SeqBatch(inputs, targets), ctx)["loss"]
    table = m.module_.out.double()
    bias = m.module_.bias.double()
    terms = []
    for s in seqs:
        h = _gru_by_hand(m, s[:-1])  # (n - 1, H)
        for t, nxt in enumerate(s[1:]):
            logits = table @ h[t] + bias  # (I,)
            terms.append(torch.logsumexp(logits, 0) - logits[nxt])
    torch.testing.assert_close(loss.double(), torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


def test_with_bias_adds_the_bias_to_every_score():
    g = torch.Generator().manual_seed(0)
    h, E, b = torch.randn(4, 3, generator=g), torch.randn(6, 3, generator=g), torch.randn(6)
    h2, E2 = with_bias(h, E, b)
    torch.testing.assert_close(h2 @ E2.T, h @ E.T + b)
    assert with_bias(h, E, None) == (h, E)


def test_scores_are_the_last_state_against_the_table_plus_bias_and_empty_gets_the_bias():
    m = _fitted()
    items = [4, 4, 2]
    s = m.score(None, [items])[0].double()
    h = _gru_by_hand(m, items)[-1]
    torch.testing.assert_close(s, m.module_.out.double() @ h + m.module_.bias.double())
    empty = m.score(None, Sequences(np.zeros(2, np.int64), np.zeros(0, np.int64), N_ITEMS))
    torch.testing.assert_close(empty[0], m.module_.bias.detach())


def test_a_history_longer_than_max_len_keeps_its_most_recent_items():
    m = _fitted()
    long = [5, 6, 7, 8, 9, 10, 1, 2, 3, 4]
    np.testing.assert_allclose(
        m.score(None, [long]).numpy(), m.score(None, [long[-6:]]).numpy(), rtol=0, atol=1e-6
    )
    assert not np.allclose(m.score(None, [long]).numpy(), m.score(None, [long[-5:]]).numpy())


def test_fold_in_of_an_ordered_list_equals_the_training_user():
    m = _fitted()
    seqs = _data()
    users = np.arange(seqs.n_users)
    as_training = m.score(users, seqs)
    as_lists = m.score(None, [seqs.row(u).tolist() for u in users])
    np.testing.assert_allclose(as_training.numpy(), as_lists.numpy(), rtol=1e-6, atol=1e-6)


def test_tied_output_is_the_input_embedding_and_needs_equal_widths():
    m = _fitted(tied=True, embedding_dim=5)
    assert m.module_.out is None
    np.testing.assert_array_equal(m.item_embeddings(), m.module_.embed[1:].detach().numpy())
    with pytest.raises(ConfigError, match="embedding_dim = hidden_dim"):
        GRU4Rec(tied=True, embedding_dim=4, hidden_dim=5)


def test_dropout_is_drawn_from_the_generator():
    m = _fitted()
    x = _window([1, 2, 3], 6)
    a = m.module_(x, (0.5, 0.5), torch.Generator().manual_seed(3))
    b = m.module_(x, (0.5, 0.5), torch.Generator().manual_seed(3))
    c = m.module_(x, (0.5, 0.5), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    seqs, _ = cycles(users_per_group=6)
    cfg = dict(hidden_dim=6, embedding_dim=6, dropout_embed=0.2, dropout_hidden=0.2)
    train = {"batch_size": 4, "device": "cpu"}
    full = GRU4Rec(**cfg, train={**train, "epochs": 4}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "a")
    )
    GRU4Rec(**cfg, train={**train, "epochs": 2}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "b")
    )
    resumed = GRU4Rec(**cfg, train={**train, "epochs": 4}).fit(
        seqs, context=FitContext(run_dir=tmp_path / "b", resume=True)
    )
    a, b = full.module_.state_dict(), resumed.module_.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

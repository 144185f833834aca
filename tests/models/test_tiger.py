"""TIGER: the beams against exhaustive scoring, the training examples and loss, causality,
padding, exact resume, the tokenizer paths, and the refusals of bad settings and inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genrec.data import Sequences
from genrec.errors import ConfigError, DataError
from genrec.models import TIGER, Recommender
from genrec.models.sequential import next_item_examples
from genrec.models.tiger import history_windows, user_bucket
from genrec.testing.sequential import cycles
from genrec.train import FitContext

CODES = np.stack([np.arange(24) // 6, (np.arange(24) // 2) % 3, np.arange(24) % 2], 1)


def tiny(**kw) -> TIGER:
    base = dict(
        dim=16,
        n_layers=1,
        n_heads=2,
        head_dim=8,
        ffn_dim=32,
        max_items=5,
        user_buckets=0,
        beam=24,
        dropout=0.0,
        train={"epochs": 3, "batch_size": 16, "lr": 3e-3, "device": "cpu"},
    )
    return TIGER(**{**base, **kw})


@pytest.fixture(scope="module")
def fitted() -> tuple[TIGER, Sequences]:
    seqs, _ = cycles()
    return tiny().fit(seqs, context=FitContext(side=CODES)), seqs


def exhaustive(m: TIGER, seqs: Sequences, users=None) -> torch.Tensor:
    """log p(tuple of i | history) for every item i, by teacher forcing (B, I)."""
    net = m.module_
    hist = torch.from_numpy(seqs.padded(m.config.max_items, pad=-1))
    with torch.no_grad():
        memory, mask = net.encode(net.encoder_tokens(hist, users))
        codes = net.codes  # (I, T)
        out = torch.empty(seqs.n_users, m.n_items_)
        for b in range(seqs.n_users):
            keys = net.memory_keys(memory[b : b + 1].expand(m.n_items_, -1, -1))
            logits = net.logits(
                codes[:, :-1], keys, mask[b : b + 1].expand(m.n_items_, -1)
            ).log_softmax(-1)  # (I, T, V)
            out[b] = logits.gather(2, codes[:, :, None])[..., 0].sum(1)
    return out


def test_a_beam_as_wide_as_the_catalogue_gives_exactly_the_exhaustive_scores(fitted):
    m, seqs = fitted
    part = seqs.take(np.arange(6))
    got = m.score(None, part)
    want = exhaustive(m, part)
    seen = torch.from_numpy(part.to_csr().toarray() > 0)
    torch.testing.assert_close(got[~seen], want[~seen], rtol=1e-5, atol=1e-5)
    # the beams skip the history's items: those rank below every other item
    for b in range(len(got)):
        assert bool((got[b, seen[b]] < got[b, ~seen[b]].min()).all())
    kept = TIGER(dataclasses.replace(m.config, beam_skips_history=False))
    kept.module_, kept.n_items_ = m.module_, m.n_items_
    torch.testing.assert_close(kept.score(None, part), want, rtol=1e-5, atol=1e-5)
    want = want.masked_fill(seen, -torch.inf)
    assert torch.equal(
        got.argsort(1, descending=True)[:, :5], want.argsort(1, descending=True)[:, :5]
    )


def test_a_narrow_beam_returns_its_best_items_first_and_ranks_the_rest_below(fitted):
    m, seqs = fitted
    m4 = TIGER(dataclasses.replace(m.config, beam=4))
    m4.module_, m4.n_items_ = m.module_, m.n_items_
    part = seqs.take(np.arange(6))
    s = m4.score(None, part)
    seen = torch.from_numpy(part.to_csr().toarray() > 0)
    full = exhaustive(m, part).masked_fill(seen, -torch.inf)  # the beams skip the history
    for b in range(len(s)):
        # the beams' items carry their exact tuple log-probabilities; every other item
        # (off the beams, or a history item) ranks below all of them
        beams = torch.isclose(s[b], full[b], rtol=1e-5, atol=1e-5) & ~seen[b]
        assert 1 <= int(beams.sum()) <= 4
        assert bool((s[b, ~beams] < s[b, beams].min()).all())
        assert bool(torch.isfinite(s[b, ~seen[b]]).all())
    with pytest.raises(ConfigError, match="beam"):
        m4.recommend(None, part, k=5)


def test_history_windows_are_the_last_items_before_each_target():
    seqs = Sequences.from_lists([[3, 1, 4, 1, 5, 9], [2, 6]], n_items=10)
    ends = np.array([5, 3, 7])  # user 0 before 9, user 0 before 1, user 1 before 6
    rows = np.array([0, 0, 1])
    got = history_windows(seqs, ends, rows, 3)
    np.testing.assert_array_equal(got, [[4, 1, 5], [3, 1, 4], [-1, -1, 2]])


def test_an_epoch_holds_every_next_item_once_with_its_own_history():
    seqs = Sequences.from_lists([[3, 1, 4, 1, 5], [2, 6], [7]], n_items=10)
    m = tiny(max_items=2)
    rows, ends = next_item_examples(seqs)
    assert m.batch_rows(seqs) == len(rows) == 4 + 1
    got = sorted(
        (
            int(r),
            int(seqs.items[e]),
            tuple(history_windows(seqs, np.array([e]), np.array([r]), 2)[0]),
        )
        for r, e in zip(rows, ends)
    )
    want = []
    for u in range(seqs.n_users):
        s = seqs.row(u).tolist()
        for t in range(1, len(s)):
            h = s[max(0, t - 2) : t]
            want.append((u, s[t], tuple([-1] * (2 - len(h)) + h)))
    assert got == sorted(want)


def test_the_training_loss_is_the_mean_negative_log_likelihood_per_code(fitted):
    m, seqs = fitted
    from genrec.models.sequential import SeqBatch
    from genrec.train import StepContext

    part = seqs.take(np.arange(5))
    hist = torch.from_numpy(part.padded(m.config.max_items, pad=-1))
    targets = torch.from_numpy(np.arange(5) % m.n_items_)
    ctx = StepContext(0, 0, None, torch.Generator(), torch.device("cpu"), "fp32", seqs)  # type: ignore[arg-type]
    with torch.no_grad():
        loss = float(m.train_step(SeqBatch(hist, targets, None), ctx)["loss"])
    full = exhaustive(m, part)
    want = -float(full[torch.arange(5), targets].mean()) / m.module_.T
    assert loss == pytest.approx(want, rel=1e-5)


def test_a_level_logit_reads_only_the_codes_before_it(fitted):
    m, _ = fitted
    net = m.module_
    hist = torch.tensor([[-1, 0, 1, 2, 3]])
    with torch.no_grad():
        memory, mask = net.encode(net.encoder_tokens(hist, None))
        keys = net.memory_keys(memory)
        a = net.logits(torch.tensor([[1, 0]]), keys, mask)
        b = net.logits(torch.tensor([[1, 2]]), keys, mask)
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2], b[:, 2])


def test_decoding_step_by_step_with_cached_keys_equals_the_whole_prefix(fitted):
    m, _ = fitted
    net = m.module_
    hist = torch.tensor([[-1, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    prefix = torch.tensor([[1, 0], [3, 2]])  # the first T - 1 codes of two tuples
    with torch.no_grad():
        memory, mask = net.encode(net.encoder_tokens(hist, None))
        keys = net.memory_keys(memory)
        whole = net.logits(prefix, keys, mask)  # (2, T, V)
        past = None
        for t in range(3):
            step, past = net.next_logits(prefix[:, :t], keys, mask, past)
            torch.testing.assert_close(step, whole[:, t], rtol=1e-5, atol=1e-5)


def test_left_padding_does_not_change_the_encoder_outputs(fitted):
    m, _ = fitted
    net = m.module_
    hist = torch.tensor([[-1, 5, 6], [4, 5, 6]])  # row 0 has one padding item
    with torch.no_grad():
        a, _ = net.encode(net.encoder_tokens(hist, None))
        alone, _ = net.encode(net.encoder_tokens(hist[:1, 1:], None))  # no padding at all
    T = net.T
    torch.testing.assert_close(alone[0, -2 * T :], a[0, -2 * T :], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone[0, 0], a[0, 0], rtol=1e-5, atol=1e-6)  # the user slot


def test_resume_to_4_epochs_equals_4_epochs_straight(tmp_path):
    seqs, _ = cycles()
    kw = dict(dropout=0.2, length_pool=2, train={"epochs": 4, "batch_size": 16, "device": "cpu"})
    side = FitContext(side=CODES, run_dir=tmp_path / "a")
    full = tiny(**kw).fit(seqs, context=side)
    two = {**kw, "train": {"epochs": 2, "batch_size": 16, "device": "cpu"}}
    tiny(**two).fit(seqs, context=FitContext(side=CODES, run_dir=tmp_path / "b"))
    resumed = tiny(**kw).fit(
        seqs, context=FitContext(side=CODES, run_dir=tmp_path / "b", resume=True)
    )
    a, b = full.module_.state_dict(), resumed.module_.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_user_tokens_are_hashed_buckets_and_folded_in_users_have_none():
    u = torch.arange(10_000)
    b = user_bucket(u, 37)
    assert int(b.min()) >= 0 and int(b.max()) < 37 and len(torch.unique(b)) == 37
    seqs, _ = cycles()
    m = tiny(user_buckets=7, train={"epochs": 2, "device": "cpu"}).fit(
        seqs, context=FitContext(side=CODES)
    )
    net = m.module_
    tok = net.encoder_tokens(torch.tensor([[1, 2]]), None)
    assert int(tok[0, 0]) == net.no_user
    tok = net.encoder_tokens(torch.tensor([[1, 2]]), torch.tensor([3]))
    assert int(tok[0, 0]) == net.no_user + 1 + int(user_bucket(torch.tensor([3]), 7))


def test_the_no_user_token_is_trained_when_users_have_buckets():
    seqs, _ = cycles()
    before = tiny(user_buckets=7, train={"epochs": 1, "lr": 1e-9, "device": "cpu"})
    before.fit(seqs, context=FitContext(side=CODES))
    m = tiny(user_buckets=7, train={"epochs": 3, "device": "cpu"}).fit(
        seqs, context=FitContext(side=CODES)
    )
    row = m.module_.no_user
    assert not torch.allclose(m.module_.tok.weight[row], before.module_.tok.weight[row])
    never = tiny(user_buckets=7, no_user_rate=0.0, train={"epochs": 3, "device": "cpu"})
    never.fit(seqs, context=FitContext(side=CODES))
    torch.testing.assert_close(never.module_.tok.weight[row], before.module_.tok.weight[row])


@pytest.mark.parametrize("tokenizer", ["kmeans", "rqvae"])
def test_features_are_coded_into_unique_tuples(tokenizer):
    seqs, _ = cycles()
    feats = np.random.default_rng(0).standard_normal((24, 6)).astype(np.float32)
    m = tiny(
        tokenizer=tokenizer,
        semantic={"n_levels": 2, "n_codes": 4, "hidden_dims": (8,), "code_dim": 4, "epochs": 5},
        train={"epochs": 1, "device": "cpu"},
    ).fit(seqs, context=FitContext(side=feats))
    codes = m.item_codes()
    assert codes.shape[0] == 24 and codes.shape[1] == 3
    assert len({tuple(r) for r in codes.tolist()}) == 24
    assert m.semantic_ids_ is not None and m.semantic_ids_.health["unique_after_extra_token"] == 1.0


def test_without_features_the_items_are_coded_from_their_interactions():
    seqs, _ = cycles()
    m = tiny(tokenizer="kmeans", semantic={"n_levels": 2, "n_codes": 4}, feature_dim=4)
    m.fit(seqs)
    assert len({tuple(r) for r in m.item_codes().tolist()}) == 24


def test_given_codes_that_collide_get_the_extra_token():
    seqs, _ = cycles()
    m = tiny(train={"epochs": 1, "device": "cpu"}).fit(
        seqs,
        context=FitContext(side=CODES[:, :2]),  # 12 tuples for 24 items
    )
    codes = m.item_codes()
    assert codes.shape == (24, 3) and len({tuple(r) for r in codes.tolist()}) == 24


@pytest.mark.parametrize(
    ("side", "overrides", "error", "match"),
    [
        (np.zeros((23, 4), np.float32), {}, DataError, "one row per item"),
        (np.full((24, 4), np.nan, np.float32), {}, DataError, r"NaN .*item indices \[0, 1"),
        (np.ones((24, 4), np.float32), {"semantic": {"n_codes": 30}}, ConfigError, "n_codes"),
        (CODES - 1, {}, DataError, r"negative for 18 items \(item indices \[0, 1"),
    ],
)
def test_bad_features_and_settings_are_refused_before_training(side, overrides, error, match):
    seqs, _ = cycles()
    with pytest.raises(error, match=match):
        tiny(**overrides).fit(seqs, context=FitContext(side=side))


def test_a_tokenizer_must_be_known():
    with pytest.raises(ConfigError, match="tokenizer"):
        tiny(tokenizer="bpe")


def test_damaged_saved_codes_are_refused(fitted, tmp_path):
    m, _ = fitted
    m.save(tmp_path / "m")
    state = dict(np.load(tmp_path / "m" / "weights.npz"))
    state["codes"] = state["codes"][:-1]
    np.savez(tmp_path / "m" / "weights.npz", **state)
    with pytest.raises(DataError):
        Recommender.load(tmp_path / "m")


def test_bf16_training_learns_the_cycles():
    seqs, nxt = cycles()
    m = tiny(train={"epochs": 30, "batch_size": 32, "lr": 3e-3, "precision": "bf16"})
    m.fit(seqs, context=FitContext(side=CODES))
    assert all(np.isfinite(r["loss"]) for r in m.history_)
    items, _ = m.recommend(np.arange(seqs.n_users), seqs, k=1)
    assert (items[:, 0] == nxt).mean() >= 0.8

"""P5: the prompts, the item indexings and their leakage audit, the trie and the beams against
exhaustive scoring, the direct task's candidate scores, truncation, save/load, and the
refusals of bad settings and inputs."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import numpy as np
import pytest
import torch

from genrec.data import Sequences
from genrec.errors import ConfigError, DataError
from genrec.models import P5, Recommender
from genrec.models.beam import CodeTrie
from genrec.models.item_index import (
    ItemIndex,
    collaborative_index,
    digit_codes,
    independent_index,
    next_number_audit,
    random_index,
    sequential_index,
)
from genrec.models.p5 import sample_unseen
from genrec.models.p5_prompts import (
    TEMPLATES,
    PromptRenderer,
    Vocabulary,
    template,
    training_templates,
)
from genrec.testing.sequential import cycles
from genrec.train import BatchContext, FitContext


def tiny(**kw) -> P5:
    base = dict(
        dim=32,
        n_layers=1,
        n_heads=4,
        head_dim=8,
        ffn_dim=64,
        max_items=5,
        beam=24,
        dropout=0.0,
        direct_train_candidates=4,
        train={"epochs": 40, "batch_size": 16, "lr": 3e-3, "device": "cpu"},
    )
    return P5(**{**base, **kw})


@pytest.fixture(scope="module")
def fitted() -> tuple[P5, Sequences, np.ndarray]:
    seqs, nxt = cycles()
    return tiny().fit(seqs), seqs, nxt


def words(m: P5, prompt: np.ndarray) -> str:
    """A rendered prompt's tokens as text (item tokens as <t:c>, digits as themselves)."""
    v = m.vocab_
    return " ".join(v.words[t] if t < len(v.words) else f"<{t}>" for t in prompt[0])


def first_appearance_data(
    n_users: int = 400, seed: int = 0
) -> tuple[Sequences, Sequences, np.ndarray]:
    """Sequences whose items are numbered by first appearance (as the Amazon files are),
    where a user's next item is often one of the newest: (the whole sequences, their inputs
    without the last item, the last items)."""
    rng = np.random.default_rng(seed)
    lists, next_id = [], 0
    for _ in range(n_users):
        row = []
        for _ in range(int(rng.integers(4, 9))):
            if next_id == 0 or rng.random() < 0.5:
                row.append(next_id)  # a new item: the next number
                next_id += 1
            else:
                row.append(int(rng.integers(0, next_id)))
        lists.append(row)
    seqs = Sequences.from_lists(lists, next_id)
    inputs = Sequences.from_lists([r[:-1] for r in lists], next_id)
    return seqs, inputs, np.array([r[-1] for r in lists])


# ----------------------------------------------------------------------------- prompts
def test_templates_render_the_expected_words_and_item_tokens(fitted):
    m, _, _ = fitted
    r = m._renderer()
    p = r.render("sequential-1", 12, history=np.array([3, 7]))
    codes = m.index_.codes
    digits = [" ".join(str(d) for d in codes[i]) for i in (3, 7)]
    assert words(m, p) == f"user 1 2 has bought {digits[0]} , {digits[1]} : what comes next ?"
    T = codes.shape[1]
    # roles: the t-th token of an item's tuple has t + 1; recency: 2 then 1 (most recent)
    item_at = p[1] > 0
    assert p[1][item_at].tolist() == list(range(1, T + 1)) * 2
    assert p[2][item_at].tolist() == [2] * T + [1] * T
    assert (p[2][~item_at] == 0).all()
    folded = r.render("direct-4", None, candidates=np.array([0, 1, 2]))
    assert words(m, folded).startswith("pick an item for user someone from ")


def test_the_held_out_templates_are_never_used_in_training(fitted, monkeypatch):
    m, seqs, _ = fitted
    used: list[str] = []
    original = PromptRenderer.render

    def spy(self, tid, *a, **kw):
        used.append(tid)
        return original(self, tid, *a, **kw)

    monkeypatch.setattr(PromptRenderer, "render", spy)
    g = torch.Generator().manual_seed(0)
    for epoch in range(2):  # two epochs of the training batches
        ctx = BatchContext(g, batch_size=16, device=torch.device("cpu"), epoch=epoch)
        for _ in m.batches(seqs, ctx):
            pass
    held = {fam[-1].id for fam in TEMPLATES.values()}
    assert held == {"sequential-6", "direct-4", "rating-4"}
    trained = {t.id for f in ("sequential", "direct") for t in training_templates(f)}
    assert set(used) == trained  # every training template drawn, no held-out one
    assert all(template(t).held_out for t in held)


def test_the_vocabulary_round_trips_through_its_saved_bytes():
    index = collaborative_index(cycles()[0], n_clusters=3, levels=2)
    v = Vocabulary.build(index)
    back = Vocabulary.from_bytes(v.to_bytes())
    assert back.words == v.words and back.levels == v.levels and back.size == v.size
    tokens = v.item_tokens(index)
    assert len(np.unique(tokens, axis=0)) == index.n_items
    assert tokens.min() >= len(v.words) and tokens.max() < v.size  # their own tokens


# ----------------------------------------------------------------------------- indexing
def test_random_indexing_is_a_seeded_bijection_written_in_digits():
    a, b = random_index(1234, seed=3), random_index(1234, seed=3)
    assert np.array_equal(a.codes, b.codes) and a.digits and a.n_tokens == 4
    assert sorted(a.numbers().tolist()) == list(range(1234))
    assert not np.array_equal(a.codes, random_index(1234, seed=4).codes)
    np.testing.assert_array_equal(
        digit_codes(np.array([7, 42, 105])), [[0, 0, 7], [0, 4, 2], [1, 0, 5]]
    )


def test_numbers_in_two_digit_pieces_take_fewer_tokens_and_stay_a_bijection():
    pieces = random_index(12101, seed=3, base=100)
    assert pieces.n_tokens == 3 and not pieces.digits and pieces.codes.max() < 100
    spelled = pieces.codes @ np.array([10000, 100, 1])  # the number each tuple writes
    assert np.array_equal(np.sort(spelled), np.arange(12101))
    digits = random_index(12101, seed=3)  # the same numbers, in 5 decimal digits
    assert digits.n_tokens == 5 and np.array_equal(
        digits.codes @ 10 ** np.arange(4, -1, -1), spelled
    )
    v = Vocabulary.build(pieces)
    assert v.levels == pieces.level_sizes and v.item_tokens(pieces).min() >= len(v.words)
    with pytest.raises(ConfigError, match="number_base"):
        random_index(10, base=16)


def test_sequential_indexing_numbers_items_by_first_appearance():
    seqs = Sequences.from_lists([[3, 1], [1, 0, 4]], 6)
    idx = sequential_index(seqs)
    assert idx.numbers().tolist() == [2, 1, 4, 0, 3, 5]  # 3, 1, 0, 4 in order; then 2, 5


def test_collaborative_indexing_puts_items_seen_together_under_one_prefix():
    seqs, _ = cycles(n_groups=2, users_per_group=16, cycle=12)  # two blocks of 12 items
    idx = collaborative_index(seqs, n_clusters=2, levels=2)
    first = idx.codes[:, 0]
    assert len(set(first[:12])) == 1 and len(set(first[12:])) == 1 and first[0] != first[12]
    assert len(np.unique(idx.codes, axis=0)) == 24 and not idx.digits


def test_an_index_refuses_repeated_tuples():
    with pytest.raises(ValueError, match="share a tuple"):
        ItemIndex("random", np.array([[0, 1], [0, 1]]), digits=True)
    assert independent_index(5).codes.ravel().tolist() == [0, 1, 2, 3, 4]


def test_the_leakage_audit_hits_under_first_appearance_numbers_and_not_under_random_ones():
    seqs, inputs, targets = first_appearance_data()
    # P5's numbering of the whole data, and the file's own, which is the same order
    leaky, chance = next_number_audit(inputs, targets, sequential_index(seqs).numbers())
    file_order, _ = next_number_audit(inputs, targets, np.arange(inputs.n_items))
    assert leaky == file_order
    rand, _ = next_number_audit(inputs, targets, random_index(inputs.n_items).numbers())
    assert file_order > 20 * chance and leaky > 20 * chance
    assert rand < 3 * chance  # genrec's default indexing: chance level
    assert P5().config.index == "random"


def test_the_audit_rule_by_hand():
    inputs = Sequences.from_lists([[0, 2], [5], []], 8)
    hit, chance = next_number_audit(inputs, np.array([3, 7, 1]), np.arange(8), k=1)
    assert hit == 0.5 and chance == 1 / 8  # user 0: 3 is 2 + 1; user 1: 7 is not 5 + 1


# ----------------------------------------------------------------------------- decoding
def test_the_trie_admits_exactly_the_items_tuples(fitted):
    m, _, _ = fitted
    codes = m.index_.codes
    trie = CodeTrie(codes)
    valid = {tuple(r) for r in codes.tolist()}
    T, V = codes.shape[1], trie.vocab
    for tup in itertools.product(range(V), repeat=T):
        node, ok = torch.zeros(1, dtype=torch.int64), True
        for t, c in enumerate(tup):
            if not bool(trie.allowed(t, node)[0, c]):
                ok = False
                break
            node = trie.next[t][node, c]
        assert ok == (tup in valid)


def exhaustive(m: P5, seqs: Sequences, users=None) -> torch.Tensor:
    """log p(tuple of i | evaluation prompt) for every item i by teacher forcing (B, I)."""
    net = m.module_
    hist = torch.from_numpy(seqs.padded(m.config.max_items, pad=-1))
    out = torch.empty(seqs.n_users, m.n_items_)
    with torch.no_grad():
        memory, mask = net.encode(m._prompts(hist, users))
        ans = net.item_tokens  # (I, T)
        for b in range(seqs.n_users):
            keys = net.memory_keys(memory[b : b + 1])  # the I answers read one prompt
            logp = net.logits(ans[:, :-1], keys, mask[b : b + 1]).log_softmax(-1)
            out[b] = logp.gather(2, ans[:, :, None])[..., 0].sum(1)
    return out


def test_a_beam_as_wide_as_the_catalogue_gives_exactly_the_exhaustive_scores(fitted):
    m, seqs, _ = fitted
    part = seqs.take(np.arange(6))
    kept = P5(dataclasses.replace(m.config, beam_skips_history=False))
    kept.module_, kept.n_items_ = m.module_, m.n_items_
    want = exhaustive(m, part)
    torch.testing.assert_close(kept.score(None, part), want, rtol=1e-5, atol=1e-5)
    got = m.score(None, part)  # the beams skip the history: those items rank last
    seen = torch.from_numpy(part.to_csr().toarray() > 0)
    torch.testing.assert_close(got[~seen], want[~seen], rtol=1e-5, atol=1e-5)


def test_the_model_learns_the_cycles_and_answers_with_real_items(fitted):
    m, seqs, nxt = fitted
    top, _ = m.recommend(None, seqs, k=5)
    assert (top[:, 0] == nxt).mean() >= 0.9
    assert ((top >= 0) & (top < seqs.n_items)).all()


def test_candidate_scores_are_each_candidates_answer_log_probability(fitted):
    m, seqs, nxt = fitted
    rng = np.random.default_rng(0)
    cand = np.stack([rng.permutation(seqs.n_items)[:5] for _ in range(4)])
    got = m.candidate_scores(None, cand)
    net, r = m.module_, m._renderer()
    for b in range(4):
        p = torch.from_numpy(m._pad([r.render("direct-4", None, candidates=cand[b])]))
        with torch.no_grad():
            memory, mask = net.encode(p)
            ans = net.item_tokens[torch.from_numpy(cand[b])]
            logp = net.logits(ans[:, :-1], net.memory_keys(memory), mask).log_softmax(-1)
        want = logp.gather(2, ans[:, :, None])[..., 0].sum(1).numpy()
        np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="not a direct template"):
        m.candidate_scores(None, cand, template_id="sequential-1")
    with pytest.raises(DataError, match="item indices"):
        m.candidate_scores(None, cand + 100)


# ----------------------------------------------------------------------------- the rest
def test_save_and_load_give_identical_outputs_and_keep_the_index(fitted, tmp_path):
    m, seqs, _ = fitted
    m.save(tmp_path / "p5")
    back = Recommender.load(tmp_path / "p5")
    assert np.array_equal(back.index_.codes, m.index_.codes)
    assert back.vocab_.words == m.vocab_.words
    part = seqs.take(np.arange(5))
    assert torch.equal(back.score(None, part), m.score(None, part))
    cand = np.tile(np.arange(5), (3, 1))
    assert np.array_equal(back.candidate_scores(None, cand), m.candidate_scores(None, cand))


def test_a_long_history_is_cut_from_its_oldest_end_and_counted(caplog):
    seqs = Sequences.from_lists([list(range(40)) for _ in range(4)], 40)
    m = tiny(
        max_items=30, max_prompt=40, tasks=("sequential",), train={"epochs": 1, "device": "cpu"}
    )
    with caplog.at_level(logging.INFO, logger="genrec.models.p5"):
        m.fit(seqs)
    assert "training prompts of the last epoch were longer than max_prompt" in caplog.text
    r = m._renderer()
    T = m.index_.n_tokens
    fixed = r.fixed_length("sequential-1", 0)  # the words and a one-digit user
    for user, limit in ((3, 40), (12345, 40), (None, 41)):
        m.config = dataclasses.replace(m.config, max_prompt=limit)
        p, cut = m._fit_history(r, "sequential-1", user, np.arange(30))
        extra = len(str(user)) - 1 if user is not None else 0
        n_fit = (limit - fixed - extra + 1) // (T + 1)  # n items take n (T + 1) - 1 tokens
        kept = p[0][p[1] == 1]  # each kept item's first token, oldest first
        assert cut and len(kept) == n_fit and p.shape[1] <= limit
        first = m.module_.item_tokens[:, 0].numpy()
        assert kept.tolist() == first[np.arange(30)[-n_fit:]].tolist()  # the newest


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"tasks": ("rating",)}, "rating family is not trained yet"),
        ({"tasks": ()}, "at least one"),
        ({"eval_template": "direct-1"}, "is a direct template"),
        ({"eval_template": "sequential-9"}, "unknown prompt template"),
        ({"index": "alphabetical"}, "index"),
        ({"item_features": ("interactions",)}, "index = semantic alone"),
    ],
)
def test_bad_settings_are_refused_before_training(overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**overrides)


def test_a_prompt_limit_too_short_for_the_direct_list_is_refused():
    seqs, _ = cycles()
    with pytest.raises(ConfigError, match="max_prompt"):
        tiny(max_prompt=20, direct_train_candidates=8).fit(seqs)


def test_an_unknown_item_in_a_folded_in_history_is_refused(fitted):
    m, seqs, _ = fitted
    with pytest.raises(DataError, match="items"):
        m.recommend(None, [[0, 1, 99]], k=3)


def test_a_damaged_saved_index_or_vocabulary_is_refused(fitted):
    m, _, _ = fitted
    for name, bad in (("codes", lambda a: np.zeros_like(a)), ("vocab", lambda a: a[:5])):
        state = m._get_state()
        state[name] = bad(state[name])
        other = P5(m.config)
        other.n_items_ = m.n_items_
        with pytest.raises(DataError, match="item index or vocabulary"):
            other._set_state(state)


def test_resume_to_4_epochs_equals_4_epochs_straight(tmp_path):
    seqs, _ = cycles()
    kw = dict(dropout=0.2, length_pool=2, train={"epochs": 4, "batch_size": 16, "device": "cpu"})
    full = tiny(**kw).fit(seqs, context=FitContext(run_dir=tmp_path / "a"))
    two = {**kw, "train": {"epochs": 2, "batch_size": 16, "device": "cpu"}}
    tiny(**two).fit(seqs, context=FitContext(run_dir=tmp_path / "b"))
    resumed = tiny(**kw).fit(seqs, context=FitContext(run_dir=tmp_path / "b", resume=True))
    a, b = full.module_.state_dict(), resumed.module_.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bf16_training_learns_the_cycles():
    seqs, nxt = cycles()
    m = tiny(train={"epochs": 40, "batch_size": 16, "lr": 3e-3, "precision": "bf16"}).fit(seqs)
    assert all(np.isfinite(r["loss"]) for r in m.history_)
    items, _ = m.recommend(np.arange(seqs.n_users), seqs, k=1)
    assert (items[:, 0] == nxt).mean() >= 0.8


def test_sample_unseen_draws_items_outside_each_history_without_repeats():
    seqs, _ = cycles()
    rows = np.arange(seqs.n_users).repeat(3)
    got = sample_unseen(seqs, rows, 10, np.random.default_rng(0), unique=True)
    for b, u in enumerate(rows):
        assert not set(got[b].tolist()) & set(seqs.row(u).tolist())
        assert len(set(got[b].tolist())) == 10


def test_direct_training_lists_hold_the_positive_among_unseen_items(fitted):
    m, seqs, _ = fitted
    ctx = BatchContext(torch.Generator().manual_seed(1), 512, torch.device("cpu"), 0)
    batch = next(iter(m.batches(seqs, ctx)))
    T = m.index_.n_tokens
    by_tokens = {tuple(t): i for i, t in enumerate(m.module_.item_tokens.tolist())}
    n_direct = 0
    for b in range(len(batch)):
        p = batch.inputs[b].numpy()
        if (p[2] > 0).any():  # a history: a sequential prompt (a direct one lists no history)
            continue
        n_direct += 1
        listed = [by_tokens[tuple(p[0][s : s + T].tolist())] for s in np.flatnonzero(p[1] == 1)]
        answer = by_tokens[tuple(batch.targets[b].tolist())]
        history = set(seqs.row(int(batch.users[b])).tolist())
        assert answer in listed and answer in history
        others = [i for i in listed if i != answer]
        assert len(others) == len(set(others)) == m.config.direct_train_candidates - 1
        assert not set(others) & history
    assert n_direct > 0


def test_without_user_ids_every_prompt_says_someone(fitted):
    m, seqs, _ = fitted
    anon = P5(dataclasses.replace(m.config, user_ids=False))
    anon.module_, anon.n_items_ = m.module_, m.n_items_
    users = np.arange(4)
    part = seqs.take(users)
    assert torch.equal(anon.score(users, part), anon.score(None, part))
    assert not torch.equal(m.score(users, part), m.score(None, part))
    ctx = BatchContext(torch.Generator().manual_seed(0), 4096, torch.device("cpu"), 0)
    anon._renderer_cache = None
    batch = next(iter(anon.batches(seqs, ctx)))
    someone = m.vocab_.index["someone"]
    assert bool((batch.inputs[:, 0] == someone).any(1).all())


def test_a_loaded_model_reads_its_prompts_with_its_saved_vocabulary(fitted, tmp_path, monkeypatch):
    m, seqs, _ = fitted
    m.save(tmp_path / "p5")
    import genrec.models.p5_prompts as prompts

    extra = prompts.template_words
    monkeypatch.setattr(prompts, "template_words", lambda: sorted([*extra(), "zzz"]))
    back = Recommender.load(tmp_path / "p5")  # this genrec's vocabulary has one word more
    assert back.vocab_.words == m.vocab_.words
    part = seqs.take(np.arange(3))
    assert torch.equal(back.score(None, part), m.score(None, part))


def test_negative_user_rows_are_refused(fitted):
    m, seqs, _ = fitted
    with pytest.raises(DataError, match="training rows"):
        m.score(np.array([-1, 0]), seqs.take([0, 1]))
    with pytest.raises(DataError, match="training rows"):
        m.candidate_scores(np.array([-1]), np.array([[0, 1, 2]]))

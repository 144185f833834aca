"""Constrained beam search over code tuples: with beams enough for every item it returns the
exact top items of a brute-force enumeration; with fewer beams every result is a real item,
unique per user and sorted; the trie refuses shared tuples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.models.beam import CodeTrie, constrained_beam_search


def _codes(n_items=40, n_tokens=3, vocab=4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < n_items:
        seen.add(tuple(rng.integers(0, vocab, n_tokens).tolist()))
    return np.array(sorted(seen, key=lambda _: rng.random()))


def _step_fn(n_users: int, vocab: int, seed: int = 0):
    """Log-probabilities that depend on the user and on the whole prefix (a hash)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(n_users, 997, vocab, generator=g)

    def key(prefix: torch.Tensor) -> torch.Tensor:
        h = torch.full((prefix.shape[0],), 17, dtype=torch.int64)
        for j in range(prefix.shape[1]):
            h = (h * 31 + prefix[:, j] + 1) % 997
        return h

    def step(users, prefix):
        return torch.log_softmax(table[users, key(prefix)], dim=-1)

    def exact(user: int, code: np.ndarray) -> float:
        total = 0.0
        for t in range(len(code)):
            p = torch.as_tensor(code[None, :t], dtype=torch.int64)
            total += float(step(torch.tensor([user]), p)[0, code[t]])
        return total

    return step, exact


def test_enough_beams_give_the_brute_force_ranking():
    codes = _codes()
    trie = CodeTrie(codes)
    step, exact = _step_fn(3, trie.vocab)
    items, scores = constrained_beam_search(step, trie, n_users=3, beam=len(codes))
    for u in range(3):
        want = np.array([exact(u, c) for c in codes])
        order = np.argsort(-want, kind="stable")
        np.testing.assert_allclose(scores[u].numpy(), want[order], rtol=1e-5, atol=1e-5)
        assert set(items[u].tolist()) == set(range(len(codes)))
        np.testing.assert_allclose(
            [want[i] for i in items[u].tolist()], scores[u].numpy(), rtol=1e-5, atol=1e-5
        )


def test_excluded_items_come_after_every_other_item():
    codes = _codes()
    trie = CodeTrie(codes)
    step, exact = _step_fn(2, trie.vocab)
    exclude = torch.zeros((2, len(codes)), dtype=torch.bool)
    exclude[0, [3, 7, 11]] = True
    exclude[1, [0]] = True
    items, scores = constrained_beam_search(step, trie, n_users=2, beam=len(codes), exclude=exclude)
    for u in range(2):
        n_out = int(exclude[u].sum())
        kept = [i for i in range(len(codes)) if not exclude[u, i]]
        want = np.array([exact(u, codes[i]) for i in kept])
        np.testing.assert_allclose(scores[u, :-n_out].numpy(), np.sort(want)[::-1], rtol=1e-5)
        assert set(items[u, -n_out:].tolist()) == set(np.flatnonzero(exclude[u].numpy()).tolist())
        assert bool(torch.isneginf(scores[u, -n_out:]).all())


def test_few_beams_give_real_unique_sorted_items():
    codes = _codes(60, 4, 5, seed=1)
    trie = CodeTrie(codes)
    step, exact = _step_fn(5, trie.vocab, seed=3)
    items, scores = constrained_beam_search(step, trie, n_users=5, beam=6)
    assert items.shape == (5, 6)
    for u in range(5):
        row = items[u].tolist()
        assert len(set(row)) == 6 and all(0 <= i < 60 for i in row)
        assert (scores[u][:-1] >= scores[u][1:]).all()
        np.testing.assert_allclose(
            [exact(u, codes[i]) for i in row], scores[u].numpy(), rtol=1e-5, atol=1e-5
        )


def test_more_beams_than_items_pad_with_minus_one():
    codes = np.array([[0, 1], [1, 0], [1, 1]])
    trie = CodeTrie(codes)
    step, _ = _step_fn(2, trie.vocab)
    items, scores = constrained_beam_search(step, trie, n_users=2, beam=5)
    assert items.shape == (2, 5)
    assert (items[:, 3:] == -1).all() and torch.isinf(scores[:, 3:]).all()
    assert {tuple(sorted(r[:3])) for r in items.tolist()} == {(0, 1, 2)}


def test_the_trie_refuses_shared_and_negative_codes():
    with pytest.raises(ValueError, match="share a code tuple"):
        CodeTrie(np.array([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match="non-negative"):
        CodeTrie(np.array([[0, -1]]))
    trie = CodeTrie(np.array([[0, 2], [1, 0]]))
    assert trie.allowed(0, torch.tensor([0])).tolist() == [[True, True, False]]
    assert trie.allowed(1, torch.tensor([0, 1])).tolist() == [
        [False, False, True],
        [True, False, False],
    ]


def test_an_item_of_probability_zero_is_still_an_item():
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    trie = CodeTrie(codes)

    def step(users, prefix):
        logp = torch.log(torch.full((len(users), trie.vocab), 0.5))
        if prefix.shape[1] == 1:
            logp[:, 1] = float("-inf")  # the tuple (0, 1) is impossible
        return logp

    items, scores = constrained_beam_search(step, trie, n_users=1, beam=3)
    assert sorted(items[0].tolist()) == [0, 1, 2]
    assert items[0, 2] == 1 and torch.isinf(scores[0, 2])

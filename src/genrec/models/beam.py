"""Beam search over item code tuples, constrained to the tuples that name real items.

A generative-retrieval model (TIGER: Rajput et al., NeurIPS 2023) ranks items by generating
their code tuples token by token. Decoding is constrained by a trie of the valid tuples, so
every finished beam is an item: :class:`CodeTrie` stores the trie level by level as dense
transition tables (``next[t][node, token]``: the child node, or -1 where no item continues
the prefix), and :func:`constrained_beam_search` keeps, at each step and for each user, the
``beam`` best prefixes by summed log-probability among the allowed continuations.

Dimension letters: B users, W beams, T tokens per tuple, V tokens per level (the largest
code plus one), I items.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["CodeTrie", "constrained_beam_search", "rank_from_beams"]


class CodeTrie:
    """The trie of the items' code tuples ``codes`` (I, T), each tuple unique.

    Attributes: ``next`` (T tensors (n_nodes_t, V) of child ids, -1 for none), ``item_of_leaf``
    ((I,) the item each leaf names), ``vocab`` V."""

    def __init__(self, codes: np.ndarray | Tensor):
        c = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes, dtype=np.int64)
        if c.ndim != 2 or c.shape[0] == 0:
            raise ValueError(f"codes should be (n_items, n_tokens), got shape {c.shape}")
        if (c < 0).any():
            raise ValueError("codes must be non-negative")
        n_items, n_tokens = c.shape
        if len({tuple(r) for r in c.tolist()}) != n_items:
            raise ValueError(
                "two items share a code tuple; add the token that makes tuples unique "
                "(genrec.models.quantize.unique_tuples)"
            )
        self.vocab = int(c.max()) + 1
        self.n_tokens = n_tokens
        self.next: list[Tensor] = []
        node = np.zeros(n_items, dtype=np.int64)  # every item's node at the current level
        n_nodes = 1
        for t in range(n_tokens):
            key = node * self.vocab + c[:, t]  # (I,) the (parent, token) edges
            uniq, child = np.unique(key, return_inverse=True)
            table = np.full((n_nodes, self.vocab), -1, dtype=np.int64)
            table[uniq // self.vocab, uniq % self.vocab] = np.arange(len(uniq))
            self.next.append(torch.from_numpy(table))
            node, n_nodes = child, len(uniq)
        item_of_leaf = np.empty(n_items, dtype=np.int64)
        item_of_leaf[node] = np.arange(n_items)
        self.item_of_leaf = torch.from_numpy(item_of_leaf)

    def allowed(self, t: int, nodes: Tensor) -> Tensor:
        """(N, V) bool: the tokens that continue each node's prefix at step ``t``."""
        return self.next[t].to(nodes.device)[nodes] >= 0


def constrained_beam_search(
    step: Callable[[Tensor, Tensor], Tensor],
    trie: CodeTrie,
    n_users: int,
    beam: int,
    device: torch.device | str = "cpu",
    on_select: Callable[[Tensor], None] | None = None,
    exclude: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``beam`` best items per user by the summed log-probability of their tuples.

    ``step(beam_of_user (N,), prefix (N, t)) -> (N, V)`` gives the next token's
    log-probabilities for each prefix (N = users x live beams; ``beam_of_user`` says whose
    beam each row is). Returns (items (B, W) int64, -1 where fewer than W items exist, and
    scores (B, W), best first, -inf for the missing; an item whose tuple has probability 0
    is still returned, after the others, with score -inf).

    ``on_select(parent (N',))``, when given, is called after each step with the row of the
    previous step that each new beam continues, so that ``step`` can carry per-beam state
    (a decoder's cached keys and values) from a beam to its continuations.

    ``exclude`` (B, I) bool, when given, marks items no beam should end on (a user's
    history): their last token gets log-probability -inf, so they are returned only where
    too few other items remain, after those, with score -inf."""
    dev = torch.device(device)
    users = torch.arange(n_users, device=dev)  # (N,) the user of each live beam
    nodes = torch.zeros(n_users, dtype=torch.int64, device=dev)
    prefix = torch.zeros((n_users, 0), dtype=torch.int64, device=dev)
    scores = torch.zeros(n_users, device=dev)
    alive = torch.ones(n_users, dtype=torch.bool, device=dev)  # a real prefix (by the trie)
    width = 1  # beams per user so far
    for t in range(trie.n_tokens):
        logp = step(users, prefix).float()  # (B * width, V)
        if logp.shape != (n_users * width, trie.vocab):
            raise ValueError(
                f"step returned {tuple(logp.shape)}, expected {(n_users * width, trie.vocab)}"
            )
        if exclude is not None and t == trie.n_tokens - 1:  # the leaves: items
            child = trie.next[t].to(dev)[nodes]  # (B * width, V), -1 where no item
            item = trie.item_of_leaf.to(dev)[child.clamp(min=0)]
            logp = logp.masked_fill(exclude[users[:, None], item] & (child >= 0), -torch.inf)
        ok = trie.allowed(t, nodes) & alive[:, None]  # (B * width, V)
        # an allowed token ranks above every forbidden one, even at log-probability -inf
        cand = torch.where(ok, scores[:, None] + logp, torch.full_like(logp, float("-inf")))
        cand = cand.reshape(n_users, width * trie.vocab)  # (B, width * V)
        rank = torch.where(ok.reshape(n_users, -1), cand.nan_to_num(neginf=-3.0e38), -torch.inf)
        k = min(beam, cand.shape[1])
        _, idx = rank.topk(k, dim=1)  # (B, k)
        best = cand.gather(1, idx)  # (B, k)
        parent = idx // trie.vocab + torch.arange(n_users, device=dev)[:, None] * width
        token = idx % trie.vocab  # (B, k)
        parent, token = parent.reshape(-1), token.reshape(-1)  # (B * k,)
        if on_select is not None:
            on_select(parent)
        alive = ok.reshape(-1)[parent * trie.vocab + token]  # (B * k,)
        nxt = trie.next[t].to(dev)[nodes[parent], token]  # (B * k,)
        nodes = torch.where(alive, nxt, torch.zeros_like(nxt))  # a dead beam parks at node 0
        prefix = torch.cat([prefix[parent], token[:, None]], 1)  # (B * k, t + 1)
        scores = best.reshape(-1)
        users = torch.arange(n_users, device=dev).repeat_interleave(k)
        width = k
    items = torch.where(alive, trie.item_of_leaf.to(dev)[nodes], torch.full_like(nodes, -1))
    items, scores = items.reshape(n_users, width), scores.reshape(n_users, width)
    if width < beam:  # fewer tuples than beams
        pad = beam - width
        items = torch.cat([items, items.new_full((n_users, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((n_users, pad), float("-inf"))], 1)
    return items, scores


def rank_from_beams(
    items: Tensor, scores: Tensor, first_logp: Tensor, first_codes: Tensor
) -> Tensor:
    """Scores (B, I) for every item from a beam search's ``items`` and ``scores`` (B, W):
    the beams' items keep their beam scores; every other item gets a finite score below
    every beam, ordered by the log-probability of its first code (``first_logp`` (B, V), the
    prefix the search scored for all items; ``first_codes`` (I,) each item's first code)."""
    B = len(items)
    finite = torch.where(scores.isfinite(), scores, torch.zeros_like(scores))
    floor = finite.min(1, keepdim=True).values - 1.0  # below every beam
    rest = floor + first_logp[:, first_codes] - first_logp.max(1, keepdim=True).values  # (B, I)
    found = items >= 0
    rows = torch.arange(B, device=items.device)[:, None].expand_as(items)
    rest[rows[found], items[found]] = scores[found].clamp(min=-3.0e38)
    return rest

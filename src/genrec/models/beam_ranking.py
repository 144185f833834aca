"""The base of the models that rank items by generating their code tuples (TIGER, P5).

Such a model names every item by a tuple of codes (its network's ``codes`` buffer, (I, T))
and ranks by beam search constrained to the trie of those tuples
(:func:`genrec.models.beam.constrained_beam_search`). :class:`BeamRankingRecommender` holds
what they share: the trie (built once per network and device), the scoring windows with
``seen`` (the whole history's items, which the beams skip when
``config.beam_skips_history``), and ``recommend``'s refusal of a ``k`` past ``config.beam``
(the ranked list is the beams').
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from genrec.errors import ConfigError
from genrec.models.beam import CodeTrie, constrained_beam_search, rank_from_beams
from genrec.models.sequential import SeqBatch, TorchSequentialRecommender
from genrec.models.torch_base import SCORE_BATCH

__all__ = ["BeamRankingRecommender", "Cache", "NextCodes"]

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # each decoder layer's keys and values
#: ``next_codes(prefix (N, t) codes, cache of the first t steps or None)`` -> (the next
#: code's log-probabilities (N, V), the cache of the t + 1 steps)
NextCodes = Callable[[torch.Tensor, "Cache | None"], tuple[torch.Tensor, Cache]]


class BeamRankingRecommender(TorchSequentialRecommender):
    """A sequential network that ranks by constrained beam search over ``module_.codes``;
    its config has ``beam`` and ``beam_skips_history``."""

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self._trie_cache: tuple[nn.Module, CodeTrie] | None = None  # for module_, on its device

    def _trie(self) -> CodeTrie:
        """The trie of the network's code tuples, on the network's device."""
        module: Any = self._module()
        trie = self._trie_cache
        dev = module.codes.device
        if trie is None or trie[0] is not module or trie[1].item_of_leaf.device != dev:
            t = CodeTrie(module.codes.cpu())
            t.next = [n.to(dev) for n in t.next]  # looked up at every step: kept there
            t.item_of_leaf = t.item_of_leaf.to(dev)
            trie = (module, t)
            self._trie_cache = trie
        return trie[1]

    def _beam_scores(self, next_codes: NextCodes, batch: Any) -> torch.Tensor:
        """Scores (B, I) of ``batch``'s users: constrained beam search over the trie with
        ``next_codes`` (decoding step by step, each live beam continuing its parent's
        cache), the beams skipping ``batch.seen`` where it is set; the beams' items keep
        their beam scores, the others rank below by their first code
        (:func:`genrec.models.beam.rank_from_beams`)."""
        first: list[torch.Tensor] = []
        state: dict[str, Any] = {"past": None, "parent": None}

        def step(_: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
            past = state["past"]
            if past is not None:  # each live beam continues its parent's cache
                par = state["parent"]
                past = [(k[par], v[par]) for k, v in past]
            out, state["past"] = next_codes(prefix, past)
            if prefix.shape[1] == 0:
                first.append(out)
            return out

        def chosen(parent: torch.Tensor) -> None:
            state["parent"] = parent

        items, scores = constrained_beam_search(
            step,
            self._trie(),
            len(batch),
            self.config.beam,
            batch.inputs.device,
            on_select=chosen,
            exclude=getattr(batch, "seen", None),
        )
        module: Any = self._module()  # the subclass's network: it has codes
        return rank_from_beams(items, scores, first[0], module.codes[:, 0])

    def _batches(self, X: Any, users: np.ndarray | None = None) -> Iterator[SeqBatch]:
        """The base's scoring windows, each with ``seen`` (B, I): the items of the whole
        history (the window reads the last ones only), which the beams skip."""
        starts = range(0, X.n_users, SCORE_BATCH)
        for start, b in zip(starts, super()._batches(X, users)):
            if self.config.beam_skips_history:
                part = X.take(slice(start, start + SCORE_BATCH))
                rows = np.repeat(np.arange(part.n_users), part.lengths)
                seen = torch.zeros((part.n_users, X.n_items), dtype=torch.bool)
                seen[torch.from_numpy(rows), torch.from_numpy(part.items)] = True
                b.seen = seen.to(b.inputs.device)  # type: ignore[attr-defined]
            yield b

    def recommend(
        self,
        users: np.ndarray | None,
        X_users: Any,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per user; ``k`` at most ``beam`` (the list is the beams')."""
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > self.config.beam:
            raise ConfigError(
                f"{self.name}: k ({k}) is more than beam ({self.config.beam}), and the ranked "
                f"list comes from the beams; set beam to at least {k}"
            )
        return super().recommend(users, X_users, k, exclude_seen, exclude)

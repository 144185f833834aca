r"""P5: recommendation as language processing (Geng et al., RecSys 2022).

P5 states recommendation tasks as text prompts and answers them with text from one
encoder-decoder language model trained on all the tasks at once. Here, as in the paper:

* **Prompts** (:mod:`genrec.models.p5_prompts`): the sequential family ("user 12 has bought
  i1 , i2 , ... : what comes next ?", the answer the next item) and the direct family (choose
  from a list of candidates: one of the user's items among sampled others, the answer that
  item), several templates each; training draws a template at random for each example, and
  the last template of each family is held out of training (evaluation reads it by default:
  ``eval_template``).
* **Item names** (:mod:`genrec.models.item_index`): an item is a short tuple of tokens, by
  one of Hua et al.'s indexings: random numbers (the default; P5's own sequential numbering
  leaks the answer on the Amazon files, see that module), collaborative, independent or
  semantic IDs (the tokenizer of TIGER, on item features).
* **The network**: a T5-style encoder-decoder (the blocks of :mod:`genrec.models.tiger`:
  pre-layer-norm, attention without biases, a ReLU feed-forward network) over one token
  table tied to the output layer, trained from scratch with the mean cross-entropy of the
  answer tokens over the whole vocabulary (words, digits, item tokens).
* **Decoding**: an item answer is found by beam search constrained to the trie of the items'
  token tuples (:func:`genrec.models.beam.constrained_beam_search`), so every answer is a
  real item and the beams are the ranked list; the rest of the catalogue ranks below the
  beams by the log-probability of its first token (as TIGER's), so a full ranking exists.
  The direct task scores each candidate by the summed log-probability of its tuple
  (:meth:`P5.candidate_scores`; exhaustive over the list).

A training epoch holds every next item of every training sequence (the last ``max_items``
items before it as the history: P5's sequential examples) and ``direct_per_user`` direct
examples per user (a random item of the user's training sequence among
``direct_train_candidates - 1`` items the user has not consumed, drawn uniformly, in random
order).

The paper's network (``P5Config.paper()``): T5-small's sizes (6 + 6 layers, D = 512, 8 heads
of 64, FFN 2,048), dropout 0.1, 20 history items, 100 candidates in direct prompts.

Departures (each a config field, or named here):

* From scratch, with a word-level vocabulary built from the templates (P5 fine-tunes the
  pretrained T5-small and its SentencePiece tokenizer; loading a pretrained checkpoint is not
  built yet). Users are written as their row number's digits, items as their tuples' tokens.
* T5's relative position buckets are learned positions of the prompt's tokens (a candidate
  list taking one), with each token's role in its item's tuple and its history item's
  recency (:mod:`genrec.models.p5_prompts`); layer norm with a bias for T5's
  RMSNorm; no dropout on attention weights.
* Item answers have a fixed length (the tuple's), so no end-of-answer token is generated.
* ``no_user_rate``: a share of training prompts (0.1) name the user "someone", so that a
  folded-in history, which has no user number, reads a trained word (P5 has no fold-in).
* ``direct_train_candidates``: direct training prompts list fewer candidates than the
  evaluation's 100 (a 100-item list is over 400 tokens, costly on a CPU); the paper's
  training lists have 100.
* The rating family is written (its templates are in the vocabulary) but not trained yet:
  the model fits on ordered histories without rating values.
* Dimension letters: B prompts (or users), S prompt tokens, T tokens per item, W beams,
  V the vocabulary, C candidates, I items.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.config import Range, check_ranges
from genrec.data.sequences import Sequences
from genrec.errors import ConfigError, DataError
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.beam_ranking import BeamRankingRecommender, Cache
from genrec.models.item_index import (
    ItemIndex,
    collaborative_index,
    independent_index,
    random_index,
    sequential_index,
)
from genrec.models.nn_blocks import dropout_values
from genrec.models.p5_prompts import (
    BOS,
    PAD,
    TEMPLATES,
    PromptRenderer,
    Vocabulary,
    template,
    training_templates,
)
from genrec.models.semantic_ids import SemanticIdConfig, code_item_features
from genrec.models.sequential import (
    SeqBatch,
    as_sequences,
    length_sorted_order,
    next_item_examples,
)
from genrec.models.tiger import (
    DecoderLayer,
    EncoderLayer,
    TIGERConfig,
    history_windows,
    stack_arrays,
)
from genrec.train import BatchContext, Chunked, FitContext, StepContext, TrainConfig

__all__ = ["P5", "P5Config", "P5Net"]

log = logging.getLogger(__name__)

TASKS = ("sequential", "direct")  # the families trained today
LOGIT_BUDGET = 2**25  # logits held at once when scoring candidates (floats)
PROMPT_TOKEN_BUDGET = 2**16  # prompt tokens encoded at once when scoring candidates


@dataclass(frozen=True)
class P5Config:
    dim: Annotated[int, Range(ge=1)] = 64  # D
    n_layers: Annotated[int, Range(ge=1)] = 2  # encoder layers, and decoder layers
    n_heads: Annotated[int, Range(ge=1)] = 4
    head_dim: Annotated[int, Range(ge=1)] = 16
    ffn_dim: Annotated[int, Range(ge=1)] = 256
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1
    max_items: Annotated[int, Range(ge=1)] = 20  # history items in a sequential prompt
    max_prompt: Annotated[int, Range(ge=8)] = 512  # prompt tokens; histories cut to fit
    tasks: tuple[str, ...] = TASKS  # the prompt families trained
    direct_per_user: Annotated[int, Range(ge=0)] = 1  # direct examples per user and epoch
    direct_train_candidates: Annotated[int, Range(ge=2)] = 20  # items in a training list
    # the prompt that scores the next item (evaluation, recommend): "" is the sequential
    # family's held-out template; or a template id such as "sequential-1"
    eval_template: str = ""
    # training prompts that name the user "someone" instead of their number, so that a
    # folded-in history (which has no number) reads a trained word
    no_user_rate: Annotated[float, Range(ge=0, le=1)] = 0.1
    # prompts name training users by their number (P5); False: every prompt says
    # "someone", so a user's answers depend on the history alone
    user_ids: bool = True
    index: Literal["random", "sequential", "collaborative", "independent", "semantic"] = "random"
    index_seed: int = 0  # the random numbering's, and the collaborative clustering's
    # random and sequential numbers in decimal digits (10) or two-digit pieces (100: a
    # Beauty item in 3 tokens, not 5; prompts about half as long)
    number_base: Literal[10, 100] = 10
    n_clusters: Annotated[int, Range(ge=2)] = 32  # collaborative: clusters per level
    cluster_levels: Annotated[int, Range(ge=1)] = 3  # collaborative: tokens per item
    beam: Annotated[int, Range(ge=1)] = 20  # beams kept per user at each decoding step
    beam_skips_history: bool = True  # the beams leave out the history's items (as TIGER's)
    length_pool: Annotated[int, Range(ge=0)] = 0  # batches sorted by prompt length in pools
    # semantic indexing: the tokenizer and the item features (as TIGER's)
    tokenizer: Literal["rqvae", "kmeans"] = "rqvae"
    semantic: SemanticIdConfig = field(default_factory=SemanticIdConfig)
    item_features: tuple[str, ...] = ()
    feature_dim: Annotated[int, Range(ge=1)] = 64
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=50,
            batch_size=128,
            lr=1e-3,
            optimizer="adamw",
            weight_decay=0.0,
            patience=None,
            select_metric="ndcg@10",
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ConfigError(
                f"p5: tasks {list(self.tasks)}: each must be one of {', '.join(TASKS)} (the "
                f"rating family is not trained yet), and at least one"
            )
        if self.item_features and self.index != "semantic":
            raise ConfigError(
                f"p5: item_features are read for index = semantic alone (index is "
                f"{self.index!r}); drop item_features or set index = semantic"
            )
        if self.eval_template:
            t = template(self.eval_template)
            if t.family != "sequential":
                raise ConfigError(
                    f"p5: eval_template {self.eval_template!r} is a {t.family} template; "
                    f"the next item is scored by a sequential one"
                )

    @classmethod
    def paper(cls, **overrides: Any) -> P5Config:
        """T5-small's sizes (P5's backbone), 100 candidates in the direct training lists."""
        base = cls(
            dim=512,
            n_layers=6,
            n_heads=8,
            head_dim=64,
            ffn_dim=2048,
            direct_train_candidates=100,
            max_prompt=1024,  # a list of 100 items of 5 tokens and their commas
        )
        return replace(base, **overrides)

    def blocks(self) -> TIGERConfig:
        """The network's sizes as the shared encoder-decoder blocks read them."""
        return TIGERConfig(
            dim=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            head_dim=self.head_dim,
            ffn_dim=self.ffn_dim,
            dropout=self.dropout,
        )


def _drop(x: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    return x if gen is None else dropout_values(x, p, gen)


# ----------------------------------------------------------------------------- network
class P5Net(nn.Module):
    """The token table, encoder and decoder; buffers ``codes`` (I, T) (the item index) and
    ``vocab`` (the vocabulary's bytes), saved with the weights.

    ``encode(prompts (B, 4, S), gen)`` -> (memory (B, S, D), mask (B, S));
    ``logits(answer (N, t) tokens, memory keys, mask, gen)`` -> (N, t + 1, V): the next
    token's logits after the start token and each answer token."""

    codes: torch.Tensor
    vocab: torch.Tensor
    item_tokens: torch.Tensor
    columns: torch.Tensor

    def __init__(
        self, index: ItemIndex, vocab: Vocabulary, c: P5Config, generator: torch.Generator
    ):
        super().__init__()
        self.register_buffer("codes", torch.from_numpy(index.codes.copy()))
        self.register_buffer("vocab", torch.from_numpy(vocab.to_bytes()))
        # derived, not saved: every item's tokens, and each position's code -> token; made
        # again from the loaded codes and vocabulary whenever a state_dict is loaded (a
        # resume reads the checkpoint's, whatever the fit's index was)
        self.register_buffer("item_tokens", torch.zeros(0, dtype=torch.int64), persistent=False)
        self.register_buffer("columns", torch.zeros(0, dtype=torch.int64), persistent=False)
        self._derive()
        self.register_load_state_dict_post_hook(lambda module, _: module._derive())
        self.T = index.n_tokens
        self.max_items = c.max_items
        self.p, self.dim = c.dropout, c.dim
        b = c.blocks()
        self.tok = nn.Embedding(vocab.size, c.dim, padding_idx=PAD)
        self.role = nn.Embedding(self.T + 1, c.dim)  # a token's place in an item's tuple
        self.recency = nn.Embedding(c.max_items + 1, c.dim)  # a history item's, from the end
        self.enc_pos = nn.Embedding(c.max_prompt, c.dim)  # a candidate list takes one
        self.dec_pos = nn.Embedding(self.T, c.dim)
        self.encoder = nn.ModuleList(EncoderLayer(b) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(b) for _ in range(c.n_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        for p in self.parameters():  # in a fixed order, from the generator
            if p.ndim == 2:
                with torch.no_grad():
                    p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=generator)
        with torch.no_grad():
            self.tok.weight[PAD].zero_()

    def _derive(self) -> None:
        vocab = Vocabulary.from_bytes(self.vocab.cpu().numpy())
        index = ItemIndex("saved", self.codes.cpu().numpy(), digits=not vocab.levels)
        dev = self.codes.device
        self.item_tokens = torch.from_numpy(vocab.item_tokens(index)).to(dev)
        self.columns = torch.from_numpy(vocab.answer_columns(index)).to(dev)

    @staticmethod
    def arrays(n_items: int, c: P5Config) -> dict[str, ArraySpec]:
        """The arrays of the state_dict (the vocabulary's and the tuples' sizes follow the
        index, so those axes are checked on load)."""
        D = c.dim
        out = {
            "codes": ArraySpec((n_items, None), kind="i"),
            "vocab": ArraySpec((None,), kind="i"),
            "tok.weight": ArraySpec((None, D)),
            "role.weight": ArraySpec((None, D)),
            "recency.weight": ArraySpec((c.max_items + 1, D)),
            "enc_pos.weight": ArraySpec((c.max_prompt, D)),
            "dec_pos.weight": ArraySpec((None, D)),
        }
        return out | stack_arrays(c.blocks())

    def encode(
        self, prompts: torch.Tensor, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory (B, S, D), mask (B, S)) of ``prompts`` (B, 4, S): the tokens, right-padded
        with 0, their roles, recency and positions (:mod:`genrec.models.p5_prompts`)."""
        tokens, roles, recency, pos = prompts[:, 0], prompts[:, 1], prompts[:, 2], prompts[:, 3]
        S = tokens.shape[1]
        keep = tokens != PAD
        eye = torch.eye(S, dtype=torch.bool, device=tokens.device)
        mask = keep[:, None, :] | eye  # a padding slot reads itself (finite, unread)
        x = self.tok(tokens) + self.role(roles) + self.recency(recency.clamp(max=self.max_items))
        x = _drop(x + self.enc_pos(pos.clamp(max=self.enc_pos.num_embeddings - 1)), self.p, gen)
        for layer in self.encoder:
            x = layer(x, mask, gen)
        return self.enc_norm(x), keep

    def memory_keys(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [cast(DecoderLayer, layer).cross.keys(memory) for layer in self.decoder]

    def logits(
        self,
        answer: torch.Tensor,
        keys: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        gen: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(N, t + 1, V) after the start token and the answer tokens (N, t); N is W rows per
        memory row (W = N / B)."""
        N, t = answer.shape
        start = torch.full((N, 1), BOS, dtype=torch.int64, device=answer.device)
        y = self.tok(torch.cat([start, answer], 1)) + self.dec_pos.weight[: t + 1]
        y = _drop(y, self.p, gen)
        for layer, kv in zip(self.decoder, keys):
            y, _ = layer(y, kv, mask, gen)
        return self.dec_norm(y) @ self.tok.weight.T / math.sqrt(self.dim)

    def next_logits(
        self,
        answer: torch.Tensor,
        keys: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(logits (N, V) of the token after ``answer`` (N, t), each decoder layer's
        self-attention keys and values of the t + 1 steps); ``past`` those of the first t
        steps (None at t = 0). Equal to ``logits(answer, ...)[:, -1]``."""
        N, t = answer.shape
        if t == 0:
            tok = torch.full((N,), BOS, dtype=torch.int64, device=answer.device)
        else:
            tok = answer[:, -1]
        y = (self.tok(tok) + self.dec_pos.weight[t])[:, None]  # (N, 1, D)
        cache = []
        for j, (layer, kv) in enumerate(zip(self.decoder, keys)):
            y, kv_self = layer(y, kv, mask, None, None if past is None else past[j])
            cache.append(kv_self)
        return self.dec_norm(y[:, 0]) @ self.tok.weight.T / math.sqrt(self.dim), cache


# ----------------------------------------------------------------------------- batches
def sample_unseen(
    X: Sequences, rows: np.ndarray, n: int, rng: np.random.Generator, unique: bool = False
) -> np.ndarray:
    """(len(rows), n) items that row ``rows[b]`` has not consumed, drawn uniformly (with
    ``unique``, without repeats in a row). A user who has consumed all but fewer than ``n``
    items gets repeats of them (or of any item, with none left)."""
    I = X.n_items
    seen = np.unique(np.repeat(np.arange(X.n_users), X.lengths) * I + X.items)
    out = rng.integers(0, I, size=(len(rows), n))

    def bad(a: np.ndarray) -> np.ndarray:
        key = rows[:, None] * I + a
        pos = np.searchsorted(seen, key).clip(max=max(len(seen) - 1, 0))
        hit = seen[pos] == key if len(seen) else np.zeros(a.shape, bool)
        if unique:
            srt = np.sort(a, 1)
            dup_sorted = np.zeros(a.shape, bool)
            dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
            order = np.argsort(a, 1, kind="stable")
            dup = np.zeros(a.shape, bool)
            np.put_along_axis(dup, order, dup_sorted, 1)
            hit |= dup
        return hit

    for _ in range(50):
        b = bad(out)
        if not b.any():
            break
        out[b] = rng.integers(0, I, size=int(b.sum()))
    return out


# ----------------------------------------------------------------------------- model
class P5(BeamRankingRecommender):
    """P5 (Geng et al. 2022): recommendation tasks as prompts to one encoder-decoder.

    ``fit(seqs)`` names the items (``config.index``; semantic IDs from ``context.side``, the
    item features, or the items' interaction columns), builds the vocabulary, then trains on
    the prompts of ``config.tasks``. ``score`` and ``recommend`` answer the sequential prompt
    by constrained beam search; :meth:`candidate_scores` answers the direct prompt.

    Attributes
    ----------
    module_ : P5Net (buffers ``codes``: every item's tuple; ``vocab``: the vocabulary)
    index_, vocab_ : the ItemIndex and Vocabulary (rebuilt from the buffers on load)
    history_, best_epoch_ : as every trained model

    Examples
    --------
    >>> from genrec.data import Sequences
    >>> seqs = Sequences.from_lists([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]], n_items=4)
    >>> m = P5(dim=8, n_layers=1, n_heads=1, head_dim=8, ffn_dim=16, beam=4,
    ...        direct_train_candidates=3, train={"epochs": 2, "device": "cpu"})
    >>> m.fit(seqs).recommend(None, seqs.take([0]), k=2)[0].shape
    (1, 2)
    """

    name = "p5"
    capabilities = Capabilities(
        trainer=True, selects_on="ranking", sequential=True, item_features=True
    )
    config_class: ClassVar[type] = P5Config
    module_: P5Net

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self._index: ItemIndex | None = None
        self._vocab: Vocabulary | None = None  # the saved one, while loading
        self._renderer_cache: tuple[nn.Module, PromptRenderer] | None = None
        self._truncated = 0

    # ------------------------------------------------------------------ names
    @property
    def index_(self) -> ItemIndex:
        self._check_fitted()
        net = self.module_
        return ItemIndex(self.config.index, net.codes.cpu().numpy(), digits=not self.vocab_.levels)

    @property
    def vocab_(self) -> Vocabulary:
        self._check_fitted()
        return Vocabulary.from_bytes(self.module_.vocab.cpu().numpy())

    def _make_index(self, side: Any, seqs: Sequences) -> ItemIndex:
        c = self.config
        n = seqs.n_items
        if c.index == "random":
            return random_index(n, c.index_seed, c.number_base)
        if c.index == "sequential":
            return sequential_index(seqs, c.number_base)
        if c.index == "independent":
            return independent_index(n)
        if c.index == "collaborative":
            return collaborative_index(seqs, c.n_clusters, c.cluster_levels, seed=c.index_seed)
        if side is None:  # semantic IDs of the interaction columns
            from genrec.data.item_content import dense_features

            side = dense_features(seqs.to_csr().T.tocsr(), c.feature_dim)
        a = np.asarray(side)
        if a.ndim != 2 or a.shape[0] != n:
            raise DataError(
                f"p5: item features of shape {a.shape}, and the data has {n} items: give one "
                f"row per item, in the data's item order"
            )
        ids = code_item_features(a, c.tokenizer, c.semantic, "p5")
        return ItemIndex("semantic", ids.codes, digits=False)

    def fit(self, X: Any, *, valid: Any = None, context: FitContext | None = None) -> P5:
        """Name the items and build the vocabulary, then train (the trainer's fit)."""
        seqs = as_sequences(X)
        self._index = self._make_index(None if context is None else context.side, seqs)
        self._truncated = 0
        try:
            super().fit(seqs, valid=valid, context=context)
        finally:
            self._index = None
        if self._truncated:
            log.info(
                "p5: %d training prompts of the last epoch were longer than max_prompt (%d "
                "tokens): their oldest history items were left out",
                self._truncated,
                self.config.max_prompt,
            )
        return self

    def _build_module(self, n_items: int, generator: torch.Generator) -> P5Net:
        index = self._index
        assert index is not None, "fit or load sets the index first"
        vocab = self._vocab or Vocabulary.build(index)  # loading: the vocabulary it trained on
        self._check_prompt_room(PromptRenderer(vocab, vocab.item_tokens(index)))
        return P5Net(index, vocab, self.config, generator)

    def _check_prompt_room(self, r: PromptRenderer) -> None:
        """The prompts with no history (or a direct list) fit in max_prompt."""
        c = self.config
        need = max(r.fixed_length(t.id, 1) for t in TEMPLATES["sequential"]) + 8
        if "direct" in c.tasks:
            need = max(
                need,
                *(
                    r.fixed_length(t.id, 0, c.direct_train_candidates) + 8
                    for t in TEMPLATES["direct"]
                ),
            )
        if need > c.max_prompt:
            raise ConfigError(
                f"p5: max_prompt ({c.max_prompt}) is too short for the prompts ({need} tokens "
                f"with one history item, or a direct list of {c.direct_train_candidates}); "
                f"raise max_prompt or lower direct_train_candidates"
            )

    def state_arrays(self) -> dict[str, ArraySpec]:
        return P5Net.arrays(self.n_items_, self.config)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        codes = np.asarray(state.get("codes", np.zeros((0, 0))))
        try:
            vocab = Vocabulary.from_bytes(np.asarray(state["vocab"]))
            index = ItemIndex(self.config.index, codes, digits=not vocab.levels)
            if len(codes) != self.n_items_:
                raise ValueError(f"{len(codes)} tuples for {self.n_items_} items")
        except (ValueError, KeyError, UnicodeDecodeError) as e:
            raise DataError(
                f"p5: the saved item index or vocabulary is not valid ({e}); is weights.npz "
                f"this model's?"
            ) from None
        self._index, self._vocab = index, vocab
        try:
            super()._set_state(state)
        finally:
            self._index, self._vocab = None, None

    def _check_users(self, users: np.ndarray | None, X_users: Any) -> tuple[Any, Any]:
        users, seqs = super()._check_users(users, X_users)
        if users is not None and (users < 0).any():
            raise DataError("p5: users must be training rows (integers from 0), or None")
        return users, seqs

    # ------------------------------------------------------------------ prompts
    def _renderer(self) -> PromptRenderer:
        cached = self._renderer_cache
        if cached is None or cached[0] is not self.module_:
            vocab = self.vocab_
            r = PromptRenderer(vocab, self.module_.item_tokens.cpu().numpy())
            cached = (self.module_, r)
            self._renderer_cache = cached
        return cached[1]

    def _fit_history(
        self, r: PromptRenderer, tid: str, user: int | None, hist: np.ndarray
    ) -> tuple[np.ndarray, bool]:
        """(the prompt of ``tid`` with the history cut from its oldest end to fit, whether
        it was cut)."""
        T = r.item_tokens.shape[1]
        room = self.config.max_prompt - r.fixed_length(tid, 0) - len(str(user or 0)) + 1
        n_fit = max((room + 1) // (T + 1), 0)
        cut = len(hist) > n_fit
        if cut:
            hist = hist[len(hist) - n_fit :]
        return r.render(tid, user, history=hist), cut

    @staticmethod
    def _pad(prompts: list[np.ndarray]) -> np.ndarray:
        """(B, 4, S) the rendered prompts (4, S_b) each, right-padded with 0."""
        S = max(p.shape[1] for p in prompts)
        out = np.zeros((len(prompts), 4, S), dtype=np.int64)
        for b, p in enumerate(prompts):
            out[b, :, : p.shape[1]] = p
        return out

    # ------------------------------------------------------------------ training
    def _max_len(self) -> int:
        return int(self.config.max_items)

    def batch_rows(self, X: Sequences) -> int:
        """Examples per epoch: every next item, and the direct examples."""
        n = int(np.maximum(X.lengths - 1, 0).sum()) if "sequential" in self.config.tasks else 0
        if "direct" in self.config.tasks:
            n += int((X.lengths >= 1).sum()) * self.config.direct_per_user
        return n

    def batches(self, X: Sequences, ctx: BatchContext) -> Chunked[SeqBatch]:
        """One pass over the epoch's examples (the module docstring) in random order."""
        c = self.config
        self._truncated = 0  # counted per epoch
        r = self._renderer()
        seq_t = [t.id for t in training_templates("sequential")]
        dir_t = [t.id for t in training_templates("direct")]
        rows = np.zeros(0, np.int64)
        ends = np.zeros(0, np.int64)
        if "sequential" in c.tasks:
            rows, ends = next_item_examples(X)
        n_seq = len(rows)
        d_rows = np.zeros(0, np.int64)
        if "direct" in c.tasks and c.direct_per_user:
            d_rows = np.repeat(np.flatnonzero(X.lengths >= 1), c.direct_per_user)
        n = n_seq + len(d_rows)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        rng = np.random.default_rng(seed)
        tmpl = rng.integers(0, 1 << 30, size=n)
        anonymous = (rng.random(n) < c.no_user_rate) | (not c.user_ids)
        cands = np.zeros((len(d_rows), c.direct_train_candidates), np.int64)
        d_target = np.zeros(len(d_rows), np.int64)
        if len(d_rows):
            pick = X.offsets[d_rows] + (rng.random(len(d_rows)) * X.lengths[d_rows]).astype(
                np.int64
            )
            cands[:, 1:] = sample_unseen(X, d_rows, c.direct_train_candidates - 1, rng, unique=True)
            cands[:, 0] = X.items[pick]
            slot = rng.integers(0, c.direct_train_candidates, size=len(d_rows))
            ar = np.arange(len(d_rows))
            cands[ar, 0], cands[ar, slot] = cands[ar, slot], cands[ar, 0].copy()
            d_target = X.items[pick]
        order = torch.randperm(n, generator=ctx.generator)
        if c.length_pool:
            size = np.zeros(n, np.int64)
            size[:n_seq] = np.minimum(ends - X.offsets[rows], c.max_items)
            size[n_seq:] = c.direct_train_candidates
            order = length_sorted_order(order, size, ctx.batch_size, c.length_pool, ctx.generator)
        M = c.max_items
        items = r.item_tokens

        def make(idx: torch.Tensor, _: int) -> SeqBatch:
            prompts, answers, users = [], [], []
            for e in idx.tolist():
                if e < n_seq:
                    u = int(rows[e])
                    hist = history_windows(X, ends[e : e + 1], rows[e : e + 1], M)[0]
                    tid = seq_t[tmpl[e] % len(seq_t)]
                    who = None if anonymous[e] else u
                    prompt, cut = self._fit_history(r, tid, who, hist[hist >= 0])
                    prompts.append(prompt)
                    self._truncated += cut
                    answers.append(items[X.items[ends[e]]])
                else:
                    j = e - n_seq
                    u = int(d_rows[j])
                    tid = dir_t[tmpl[e] % len(dir_t)]
                    who = None if anonymous[e] else u
                    prompts.append(r.render(tid, who, candidates=cands[j]))
                    answers.append(items[d_target[j]])
                users.append(u)
            return SeqBatch(  # inputs: prompts (B, 4, S) (tokens, roles, ...); targets: (B, T)
                torch.from_numpy(self._pad(prompts)).to(ctx.device),
                torch.from_numpy(np.stack(answers)).to(ctx.device),
                torch.tensor(users, dtype=torch.int64, device=ctx.device),
                keys=idx.to(ctx.device),
            )

        return Chunked(order, ctx.batch_size, make)

    def loss_terms(self, batch: SeqBatch) -> int:
        """The answer tokens (the mean cross-entropy's terms)."""
        assert batch.targets is not None
        return int((batch.targets != PAD).sum())

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """The mean cross-entropy of the answers' tokens over the vocabulary."""
        net = self.module_
        gen = ctx.generator
        memory, mask = net.encode(batch.inputs, gen)
        answer = batch.targets
        logits = net.logits(answer[:, :-1], net.memory_keys(memory), mask, gen)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), answer.reshape(-1), ignore_index=PAD
        )
        return {"loss": loss}

    # ------------------------------------------------------------------ scoring
    def _eval_template(self) -> str:
        if self.config.eval_template:
            return self.config.eval_template
        return next(t.id for t in TEMPLATES["sequential"] if t.held_out)

    def _prompts(self, hist: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        """(B, 4, S) the evaluation prompts of histories ``hist`` (B, M) (items, -1 padding)."""
        r = self._renderer()
        tid = self._eval_template()
        h = hist.cpu().numpy()
        us = None if users is None or not self.config.user_ids else users.cpu().numpy()
        out = [
            self._fit_history(r, tid, None if us is None else int(us[b]), row[row >= 0])[0]
            for b, row in enumerate(h)
        ]
        return torch.from_numpy(self._pad(out)).to(hist.device)

    def _scores(self, batch: Any) -> torch.Tensor:
        """Beam scores for the beams' items; below them, the other items by their first
        token's log-probability."""
        net = self.module_
        hist = batch.inputs - 1  # the base's windows are item tokens (item + 1)
        memory, mask = net.encode(self._prompts(hist, batch.users))
        keys = net.memory_keys(memory)

        def next_codes(prefix: torch.Tensor, past: Cache | None) -> tuple[torch.Tensor, Cache]:
            t = prefix.shape[1]
            answer = net.columns[torch.arange(t, device=prefix.device), prefix]  # (N, t)
            logits, cache = net.next_logits(answer, keys, mask, past)
            return logits.float().log_softmax(-1)[:, net.columns[t]], cache  # (N, V) at t

        return self._beam_scores(next_codes, batch)

    def candidate_scores(
        self,
        users: np.ndarray | None,
        candidates: np.ndarray,
        template_id: str = "",
    ) -> np.ndarray:
        """(B, C) float32: the summed log-probability of each candidate's tuple as the
        answer to the direct prompt that lists ``candidates`` (B, C) for each user (``users``
        training rows, or None: folded in, "someone"); ``template_id`` a direct template
        ("": the held-out one). Exhaustive: every candidate is scored."""
        self._check_fitted()
        tid = template_id or next(t.id for t in TEMPLATES["direct"] if t.held_out)
        if template(tid).family != "direct":
            raise ConfigError(f"p5: {tid!r} is not a direct template")
        cand = np.asarray(candidates, dtype=np.int64)
        if cand.ndim != 2 or (cand.size and (cand.min() < 0 or cand.max() >= self.n_items_)):
            raise DataError(
                f"p5: candidates must be (users, C) item indices in [0, {self.n_items_}), got "
                f"shape {cand.shape}"
            )
        B, C = cand.shape
        if users is not None:
            users = np.asarray(users).reshape(-1)
            if len(users) != B:
                raise DataError(f"p5: {len(users)} users but {B} candidate lists")
            if not np.issubdtype(users.dtype, np.integer) or (users < 0).any():
                raise DataError("p5: users must be training rows (integers from 0), or None")
        if not self.config.user_ids:
            users = None
        r = self._renderer()
        net = self.module_
        net.eval()
        dev = self._device()
        T = net.T
        per = max(1, LOGIT_BUDGET // max(1, C * T * net.tok.num_embeddings))
        per = max(1, min(per, PROMPT_TOKEN_BUDGET // max(1, C * (T + 1))))  # encoder rows
        out = np.zeros((B, C), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, B, per):
                rows = range(s, min(B, s + per))
                prompts = [
                    r.render(tid, None if users is None else int(users[b]), candidates=cand[b])
                    for b in rows
                ]
                longest = max(p.shape[1] for p in prompts)
                if longest > self.config.max_prompt:
                    raise ConfigError(
                        f"p5: a direct prompt of {C} candidates is {longest} "
                        f"tokens, more than max_prompt ({self.config.max_prompt}); raise "
                        f"max_prompt or list fewer candidates"
                    )
                memory, mask = net.encode(torch.from_numpy(self._pad(prompts)).to(dev))
                ans = net.item_tokens[torch.from_numpy(cand[s : s + len(prompts)]).to(dev)]
                ans = ans.reshape(-1, T)  # (b C, T): C rows per prompt
                logp = net.logits(ans[:, :-1], net.memory_keys(memory), mask).float()
                logp = logp.log_softmax(-1).gather(2, ans[:, :, None])[..., 0].sum(1)
                out[s : s + len(prompts)] = logp.view(-1, C).cpu().numpy()
        return out

    def _encode(self, batch: Any) -> torch.Tensor:
        """The encoder's mean output over the evaluation prompt's tokens (B, D)."""
        net = self.module_
        memory, mask = net.encode(self._prompts(batch.inputs - 1, batch.users))
        m = mask[..., None].to(memory.dtype)
        return (memory * m).sum(1) / m.sum(1)

    def item_embeddings(self) -> np.ndarray:
        """Each item's mean token embedding (I, D)."""
        self._check_fitted()
        with torch.inference_mode():
            return self.module_.tok(self.module_.item_tokens).mean(1).float().cpu().numpy()

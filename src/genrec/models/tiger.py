r"""TIGER: generative retrieval with semantic item IDs (Rajput et al., NeurIPS 2023).

Every item is named by a short tuple of discrete codes (c_1, ..., c_T): the codes of its
feature vector under residual quantization (an RQ-VAE, or residual k-means, with the extra
token that makes tuples unique; :mod:`genrec.models.semantic_ids`), so that similar items
share prefixes. A user is the code tuples of their last ``max_items`` items, flattened into
one token sequence behind a user token; an encoder-decoder transformer reads it and
generates the next item's tuple token by token:

    p(item | history) = prod_t p(c_t | c_<t, encoder(user, history))

Inference is beam search constrained by the trie of the items' tuples
(:func:`genrec.models.beam.constrained_beam_search`), so every beam is a real item; the
``beam`` best items are ranked by their tuples' summed log-probability. The beams leave out
the items of the user's whole history (``beam_skips_history``; rankings leave those out
by default), so that no beam is spent on them; those items rank last. The other items get
finite scores below every beam, ordered by the log-probability of their first code (the
prefix the search scored for all of them), so a full ranking exists; lists up to ``beam``
long are the beams' (``recommend`` refuses a ``k`` past ``beam``; an item the caller
excludes beyond the history still takes a beam).

Tokens (one table, tied to the output layer as in T5): 0 padding; level t's code c is
``1 + t V + c`` (V codes per level: the largest code plus one); then the decoder's start
token; then the user tokens: "no user" (a folded-in history, or ``user_buckets = 0``) and
``user_buckets`` buckets that training users are hashed into. The encoder's first slot is
always the user token; the history's tokens follow, right-aligned (left-padded), with
learned positions counted from the window's end. Level t's logits are the decoder's output
at step t against the embeddings of level t's codes, scaled by D^-1/2.

Blocks (T5-style): pre-layer-norm residual sublayers, attention without biases, ``n_heads``
heads of ``head_dim`` (the inner width need not be D), a ReLU feed-forward network of
``ffn_dim``, dropout on the embeddings and each sublayer's output, a final layer norm in
each stack. The decoder's self-attention is causal; its cross-attention reads every real
token of the encoder.

Training: every next item of every training sequence is one example (its last
``max_items`` items before it as the history); the loss is the mean cross-entropy of the
target's T codes, each over its level's V codes (every token is real: no padding targets).
An encoder-decoder reads a different history for each target, so each target costs its own
pass; examples are drawn in random order and, with ``length_pool``, sorted by history length
within pools of that many batches, so a batch is only as long as its longest history.

The paper's setting (``TIGERConfig.paper()``, ``configs/amazon-beauty/tiger-paper.toml``):
4 encoder and 4 decoder layers, D = 128, 6 heads of 64, FFN 1024, dropout 0.1, 2,000 user
buckets, 20 history items, 3 RQ-VAE levels of 256 codes and the extra token, beam search.

Departures (each a config field, or named here):

* Item features: the paper encodes item text (title, price, brand, category) with
  Sentence-T5; genrec codes whatever item features it is given (attribute lists, titles
  and genres, a trained model's item embeddings, a ``.npy`` matrix: ``item_features``).
* Positions are learned absolute embeddings of the encoder slots (T5: relative position
  buckets); no dropout on attention weights.
* ``length_pool``: batches of similar history length (above); the paper's batches are random.
* ``no_user_rate``: a share of training examples (0.1) read the "no user" token instead of
  their bucket, so that a folded-in history, which has no bucket, reads a trained token
  (the paper has no fold-in).
* ``beam_skips_history``: the beams leave out the history's items (above).
* Optimiser: the trainer's (AdamW by default, constant learning rate); the paper trains
  200k steps with an inverse-square-root schedule from 0.01.
* ``train.select_metric`` and ``train.patience``: the epoch is chosen on validation NDCG@10.
* A decoder-only variant (all targets of a sequence in one pass) is not built.

Dimension letters: B users (or examples) in a batch, W beams per user, T tokens per tuple
(levels + 1), V codes per level, M history items read, S = 1 + M T encoder slots, D width,
H heads, I items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.config import Range, check_ranges
from genrec.data.sequences import Sequences
from genrec.errors import DataError
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.beam_ranking import BeamRankingRecommender, Cache
from genrec.models.nn_blocks import dropout_values
from genrec.models.semantic_ids import (
    SemanticIdConfig,
    SemanticIds,
    code_item_features,
)
from genrec.models.sequential import (
    PAD,
    SeqBatch,
    as_sequences,
    length_sorted_order,
    next_item_examples,
    window_index,
)
from genrec.train import BatchContext, Chunked, FitContext, StepContext, TrainConfig
from genrec.train.noise import WindowDraws, WindowNoise

__all__ = ["TIGER", "TIGERConfig", "TIGERNet", "user_bucket", "history_windows", "stack_arrays"]

HASH = 2654435761  # Knuth's multiplicative hash, for user buckets


@dataclass(frozen=True)
class TIGERConfig:
    dim: Annotated[int, Range(ge=1)] = 128  # D, embeddings and residual stream
    n_layers: Annotated[int, Range(ge=1)] = 4  # encoder layers, and decoder layers
    n_heads: Annotated[int, Range(ge=1)] = 6  # H
    head_dim: Annotated[int, Range(ge=1)] = 64  # each head's query/key/value width
    ffn_dim: Annotated[int, Range(ge=1)] = 1024  # feed-forward inner width
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1
    max_items: Annotated[int, Range(ge=1)] = 20  # M, the most recent history items read
    user_buckets: Annotated[int, Range(ge=0)] = 2000  # hashed user tokens; 0: none
    # training examples that read the "no user" token instead of their bucket, so that a
    # folded-in history (which has no bucket) is read by a trained token
    no_user_rate: Annotated[float, Range(ge=0, le=1)] = 0.1
    beam: Annotated[int, Range(ge=1)] = 20  # beams kept per user at each decoding step
    # the beams leave out the items of the user's history (rankings leave them out by default):
    # the beams are spent on items that can be recommended; those items then rank last
    beam_skips_history: bool = True
    length_pool: Annotated[int, Range(ge=0)] = 0  # batches sorted by length in such pools
    tokenizer: Literal["rqvae", "kmeans"] = "rqvae"  # the paper's RQ-VAE, or residual k-means
    semantic: SemanticIdConfig = field(default_factory=SemanticIdConfig)  # the codes
    # sources of the item features, read by the runner (genrec.runs.item_features): an
    # item -> attributes .json, a .npy matrix (rows in the data's item order), a run folder
    # or "interactions" (the training columns); none: "interactions" alone
    item_features: tuple[str, ...] = ()
    feature_dim: Annotated[int, Range(ge=1)] = 64  # SVD width of an attribute source
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=100,
            batch_size=256,
            lr=1e-3,
            optimizer="adamw",
            weight_decay=0.0,
            patience=None,
            select_metric="ndcg@10",
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)

    @classmethod
    def paper(cls, **overrides: Any) -> TIGERConfig:
        """The paper's network, user buckets and tokenizer (the RQ-VAE's 20,000 epochs)."""
        return replace(cls(semantic=SemanticIdConfig.paper()), **overrides)


# ----------------------------------------------------------------------------- pure parts
def user_bucket(users: torch.Tensor, buckets: int) -> torch.Tensor:
    """Each training user's bucket in [0, buckets) by a multiplicative hash."""
    return (users.to(torch.int64) * HASH) % (2**32) % buckets


def history_windows(
    seqs: Sequences, ends: np.ndarray, rows: np.ndarray, max_items: int
) -> np.ndarray:
    """(B, max_items) the items before position ``ends[b]`` of ``seqs.items`` within row
    ``rows[b]``'s sequence, the last ``max_items`` of them, left-padded with -1."""
    idx, valid = window_index(seqs, ends, rows, max_items)  # (B, M) each
    items = seqs.items[idx] if len(seqs.items) else np.zeros(idx.shape)
    return np.where(valid, items, -1).astype(np.int64)


def _drop(x: torch.Tensor, p: float, gen: WindowDraws) -> torch.Tensor:
    return x if gen is None else dropout_values(x, p, gen)


# ----------------------------------------------------------------------------- network
class Attention(nn.Module):
    """Multi-head attention without biases (T5): queries (B, Lq, D), keys (B, Lk, D), a
    mask (B, Lq, Lk) True = attend."""

    def __init__(self, c: TIGERConfig):
        super().__init__()
        self.h, self.d = c.n_heads, c.head_dim
        inner = c.n_heads * c.head_dim
        self.q = nn.Linear(c.dim, inner, bias=False)
        self.kv = nn.Linear(c.dim, 2 * inner, bias=False)
        self.o = nn.Linear(inner, c.dim, bias=False)

    def keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, H, Lk, d) of ``x`` (B, Lk, D)."""
        B, L, _ = x.shape
        k, v = self.kv(x).view(B, L, 2, self.h, self.d).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.h, self.d).transpose(1, 2)  # (B, H, Lq, d)
        out = F.scaled_dot_product_attention(q, *kv, attn_mask=mask[:, None])
        return self.o(out.transpose(1, 2).reshape(B, L, self.h * self.d))


class FFN(nn.Module):
    def __init__(self, c: TIGERConfig):
        super().__init__()
        self.w1 = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.w2 = nn.Linear(c.ffn_dim, c.dim, bias=False)
        self.p = c.dropout

    def forward(self, x: torch.Tensor, gen: WindowDraws) -> torch.Tensor:
        return self.w2(_drop(torch.relu(self.w1(x)), self.p, gen))


class EncoderLayer(nn.Module):
    def __init__(self, c: TIGERConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn, self.ffn, self.p = Attention(c), FFN(c), c.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, gen: WindowDraws) -> torch.Tensor:
        a = self.norm1(x)
        x = x + _drop(self.attn(a, self.attn.keys(a), mask), self.p, gen)
        return x + _drop(self.ffn(self.norm2(x), gen), self.p, gen)


class DecoderLayer(nn.Module):
    def __init__(self, c: TIGERConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(c.dim) for _ in range(3))
        self.self_attn, self.cross, self.ffn = Attention(c), Attention(c), FFN(c)
        self.p = c.dropout

    def forward(
        self,
        y: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor,
        gen: WindowDraws,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(outputs (B W, t, D), the self-attention keys and values of every step so far).

        ``y`` (B W, t, D): W decoder rows per memory row, the steps after ``past`` (the keys
        and values (B W, H, t0, d) of the earlier steps, decoding; None: from the start);
        ``memory_kv`` (B, H, S, d) each, ``memory_mask`` (B, S). The W rows of a memory row
        read it together: their t W queries form one cross-attention query sequence (no copy
        of the memory per beam)."""
        N, t, D = y.shape
        B = memory_mask.shape[0]
        W = N // B
        a = self.norm1(y)
        k, v = self.self_attn.keys(a)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        t0 = k.shape[2] - t
        causal = torch.ones(t, t0 + t, dtype=torch.bool, device=y.device).tril(t0)
        y = y + _drop(self.self_attn(a, (k, v), causal.expand(N, t, t0 + t)), self.p, gen)
        q = self.norm2(y).reshape(B, W * t, D)  # the W beams' queries of one user in a row
        mask = memory_mask[:, None, :].expand(B, W * t, memory_mask.shape[1])
        y = y + _drop(self.cross(q, memory_kv, mask).reshape(N, t, D), self.p, gen)
        return y + _drop(self.ffn(self.norm3(y), gen), self.p, gen), (k, v)


def stack_arrays(c: TIGERConfig) -> dict[str, ArraySpec]:
    """The saved arrays of the encoder and decoder layers and their final norms (what a
    network built of these blocks holds besides its embeddings)."""
    D, inner, FD = c.dim, c.n_heads * c.head_dim, c.ffn_dim

    def attn(p: str) -> dict[str, ArraySpec]:
        return {
            f"{p}q.weight": ArraySpec((inner, D)),
            f"{p}kv.weight": ArraySpec((2 * inner, D)),
            f"{p}o.weight": ArraySpec((D, inner)),
        }

    def norm(p: str) -> dict[str, ArraySpec]:
        return {f"{p}.weight": ArraySpec((D,)), f"{p}.bias": ArraySpec((D,))}

    ffn = {"ffn.w1.weight": ArraySpec((FD, D)), "ffn.w2.weight": ArraySpec((D, FD))}
    out: dict[str, ArraySpec] = {}
    for j in range(c.n_layers):
        e, d = f"encoder.{j}.", f"decoder.{j}."
        out |= attn(f"{e}attn.") | norm(f"{e}norm1") | norm(f"{e}norm2")
        out |= {e + k: v for k, v in ffn.items()}
        out |= attn(f"{d}self_attn.") | attn(f"{d}cross.") | {d + k: v for k, v in ffn.items()}
        out |= norm(f"{d}norm1") | norm(f"{d}norm2") | norm(f"{d}norm3")
    return out | norm("enc_norm") | norm("dec_norm")


class TIGERNet(nn.Module):
    """The token table, encoder and decoder; the items' codes as the buffer ``codes`` (I, T).

    ``encode(tokens (B, S), gen)`` -> (memory (B, S, D), mask (B, S));
    ``logits(prefix (B W, t) codes, memory keys per layer, mask, gen)`` -> (B W, t, V), the
    logits of level j at step j < t + 1 (step 0 reads the start token alone)."""

    codes: torch.Tensor

    def __init__(self, codes: torch.Tensor, c: TIGERConfig, generator: torch.Generator):
        super().__init__()
        self.register_buffer("codes", codes.to(torch.int64).clone())  # (I, T)
        self.T = int(codes.shape[1])
        self.V = int(codes.max()) + 1
        self.bos = 1 + self.T * self.V
        self.no_user = self.bos + 1
        self.user_buckets = c.user_buckets
        self.slots = 1 + c.max_items * self.T  # S
        self.p, self.dim = c.dropout, c.dim
        self.tok = nn.Embedding(self.no_user + 1 + c.user_buckets, c.dim, padding_idx=PAD)
        self.enc_pos = nn.Embedding(self.slots, c.dim)
        self.dec_pos = nn.Embedding(self.T, c.dim)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        for p in self.parameters():  # in a fixed order, from the generator
            if p.ndim == 2:
                with torch.no_grad():
                    p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=generator)
        with torch.no_grad():
            self.tok.weight[PAD].zero_()

    @staticmethod
    def arrays(n_items: int, c: TIGERConfig) -> dict[str, ArraySpec]:
        """The arrays of the state_dict (the token table's and the codes' widths follow
        the codes, so those axes are checked on load)."""
        D = c.dim
        out = {
            "codes": ArraySpec((n_items, None), kind="i"),
            "tok.weight": ArraySpec((None, D)),
            "enc_pos.weight": ArraySpec((None, D)),
            "dec_pos.weight": ArraySpec((None, D)),
        }
        return out | stack_arrays(c)

    # tokens
    def code_tokens(self, items: torch.Tensor) -> torch.Tensor:
        """(..., T) the tokens of ``items`` (...) (-1: padding, all T tokens 0)."""
        level = torch.arange(self.T, device=items.device) * self.V + 1  # (T,)
        tok = self.codes[items.clamp(min=0)] + level
        return torch.where(items[..., None] >= 0, tok, torch.zeros_like(tok))

    def encoder_tokens(
        self,
        history: torch.Tensor,
        users: torch.Tensor | None,
        gen: WindowDraws = None,
        no_user_rate: float = 0.0,
    ) -> torch.Tensor:
        """(B, S') the user token, then the history's tokens; ``history`` (B, M) items,
        left-padded with -1; the leading all-padding history columns dropped. With ``gen``
        (training), each row reads the "no user" token with probability ``no_user_rate``."""
        B = history.shape[0]
        none = torch.full((B, 1), self.no_user, dtype=torch.int64, device=history.device)
        if users is None or self.user_buckets == 0:
            user = none
        else:
            bucket = user_bucket(users.to(history.device), self.user_buckets)
            user = (self.no_user + 1 + bucket)[:, None]
            if gen is not None and no_user_rate > 0:
                if isinstance(gen, WindowNoise):  # keyed by example
                    u = gen.uniform((B, 1))
                else:
                    u = torch.rand((B, 1), generator=gen, device=gen.device)
                user = torch.where(u.to(history.device) < no_user_rate, none, user)
        real = (history >= 0).any(0)  # (M,)
        first = int(real.float().argmax()) if bool(real.any()) else history.shape[1]
        hist = self.code_tokens(history[:, first:]).reshape(B, -1)  # (B, M' T)
        return torch.cat([user, hist], 1)

    # stacks
    def encode(
        self, tokens: torch.Tensor, gen: WindowDraws = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory (B, S', D), mask (B, S')) of encoder tokens (B, S') (slot 0: the user)."""
        S = tokens.shape[1]
        keep = tokens != PAD  # (B, S)
        pos = torch.cat([self.enc_pos.weight[:1], self.enc_pos.weight[self.slots - S + 1 :]])
        eye = torch.eye(S, dtype=torch.bool, device=tokens.device)
        mask = keep[:, None, :] | eye  # a padding slot reads itself (finite, unread)
        if not isinstance(gen, WindowNoise):
            x = _drop(self.tok(tokens) + pos, self.p, gen)
            for layer in self.encoder:
                x = layer(x, mask, gen)
            return self.enc_norm(x), keep
        slot = torch.arange(S - 1, -1, -1)  # keyed by slot: the user's, or from the end
        slot[0] = 2**32 - 1
        gen.index = {1: slot}
        try:
            x = _drop(self.tok(tokens) + pos, self.p, gen)
            for layer in self.encoder:
                x = layer(x, mask, gen)
        finally:
            gen.index = None
        return self.enc_norm(x), keep

    def memory_keys(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention keys and values of the memory."""
        return [cast(DecoderLayer, layer).cross.keys(memory) for layer in self.decoder]

    def logits(
        self,
        prefix: torch.Tensor,
        keys: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        gen: WindowDraws = None,
    ) -> torch.Tensor:
        """(B W, t + 1, V): after the start token and the codes ``prefix`` (B W, t)."""
        N, t = prefix.shape
        level = torch.arange(t, device=prefix.device) * self.V + 1
        start = torch.full((N, 1), self.bos, dtype=torch.int64, device=prefix.device)
        y = self.tok(torch.cat([start, prefix + level], 1)) + self.dec_pos.weight[: t + 1]
        y = _drop(y, self.p, gen)
        for layer, kv in zip(self.decoder, keys):
            y, _ = layer(y, kv, mask, gen)
        table = self.tok.weight[1 : 1 + self.T * self.V].view(self.T, self.V, self.dim)
        y = self.dec_norm(y)  # (N, t + 1, D)
        return torch.einsum("ntd,tvd->ntv", y, table[: t + 1]) / math.sqrt(self.dim)

    def next_logits(
        self,
        prefix: torch.Tensor,
        keys: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(logits (B W, V) of the code after ``prefix`` (B W, t), each decoder layer's
        self-attention keys and values of the t + 1 steps): decoding one step at a time,
        ``past`` the keys and values of the first t steps (None at t = 0), rows aligned
        with ``prefix``. Equal to ``logits(prefix, ...)[:, -1]``."""
        N, t = prefix.shape
        if t == 0:
            tok = torch.full((N,), self.bos, dtype=torch.int64, device=prefix.device)
        else:
            tok = prefix[:, -1] + (t - 1) * self.V + 1
        y = (self.tok(tok) + self.dec_pos.weight[t])[:, None]  # (N, 1, D)
        cache = []
        for j, (layer, kv) in enumerate(zip(self.decoder, keys)):
            y, kv_self = layer(y, kv, mask, None, None if past is None else past[j])
            cache.append(kv_self)
        table = self.tok.weight[1 + t * self.V : 1 + (t + 1) * self.V]  # (V, D)
        return self.dec_norm(y[:, 0]) @ table.T / math.sqrt(self.dim), cache


# ----------------------------------------------------------------------------- model
class TIGER(BeamRankingRecommender):
    """TIGER (Rajput et al. 2023): an encoder-decoder that generates the next item's codes.

    ``fit(seqs, context=FitContext(side=features))`` codes the items from ``features``
    (I, d) first (the tokenizer: ``config.tokenizer``); integer ``side`` (I, T) are the
    codes themselves; without ``side``, the items are coded from their interaction columns
    in ``seqs``. The runner reads ``config.item_features`` into ``context.side``.

    Attributes
    ----------
    module_ : TIGERNet (its ``codes`` buffer: every item's tuple)
    semantic_ids_ : SemanticIds or None (the tokenizer's codes and health; None after load)
    history_, best_epoch_ : as every trained model

    Examples
    --------
    >>> import numpy as np
    >>> from genrec.data import Sequences
    >>> from genrec.train import FitContext
    >>> seqs = Sequences.from_lists([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]], n_items=4)
    >>> codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    >>> m = TIGER(dim=8, n_layers=1, n_heads=1, head_dim=8, ffn_dim=16, beam=4,
    ...           user_buckets=0, train={"epochs": 2, "device": "cpu"})
    >>> m.fit(seqs, context=FitContext(side=codes)).recommend(None, seqs.take([0]), k=2)[0].shape
    (1, 2)
    """

    name = "tiger"
    capabilities = Capabilities(
        trainer=True, selects_on="ranking", sequential=True, item_features=True
    )
    config_class: ClassVar[type] = TIGERConfig
    keyed_noise: ClassVar[bool] = True  # dropout and the no-user draws keyed by example
    module_: TIGERNet

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.semantic_ids_: SemanticIds | None = None
        self._codes: torch.Tensor | None = None

    # ------------------------------------------------------------------ codes
    def item_codes(self) -> np.ndarray:
        """Every item's code tuple (I, T): the tokenizer's codes and the token that makes
        each unique, or the given codes (with that token where they collided)."""
        self._check_fitted()
        return self.module_.codes.cpu().numpy()

    def _tokenize(self, side: Any, seqs: Sequences) -> torch.Tensor:
        """The items' code tuples (I, T): ``side`` as they are when it holds integers (made
        unique by the extra token where needed); else the tokenizer's codes of ``side``, the
        item features (I, d); without features, of the items' interaction columns
        (TF-IDF and a truncated SVD of the item x user matrix: collaborative codes)."""
        n_items = seqs.n_items
        if side is None:
            from genrec.data.item_content import dense_features

            side = dense_features(seqs.to_csr().T.tocsr(), self.config.feature_dim)
        a = np.asarray(side)
        if a.ndim != 2 or a.shape[0] != n_items:
            raise DataError(
                f"tiger: item features of shape {a.shape}, and the data has {n_items} items: "
                f"give one row per item, in the data's item order"
            )
        if np.issubdtype(a.dtype, np.integer):  # codes given: made unique if needed
            if (a < 0).any():
                bad = np.flatnonzero((a < 0).any(1))
                raise DataError(
                    f"tiger: the given codes are negative for {len(bad)} items (item indices "
                    f"{bad[:5].tolist()}); codes are integers from 0"
                )
            from genrec.models.quantize import unique_tuples

            codes = torch.from_numpy(a.astype(np.int64))
            if len({tuple(r) for r in a.tolist()}) < n_items:
                codes, _ = unique_tuples(codes)
            return codes
        ids = code_item_features(a, self.config.tokenizer, self.config.semantic, "tiger")
        self.semantic_ids_ = ids
        return torch.from_numpy(ids.codes)

    def fit(self, X: Any, *, valid: Any = None, context: FitContext | None = None) -> TIGER:
        """Code the items (from ``context.side``), then train (the trainer's fit)."""
        seqs = as_sequences(X)
        self._codes = self._tokenize(None if context is None else context.side, seqs)
        try:
            super().fit(seqs, valid=valid, context=context)
        finally:
            self._codes = None
        return self

    def _build_module(self, n_items: int, generator: torch.Generator) -> TIGERNet:
        assert self._codes is not None, "fit or load sets the codes first"
        return TIGERNet(self._codes, self.config, generator)

    def state_arrays(self) -> dict[str, ArraySpec]:
        return TIGERNet.arrays(self.n_items_, self.config)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        codes = np.asarray(state["codes"])
        if codes.ndim != 2 or len(codes) != self.n_items_ or (codes < 0).any():
            raise DataError(
                f"tiger: the saved codes have shape {codes.shape}, not one row of "
                f"non-negative codes per item ({self.n_items_}); is weights.npz this model's?"
            )
        self._codes = torch.from_numpy(codes.astype(np.int64))
        try:
            super()._set_state(state)
        finally:
            self._codes = None

    # ------------------------------------------------------------------ training
    def _max_len(self) -> int:
        return int(self.config.max_items)

    def batch_rows(self, X: Sequences) -> int:
        """Training examples per epoch: every item after a sequence's first."""
        return int(np.maximum(X.lengths - 1, 0).sum())

    def batches(self, X: Sequences, ctx: BatchContext) -> Chunked[SeqBatch]:
        """One pass over every (history, next item) example in random order; a batch's
        ``inputs`` are the history items (B, M) (-1 padding) and ``targets`` (B,) the
        next items."""
        rows, ends = next_item_examples(X)
        order = torch.randperm(len(rows), generator=ctx.generator)
        if self.config.length_pool:
            n_hist = np.minimum(ends - X.offsets[rows], self.config.max_items)
            order = length_sorted_order(
                order, n_hist, ctx.batch_size, self.config.length_pool, ctx.generator
            )
        M = self.config.max_items

        def make(idx: torch.Tensor, _: int) -> SeqBatch:
            i = idx.numpy()
            hist = history_windows(X, ends[i], rows[i], M)
            return SeqBatch(
                torch.from_numpy(hist).to(ctx.device),
                torch.from_numpy(X.items[ends[i]]).to(ctx.device),
                torch.from_numpy(rows[i]).to(ctx.device),
                keys=idx.to(ctx.device),  # the examples: a user has several in an epoch
            )

        return Chunked(order, ctx.batch_size, make)

    def loss_terms(self, batch: SeqBatch) -> int:
        """The examples (each adds its T codes to the mean cross-entropy)."""
        return len(batch)

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """The mean cross-entropy of each target's T codes."""
        net = self.module_
        assert isinstance(batch, SeqBatch) and batch.targets is not None
        gen = ctx.windows_rng(batch.noise_keys())
        tokens = net.encoder_tokens(batch.inputs, batch.users, gen, self.config.no_user_rate)
        memory, mask = net.encode(tokens, gen)
        target = net.codes[batch.targets]  # (B, T)
        logits = net.logits(target[:, :-1], net.memory_keys(memory), mask, gen)
        loss = F.cross_entropy(logits.reshape(-1, net.V).float(), target.reshape(-1))
        return {"loss": loss}

    # ------------------------------------------------------------------ scoring
    def _scores(self, batch: Any) -> torch.Tensor:
        """Beam scores for the beams' items; below them, the other items by their first
        code's log-probability."""
        net = self.module_
        hist = batch.inputs - 1  # the base's scoring windows are item tokens (item + 1)
        memory, mask = net.encode(net.encoder_tokens(hist, batch.users))
        keys = net.memory_keys(memory)

        def next_codes(prefix: torch.Tensor, past: Cache | None) -> tuple[torch.Tensor, Cache]:
            logits, cache = net.next_logits(prefix, keys, mask, past)
            return logits.float().log_softmax(-1), cache  # (B W, V)

        return self._beam_scores(next_codes, batch)

    def _encode(self, batch: Any) -> torch.Tensor:
        """The encoder's mean output over the real slots (B, D)."""
        net = self.module_
        memory, mask = net.encode(net.encoder_tokens(batch.inputs - 1, batch.users))
        m = mask[..., None].to(memory.dtype)
        return (memory * m).sum(1) / m.sum(1)

    def item_embeddings(self) -> np.ndarray:
        """Each item's mean code-token embedding (I, D)."""
        self._check_fitted()
        with torch.inference_mode():
            tok = self.module_.code_tokens(torch.arange(self.n_items_, device=self._device()))
            return self.module_.tok(tok).mean(1).float().cpu().numpy()

"""HSTU: hierarchical sequential transduction units (Zhai et al., ICML 2024), retrieval.

"Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative
Recommendations" replaces the softmax attention of a Transformer by pointwise gated
attention. As the paper's public-data retrieval experiments (ML-1M, ML-20M, Amazon Books),
the model here reads a user's items in order and predicts the next one at every position.

Input. Item ``i`` is token ``i + 1`` (0 pads, windows left-padded to L = ``max_len``);
position p counts from the window's oldest real item (p = 0), so padding moves nothing:

    x_0 = dropout(E[token] * sqrt(D) + P[p]),   0 at padding           (B, L, D)

One block (``n_blocks`` of them, each with its own weights), Norm = layer norm without
affine parameters, phi = SiLU, H heads, widths d_qk and d_v per head:

    U, V, Q, K = split(phi(Norm(x) W_uvqk))                             W_uvqk (D, 2H(d_v + d_qk))
    A_h[i, j]  = phi(Q_h[i] . K_h[j] + rab^p(i - j) + rab^t(i, j)) / n   for j <= i, j real
    Y          = Norm(concat_h A_h V_h) * U                             (B, L, H d_v)
    x'         = W_o dropout(Y) + b_o + x                               (residual)

There is no softmax and no 1 / sqrt(d_qk): the weights are SiLU values divided by
n = ``max_len``, the padded window length, a constant (the public code divides by its padded
length N as well, ``F.silu(qk) / n`` with n the mask's size). ``rab^p`` is a learned weight
per relative distance i - j (0..L-1, one bucket per distance, as the public code's 2N - 1
weights); ``rab^t`` a learned weight per log-bucket of the time gap,
bucket = clamp(floor(ln(max(|t_i - t_j|, 1)) / 0.301), 0, ``time_buckets``), added only when
the sequences carry timestamps. Both biases are shared by the heads.

Output. The last block's states are L2-normalised, u = x / ||x||, and so are the item
embeddings, e_i = E[i + 1] / ||E[i + 1]||; the score of item i is the cosine u . e_i. Training:
at every real position with a next item (as the public code, the padding slot before a
history's first item predicts nothing), sampled softmax over the target and ``n_negatives``
items drawn uniformly (a negative equal to the target is masked), on the logits
u . e / ``temperature`` (:func:`genrec.models.seq_losses.sampled_softmax_loss`); or, with
``loss = "ce"``, the full softmax over every item.

Settings of the public code's Amazon Books config (``hstu-sampled-softmax-n512-final``),
the defaults and configs/amazon-beauty/hstu-paper.toml: L 50, D 64, 4 blocks, 4 heads,
d_qk = d_v = 16, dropout 0.5 on the input and in the blocks, 512 negatives per position,
temperature 0.05, L2-normalised users and items, AdamW lr 1e-3, no weight decay, batches
of 128, 201 epochs. Init as that code: item embeddings N(0, 0.02^2) truncated at 2 std,
P Xavier-normal, W_uvqk and the biases N(0, 0.02^2), W_o Xavier-uniform.

Departures (the config field, where there is one):

* ``time_buckets``: the public code biases query i by the gap between the *next* item's
  time and item j (t_{i+1} - t_j); the next item's time is not in a history given to
  ``score``, so query i uses its own time (t_i - t_j). Without timestamps (Beauty) the
  position bias alone is added (the public code then adds neither). 0 leaves it out.
* ``shared_negatives`` (default false, per position as the paper): true draws one set of
  ``n_negatives`` for the whole batch, far cheaper on a CPU.
* Adam's betas are the trainer's (0.9, 0.999); the public code uses (0.9, 0.98).
* The attention reads every real item of the window; the public code's window has 11 more
  slots, kept for generation, so its n is 61 for L = 50 and here n = 50.
* ``length_pool`` (default 0: random batches, as the paper): users are drawn in random
  order, then sorted by length within pools of that many batches and the batches
  shuffled, so a batch's window is only as long as its longest history (Beauty: 6 slots
  on average instead of 50). The outputs at real positions are the same; which users
  share a batch, and so each batch's mean over positions, is not.
* ``train.select_metric``, ``train.patience``: the epoch is chosen on validation NDCG@10
  (default: every epoch run, the best kept).

Not departures: a window is cut to its last non-padding columns, and scoring runs rows in
groups of similar length; padding never enters the attention, so the numbers are those
of the full window.

Dimension letters: B users in a batch, L = max_len positions, D width, H heads, I items,
N positions with a target, K negatives, M distinct items of a batch's targets and
negatives.

References
----------
Zhai, Liao, Liu, Wang, Li, Cao, Gao, Gong, Gu, He, Lu, Shi. Actions Speak Louder than
Words: Trillion-Parameter Sequential Transducers for Generative Recommendations. ICML 2024.
https://arxiv.org/abs/2402.17152; code: github.com/facebookresearch/generative-recommenders
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from genrec.config import Range, check_ranges
from genrec.data.sequences import Sequences
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import dropout_values
from genrec.models.seq_losses import ce_loss, sampled_softmax_loss, uniform_negatives
from genrec.models.sequential import (
    PAD,
    SeqBatch,
    TorchSequentialRecommender,
    length_sorted_order,
    trim_padding,
)
from genrec.train import BatchContext, Chunked, StepContext, TrainConfig
from genrec.train.noise import WindowDraws, WindowNoise

__all__ = [
    "HSTU",
    "HSTUConfig",
    "HSTUNetwork",
    "pointwise_attention",
    "position_bias",
    "time_bucket",
    "positions_from_first",
    "length_sorted_order",
]

TIME_LOG_BASE = 0.301  # the public code's bucket width: floor(ln|dt| / 0.301)


# ---------------------------------------------------------------- pure functions


def positions_from_first(valid: torch.Tensor) -> torch.Tensor:
    """Position of each slot counted from the row's first real item (B, L) int64; 0 at the
    (left) padding. ``valid`` (B, L) bool."""
    return (valid.long().cumsum(1) - 1).clamp_min(0)


def position_bias(w: torch.Tensor, L: int) -> torch.Tensor:
    """rab^p (L, L): ``w[i - j]`` for j <= i (the weights of distances 0..len(w)-1); 0 above
    the diagonal, which the causal mask removes."""
    i = torch.arange(L, device=w.device)
    d = i[:, None] - i[None, :]  # (L, L) i - j
    return torch.where(d >= 0, w[d.clamp(0, len(w) - 1)], torch.zeros((), device=w.device))


def time_bucket(times: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Log bucket of every gap |t_i - t_j| (B, L, L) int64 in [0, n_buckets]:
    floor(ln(max(|dt|, 1)) / 0.301). ``times`` (B, L)."""
    dt = (times[:, :, None] - times[:, None, :]).abs().clamp_min(1.0)  # (B, L, L)
    return (torch.log(dt) / TIME_LOG_BASE).long().clamp(0, n_buckets)


def pointwise_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    valid: torch.Tensor,
    n: int,
) -> torch.Tensor:
    """HSTU's attention: sum_j SiLU(q_i . k_j + bias[i, j]) / n * v_j over j <= i, j real.

    Parameters
    ----------
    q, k : (B, L, H, d_qk)
    v : (B, L, H, d_v)
    bias : (B or 1, L, L), added to every head
    valid : (B, L) bool, the real (not padding) slots
    n : the normaliser

    Returns
    -------
    (B, L, H * d_v)
    """
    B, L, H, dv = v.shape
    s = torch.einsum("bihd,bjhd->bhij", q, k) + bias[:, None]  # (B, H, L, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()  # (L, L) j <= i
    keep = causal[None, None] & valid[:, None, None, :]  # (B, 1, L, L)
    a = (F.silu(s) / n).masked_fill(~keep, 0.0)  # (B, H, L, L)
    return torch.einsum("bhij,bjhd->bihd", a, v).reshape(B, L, H * dv)


def _dropout(x: torch.Tensor, p: float, generator: WindowDraws) -> torch.Tensor:
    """Inverted dropout drawn from ``generator``; none without one (scoring)."""
    return x if generator is None else dropout_values(x, p, generator)


# ---------------------------------------------------------------- the network


class HSTUBlock(nn.Module):
    """One HSTU layer (module docstring); its own position and time biases."""

    def __init__(
        self,
        dim: int,
        heads: int,
        qk_dim: int,
        v_dim: int,
        max_len: int,
        time_buckets: int,
        dropout: float,
        generator: torch.Generator,
    ):
        super().__init__()
        self.heads, self.qk_dim, self.v_dim, self.dropout = heads, qk_dim, v_dim, dropout
        self.n_time = time_buckets
        width = 2 * heads * (v_dim + qk_dim)
        self.uvqk = nn.Parameter(torch.empty(dim, width).normal_(0.0, 0.02, generator=generator))
        self.out = nn.Linear(heads * v_dim, dim)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.out.weight, generator=generator)
            bound = 1.0 / math.sqrt(heads * v_dim)  # nn.Linear's default bias
            self.out.bias.uniform_(-bound, bound, generator=generator)
        self.pos_w = nn.Parameter(torch.empty(max_len).normal_(0.0, 0.02, generator=generator))
        self.time_w = (
            nn.Parameter(torch.empty(time_buckets + 1).normal_(0.0, 0.02, generator=generator))
            if time_buckets > 0
            else None
        )

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        times: torch.Tensor | None,
        n: int,
        generator: WindowDraws,
    ) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D); ``times`` (B, L) or None."""
        B, L, _ = x.shape
        H, dq, dv = self.heads, self.qk_dim, self.v_dim
        h = F.silu(F.layer_norm(x, x.shape[-1:], eps=1e-6) @ self.uvqk)  # (B, L, 2H(dv+dq))
        u, v, q, k = torch.split(h, [H * dv, H * dv, H * dq, H * dq], dim=-1)
        bias = position_bias(self.pos_w, L)[None]  # (1, L, L)
        if times is not None and self.time_w is not None:
            bias = bias + self.time_w[time_bucket(times, self.n_time)]  # (B, L, L)
        a = pointwise_attention(
            q.reshape(B, L, H, dq), k.reshape(B, L, H, dq), v.reshape(B, L, H, dv), bias, valid, n
        )  # (B, L, H dv)
        y = F.layer_norm(a, a.shape[-1:], eps=1e-6) * u  # (B, L, H dv)
        return self.out(_dropout(y, self.dropout, generator)) + x  # (B, L, D)


class HSTUNetwork(nn.Module):
    """Item and position embeddings, the blocks, L2-normalised outputs."""

    def __init__(self, n_items: int, c: HSTUConfig, generator: torch.Generator):
        super().__init__()
        self.n, self.dim, self.dropout = c.max_len, c.dim, c.dropout
        self.item_emb = nn.Embedding(n_items + 1, c.dim, padding_idx=PAD)
        self.pos_emb = nn.Embedding(c.max_len, c.dim)
        with torch.no_grad():
            w = self.item_emb.weight
            nn.init.trunc_normal_(w, 0.0, 0.02, -0.04, 0.04, generator=generator)
            w[PAD].zero_()
            nn.init.xavier_normal_(self.pos_emb.weight, generator=generator)
        self.blocks = nn.ModuleList(
            HSTUBlock(
                c.dim,
                c.n_heads,
                c.qk_dim,
                c.v_dim,
                c.max_len,
                c.time_buckets,
                c.block_dropout,
                generator,
            )
            for _ in range(c.n_blocks)
        )

    def forward(
        self,
        tokens: torch.Tensor,
        times: torch.Tensor | None = None,
        generator: WindowDraws = None,
    ) -> torch.Tensor:
        """L2-normalised states (B, L, D) of the windows ``tokens`` (B, L <= max_len);
        dropout where a ``generator`` is given (training)."""
        valid = tokens != PAD  # (B, L)
        pos = positions_from_first(valid)  # (B, L)
        x = self.item_emb(tokens) * math.sqrt(self.dim) + self.pos_emb(pos)  # (B, L, D)
        x = _dropout(x, self.dropout, generator) * valid[..., None]
        for block in self.blocks:
            x = block(x, valid, times, self.n, generator)  # (B, L, D)
        return F.normalize(x, dim=-1, eps=1e-6)

    def item_table(self) -> torch.Tensor:
        """The L2-normalised item embeddings (I, D) (the padding row left out)."""
        return F.normalize(self.item_emb.weight[1:], dim=-1, eps=1e-6)

    def item_rows(self, items: torch.Tensor) -> torch.Tensor:
        """``item_table()[items]`` (M, D), computed for those rows only."""
        return F.normalize(self.item_emb(items + 1), dim=-1, eps=1e-6)


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class HSTUConfig:
    max_len: Annotated[int, Range(ge=1)] = 50  # L, the window; older items are dropped
    dim: Annotated[int, Range(ge=1)] = 64  # D, item embedding and model width
    n_blocks: Annotated[int, Range(ge=1)] = 4  # HSTU layers
    n_heads: Annotated[int, Range(ge=1)] = 4  # H
    qk_dim: Annotated[int, Range(ge=1)] = 16  # d_qk per head
    v_dim: Annotated[int, Range(ge=1)] = 16  # d_v per head (U has H d_v too)
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # on the input embeddings
    block_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # before each block's W_o
    time_buckets: Annotated[int, Range(ge=0)] = 128  # log time-gap buckets; 0 = no rab^t
    loss: Literal["sampled_softmax", "ce"] = "sampled_softmax"
    n_negatives: Annotated[int, Range(ge=1)] = 512  # K, uniform negatives (sampled softmax)
    shared_negatives: bool = False  # one set of K for the batch (public code: per position)
    temperature: Annotated[float, Range(gt=0)] = 0.05  # logits = cosine / temperature
    # training batches drawn at random, then sorted by length within pools of this many
    # batches (each batch's window as long as its longest history); 0: plain random batches
    length_pool: Annotated[int, Range(ge=0)] = 0
    # AdamW, lr 1e-3, no weight decay, batches of 128, 201 epochs, every one run
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=201,
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
        if self.loss not in ("sampled_softmax", "ce"):
            raise ValueError(f"loss must be sampled_softmax or ce, got {self.loss!r}")


class HSTU(TorchSequentialRecommender):
    """HSTU (Zhai et al. 2024): pointwise-attention next-item model over item sequences.

    Attributes
    ----------
    module_ : HSTUNetwork
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> from genrec.data import Sequences
    >>> seqs = Sequences.from_lists([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]], n_items=4)
    >>> m = HSTU(max_len=4, dim=8, n_blocks=1, n_heads=1, qk_dim=4, v_dim=4,
    ...          n_negatives=2, train={"epochs": 2, "device": "cpu"}).fit(seqs)
    >>> m.recommend(None, Sequences.from_lists([[0, 1]], 4), k=2)[0].shape
    (1, 2)
    """

    name = "hstu"
    capabilities = Capabilities(trainer=True, selects_on="ranking", sequential=True)
    config_class: ClassVar[type] = HSTUConfig
    keyed_noise: ClassVar[bool] = True  # dropout and negatives keyed by (user, position)
    module_: HSTUNetwork

    def _build_module(self, n_items: int, generator: torch.Generator) -> HSTUNetwork:
        return HSTUNetwork(n_items, self.config, generator)

    def state_arrays(self) -> dict[str, ArraySpec]:
        c, I = self.config, self.n_items_
        out = {
            "item_emb.weight": ArraySpec((I + 1, c.dim)),
            "pos_emb.weight": ArraySpec((c.max_len, c.dim)),
        }
        for b in range(c.n_blocks):
            p = f"blocks.{b}."
            out[p + "uvqk"] = ArraySpec((c.dim, 2 * c.n_heads * (c.v_dim + c.qk_dim)))
            out[p + "out.weight"] = ArraySpec((c.dim, c.n_heads * c.v_dim))
            out[p + "out.bias"] = ArraySpec((c.dim,))
            out[p + "pos_w"] = ArraySpec((c.max_len,))
            if c.time_buckets > 0:
                out[p + "time_w"] = ArraySpec((c.time_buckets + 1,))
        return out

    def batches(self, X: Sequences, ctx: BatchContext) -> Chunked[SeqBatch]:
        """The base's batches (users in random order); with ``length_pool``, regrouped by
        :func:`length_sorted_order`."""
        base = super().batches(X, ctx)
        if self.config.length_pool == 0:
            return base
        order = length_sorted_order(
            base.order, X.lengths, base.size, self.config.length_pool, ctx.generator
        )
        return Chunked(order, base.size, base.make)

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """The loss of a :class:`SeqBatch` of training windows."""
        assert isinstance(batch, SeqBatch) and batch.targets is not None
        c = self.config
        inputs, targets, times = trim_padding(batch.inputs, batch.targets, batch.times)
        gen = ctx.windows_rng(batch.noise_keys())
        h = self.module_(inputs, times, gen)  # (B, L', D)
        at = (targets != PAD) & (inputs != PAD)  # (B, L') real positions with a next item
        u = h[at] / c.temperature  # (N, D)
        t = targets[at] - 1  # (N,) item indices
        if c.loss == "ce":
            return {"loss": ce_loss(u, self.module_.item_table(), t)}
        K, n = c.n_negatives, self.n_items_
        if c.shared_negatives:  # keyed noise: by the step alone, the same on every rank
            neg = uniform_negatives((K,), n, gen, u.device, shared=True)  # (K,)
        elif isinstance(gen, WindowNoise):  # keyed by (user, position, k)
            neg = gen.items_at(at, K, n).to(u.device)  # (N, K)
        else:
            neg = uniform_negatives((len(t), K), n, gen, u.device)  # (N, K)
        # only the items drawn are normalised: the same loss, without the (I, D) table
        ids, where = torch.unique(torch.cat([t, neg.reshape(-1)]), return_inverse=True)
        E = self.module_.item_rows(ids)  # (M, D), M distinct items
        loss = sampled_softmax_loss(u, E, where[: len(t)], where[len(t) :].reshape(neg.shape))
        return {"loss": loss}

    def _hidden(self, inputs: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        return self.module_(inputs, times)  # (B, L, D), the time bias read where times exist

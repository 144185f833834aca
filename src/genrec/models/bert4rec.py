"""BERT4Rec: sequential recommendation with a bidirectional transformer trained to fill in
masked items (Sun, Liu, Wu, Pei, Lin, Ou, Jiang, CIKM 2019).

A window of a user's items is read by a BERT encoder (every position attends to every other
one); some items are replaced by a [MASK] token and the model is trained to recover them
(the cloze task):

    x^0_j = e(v_j) + p_j                     (D)  item (or [MASK]) embedding + position j
    x^0 = Dropout(LayerNorm(x^0))
    a = MultiHead(x^{l-1}) = [head_1 .. head_h] W^O,
        head_i = softmax(Q_i K_i^T / sqrt(D / h) + M) V_i    M = -inf at the padding keys
    x' = LayerNorm(x^{l-1} + Dropout(a))
    x^l = LayerNorm(x' + Dropout(FFN(x'))),  FFN(x) = GELU(x W_1 + b_1) W_2 + b_2
    z_j = LayerNorm(GELU(x^L_j W^P + b^P))   the prediction head
    P(v | masked j) = softmax(z_j E^T + b^O)_v     (I)  E: the item embeddings, tied

Training minimises the cross-entropy of the true items at the masked positions only
(:func:`genrec.models.seq_losses.ce_loss`, the bias b^O folded in by ``with_bias``). Each
training window (a user's last L training items) masks max(1, round(n rho)) of its n items,
at most ``max_predictions``, chosen uniformly (rho = ``mask_prob``); with probability
``last_only_prob`` a window masks only its last item instead, the paper's extra samples that
match the prediction task. At inference the window is the user's last L - 1 items followed
by [MASK], and the [MASK] position's distribution scores the next item.

Tokens: 0 padding, item i is token i + 1, [MASK] is token I + 1. Windows are left-padded,
and position j counts from the window's start, so the [MASK] of inference always sits at
position L - 1 (as the last-item-only training windows do) and the padding changes no real
token's position; padding keys are masked out of every attention.

Paper preset (the defaults; configs/amazon-beauty/bert4rec-paper.toml): the authors' Beauty
settings (run_beauty.sh and bert_config_beauty_64.json of their code): L = 50, D = 64,
2 layers, 2 heads, FFN 256, dropout 0.5 on the hidden states and 0.2 on the attention
weights, rho = 0.6, at most 30 masked items, truncated-normal N(0, 0.02^2) weights, AdamW
(lr 1e-4, decoupled weight decay 0.01), gradients clipped at norm 5, batches of 256.
Their 400,000 steps of 256 windows are about 4,600 passes over Beauty's 22,363 users:
``train.epochs`` = 4,600. Training long matters: BERT4Rec trained for a few hundred epochs
underfits, which explains most published failures to reproduce it (Petrov and Macdonald,
RecSys 2022). The CPU preset (configs/amazon-beauty/bert4rec-cpu.toml) trains 15 epochs
(under 10 minutes of one core), 0.3% of the paper's passes, at lr 1e-3 to move further in
them: on Beauty its validation NDCG@10 is still rising at the last epoch, so it underfits
and its numbers are a floor for the model, not its level.

Departures from the paper and the authors' code (each a config field where it is a choice):

* Training windows: each user's last L items, drawn afresh every epoch (masks from the
  trainer's generator), not the code's fixed pool of 10 masked copies per window
  (``dupe_factor``) plus one last-item copy: ``last_only_prob`` = 1/11 keeps that mix in
  expectation. Histories longer than L train on their last L items only (the code also
  trains on sliding windows over the older items).
* The learning rate is constant (the code: 100 warm-up steps, then linear decay to 0 over
  the 400k steps; ``train.lr_decay`` offers an exponential decay per epoch); weight decay
  applies to every parameter (the code exempts LayerNorm and biases); Adam's epsilon is
  torch's 1e-8 (the code: 1e-6).
* The softmax runs over the items only (the code's vocabulary also holds the padding and
  [MASK] tokens, which it can predict with a tiny probability).
* Masked positions always become [MASK] (the code's ``mask_prob`` = 1.0 for Beauty: none of
  BERT's 10% random / 10% unchanged replacements).

Dimension letters: B windows in a batch, L = max_len positions, D model width, h heads,
F feed-forward width, I items, N masked positions.

References
----------
Sun, Liu, Wu, Pei, Lin, Ou, Jiang. BERT4Rec: Sequential Recommendation with Bidirectional
Encoder Representations from Transformer. CIKM 2019. https://arxiv.org/abs/1904.06690
Petrov, Macdonald. A Systematic Review and Replicability Study of BERT4Rec for Sequential
Recommendation. RecSys 2022. https://arxiv.org/abs/2207.07483
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.config import Range, check_ranges
from genrec.data.sequences import Sequences
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import dropout_values
from genrec.models.seq_losses import ce_loss, with_bias
from genrec.models.sequential import PAD, SeqBatch, TorchSequentialRecommender, tokens
from genrec.models.torch_base import SCORE_BATCH
from genrec.train import BatchContext, Chunked, StepContext, TrainConfig
from genrec.train.noise import WindowDraws, WindowNoise

__all__ = ["BERT4Rec", "BERT4RecConfig", "BERT4RecNet", "mask_windows", "n_masked"]


@dataclass(frozen=True)
class BERT4RecConfig:
    max_len: Annotated[int, Range(ge=2)] = 50  # L (N in the paper), [MASK] included
    hidden_dim: Annotated[int, Range(ge=1)] = 64  # D (d)
    n_layers: Annotated[int, Range(ge=1)] = 2  # transformer blocks (L in the paper)
    n_heads: Annotated[int, Range(ge=1)] = 2  # h; must divide hidden_dim
    ffn_dim: Annotated[int, Range(ge=1)] = 256  # F, the feed-forward width (4 D)
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # on embeddings and sublayer outputs
    attention_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.2  # on attention weights
    mask_prob: Annotated[float, Range(gt=0, le=1)] = 0.6  # rho, the masked share of a window
    max_predictions: Annotated[int, Range(ge=1)] = 30  # at most this many masked per window
    last_only_prob: Annotated[float, Range(ge=0, le=1)] = 1 / 11  # windows masking the last
    init_std: Annotated[float, Range(gt=0)] = 0.02  # truncated normal, cut at 2 std
    # AdamW, lr 1e-4, weight decay 0.01, clipping at 5, batches of 256, 400k steps (about
    # 4,600 epochs of Beauty), every epoch run; selected on validation NDCG@10 if given
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=4600,
            batch_size=256,
            lr=1e-4,
            weight_decay=0.01,
            optimizer="adamw",
            grad_clip=5.0,
            patience=None,
            select_metric="ndcg@10",
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.hidden_dim % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide hidden_dim ({self.hidden_dim})")


# ----------------------------------------------------------------------------- masking
def n_masked(lengths: torch.Tensor, mask_prob: float, max_predictions: int) -> torch.Tensor:
    """Items masked in windows of ``lengths`` (B,) items: max(1, round(n rho)), at most
    ``max_predictions`` (the authors' rule; round halves to even, as Python's)."""
    k = torch.round(lengths.double() * mask_prob).long()
    return k.clamp(min=1, max=max_predictions)


def mask_windows(
    t: torch.Tensor,
    mask_token: int,
    mask_prob: float,
    max_predictions: int,
    last_only_prob: float,
    generator: torch.Generator | WindowNoise,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cloze task on left-padded token windows ``t`` (B, L): (inputs, targets), both
    (B, L). Each window masks :func:`n_masked` of its real positions, chosen uniformly, or,
    with probability ``last_only_prob``, its last one alone; a masked position reads
    ``mask_token`` and has its token as target (0 elsewhere)."""
    B, L = t.shape
    real = t != PAD  # (B, L)
    k = n_masked(real.sum(1), mask_prob, max_predictions)  # (B,)
    if isinstance(generator, WindowNoise):  # keyed by (user, position from the end)
        u = generator.uniform((B, L)).to(t.device)
        last = generator.uniform((B,)).to(t.device)
    else:
        u = torch.rand((B, L), generator=generator, device=generator.device).to(t.device)
        last = torch.rand(B, generator=generator, device=generator.device).to(t.device)
    u = u.masked_fill(~real, 2.0)  # the padding sorts after every real position
    rank = u.argsort(1).argsort(1)  # (B, L) each position's place in a random order
    masked = rank < k[:, None]  # (B, L)
    last = (last < last_only_prob) & real[:, -1]  # (B,)
    masked[last] = False
    masked[last, L - 1] = True
    return t.masked_fill(masked, mask_token), torch.where(masked, t, PAD)


# ----------------------------------------------------------------------------- network
def _linear(n_in: int, n_out: int) -> nn.Linear:
    return nn.utils.skip_init(nn.Linear, n_in, n_out)  # weights set by BERT4RecNet._init


class EncoderBlock(nn.Module):
    """One post-LayerNorm transformer block of BERT: attention, then the feed-forward."""

    def __init__(self, D: int, n_heads: int, F_: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = _linear(D, 3 * D)
        self.proj = _linear(D, D)
        self.norm1 = nn.LayerNorm(D, eps=1e-12)
        self.ff1 = _linear(D, F_)
        self.ff2 = _linear(F_, D)
        self.norm2 = nn.LayerNorm(D, eps=1e-12)

    def forward(
        self,
        x: torch.Tensor,
        pad: torch.Tensor,
        p: tuple[float, float],
        generator: WindowDraws,
    ) -> torch.Tensor:
        """x (B, L, D), ``pad`` (B, L) True at padding keys; dropout ``p`` (hidden,
        attention) drawn from ``generator`` (None: no dropout)."""
        B, L, D = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).view(B, L, 3, h, D // h).permute(2, 0, 3, 1, 4)  # (B, h, L, D/h)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D // h)  # (B, h, L, L)
        att = att.masked_fill(pad[:, None, None, :], float("-inf")).softmax(-1)
        att = _drop(att, p[1], generator, ends=(2, 3))
        a = (att @ v).transpose(1, 2).reshape(B, L, D)  # (B, L, D), heads concatenated
        x = self.norm1(x + _drop(self.proj(a), p[0], generator))
        f = self.ff2(F.gelu(self.ff1(x)))  # (B, L, D)
        return self.norm2(x + _drop(f, p[0], generator))


def _drop(
    x: torch.Tensor,
    p: float,
    generator: WindowDraws,
    ends: tuple[int, ...] = (1,),
) -> torch.Tensor:
    return x if generator is None else dropout_values(x, p, generator, ends=ends)


class BERT4RecNet(nn.Module):
    """Token and position embeddings -> encoder blocks -> prediction head."""

    def __init__(
        self,
        n_items: int,
        max_len: int,
        D: int,
        n_layers: int,
        n_heads: int,
        F_: int,
        init_std: float,
        generator: torch.Generator,
    ):
        super().__init__()
        self.n_items = n_items
        self.tok = nn.Parameter(torch.empty(n_items + 2, D))  # (I + 2, D): pad, items, [MASK]
        self.pos = nn.Parameter(torch.empty(max_len, D))  # (L, D)
        self.emb_norm = nn.LayerNorm(D, eps=1e-12)
        self.blocks = nn.ModuleList(EncoderBlock(D, n_heads, F_) for _ in range(n_layers))
        self.head = _linear(D, D)
        self.head_norm = nn.LayerNorm(D, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(n_items))  # (I,) b^O
        self._init(init_std, generator)

    def _init(self, std: float, generator: torch.Generator) -> None:
        """BERT's initialisation: N(0, std^2) cut at 2 std for every weight matrix and
        embedding, zero biases (LayerNorms start at 1 and 0)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std, generator=generator)
                elif "norm" not in name:
                    p.zero_()

    @staticmethod
    def arrays(n_items: int, max_len: int, D: int, n_layers: int, F_: int) -> dict[str, ArraySpec]:
        """The arrays of the state_dict of ``BERT4RecNet(n_items, max_len, D, ...)``."""

        def lin(prefix: str, n_in: int, n_out: int) -> dict[str, ArraySpec]:
            return {
                f"{prefix}.weight": ArraySpec((n_out, n_in)),
                f"{prefix}.bias": ArraySpec((n_out,)),
            }

        def norm(prefix: str) -> dict[str, ArraySpec]:
            return {f"{prefix}.weight": ArraySpec((D,)), f"{prefix}.bias": ArraySpec((D,))}

        out = {"tok": ArraySpec((n_items + 2, D)), "pos": ArraySpec((max_len, D))}
        out |= norm("emb_norm")
        for j in range(n_layers):
            b = f"blocks.{j}"
            out |= lin(f"{b}.qkv", D, 3 * D) | lin(f"{b}.proj", D, D) | norm(f"{b}.norm1")
            out |= lin(f"{b}.ff1", D, F_) | lin(f"{b}.ff2", F_, D) | norm(f"{b}.norm2")
        return out | lin("head", D, D) | norm("head_norm") | {"bias": ArraySpec((n_items,))}

    def item_table(self) -> torch.Tensor:
        return self.tok[1 : self.n_items + 1]  # (I, D)

    def forward(
        self,
        inputs: torch.Tensor,
        p: tuple[float, float] = (0.0, 0.0),
        generator: WindowDraws = None,
    ) -> torch.Tensor:
        """Encoder outputs (B, L, D) of left-padded windows ``inputs`` (B, L), 0 at the
        padding, L <= max_len. Positions count from the window's end (a window of L <
        max_len reads the last L position rows), and the leading columns that are padding in
        every row are skipped (they are masked keys, so nothing changes)."""
        B, L = inputs.shape
        pad = inputs == PAD  # (B, L)
        start = int(pad.all(0).long().cumprod(0).sum())  # columns of padding in every row
        pos = self.pos[len(self.pos) - L :]  # (L, D): right-aligned positions
        x = self.tok[inputs[:, start:]] + pos[start:]  # (B, W, D), W = L - start
        x = _drop(self.emb_norm(x), p[0], generator)
        for block in self.blocks:
            x = block(x, pad[:, start:], p, generator)  # (B, W, D)
        x = x * ~pad[:, start:, None]  # 0 at the padding
        return F.pad(x, (0, 0, start, 0))  # (B, L, D)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """The head's z (N, D) from encoder outputs h (N, D)."""
        return self.head_norm(F.gelu(self.head(h)))


class BERT4Rec(TorchSequentialRecommender):
    """BERT4Rec (Sun et al. 2019): a bidirectional transformer trained on the cloze task.

    Attributes
    ----------
    module_ : BERT4RecNet
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> from genrec.data import Sequences
    >>> seqs = Sequences.from_lists([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]], n_items=4)
    >>> m = BERT4Rec(max_len=5, hidden_dim=8, ffn_dim=16, train={"epochs": 2, "device": "cpu"})
    >>> m.fit(seqs).recommend(None, seqs, k=2)[0].shape
    (3, 2)
    """

    name = "bert4rec"
    capabilities = Capabilities(sequential=True, trainer=True, selects_on="ranking")
    config_class: ClassVar[type] = BERT4RecConfig
    keyed_noise: ClassVar[bool] = True  # masks and dropout keyed by (user, position)
    module_: BERT4RecNet

    def _build_module(self, n_items: int, generator: torch.Generator) -> BERT4RecNet:
        c = self.config
        return BERT4RecNet(
            n_items,
            c.max_len,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.ffn_dim,
            c.init_std,
            generator,
        )

    def state_arrays(self) -> dict[str, ArraySpec]:
        c = self.config
        return BERT4RecNet.arrays(self.n_items_, c.max_len, c.hidden_dim, c.n_layers, c.ffn_dim)

    def _mask_token(self) -> int:
        return self._n_items() + 1

    def batches(self, X: Sequences, ctx: BatchContext) -> Chunked[SeqBatch]:
        """One pass: the users with 2 or more items in random order, each as the cloze task
        on its last ``max_len`` items (masks drawn from the trainer's generator)."""
        c = self.config
        rows = np.flatnonzero(X.lengths >= 2)
        perm = torch.from_numpy(rows)[torch.randperm(len(rows), generator=ctx.generator)]
        mask_token = X.n_items + 1

        def make(users: torch.Tensor, _: int) -> SeqBatch:
            t = torch.from_numpy(tokens(X.take(users.numpy()), c.max_len))  # (B, L)
            inputs, targets = mask_windows(
                t,
                mask_token,
                c.mask_prob,
                c.max_predictions,
                c.last_only_prob,
                ctx.windows_rng(users),
            )
            return SeqBatch(inputs.to(ctx.device), targets.to(ctx.device), users.to(ctx.device))

        return Chunked(perm, ctx.batch_size, make)

    def loss_terms(self, batch: SeqBatch) -> int:
        """The masked positions (the cross-entropy's mean runs over them)."""
        assert batch.targets is not None
        return int((batch.targets != PAD).sum())

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        c = self.config
        assert batch.targets is not None
        gen = ctx.windows_rng(batch.noise_keys())
        h = self.module_(batch.inputs, (c.dropout, c.attention_dropout), gen)
        keep = batch.targets != PAD  # (B, L) the masked positions
        z = self.module_.predict(h[keep]).float()  # (N, D)
        t = batch.targets[keep] - 1  # (N,)
        loss = ce_loss(*with_bias(z, self._item_table(), self.module_.bias), t)
        return {"loss": loss}

    def _batches(self, X: Any, users: np.ndarray | None = None) -> Iterator[SeqBatch]:
        """Scoring windows: the last ``max_len - 1`` items, then [MASK] (B, L)."""
        device = self._device()
        L = self._max_len()
        for start in range(0, X.n_users, SCORE_BATCH):
            part = X.take(slice(start, start + SCORE_BATCH))
            t = torch.from_numpy(tokens(part, L - 1))  # (B, L - 1)
            t = torch.cat([t, torch.full((len(t), 1), self._mask_token())], 1)  # (B, L)
            u = None if users is None else torch.from_numpy(users[start : start + SCORE_BATCH])
            yield SeqBatch(t.to(device), None, u)

    def _scores(self, batch: Any) -> torch.Tensor:
        z = self.module_.predict(self._last(batch))  # (B, D), at [MASK]
        return z @ self._item_table().T + self.module_.bias  # (B, I)

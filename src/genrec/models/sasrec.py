"""SASRec: self-attentive sequential recommendation (Kang and McAuley, ICDM 2018).

A user's last L items s_1..s_L (left-padded with 0) are read by a causal transformer; the
hidden state at position l predicts item s_{l+1}:

    x^0_l = sqrt(D) * M[s_l] + P_l                       (item and learned positional embeddings)
    x^b   = block_b(x^{b-1}),  b = 1..n_blocks,  F = LN(x^B)  (pre-LN: a final layer norm)
    score(l, i) = F_l . M_i                              (the input table M is the output table)

A block is causal self-attention and a point-wise feed-forward network, each with a
residual connection (``norm = "pre"``, the paper's equation g(x) = x + Dropout(g(LN(x)))):

    A(x) = concat_h softmax(Q_h K_h^T / sqrt(D/H) + mask) V_h,   Q, K, V = a W^Q, a W^K, a W^V
    x <- x + A(LN(x));   x <- x + FFN(LN(x)),   FFN(a) = W_2 ReLU(W_1 a + b_1) + b_2

or ``norm = "post"`` (the original transformer's order): x <- LN(x + A(x)),
x <- LN(x + FFN(x)), without the final layer norm. The mask lets position l attend to
positions <= l that hold an item; a query always attends to itself, so a padding position
(whose window holds no item) stays finite; padding keys never reach a real position, and
every block's output is zeroed at padding positions, as in the authors' code. Positions are
right-aligned (the last item has position L - 1), so a window with fewer padding columns
gives the same hidden state at the last position. Users are scored by F at the last
position against every item: any ordered history folds in.

Losses (``loss``; the functions of :mod:`genrec.models.seq_losses`), averaged over the
positions that read an item and have a target: padding positions are dropped, and, as in
the authors' code, a history's first item is never a target (no item precedes it):

* ``"bce"`` (the paper): -log sigma(F_l . M_{s_{l+1}}) - log(1 - sigma(F_l . M_j)) with
  one negative j per position drawn uniformly from the items the user has not consumed.
  Here: drawn uniformly from all items, and every draw that equals an item of the user's
  training window (the last max_len + 1 items: the inputs and targets of the batch row) is
  drawn again, all of them at once, up to ``BCE_REDRAWS`` rounds (a draw still colliding
  after that is kept; with Beauty's windows the chance is below 1e-17). Items older than
  the window may be drawn (the paper's code rejects against the whole history).
* ``"ce"``: the full softmax over all items (Klenitskiy and Vasilev, RecSys 2023), logits
  computed only at the target positions.
* ``"sampled_softmax"``: the softmax over the target and ``n_negatives`` items drawn
  uniformly per position (accidental hits masked).
* ``"gbce"``: gSASRec's generalised BCE (Petrov and Macdonald, RecSys 2023) with
  ``n_negatives`` uniform negatives per position and calibration ``gbce_t`` (0.75 there).

Network as in the paper: D = 50, 2 blocks, 1 head, dropout 0.5 on the sparse Amazon sets
(on the embeddings, the attention weights and after each feed-forward layer, as in the
authors' code), L = 50 on Amazon, Adam (lr 1e-3, beta_2 = 0.98 as in the authors' code),
batches of 128 users, 200 epochs; weights Xavier-uniform, biases 0, layer norms 1 and 0,
layer-norm epsilon 1e-8 (the authors' code). Each batch row is one user's last L + 1
items (inputs: all but the last; targets: all but the first), as in the authors' sampler.

Departures (each a config field, or named here):

* ``norm``: "pre" follows the paper's equation; the authors' code differs slightly (the
  residual adds LN(x) rather than x, and keys and values read the unnormalised x).
* The attention has no output projection after the heads are joined (the paper's equation
  and code); ``n_heads`` > 1 splits D into heads (the paper found one head best).
* ``attn_dropout`` is the dropout on the attention weights (the paper's code: the same rate
  as ``dropout``); attention runs through ``scaled_dot_product_attention`` when it is 0 or
  the model is not training, and through the explicit softmax otherwise (dropout must draw
  from the training generator); the two agree (tested).
* Training users are reshuffled each epoch and every user with 2 or more items is one
  row per epoch (the authors' sampler draws users with replacement).
* ``train.select_metric`` ("ndcg@10") and ``train.patience``: the best epoch on validation
  is kept; the paper trained a fixed number of epochs and reported the best validation
  epoch's test numbers.
* The negatives of the BCE loss are rejected against the training window (above).
* ``ffn_dim``: the feed-forward network's inner width (the paper: D).
* ``block = "bert"``: the BERT-style SASRec that the S3-Rec authors' code (whose Beauty and
  Sports numbers are the literature's full-ranking SASRec rows) and RecBole implement, in
  place of the paper's block (``"kang"``): item and position embeddings added without the
  sqrt(D) scale, then a layer norm and dropout; post-LN blocks (``norm = "post"``) whose
  attention has an output projection followed by dropout; a GELU feed-forward network
  (``ffn_dim`` 4 D there) with dropout after its second layer only; weights N(0, 0.02^2)
  (embeddings too), layer-norm epsilon 1e-12.

Dimension letters: B users in a batch, L = max_len positions, D model width, H heads,
I items, N positions with a target in a batch, K negatives per position.

References
----------
Kang, McAuley. Self-Attentive Sequential Recommendation. ICDM 2018.
https://arxiv.org/abs/1808.09781 (code: github.com/kang205/SASRec)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from genrec.config import Range, check_ranges
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import dropout_values, linear_arrays
from genrec.models.seq_losses import (
    bce_loss,
    ce_loss,
    gbce_beta,
    gbce_loss,
    sampled_softmax_loss,
    uniform_negatives,
)
from genrec.models.sequential import PAD, SeqBatch, TorchSequentialRecommender, trim_padding
from genrec.train import StepContext, TrainConfig, make_optimizer
from genrec.train.noise import WindowDraws, WindowNoise

__all__ = [
    "SASRec",
    "SASRecConfig",
    "SASRecNet",
    "causal_mask",
    "attention",
    "bce_negatives",
    "target_positions",
    "next_item_loss",
]

LN_EPS = 1e-8  # the layer-norm epsilon of the authors' code
BERT_LN_EPS, BERT_INIT_STD = 1e-12, 0.02  # block = "bert": the S3-Rec authors' code
BCE_REDRAWS = 8  # rounds of redrawing BCE negatives that hit the user's window

LossName = Literal["bce", "ce", "sampled_softmax", "gbce"]
BlockName = Literal["kang", "bert"]


@dataclass(frozen=True)
class SASRecConfig:
    dim: Annotated[int, Range(ge=1)] = 50  # D, the width of embeddings and blocks
    n_blocks: Annotated[int, Range(ge=1)] = 2  # self-attention blocks
    n_heads: Annotated[int, Range(ge=1)] = 1  # attention heads (D must divide by it)
    max_len: Annotated[int, Range(ge=1)] = 50  # L, the most recent items read
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # embeddings and feed-forward layers
    attn_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5  # on the attention weights
    norm: Literal["pre", "post"] = "pre"  # layer norm before each sublayer (+ final) or after
    block: BlockName = "kang"  # the paper's block, or "bert": S3-Rec's and RecBole's (post-LN)
    ffn_dim: Annotated[int, Range(ge=1)] | None = None  # feed-forward inner width (None: dim)
    loss: LossName = "bce"  # the paper's BCE, full-softmax ce, sampled_softmax or gbce
    n_negatives: Annotated[int, Range(ge=1)] = 256  # K, per position (sampled_softmax, gbce)
    gbce_t: Annotated[float, Range(ge=0, le=1)] = 0.75  # gBCE calibration t (gSASRec: 0.75)
    adam_beta2: Annotated[float, Range(gt=0, lt=1)] = 0.98  # Adam's beta_2 (authors' code)
    # Adam, lr 1e-3, batches of 128 users, 200 epochs, the best validation NDCG@10 kept
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=200, batch_size=128, lr=1e-3, patience=None, select_metric="ndcg@10"
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.block == "bert" and self.norm != "post":
            raise ValueError(
                'block = "bert" is the post-LN block: set norm = "post" with it (or block = '
                '"kang" for the paper\'s pre-LN block)'
            )
        if self.dim % self.n_heads:
            raise ValueError(
                f"dim ({self.dim}) must be a multiple of n_heads ({self.n_heads}); set dim "
                f"or n_heads so that it is"
            )


# ----------------------------------------------------------------------------- pure parts
def causal_mask(keep: torch.Tensor) -> torch.Tensor:
    """Which keys each query may attend to (B, L, L), True = attend: keys at or before the
    query that hold an item, and always the query itself. ``keep`` (B, L) marks items."""
    L = keep.shape[1]
    tri = torch.ones(L, L, dtype=torch.bool, device=keep.device).tril()  # (L, L)
    eye = torch.eye(L, dtype=torch.bool, device=keep.device)  # (L, L)
    return (tri & keep[:, None, :]) | eye  # (B, L, L)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor,
    p: float = 0.0,
    generator: WindowDraws = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) masked to ``allowed``) v; q, k, v (B, H, L, d), allowed
    (B, L, L). Dropout ``p`` on the weights, drawn from ``generator``, when one is given
    (keyed noise: by query and key position from the window's end)."""
    if generator is None or p == 0.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
    w = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    w = w.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)  # (B, H, L, L)
    return dropout_values(w, p, generator, ends=(2, 3)) @ v  # (B, H, L, d)


def bce_negatives(
    window: torch.Tensor,
    n_items: int,
    generator: torch.Generator | WindowNoise,
    rounds: int = BCE_REDRAWS,
) -> torch.Tensor:
    """One negative item per position (B, L) drawn uniformly from the items that are not in
    the row's ``window`` (B, W) of tokens (item + 1, 0 = padding): uniform draws, and every
    draw equal to an item of its row drawn again, up to ``rounds`` times (a draw still
    colliding then is kept). Keyed noise draws every round for every position (keyed by
    row, position and round) and keeps the colliding positions' redraws."""
    B, L = window.shape[0], window.shape[1] - 1
    neg = uniform_negatives((B, L), n_items, generator, window.device)  # (B, L)
    for _ in range(rounds):
        hit = ((neg + 1)[:, :, None] == window[:, None, :]).any(-1)  # (B, L)
        if isinstance(generator, WindowNoise):  # the same rounds whatever the batch holds
            neg = torch.where(hit, uniform_negatives((B, L), n_items, generator, neg.device), neg)
            continue
        n = int(hit.sum())
        if n == 0:
            break
        neg[hit] = uniform_negatives((n,), n_items, generator, window.device)
    return neg


def target_positions(
    hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hidden states (N, D) and target items (N,) at the positions that read an item and
    have a target, and those positions (B, L) bool; ``hidden`` (B, L, D), ``inputs`` and
    ``targets`` (B, L) tokens."""
    has = (targets != PAD) & (inputs != PAD)  # (B, L)
    return hidden[has], targets[has] - 1, has


def next_item_loss(
    h: torch.Tensor,
    E: torch.Tensor,
    t: torch.Tensor,
    loss: str,
    neg: torch.Tensor | None = None,
    beta: float = 1.0,
) -> torch.Tensor:
    """The mean next-item loss over N positions: ``h`` (N, D), the item table ``E`` (I, D),
    targets ``t`` (N,); ``neg`` (N,) for bce, (N, K) for sampled_softmax and gbce; ``beta``
    gBCE's positive weight."""
    if loss == "ce":
        return ce_loss(h, E, t)
    assert neg is not None, f"loss {loss} needs negatives"
    if loss == "bce":
        return bce_loss(h, E, t, neg)
    if loss == "sampled_softmax":
        return sampled_softmax_loss(h, E, t, neg)
    if loss == "gbce":
        return gbce_loss(h, E, t, neg, beta)
    raise ValueError(f"unknown loss {loss!r}")


def _xavier_(w: torch.Tensor, generator: torch.Generator) -> None:
    a = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
    with torch.no_grad():
        w.uniform_(-a, a, generator=generator)


# ----------------------------------------------------------------------------- network
class Block(nn.Module):
    """Causal multi-head self-attention and the point-wise feed-forward network; ``c.block``
    "bert" adds the attention's output projection and reads the FFN through GELU."""

    def __init__(self, c: SASRecConfig):
        super().__init__()
        dim, ffn_dim, self.bert = c.dim, c.ffn_dim or c.dim, c.block == "bert"
        self.n_heads, self.pre = c.n_heads, c.norm == "pre"
        self.dropout, self.attn_dropout = c.dropout, c.attn_dropout
        eps = BERT_LN_EPS if self.bert else LN_EPS
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)  # W^Q, W^K, W^V side by side
        self.out = nn.Linear(dim, dim) if self.bert else None  # the heads' output projection
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn1 = nn.Linear(dim, ffn_dim)
        self.ffn2 = nn.Linear(ffn_dim, dim)

    def attend(
        self, a: torch.Tensor, allowed: torch.Tensor, gen: WindowDraws, n_q: int
    ) -> torch.Tensor:
        """Attention outputs (B, n_q, D) of the last ``n_q`` positions' queries."""
        B, L, D = a.shape
        heads = (self.n_heads, D // self.n_heads)
        q, k, v = self.qkv(a).split(D, dim=-1)  # (B, L, D) each
        q = q[:, L - n_q :].reshape(B, n_q, *heads).transpose(1, 2)  # (B, H, n_q, D/H)
        k, v = (t.view(B, L, *heads).transpose(1, 2) for t in (k, v))  # (B, H, L, D/H)
        out = attention(q, k, v, allowed[:, L - n_q :], self.attn_dropout, gen)
        out = out.transpose(1, 2).reshape(B, n_q, D)  # (B, n_q, D)
        if self.out is None:
            return out
        out = self.out(out)
        return out if gen is None else dropout_values(out, self.dropout, gen)

    def ffn(self, a: torch.Tensor, gen: WindowDraws) -> torch.Tensor:
        if self.bert:
            h = F.gelu(self.ffn1(a))  # (B, L, ffn_dim): no dropout here (S3-Rec's code)
        else:
            h = torch.relu(self.ffn1(a))  # (B, L, ffn_dim)
            if gen is not None:
                h = dropout_values(h, self.dropout, gen)
        out = self.ffn2(h)  # (B, L, D)
        return out if gen is None else dropout_values(out, self.dropout, gen)

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        gen: WindowDraws,
        last_only: bool = False,
    ) -> torch.Tensor:
        """The block's outputs (B, L, D), or (B, 1, D) at the last position alone (its
        query reads every key: the same values for less work, when nothing reads the
        other positions)."""
        n_q = 1 if last_only else x.shape[1]
        if self.pre:
            x = x[:, -n_q:] + self.attend(self.attn_norm(x), allowed, gen, n_q)  # (B, n_q, D)
            return x + self.ffn(self.ffn_norm(x), gen)
        x = self.attn_norm(x[:, -n_q:] + self.attend(x, allowed, gen, n_q))
        return self.ffn_norm(x + self.ffn(x, gen))


class SASRecNet(nn.Module):
    """Embeddings, ``n_blocks`` blocks and (pre-LN) the final layer norm; ``forward(inputs
    (B, L) tokens, generator)`` -> hidden states (B, L, D); dropout only with a generator."""

    def __init__(self, n_items: int, c: SASRecConfig, generator: torch.Generator):
        super().__init__()
        self.dim, self.max_len, self.dropout = c.dim, c.max_len, c.dropout
        bert = c.block == "bert"
        self.scale = 1.0 if bert else math.sqrt(c.dim)  # the paper scales item embeddings
        self.item_emb = nn.Embedding(n_items + 1, c.dim, padding_idx=PAD)  # row 0: padding
        self.pos_emb = nn.Embedding(c.max_len, c.dim)
        self.emb_norm = nn.LayerNorm(c.dim, eps=BERT_LN_EPS) if bert else None
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_blocks))
        self.final_norm = nn.LayerNorm(c.dim, eps=LN_EPS) if c.norm == "pre" else None
        for name, p in self.named_parameters():  # in a fixed order, from the generator
            if name.endswith("weight") and p.ndim == 2:
                if bert:
                    with torch.no_grad():
                        p.normal_(0.0, BERT_INIT_STD, generator=generator)
                else:
                    _xavier_(p, generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    @staticmethod
    def arrays(n_items: int, c: SASRecConfig) -> dict[str, ArraySpec]:
        """The arrays of the state_dict of ``SASRecNet(n_items, c)``."""
        D, FD = c.dim, c.ffn_dim or c.dim
        out = {
            "item_emb.weight": ArraySpec((n_items + 1, D)),
            "pos_emb.weight": ArraySpec((c.max_len, D)),
        }
        if c.block == "bert":
            out |= {"emb_norm.weight": ArraySpec((D,)), "emb_norm.bias": ArraySpec((D,))}
        for b in range(c.n_blocks):
            p = f"blocks.{b}."
            for ln in ("attn_norm", "ffn_norm"):
                out |= {f"{p}{ln}.weight": ArraySpec((D,)), f"{p}{ln}.bias": ArraySpec((D,))}
            out |= linear_arrays(f"{p}qkv.", D, 3 * D)
            if c.block == "bert":
                out |= linear_arrays(f"{p}out.", D, D)
            out |= linear_arrays(f"{p}ffn1.", D, FD) | linear_arrays(f"{p}ffn2.", FD, D)
        if c.norm == "pre":
            out |= {"final_norm.weight": ArraySpec((D,)), "final_norm.bias": ArraySpec((D,))}
        return out

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight[1:]  # (I, D)

    def forward(
        self, inputs: torch.Tensor, gen: WindowDraws = None, last_only: bool = False
    ) -> torch.Tensor:
        """Hidden states (B, L, D) of the windows ``inputs`` (B, L); with ``last_only`` the
        last position's alone (B, 1, D) (scoring: the last block runs one query)."""
        L = inputs.shape[1]
        keep = (inputs != PAD)[..., None]  # (B, L, 1)
        pos = self.pos_emb.weight[self.max_len - L :]  # (L, D): right-aligned positions
        x = self.item_emb(inputs) * self.scale + pos  # (B, L, D)
        if self.emb_norm is not None:
            x = self.emb_norm(x)
        if gen is not None:
            x = dropout_values(x, self.dropout, gen)
        x = x * keep
        allowed = causal_mask(keep[..., 0])  # (B, L, L)
        for j, block in enumerate(self.blocks):
            last = last_only and j == len(self.blocks) - 1
            x = block(x, allowed, gen, last) * (keep[:, -1:] if last else keep)  # (B, L|1, D)
        return x if self.final_norm is None else self.final_norm(x)


# ----------------------------------------------------------------------------- model
class SASRec(TorchSequentialRecommender):
    """SASRec (Kang and McAuley 2018): a causal transformer over the last ``max_len`` items.

    Attributes
    ----------
    module_ : SASRecNet
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> from genrec.data import Sequences
    >>> seqs = Sequences.from_lists([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]], n_items=4)
    >>> m = SASRec(dim=8, max_len=4, loss="ce", train={"epochs": 2, "device": "cpu"})
    >>> m.fit(seqs).recommend(None, seqs.take([0]), k=2)[0].shape
    (1, 2)
    """

    name = "sasrec"
    capabilities = Capabilities(trainer=True, selects_on="ranking", sequential=True)
    config_class: ClassVar[type] = SASRecConfig
    keyed_noise: ClassVar[bool] = True  # dropout and negatives keyed by (user, position)
    module_: SASRecNet

    def _build_module(self, n_items: int, generator: torch.Generator) -> SASRecNet:
        return SASRecNet(n_items, self.config, generator)

    def state_arrays(self) -> dict[str, ArraySpec]:
        return SASRecNet.arrays(self.n_items_, self.config)

    def build_optimizers(self, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """The trainer's optimizer, with Adam's beta_2 = ``adam_beta2``."""
        opt = make_optimizer(self._module().parameters(), config)
        if config.optimizer in ("adam", "adamw"):
            for group in opt.param_groups:
                group["betas"] = (group["betas"][0], self.config.adam_beta2)
        return {"main": opt}

    def _last_hidden(self, inputs: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        return self.module_(inputs, last_only=True)[:, -1]  # (B, D), one query in the last block

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """The loss of one :class:`SeqBatch` of training windows."""
        c, net = self.config, self.module_
        assert isinstance(batch, SeqBatch) and batch.targets is not None  # training windows
        inputs, targets = trim_padding(batch.inputs, batch.targets)  # (B, L'), L' <= L
        gen = ctx.windows_rng(batch.noise_keys())
        hidden = net(inputs, gen)  # (B, L', D)
        h, t, has = target_positions(hidden, inputs, targets)  # (N, D), (N,), (B, L')
        E = net.item_table()  # (I, D)
        n_items = E.shape[0]
        neg, beta = None, 1.0
        if c.loss == "bce":
            window = torch.cat([inputs[:, :1], targets], dim=1)  # (B, L' + 1)
            neg = bce_negatives(window, n_items, gen)[has]  # (N,)
        elif c.loss in ("sampled_softmax", "gbce"):
            K = c.n_negatives
            if isinstance(gen, WindowNoise):  # keyed by (row, position, k)
                neg = gen.items_at(has, K, n_items).to(t.device)  # (N, K)
            else:
                neg = uniform_negatives((len(t), K), n_items, gen, t.device)  # (N, K)
            beta = gbce_beta(c.n_negatives, n_items, c.gbce_t)
        return {"loss": next_item_loss(h.float(), E.float(), t, c.loss, neg, beta)}

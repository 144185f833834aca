"""GRU4Rec: next-item prediction with a recurrent network (Hidasi, Karatzoglou, Baltrunas,
Tikk, ICLR 2016), trained with the cross-entropy over all items of the later GRU4Rec papers
(Hidasi and Karatzoglou, CIKM 2018; Hidasi and Czapp, RecSys 2023).

A user's items s_1 .. s_n are read in order by a gated recurrent unit; the hidden state after
item s_t scores every item as the next one:

    x_t = e(s_t)                                         (E)   the item's input embedding
    z_t = sigma(W_z x_t + U_z h_{t-1} + b_z)                    update gate
    r_t = sigma(W_r x_t + U_r h_{t-1} + b_r)                    reset gate
    h~_t = tanh(W_h x_t + U_h (r_t * h_{t-1}) + b_h)            candidate
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t               (H)   h_0 = 0
    score(i | s_1..s_t) = o_i . h_t + c_i                (I)   o: output item table, c: bias

(torch's ``nn.GRU``; stacked layers read the hidden states of the layer below). Training
minimises the softmax cross-entropy of the true next item at every position of every
training window, -log softmax(score)_{s_{t+1}}, averaged over the positions
(:func:`genrec.models.seq_losses.ce_loss`, the output bias folded in by ``with_bias``).
A user is scored by the state after the last item of the history; an empty history has
h = 0, so its scores are the output bias (a popularity prior learned in training).

Network: item embedding (I + 1 tokens, row 0 the padding, E = ``embedding_dim``) ->
dropout ``dropout_embed`` -> ``n_layers`` GRU layers of H = ``hidden_dim`` units, dropout
``dropout_hidden`` after each -> scores against the output table (I, H), which is the
input embedding itself when ``tied`` (GRU4Rec's "constrained embedding"; needs E = H) and a
separate table otherwise, plus a bias per item (``output_bias``). Weights: Glorot-uniform
per gate block and for the output table (GRU4Rec's initialisation), GRU biases 0,
embeddings N(0, 1/E), the output bias 0.

Padding: the windows are left-padded (:mod:`genrec.models.sequential`); the GRU reads each
row's real items only, from h_0 = 0 at the first item (the rows are right-aligned and
packed before the recurrence and put back after it), so the padding in front of a history
changes no hidden state, and a shorter window of the same items gives the same states.

Paper preset (the defaults; configs/amazon-beauty/gru4rec-paper.toml): one layer of 100 GRU
units, dropout 0.5 on the hidden state, batches of 50, 10 epochs (the ICLR 2016 settings of
its RSC15 runs, which the paper tunes per data set). The CPU preset
(configs/amazon-beauty/gru4rec-cpu.toml) trains on Amazon Beauty in minutes on one core.

Departures from the papers (each a config field where it is a choice):

* ``embedding_dim``: items are embedded (E = 300 by default), where the ICLR 2016 network
  reads one-hot vectors. With E >= 3H the embedding followed by the GRU's input weights
  (3H x E) can express any one-hot input weights (3H x I), so the paper's network is a
  special case; the later GRU4Rec code offers both.
* The loss: full-softmax cross-entropy over every item (the later papers' ``cross-entropy``
  loss), not the ICLR 2016 TOP1/BPR over in-batch negatives, and without their negative
  sampling: every item is in the softmax.
* Batches: each user's last ``max_len`` + 1 items as one window (the sequential base's
  ``batches``), users in random order, ``train.batch_size`` windows per batch; the paper's
  session-parallel mini-batches carry the hidden state across a session's consecutive
  chunks, which a window of the whole (recent) history makes unnecessary.
* The optimiser is the trainer's (Adam, ``train.lr`` 1e-3); the papers use Adagrad with
  momentum (lr 0.01 in ICLR 2016), which the shared trainer does not offer.
* Dropout (``dropout_embed``, ``dropout_hidden``) is drawn from the trainer's generator:
  the same seed gives the same run.

Dimension letters: B users in a batch, L = max_len positions, I items, E embedding width,
H hidden width (D = H in the sequential base), N positions with a target.

References
----------
Hidasi, Karatzoglou, Baltrunas, Tikk. Session-based Recommendations with Recurrent Neural
Networks. ICLR 2016. https://arxiv.org/abs/1511.06939
Hidasi, Karatzoglou. Recurrent Neural Networks with Top-k Gains for Session-based
Recommendations. CIKM 2018. https://arxiv.org/abs/1706.03847
Hidasi, Czapp. The Effect of Third Party Implementations on Reproducibility. RecSys 2023.
https://arxiv.org/abs/2307.15155
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from genrec.config import Range, check_ranges
from genrec.models.base import ArraySpec, Capabilities
from genrec.models.nn_blocks import dropout_values
from genrec.models.seq_losses import ce_loss, with_bias
from genrec.models.sequential import PAD, SeqBatch, TorchSequentialRecommender
from genrec.train import StepContext, TrainConfig
from genrec.train.noise import WindowDraws

__all__ = ["GRU4Rec", "GRU4RecConfig", "GRU4RecNet", "right_align", "left_align"]


@dataclass(frozen=True)
class GRU4RecConfig:
    max_len: Annotated[int, Range(ge=1)] = 50  # L, the most recent items read
    hidden_dim: Annotated[int, Range(ge=1)] = 100  # H, GRU units per layer
    n_layers: Annotated[int, Range(ge=1)] = 1  # stacked GRU layers
    embedding_dim: Annotated[int, Range(ge=1)] = 300  # E (the paper: one-hot input)
    tied: bool = False  # the output table is the input embedding (needs E = H)
    output_bias: bool = True  # a learned score offset per item (c_i)
    dropout_embed: Annotated[float, Range(ge=0, lt=1)] = 0.0  # on the item embeddings
    dropout_hidden: Annotated[float, Range(ge=0, lt=1)] = 0.5  # on each layer's states
    # Adam (the paper: Adagrad, lr 0.01), batches of 50 windows, 10 epochs, selected on
    # validation NDCG@10 when a validation task is given
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=10, batch_size=50, lr=1e-3, patience=None, select_metric="ndcg@10"
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.tied and self.embedding_dim != self.hidden_dim:
            raise ValueError(
                f"tied needs embedding_dim = hidden_dim (the output table is the input "
                f"embedding), got embedding_dim {self.embedding_dim} and hidden_dim "
                f"{self.hidden_dim}; set embedding_dim = {self.hidden_dim} or tied = false"
            )


def right_align(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Left-padded rows (B, L, ...) with ``lengths`` (B,) real entries moved to the front:
    row b's entries 0..n_b-1 are its real ones, in order (the padding goes to the back)."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device)[None, :] + (L - lengths)[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def left_align(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`right_align`: the first ``lengths`` entries moved to the back."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device)[None, :] - (L - lengths)[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def _glorot_gates_(w: torch.Tensor, generator: torch.Generator) -> None:
    """GRU4Rec's initialisation of a (3H, n) gate matrix: each (H, n) block uniform in
    +-sqrt(6 / (H + n))."""
    H = w.shape[0] // 3
    bound = math.sqrt(6.0 / (H + w.shape[1]))
    with torch.no_grad():
        w.uniform_(-bound, bound, generator=generator)


class GRU4RecNet(nn.Module):
    """Embedding -> GRU layers -> output table (see the module docstring)."""

    def __init__(
        self,
        n_items: int,
        embedding_dim: int,
        hidden_dim: int,
        n_layers: int,
        tied: bool,
        output_bias: bool,
        generator: torch.Generator,
    ):
        super().__init__()
        self.tied = tied
        self.embed = nn.Parameter(torch.empty(n_items + 1, embedding_dim))  # (I + 1, E)
        self.grus = nn.ModuleList(  # built without drawing weights: they are set below
            nn.GRU(embedding_dim if j == 0 else hidden_dim, hidden_dim, device="meta").to_empty(
                device="cpu"
            )
            for j in range(n_layers)
        )
        self.out = None if tied else nn.Parameter(torch.empty(n_items, hidden_dim))  # (I, H)
        self.bias = nn.Parameter(torch.zeros(n_items)) if output_bias else None  # (I,)
        with torch.no_grad():
            self.embed.normal_(0.0, 1.0 / math.sqrt(embedding_dim), generator=generator)
            self.embed[PAD].zero_()
            for gru in self.grus:  # weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
                for name, p in gru.named_parameters():
                    if name.startswith("weight"):
                        _glorot_gates_(p, generator)
                    else:
                        p.zero_()
            if self.out is not None:
                bound = math.sqrt(6.0 / (n_items + hidden_dim))
                self.out.uniform_(-bound, bound, generator=generator)

    @staticmethod
    def arrays(
        n_items: int, embedding_dim: int, hidden_dim: int, n_layers: int, tied: bool, bias: bool
    ) -> dict[str, ArraySpec]:
        """The arrays of the state_dict of ``GRU4RecNet(n_items, ...)``."""
        out = {"embed": ArraySpec((n_items + 1, embedding_dim))}
        for j in range(n_layers):
            n_in = embedding_dim if j == 0 else hidden_dim
            out[f"grus.{j}.weight_ih_l0"] = ArraySpec((3 * hidden_dim, n_in))
            out[f"grus.{j}.weight_hh_l0"] = ArraySpec((3 * hidden_dim, hidden_dim))
            out[f"grus.{j}.bias_ih_l0"] = ArraySpec((3 * hidden_dim,))
            out[f"grus.{j}.bias_hh_l0"] = ArraySpec((3 * hidden_dim,))
        if not tied:
            out["out"] = ArraySpec((n_items, hidden_dim))
        if bias:
            out["bias"] = ArraySpec((n_items,))
        return out

    def item_table(self) -> torch.Tensor:
        """The output item table (I, H) (the input embedding without its padding row when
        tied)."""
        return self.embed[1:] if self.out is None else self.out

    def forward(
        self,
        inputs: torch.Tensor,
        dropout: tuple[float, float] = (0.0, 0.0),
        generator: WindowDraws = None,
    ) -> torch.Tensor:
        """Hidden states (B, L, H) of left-padded token windows ``inputs`` (B, L); 0 at the
        padding. ``dropout`` (embedding, hidden) is applied when a ``generator`` is given."""
        B, L = inputs.shape
        real = inputs != PAD  # (B, L)
        n = real.sum(1)  # (B,) items per row
        x = self.embed[inputs]  # (B, L, E)
        if generator is not None:
            x = dropout_values(x, dropout[0], generator)
        x = right_align(x, n)  # (B, L, E), the real items first
        lengths = n.clamp(min=1).cpu()  # an empty row reads one padding token, masked below
        for gru in self.grus:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = gru(packed)
            x, _ = pad_packed_sequence(h, batch_first=True, total_length=L)  # (B, L, H)
            if generator is not None:  # keyed noise: the items counted from the first
                x = dropout_values(x, dropout[1], generator, ends=())
        return left_align(x, n) * real[..., None]  # (B, L, H), 0 at the padding


class GRU4Rec(TorchSequentialRecommender):
    """GRU4Rec (Hidasi et al. 2016) with the full-softmax cross-entropy.

    Attributes
    ----------
    module_ : GRU4RecNet
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> from genrec.data import Sequences
    >>> seqs = Sequences.from_lists([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1]], n_items=4)
    >>> m = GRU4Rec(hidden_dim=8, embedding_dim=8, train={"epochs": 2, "device": "cpu"})
    >>> m.fit(seqs).recommend(None, seqs, k=2)[0].shape
    (3, 2)
    """

    name = "gru4rec"
    capabilities = Capabilities(sequential=True, trainer=True, selects_on="ranking")
    config_class: ClassVar[type] = GRU4RecConfig
    keyed_noise: ClassVar[bool] = True  # dropout keyed by (user, position)
    module_: GRU4RecNet

    def loss_terms(self, batch: SeqBatch) -> int:
        """The positions with a next item (the cross-entropy's mean runs over them)."""
        assert batch.targets is not None
        return int((batch.targets != PAD).sum())

    def _build_module(self, n_items: int, generator: torch.Generator) -> GRU4RecNet:
        c = self.config
        return GRU4RecNet(
            n_items, c.embedding_dim, c.hidden_dim, c.n_layers, c.tied, c.output_bias, generator
        )

    def state_arrays(self) -> dict[str, ArraySpec]:
        c = self.config
        return GRU4RecNet.arrays(
            self.n_items_, c.embedding_dim, c.hidden_dim, c.n_layers, c.tied, c.output_bias
        )

    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        c = self.config
        assert batch.targets is not None
        gen = ctx.windows_rng(batch.noise_keys())
        h = self.module_(batch.inputs, (c.dropout_embed, c.dropout_hidden), gen)
        keep = batch.targets != PAD  # (B, L) positions with a next item
        t = batch.targets[keep] - 1  # (N,) item indices
        loss = ce_loss(*with_bias(h[keep].float(), self._item_table(), self.module_.bias), t)
        return {"loss": loss}

    def _scores(self, batch: Any) -> torch.Tensor:
        h = self._last(batch)  # (B, H), the state after the last item
        s = h @ self._item_table().T  # (B, I)
        return s if self.module_.bias is None else s + self.module_.bias

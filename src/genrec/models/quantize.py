r"""Vector quantization: the discrete bottleneck of VQ-VAE and the semantic item IDs of TIGER.

A codebook holds K vectors :math:`e_1..e_K` of size D. An encoder output :math:`z_e` is
replaced by its nearest code, :math:`z_q = e_c` with :math:`c = \arg\min_k \|z_e - e_k\|^2`
(van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017). The argmin
has no gradient, so the decoder's gradient is copied to the encoder (the straight-through
estimator, :math:`z_e + \mathrm{sg}[z_q - z_e]`), and two terms train the codes and keep the
encoder near them:

.. math::
    L_{vq} = \|\mathrm{sg}[z_e] - e_c\|^2 + \beta \|z_e - \mathrm{sg}[e_c]\|^2,
    \qquad \beta = 0.25 .

With ``ema=True`` the codebook is not trained by the first term but set to running averages
of the encoder outputs assigned to each code (the paper's appendix A.1; Laplace smoothing of
the counts as in its reference code), and only the commitment term is a loss.

**Residual quantization** (Zeghidour et al., SoundStream 2021; Lee et al., RQ-VAE, CVPR 2022;
TIGER, Rajput et al., NeurIPS 2023) quantizes with L codebooks in turn, each the residual left
by the levels before: :math:`r_0 = z_e`, :math:`c_l = \arg\min_k \|r_l - e^l_k\|^2`,
:math:`r_{l+1} = r_l - e^l_{c_l}`, :math:`z_q = \sum_l e^l_{c_l}`, and the loss is the sum of
each level's :math:`L_{vq}` on its own residual. **Residual k-means** gives the same kind of
codes without training: k-means on the inputs, then on the residuals, level by level.

Two remedies for codebook collapse (few codes in use, the known failure) are options:
k-means initialisation from the first training batch, and restarting codes that have gone
unused from encoder outputs of the current batch (Dhariwal et al., Jukebox 2020; Zeghidour
et al. 2021). Every forward pass reports the perplexity of the code counts,
:math:`\exp(-\sum_k p_k \log p_k)` (K when all codes are used equally, 1 under collapse), and
the share of codes in use.

The maths are module-level functions of tensors (each unit-tested); the modules are thin.
Dimension letters: N vectors in a batch, D their size, K codes, L levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec.foundations.kmeans import kmeans_plusplus
from genrec.train.distributed import gather_pending

__all__ = [
    "sq_distances",
    "nearest_codes",
    "straight_through",
    "vq_losses",
    "code_counts",
    "perplexity",
    "ema_update",
    "kmeans",
    "residual_kmeans",
    "unique_tuples",
    "Quantized",
    "VectorQuantizer",
    "ResidualQuantizer",
]


# ------------------------------------------------------------------------------ maths
def sq_distances(z: Tensor, codebook: Tensor) -> Tensor:
    """Squared Euclidean distances, (N, D) x (K, D) -> (N, K)."""
    d = (z * z).sum(1, keepdim=True) - 2.0 * z @ codebook.T + (codebook * codebook).sum(1)
    return d.clamp_min(0.0)  # (N, K); rounding can make a zero distance slightly negative


def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """The index of each row's nearest code, (N,) int64 (the lowest index on a tie)."""
    return sq_distances(z, codebook).argmin(1)


def straight_through(z_e: Tensor, z_q: Tensor) -> Tensor:
    """``z_q`` forward, the identity backward: the decoder's gradient reaches ``z_e``."""
    return z_e + (z_q - z_e).detach()


def vq_losses(z_e: Tensor, z_q: Tensor, beta: float = 0.25) -> tuple[Tensor, Tensor]:
    """(codebook loss ``||sg[z_e] - e||^2``, commitment loss ``beta ||z_e - sg[e]||^2``):
    squared norms over D, averaged over the N vectors (the scale of a reconstruction
    error summed over its dimensions)."""
    book = (z_q - z_e.detach()).pow(2).sum(-1).mean()
    commit = (z_e - z_q.detach()).pow(2).sum(-1).mean()
    return book, beta * commit


def code_counts(codes: Tensor, n_codes: int) -> Tensor:
    """How often each code was chosen, (K,) float."""
    return torch.bincount(codes.reshape(-1), minlength=n_codes).to(torch.float32)


def perplexity(counts: Tensor) -> Tensor:
    """``exp`` of the entropy of the code frequencies: K when uniform, 1 under collapse."""
    p = counts / counts.sum().clamp_min(1.0)  # (K,)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def ema_update(
    counts: Tensor, sums: Tensor, z: Tensor, codes: Tensor, decay: float, eps: float = 1e-5
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One EMA step of the codebook (van den Oord et al., appendix A.1).

    :math:`N_k \leftarrow \gamma N_k + (1-\gamma) n_k`,
    :math:`m_k \leftarrow \gamma m_k + (1-\gamma) \sum_{i: c_i = k} z_i`, and the codebook
    :math:`e_k = m_k / \tilde N_k` with the Laplace-smoothed counts
    :math:`\tilde N_k = (N_k + \epsilon) / (\sum_j N_j + K\epsilon) \sum_j N_j`, so a code
    no vector chose keeps a finite value. Returns (counts, sums, codebook), new tensors.
    """
    K = counts.shape[0]
    onehot = F.one_hot(codes, K).to(z.dtype)  # (N, K)
    new_counts = decay * counts + (1 - decay) * onehot.sum(0)  # (K,)
    new_sums = decay * sums + (1 - decay) * onehot.T @ z  # (K, D)
    total = new_counts.sum()
    smoothed = (new_counts + eps) / (total + K * eps) * total  # (K,)
    return new_counts, new_sums, new_sums / smoothed.unsqueeze(1)


def kmeans(x: Tensor, n_clusters: int, n_iter: int = 25, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from k-means++ seeds: (centres (K, D), assignments (N,)).

    A cluster that loses all its points is re-seeded at the point farthest from its centre.
    With fewer distinct points than clusters some centres coincide (harmless for a
    codebook: the lowest index wins the ties).
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("kmeans: no points")
    xd = x.detach().to(torch.float64)
    rng = np.random.default_rng(seed)
    if n >= n_clusters:
        idx = kmeans_plusplus(xd.cpu().numpy(), n_clusters, rng)
    else:  # fewer points than codes: every point once, the rest drawn again
        idx = np.concatenate([np.arange(n), rng.integers(0, n, n_clusters - n)])
    centres = xd[torch.as_tensor(idx, device=x.device)].clone()  # (K, D)
    assign = nearest_codes(xd, centres)
    for _ in range(n_iter):
        counts = torch.bincount(assign, minlength=n_clusters).to(xd.dtype)  # (K,)
        sums = torch.zeros_like(centres).index_add_(0, assign, xd)  # (K, D)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1)[:, None])
        if bool(empty.any()) and n >= n_clusters:
            far = (xd - centres[assign]).pow(2).sum(1).argsort(descending=True)  # (N,)
            centres[empty] = xd[far[: int(empty.sum())]]
        new = nearest_codes(xd, centres)
        if torch.equal(new, assign):
            break
        assign = new
    return centres.to(x.dtype), assign


def residual_kmeans(
    x: Tensor, n_levels: int, n_codes: int, n_iter: int = 25, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Codes without training: k-means on ``x``, then on what the first level leaves, and so
    on. Returns (codes (N, L) int64, codebooks (L, K, D))."""
    residual = x.detach().to(torch.float64)
    codes, books = [], []
    for level in range(n_levels):
        centres, assign = kmeans(residual, n_codes, n_iter, seed + level)
        codes.append(assign)
        books.append(centres)
        residual = residual - centres[assign]  # (N, D)
    return torch.stack(codes, 1), torch.stack(books).to(x.dtype)


def unique_tuples(codes: Tensor) -> tuple[Tensor, int]:
    """Codes (N, L) with one more column that makes every row unique (TIGER): 0 for the
    first row with a tuple, 1 for the second, ... in row order. Returns (codes (N, L + 1),
    the number of rows that shared their tuple with an earlier row)."""
    rows = [tuple(r) for r in codes.tolist()]
    seen: dict[tuple[int, ...], int] = {}
    extra = []
    for r in rows:
        extra.append(seen.get(r, 0))
        seen[r] = extra[-1] + 1
    suffix = torch.tensor(extra, dtype=codes.dtype, device=codes.device).unsqueeze(1)  # (N, 1)
    return torch.cat([codes, suffix], 1), len(rows) - len(seen)


# ------------------------------------------------------------------------------ modules
@dataclass
class Quantized:
    """What a quantizer returns. ``z_q`` carries the straight-through gradient; ``loss`` is
    what to add to the reconstruction loss (codebook + commitment, or commitment alone with
    EMA); ``codes`` is (N,) for one level and (N, L) for residual levels; ``perplexity`` and
    ``usage`` (share of codes chosen in this batch) are per level, floats; ``values`` holds
    the chosen code vectors themselves (no gradient)."""

    z_q: Tensor
    values: Tensor
    codes: Tensor
    loss: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    perplexity: list[float]
    usage: list[float]


class VectorQuantizer(nn.Module):
    """A codebook of ``n_codes`` vectors of size ``dim``.

    beta : the commitment weight (0.25, the paper's).
    ema : update the codebook by running averages (``decay``) instead of its loss.
    init : ``"kmeans"`` sets the codebook by k-means on the first training batch;
        ``"uniform"`` draws it from U(-1/K, 1/K) (the reference code's).
    restart_every : every this many training steps, codes chosen fewer than
        ``restart_below`` times (in running counts) since the last check move to randomly
        drawn vectors of the current batch; None never restarts.
    seed : seeds the k-means and the restart draws.
    """

    codebook: Tensor  # (K, D): a parameter, or a buffer with ema
    ema_counts: Tensor  # (K,) running code counts (ema)
    ema_sums: Tensor  # (K, D) running sums of the assigned vectors (ema)
    initialised: Tensor  # () bool: the k-means initialisation has happened
    steps: Tensor  # () int64: training steps
    recent_counts: Tensor  # (K,) code counts since the last restart check

    def __init__(
        self,
        n_codes: int,
        dim: int,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        init: str = "kmeans",
        restart_every: int | None = None,
        restart_below: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        if n_codes < 1 or dim < 1:
            raise ValueError(f"a codebook needs n_codes >= 1 and dim >= 1, got {n_codes}, {dim}")
        if init not in ("kmeans", "uniform"):
            raise ValueError(f"init must be 'kmeans' or 'uniform', got {init!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if restart_every is not None and restart_every < 1:
            raise ValueError(f"restart_every must be positive or None, got {restart_every}")
        self.n_codes, self.dim, self.beta = n_codes, dim, beta
        self.ema, self.decay, self.eps = ema, decay, eps
        self.init, self.restart_every, self.restart_below = init, restart_every, restart_below
        self.seed = seed
        book = torch.empty(n_codes, dim).uniform_(-1.0 / n_codes, 1.0 / n_codes)
        if ema:
            self.register_buffer("codebook", book)
            self.register_buffer("ema_counts", torch.zeros(n_codes))
            self.register_buffer("ema_sums", book.clone())
        else:
            self.codebook = nn.Parameter(book)
        self.register_buffer("initialised", torch.tensor(init == "uniform"))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("recent_counts", torch.zeros(n_codes))  # since the last restart
        # a distributed run (set by the trainer): the step's vectors and codes wait for
        # share_step
        self.defer = False
        self._pending: tuple[Tensor, Tensor] | None = None

    @torch.no_grad()
    def share_step(self, gather: Callable[[np.ndarray], np.ndarray]) -> None:
        """The EMA update and the restarts of the training step just done, from every
        process's vectors in the global batch's row order, so that every process keeps the
        codebook one process would: ``gather`` takes this process's rows (n, D + 1: the
        vectors and their codes) and returns all of them (N, D + 1). A distributed trainer
        calls it on every rank after every step (with ``defer`` set)."""
        pending, self._pending = self._pending, None
        rows = gather_pending(gather, pending, self.dim + 1).to(self.codebook.device)
        if len(rows):
            codes = rows[:, -1].long()
            z = rows[:, :-1].to(self.codebook.dtype)
            self._train_step(z, codes, code_counts(codes, self.n_codes))

    @torch.no_grad()
    def init_from(self, z: Tensor) -> None:
        """Set the codebook by k-means on ``z`` (N, D)."""
        centres, _ = kmeans(z.detach().float(), self.n_codes, seed=self.seed)
        self.codebook.data.copy_(centres.to(self.codebook.dtype))
        if self.ema:
            self.ema_counts.fill_(1.0)
            self.ema_sums.copy_(self.codebook)
        self.initialised.fill_(True)

    def forward(self, z: Tensor) -> Quantized:
        """Quantize ``z`` (N, D) (any leading dimensions are flattened and restored)."""
        shape = z.shape
        flat = z.reshape(-1, self.dim)  # (N, D)
        if self.training and not bool(self.initialised):
            self.init_from(flat)
        codes = nearest_codes(flat.detach(), self.codebook.detach())  # (N,)
        counts = code_counts(codes, self.n_codes)  # (K,)
        e = self.codebook[codes]  # (N, D), a copy; the codebook's gradient flows through it
        book_loss, commit = vq_losses(flat, e, self.beta)
        if self.ema:
            book_loss = book_loss.detach()  # reported, not trained
        loss = commit if self.ema else book_loss + commit
        if self.training and self.defer:
            self._pending = (flat.detach(), codes)
        elif self.training:  # after the lookup: this batch is quantized by the codes it saw
            self._train_step(flat.detach(), codes, counts)
        z_q = straight_through(flat, e).reshape(shape)
        return Quantized(
            z_q,
            e.detach().reshape(shape),
            codes.reshape(shape[:-1]),
            loss,
            book_loss,
            commit,
            [float(perplexity(counts))],
            [float((counts > 0).float().mean())],
        )

    @torch.no_grad()
    def _train_step(self, z: Tensor, codes: Tensor, counts: Tensor) -> None:
        """The EMA update and the restart of unused codes, in place."""
        self.steps += 1
        if self.ema:
            c, s, book = ema_update(self.ema_counts, self.ema_sums, z, codes, self.decay, self.eps)
            self.ema_counts.copy_(c)
            self.ema_sums.copy_(s)
            self.codebook.copy_(book)
        self.recent_counts += counts
        if self.restart_every is not None and int(self.steps) % self.restart_every == 0:
            dead = self.recent_counts < self.restart_below  # (K,)
            n_dead = int(dead.sum())
            if n_dead:
                g = torch.Generator(device="cpu").manual_seed(
                    self.seed * 1_000_003 + int(self.steps)
                )
                pick = torch.randint(0, z.shape[0], (n_dead,), generator=g).to(z.device)
                self.codebook[dead] = z[pick].to(self.codebook.dtype)
                if self.ema:
                    self.ema_sums[dead] = z[pick].to(self.ema_sums.dtype)
                    self.ema_counts[dead] = 1.0
            self.recent_counts.zero_()


class ResidualQuantizer(nn.Module):
    """``n_levels`` codebooks of ``n_codes`` vectors, each quantizing the residual of the
    levels before it; the keyword arguments go to every level's :class:`VectorQuantizer`
    (level l seeded ``seed + l``)."""

    levels: nn.ModuleList

    def __init__(self, n_levels: int, n_codes: int, dim: int, seed: int = 0, **kwargs: object):
        super().__init__()
        if n_levels < 1:
            raise ValueError(f"n_levels must be at least 1, got {n_levels}")
        self.levels = nn.ModuleList(
            VectorQuantizer(n_codes, dim, seed=seed + level, **kwargs)  # type: ignore[arg-type]
            for level in range(n_levels)
        )

    def forward(self, z: Tensor) -> Quantized:
        """Quantize ``z`` (N, D): codes (N, L), ``z_q`` the sum of the chosen codes with the
        straight-through gradient, the losses summed over levels."""
        residual = z
        total = torch.zeros_like(z)
        codes: list[Tensor] = []
        ppl: list[float] = []
        usage: list[float] = []
        loss = book = commit = z.new_zeros(())
        for vq in self.quantizers:
            q = vq(residual)
            e = q.values  # this level's chosen codes
            total = total + e
            residual = residual - e
            codes.append(q.codes)
            loss, book, commit = loss + q.loss, book + q.codebook_loss, commit + q.commitment_loss
            ppl += q.perplexity
            usage += q.usage
        z_q = straight_through(z, total)
        return Quantized(z_q, total, torch.stack(codes, -1), loss, book, commit, ppl, usage)

    @property
    def quantizers(self) -> list[VectorQuantizer]:
        """The levels, in order."""
        return [vq for vq in self.levels if isinstance(vq, VectorQuantizer)]

    @torch.no_grad()
    def encode(self, z: Tensor) -> Tensor:
        """The codes (N, L) of ``z`` without training or gradients."""
        residual, codes = z, []
        for vq in self.quantizers:
            c = nearest_codes(residual, vq.codebook)
            codes.append(c)
            residual = residual - vq.codebook[c]
        return torch.stack(codes, -1)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """The sum of the chosen codes, (N, L) -> (N, D)."""
        first = self.quantizers[0].codebook
        out = first.new_zeros((*codes.shape[:-1], first.shape[1]))
        for level, vq in enumerate(self.quantizers):
            out = out + vq.codebook[codes[..., level]]
        return out

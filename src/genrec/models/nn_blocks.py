"""Pure tensor functions and two small layers shared by the autoencoder family.

Math (each function has its own unit test in ``tests/models/test_nn_blocks.py``):

* ``gaussian_kl_to_std_normal``: KL(N(mu, diag exp(logvar)) || N(0, I)) in closed form,
  ``0.5 * sum_k (exp(logvar_k) + mu_k^2 - 1 - logvar_k)``.
* ``reparameterize``: ``z = mu + noise_scale * exp(logvar / 2) * eps``, eps ~ N(0, I) drawn
  from an explicit ``torch.Generator``.
* ``log_normal_pdf``: elementwise log N(z; mu, exp(logvar)).
* ``multinomial_log_lik``: ``sum_i x_i log softmax(logits)_i`` per user, dense reference;
  ``multinomial_log_lik_sparse`` computes the same from the CSR parts of x without densifying
  it (the log-softmax gathered at the stored entries).

Sparse input (the encoder's first layer): a batch of user rows arrives as the CSR parts
(indptr, indices, values) of a :class:`genrec.train.Batch`. ``normalize_rows`` (Liang et
al.'s L2 normalisation) and ``dropout_values`` (input dropout) act on the stored values only,
which is what dense normalisation and dropout do to a 0/1 row (zeros stay zero).
:class:`SparseInputLinear` then computes ``x @ W + b`` with ``embedding_bag`` (a weighted sum
of the rows of W picked by the user's items), so the (B, I) input is never formed.

Dimension letters: B users in a batch, I items, H hidden units, K latent size, N stored
entries (nnz) of the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genrec.models.saved import ArraySpec, Dim
from genrec.train.batches import row_ids  # defined with Batch; re-exported here
from genrec.train.noise import UserNoise, WindowNoise

__all__ = [
    "gaussian_kl_to_std_normal",
    "reparameterize",
    "log_normal_pdf",
    "multinomial_log_lik",
    "multinomial_log_lik_sparse",
    "row_ids",
    "normalize_rows",
    "dropout_values",
    "encoder_values",
    "SparseInputLinear",
    "MLPAutoencoder",
    "make_linear",
    "init_linear_",
    "BlockedLinear",
]

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------- Gaussian latent helpers


def gaussian_kl_to_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, closed form.

    Parameters
    ----------
    mu, logvar : Tensor, shape (B, K)

    Returns
    -------
    Tensor, shape (B,)
    """
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)  # (B,)


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    generator: torch.Generator | UserNoise,
    noise_scale: float = 1.0,
) -> torch.Tensor:
    """A sample z = mu + noise_scale * sigma * eps of q(z|x), differentiable in (mu, logvar).

    ``noise_scale`` is 1 in the papers (RecBole's 0.01 is a departure, kept out of defaults).
    eps is drawn in float32 on ``generator``'s device, then moved to ``mu``'s device; with
    keyed noise (a :class:`~genrec.train.noise.UserNoise`, ``StepContext.rng_for``) row b's
    eps is keyed by the batch's user b.
    """
    if isinstance(generator, UserNoise):
        eps = generator.normal(mu.shape[-1], "eps")  # (B, K)
    else:
        eps = torch.randn(mu.shape, generator=generator, device=generator.device)  # (B, K)
    eps = eps.to(device=mu.device, dtype=mu.dtype)
    return mu + noise_scale * torch.exp(0.5 * logvar) * eps  # (B, K)


def log_normal_pdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar)); broadcasts. Shape of the broadcast inputs."""
    return -0.5 * (logvar + _LOG_2PI + (z - mu).pow(2) * torch.exp(-logvar))


# ---------------------------------------------------------------- likelihoods


def multinomial_log_lik(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multinomial log-likelihood (up to the count constant), dense reference.

    Parameters
    ----------
    logits : Tensor, shape (B, I)
    x : Tensor, shape (B, I)
        Counts (0/1 for implicit feedback).

    Returns
    -------
    Tensor, shape (B,): ``sum_i x_i log softmax(logits)_i``.
    """
    return (F.log_softmax(logits.float(), dim=-1) * x).sum(dim=-1)  # (B,)


def multinomial_log_lik_sparse(
    logits: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """:func:`multinomial_log_lik` from the CSR parts of x, without forming x: the sum of
    ``x_i log softmax(l)_i`` over the stored entries only.

    Parameters
    ----------
    logits : Tensor, shape (B, I)
    indptr : LongTensor, shape (B + 1,)
    indices : LongTensor, shape (N,)
    values : Tensor, shape (N,)

    Returns
    -------
    Tensor, shape (B,)
    """
    rows = row_ids(indptr)  # (N,)
    log_p = F.log_softmax(logits, dim=-1, dtype=torch.float32)  # (B, I), one fused kernel
    picked = log_p[rows, indices] * values  # (N,) x_i log softmax_i at the stored entries
    return torch.zeros(logits.shape[0], device=logits.device).index_add(0, rows, picked)  # (B,)


# ---------------------------------------------------------------- sparse input


def normalize_rows(indptr: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Values of the L2-normalised rows (x / ||x||_2), (N,); empty rows stay empty."""
    rows = row_ids(indptr)  # (N,)
    sq = torch.zeros(len(indptr) - 1, device=values.device).index_add(0, rows, values * values)
    norm = sq.sqrt().clamp_min(1e-12)  # (B,)
    return values / norm[rows]  # (N,)


def dropout_values(
    values: torch.Tensor,
    p: float,
    generator: torch.Generator | UserNoise | WindowNoise,
    indptr: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
    ends: tuple[int, ...] = (1,),
) -> torch.Tensor:
    """Inverted dropout on the stored values: each kept with prob 1 - p, scaled by 1/(1 - p).
    With keyed noise the CSR ``indptr`` and ``indices`` key each entry by (user, item); a
    sequence model's windows (B, L, ...) are keyed by (row, position from the end of the
    dims ``ends``, ...) (:class:`~genrec.train.noise.WindowNoise`)."""
    if p <= 0.0:
        return values
    if isinstance(generator, WindowNoise):
        u = generator.uniform(values.shape, ends)
    elif isinstance(generator, UserNoise):
        if values.ndim == 2:  # dense rows (B, D): keyed by (user, column)
            u = generator.uniform(values.shape[1], "dropout/dense")  # (B, D)
        elif indptr is None or indices is None:
            raise ValueError("keyed dropout needs the rows' indptr and indices")
        else:
            u = generator.entries(indptr, indices, "dropout")  # (N,)
    else:
        u = torch.rand(values.shape, generator=generator, device=generator.device)  # (N,)
    keep = (u >= p).to(device=values.device, dtype=values.dtype)
    return values * keep / (1.0 - p)  # (N,)


def encoder_values(
    indptr: torch.Tensor,
    values: torch.Tensor,
    p: float,
    generator: torch.Generator | UserNoise | None,
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """The values the autoencoders' encoders read (N,): rows scaled to unit L2 norm, then
    input dropout ``p`` drawn from ``generator`` (none without one: scoring; keyed noise
    needs the rows' ``indices``)."""
    out = normalize_rows(indptr, values)  # (N,)
    return out if generator is None else dropout_values(out, p, generator, indptr, indices)


def init_linear_(
    weight: torch.Tensor, bias: torch.Tensor, scheme: str, generator: torch.Generator
) -> None:
    """Initialise a linear layer in place from ``generator``; ``weight`` is (out, in).

    ``"glorot"``: Glorot-uniform weights, truncated N(0, 0.001^2) biases (Liang et al.'s code);
    ``"torch"``: PyTorch's ``nn.Linear`` default (Kaiming-uniform, a = sqrt(5); biases
    U(-1/sqrt(in), 1/sqrt(in))), which the RecVAE code uses.
    """
    with torch.no_grad():
        if scheme == "glorot":
            nn.init.xavier_uniform_(weight, generator=generator)
            nn.init.trunc_normal_(bias, std=0.001, a=-0.002, b=0.002, generator=generator)
        elif scheme == "torch":
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(bias, -bound, bound, generator=generator)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}; use glorot or torch")


TILE = 512  # BlockedLinear's CPU forward: output tiles of at most TILE x TILE


class _BlockedAddmm(torch.autograd.Function):
    """``x @ weight.T + bias`` computed one (``TILE`` rows) x (``TILE`` columns) tile of the
    output at a time.

    Same numbers as ``F.linear``: every output element is the same dot product, only the
    GEMM is cut into tiles that stay in the core's cache. On the AMD EPYC of the benchmarks,
    MKL runs the single (2048, 600) x (600, 2810) product at 56-77 GFLOP/s and the 512 x 512
    tiles at 100-120, and the results are bitwise equal. The backward is the two products
    autograd computes for ``F.linear``, in the same layouts, so training takes the same steps.
    """

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        weight: torch.Tensor,  # noqa: ANN001 (ctx)
        bias: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        out = x.new_empty((x.shape[0], weight.shape[0]))  # (B, O)
        for r in range(0, x.shape[0], TILE):
            for c in range(0, weight.shape[0], TILE):
                torch.addmm(
                    bias[c : c + TILE],
                    x[r : r + TILE],
                    weight[c : c + TILE].t(),
                    out=out[r : r + TILE, c : c + TILE],
                )
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        gx = grad.mm(weight) if ctx.needs_input_grad[0] else None  # (B, In)
        gw = grad.t().mm(x) if ctx.needs_input_grad[1] else None  # (O, In)
        gb = grad.sum(0) if ctx.needs_input_grad[2] else None  # (O,)
        return gx, gw, gb


def _cpu_autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled()


class BlockedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state_dict) whose forward on the CPU, in float32
    without autocast, computes a wide output (more than ``2 * TILE`` columns, such as a
    decoder's item logits) tile by tile (:class:`_BlockedAddmm`). Elsewhere it is
    ``F.linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.out_features > 2 * TILE
            and x.dim() == 2
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not _cpu_autocast_on()
        ):
            return _BlockedAddmm.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def make_linear(
    in_features: int, out_features: int, generator: torch.Generator, scheme: str = "glorot"
) -> nn.Linear:
    """A :class:`BlockedLinear` initialised by :func:`init_linear_` (the global RNG is not
    touched)."""
    layer = nn.utils.skip_init(BlockedLinear, in_features, out_features)
    init_linear_(layer.weight, layer.bias, scheme, generator)
    return layer


class SparseInputLinear(nn.Module):
    """``x @ weight + bias`` for a CSR batch x (B, I); ``weight`` is stored (I, H).

    ``forward(indptr, indices, values)`` uses ``embedding_bag`` (a weighted sum of the rows
    of ``weight`` picked by the user's items): the dense input is never built and the
    backward touches only the rows that occur. ``forward_dense(x)`` is the dense reference.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        generator: torch.Generator,
        scheme: str = "glorot",
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))  # (I, H)
        self.bias = nn.Parameter(torch.empty(out_features))  # (H,)
        init_linear_(self.weight.T, self.bias, scheme, generator)

    def forward(
        self, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        h = F.embedding_bag(
            indices, self.weight, indptr[:-1], mode="sum", per_sample_weights=values.float()
        )  # (B, H)
        return h + self.bias  # (B, H)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias  # (B, H)


def linear_arrays(prefix: str, n_in: Dim, n_out: Dim) -> dict[str, ArraySpec]:
    """The saved arrays of an ``nn.Linear`` (or :func:`make_linear`): weight (out, in), bias."""
    return {f"{prefix}weight": ArraySpec((n_out, n_in)), f"{prefix}bias": ArraySpec((n_out,))}


def sparse_input_arrays(prefix: str, n_in: Dim, n_out: Dim) -> dict[str, ArraySpec]:
    """The saved arrays of a :class:`SparseInputLinear`: weight (in, out), bias (out,)."""
    return {f"{prefix}weight": ArraySpec((n_in, n_out)), f"{prefix}bias": ArraySpec((n_out,))}


_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class MLPAutoencoder(nn.Module):
    """The feed-forward autoencoder of Mult-VAE, Mult-DAE and the Gaussian VAE.

    Encoder ``[I, *hidden_dims, K]`` (``2K`` outputs, split into mu and logvar, when
    ``variational``), decoder ``[K, *reversed(hidden_dims), I]``, ``activation`` after every
    layer except the encoder head of a VAE and the decoder's output layer (so a DAE's code
    is ``activation``-ed, as in Liang et al.'s MultiDAE). The first layer reads the sparse
    input (:class:`SparseInputLinear`).
    """

    def __init__(
        self,
        n_items: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
        variational: bool,
        activation: str,
        generator: torch.Generator,
    ):
        super().__init__()
        self.variational = variational
        self.latent_dim = latent_dim
        self.act = _ACTIVATIONS[activation]
        enc = [n_items, *hidden_dims, latent_dim * (2 if variational else 1)]
        dec = [latent_dim, *reversed(hidden_dims), n_items]
        self.input = SparseInputLinear(enc[0], enc[1], generator)
        self.encoder = nn.ModuleList(
            make_linear(a, b, generator) for a, b in zip(enc[1:-1], enc[2:])
        )
        self.decoder = nn.ModuleList(make_linear(a, b, generator) for a, b in zip(dec, dec[1:]))

    @staticmethod
    def arrays(
        n_items: int, hidden_dims: tuple[int, ...], latent_dim: int, variational: bool
    ) -> dict[str, ArraySpec]:
        """The arrays of the state_dict of ``MLPAutoencoder(n_items, hidden_dims, ...)``."""
        enc = [n_items, *hidden_dims, latent_dim * (2 if variational else 1)]
        dec = [latent_dim, *reversed(hidden_dims), n_items]
        out = sparse_input_arrays("input.", enc[0], enc[1])
        for j, (a, b) in enumerate(zip(enc[1:-1], enc[2:])):
            out |= linear_arrays(f"encoder.{j}.", a, b)
        for j, (a, b) in enumerate(zip(dec, dec[1:])):
            out |= linear_arrays(f"decoder.{j}.", a, b)
        return out

    def encode(
        self, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar), each (B, K), for a VAE; (code (B, K), None) for a DAE."""
        h = self.input(indptr, indices, values)  # (B, H1)
        for layer in self.encoder:
            h = layer(self.act(h))  # (B, H_next)
        if not self.variational:
            return self.act(h), None  # (B, K)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]  # (B, K), (B, K)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (B, I) from codes (B, K)."""
        h = z
        for i, layer in enumerate(self.decoder):
            h = layer(h) if i == 0 else layer(self.act(h))  # (B, D_i)
        return h  # (B, I)

    def item_vectors(self) -> torch.Tensor:
        """The decoder's output-layer weight rows (I, D), D the width feeding it (K with no
        hidden layer): item i's logit is its row . the last hidden activation + a bias."""
        out = self.decoder[-1]
        assert isinstance(out, nn.Linear)  # make_linear's BlockedLinear
        return out.weight.detach()  # (I, D)

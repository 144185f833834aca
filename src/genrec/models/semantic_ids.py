r"""Semantic item IDs: an RQ-VAE over item features gives each item a short tuple of codes.

TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023) names an
item by the codes of its content embedding under residual quantization, so that similar items
share prefixes, and a sequence model generates those tuples. The RQ-VAE here is theirs: an MLP
encoder (input -> 512 -> 256 -> 128 -> 32, ReLU), a residual quantizer of 3 levels with 256
codes of size 32 (:class:`genrec.models.quantize.ResidualQuantizer`), a mirrored decoder, and
the loss

.. math::
    L = \|x - \hat x\|^2 + \sum_{l} \|\mathrm{sg}[r_l] - e^l_{c_l}\|^2
        + \beta \|r_l - \mathrm{sg}[e^l_{c_l}]\|^2, \qquad \beta = 0.25,

with the codebooks initialised by k-means on the first batch. Items whose 3 codes coincide
get a 4th token, 0, 1, 2, ... in item order (:func:`genrec.models.quantize.unique_tuples`), so
every tuple names one item. :func:`kmeans_semantic_ids` gives codes of the same shape by
residual k-means, without training.

The health of a set of codes (:func:`code_health`): the share of each level's codes that some
item uses (collapse, few codes in use, is the known failure; 80% or more is healthy), the
perplexity per level, the items that share their tuple before the extra token, and the share
of unique tuples after it (always 1).

Departures from the paper: the input is whatever item features are given (TIGER encodes item
text with Sentence-T5; genrec has attribute lists, titles and genres, or a model's item
embeddings: :mod:`genrec.data.item_content`); the reconstruction error is the mean over
items of the summed squared error (the paper does not say how it is reduced); training is a
fixed number of epochs (``epochs``: the paper's 20,000 is ``SemanticIdConfig.paper()``; the
default, 300, is a CPU budget) with Adagrad at 0.4 as in the paper, or Adam.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from genrec.errors import ConfigError, DataError
from genrec.models.quantize import (
    Quantized,
    ResidualQuantizer,
    perplexity,
    residual_kmeans,
    unique_tuples,
)

__all__ = [
    "SemanticIdConfig",
    "RQVAE",
    "SemanticIds",
    "code_health",
    "fit_semantic_ids",
    "kmeans_semantic_ids",
    "code_item_features",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SemanticIdConfig:
    """The RQ-VAE and its training (defaults: TIGER's network, a CPU number of epochs)."""

    hidden_dims: tuple[int, ...] = (512, 256, 128)
    code_dim: int = 32
    n_levels: int = 3
    n_codes: int = 256
    beta: float = 0.25
    epochs: int = 300
    batch_size: int = 1024
    optimizer: str = "adagrad"  # "adagrad" (the paper's) or "adam"
    lr: float = 0.4
    restart_every: int | None = None  # restart unused codes every this many steps
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adagrad", "adam"):
            raise ValueError(f"optimizer must be 'adagrad' or 'adam', got {self.optimizer!r}")
        for name in ("code_dim", "n_levels", "n_codes", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    @classmethod
    def paper(cls, **overrides: Any) -> SemanticIdConfig:
        """TIGER's setting: 20,000 epochs, batch 1024, Adagrad at 0.4."""
        return replace(cls(epochs=20_000), **overrides)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no activation on the last layer


class RQVAE(nn.Module):
    """Encoder MLP, residual quantizer, mirrored decoder MLP."""

    def __init__(self, in_dim: int, config: SemanticIdConfig):
        super().__init__()
        dims = [in_dim, *config.hidden_dims, config.code_dim]
        self.encoder = _mlp(dims)
        self.quantizer = ResidualQuantizer(
            config.n_levels,
            config.n_codes,
            config.code_dim,
            seed=config.seed,
            beta=config.beta,
            restart_every=config.restart_every,
        )
        self.decoder = _mlp(dims[::-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Quantized]:
        """(reconstruction (N, in_dim), the quantizer's output)."""
        q = self.quantizer(self.encoder(x))
        return self.decoder(q.z_q), q

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """Each row's codes, (N, L)."""
        return self.quantizer.encode(self.encoder(x))


def _recon(x: Tensor, x_hat: Tensor) -> Tensor:
    return ((x - x_hat) ** 2).sum(1).mean()  # the summed squared error, averaged over items


@dataclass
class SemanticIds:
    """Items' code tuples and their health.

    codes : (n_items, n_levels + 1) int64, the last column the token that makes tuples unique.
    health : :func:`code_health` of the first n_levels columns, plus ``reconstruction`` (the
        mean summed squared error of the features) for a trained RQ-VAE.
    history : per-epoch training loss and reconstruction error (empty for k-means codes).
    """

    codes: np.ndarray
    health: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def code_health(codes: np.ndarray, n_codes: int) -> dict[str, Any]:
    """Per level the share of the ``n_codes`` codes some row uses and the perplexity of
    their counts; the rows that share their tuple with an earlier row; and the share of
    unique tuples once the extra token is added (1.0)."""
    c = torch.as_tensor(np.asarray(codes), dtype=torch.int64)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"codes should be (n_items, n_levels), got shape {tuple(c.shape)}")
    usage, ppl = [], []
    for level in range(c.shape[1]):
        counts = torch.bincount(c[:, level], minlength=n_codes).float()
        usage.append(float((counts > 0).float().mean()))
        ppl.append(float(perplexity(counts)))
    full, collisions = unique_tuples(c)
    unique = len({tuple(r) for r in full.tolist()}) / len(full)
    return {
        "code_usage": usage,
        "perplexity": ppl,
        "collisions": collisions,
        "max_items_per_tuple": int(full[:, -1].max()) + 1,
        "unique_after_extra_token": unique,
        "healthy": all(u >= 0.8 for u in usage),
    }


def fit_semantic_ids(
    features: np.ndarray,
    config: SemanticIdConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[RQVAE, SemanticIds]:
    """Train an RQ-VAE on ``features`` (n_items, d) and return it with every item's codes.

    ``progress(epoch, {"loss": ..., "reconstruction": ...})`` is called after each epoch."""
    cfg = config or SemanticIdConfig()
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    if x.ndim != 2 or x.shape[0] == 0 or not torch.isfinite(x).all():
        raise ValueError(
            f"features should be a finite (n_items, d) matrix, got shape {tuple(x.shape)}"
        )
    with torch.random.fork_rng(devices=[]):  # the weights from cfg.seed; the caller's RNG kept
        torch.manual_seed(cfg.seed)
        model = RQVAE(x.shape[1], cfg)
    opt: torch.optim.Optimizer = (
        torch.optim.Adagrad(model.parameters(), lr=cfg.lr)
        if cfg.optimizer == "adagrad"
        else torch.optim.Adam(model.parameters(), lr=cfg.lr)
    )
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(x.shape[0], generator=g)
        total = recon_total = 0.0
        for a in range(0, x.shape[0], cfg.batch_size):
            xb = x[order[a : a + cfg.batch_size]]  # (B, d)
            x_hat, q = model(xb)
            recon = _recon(xb, x_hat)
            loss = recon + q.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            recon_total += recon.item() * len(xb)
        row = {"loss": total / x.shape[0], "reconstruction": recon_total / x.shape[0]}
        history.append(row)
        if progress is not None:
            progress(epoch, row)
    model.eval()
    with torch.no_grad():
        codes = model.codes(x)
        x_hat = model.decoder(model.quantizer.decode(codes))
        final = float(_recon(x, x_hat))
    full, _ = unique_tuples(codes)
    health = {**code_health(codes.numpy(), cfg.n_codes), "reconstruction": final}
    return model, SemanticIds(full.numpy(), health, history)


def kmeans_semantic_ids(
    features: np.ndarray, n_levels: int = 3, n_codes: int = 256, seed: int = 0
) -> SemanticIds:
    """Codes by residual k-means on ``features`` (no network), with the extra token."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    codes, books = residual_kmeans(x, n_levels, n_codes, seed=seed)
    full, _ = unique_tuples(codes)
    recon = sum(books[level][codes[:, level]] for level in range(n_levels))
    health = {
        **code_health(codes.numpy(), n_codes),
        "reconstruction": float(((x - recon) ** 2).sum(1).mean()),
    }
    return SemanticIds(full.numpy(), health)


def code_item_features(
    features: np.ndarray, tokenizer: str, config: SemanticIdConfig, who: str
) -> SemanticIds:
    """The semantic IDs of float item features (I, d) by ``tokenizer`` ("rqvae" or
    "kmeans"), for the model named ``who`` (its messages' prefix): rows with NaN or infinite
    values, and more codes per level than items, are refused; the RQ-VAE's progress and the
    codes' health are logged."""
    a = np.asarray(features)
    n_items = len(a)
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a).all(1))
        raise DataError(
            f"{who}: item features have NaN or infinite values in {len(bad)} rows "
            f"(item indices {bad[:5].tolist()}); replace them with finite numbers"
        )
    s = config
    if s.n_codes > n_items:
        raise ConfigError(
            f"{who}: semantic.n_codes ({s.n_codes}) is more than the {n_items} items; "
            f"set semantic.n_codes to at most {n_items}"
        )
    if tokenizer == "kmeans":
        ids = kmeans_semantic_ids(a, s.n_levels, s.n_codes, seed=s.seed)
    else:
        every = max(1, s.epochs // 10)

        def progress(epoch: int, row: dict[str, float]) -> None:
            if (epoch + 1) % every == 0:
                log.info(
                    "%s: RQ-VAE epoch %d/%d, loss %.4f, reconstruction %.4f",
                    who,
                    epoch + 1,
                    s.epochs,
                    row["loss"],
                    row["reconstruction"],
                )

        log.info("%s: coding %d items of %d features (RQ-VAE)", who, n_items, a.shape[1])
        _, ids = fit_semantic_ids(a, s, progress)
    h = ids.health
    log.info(
        "%s: codes used per level %s, %d items share their tuple before the extra token "
        "(at most %d on one)",
        who,
        ", ".join(f"{u:.0%}" for u in h["code_usage"]),
        h["collisions"],
        h["max_items_per_tuple"],
    )
    return ids

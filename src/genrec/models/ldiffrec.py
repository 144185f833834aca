"""L-DiffRec: DiffRec in a clustered latent space, for large item counts (Wang et al., SIGIR 2023).

1. Items are clustered into C groups: k-means (scikit-learn, seeded) on item embeddings, by
   default the item factors V S of a rank-``embedding_dim`` truncated SVD of X, or any (I, d)
   array passed to ``fit(item_embeddings=...)`` (e.g. :func:`autoencoder_item_embeddings` of a
   trained Mult-VAE: its output layer's weights); by default on the unit-length embeddings
   (``normalize_embeddings``).
2. A small VAE per cluster c compresses the user's slice x_c (1 x I_c) to a latent z_c of size
   K_c (K_c proportional to I_c, summing to ``latent_dim`` = K): q(z_c | x_c) = N(mu_c, sigma_c^2).
   z = [z_1, ..., z_C] (1 x K).
3. DiffRec runs on z: the forward process noises z, the denoiser (DiffRec's MLP on K inputs)
   predicts zhat_0, and each cluster's decoder maps zhat_0's slice back to logits over its
   items; a single softmax over all items gives the multinomial likelihood (Mult-VAE's).

Loss per batch (the L-DiffRec objective of the paper and code):

    L_vae  = -mean_u sum_i x_ui log softmax(dec(zhat_0))_i + beta_step * KL(q(z|x) || N(0, I))
    L_diff = DiffRec's (reweighted, importance-sampled) loss on z
    L      = lambda_epoch * L_diff + L_vae                (reweight on)
    L      = L_diff + lambda_epoch * L_vae                (reweight off)

with beta_step = min(vae_anneal_cap, step / vae_anneal_steps) per batch and
lambda_epoch = max((1 - epoch / lamda_anneal_epochs) * lamda, lamda_min) per epoch. Everything
is trained jointly; the VAE and the denoiser have their own learning rates (``vae_lr``,
``train.lr``); the diffusion settings are ``config.diffusion`` (as DiffRec's).
Inference: z = mu(x); run DiffRec's reverse process on z; decode; rank.

Departures from the authors' code (the paper does not fix these details):

* Item embeddings: the code loads LightGCN embeddings trained elsewhere; genrec uses a truncated
  SVD of X by default (or a model genrec trains, see above), and clusters their directions
  (``normalize_embeddings=True``; the code: Euclidean k-means on the raw embeddings, which
  with SVD factors isolates the most popular items).
* Decoders: one per cluster (the paper's description) by default; ``shared_decoder=True`` is
  the code's default (``out_dims=[]``): one decoder from the whole latent to all items.
* The encoder head is linear; the code applies tanh to its (mu, logvar) outputs too.
* The reconstruction target is the clean x; the code reconstructs the dropped-out input.
* Defaults: the authors' example run (Amazon-Book: 2 clusters, latent 300, mlp dims [300],
  lr 1e-4 / 5e-4, lamda 0.05, 5 steps, noise 0.5 x [0.001, 0.005]); other DiffRec choices
  (first_beta, all-T reverse, validation every 5 epochs, patience 20 epochs) as in DiffRec.

Dimension letters: B users in a batch, I items, I_c items of cluster c, C clusters, K latent
size (K_c per cluster), d item-embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from torch import nn
from typing_extensions import Self

from genrec._optional import require
from genrec.config import Range, check_ranges
from genrec.errors import ConfigError, DataError
from genrec.models.base import ArraySpec, Capabilities, as_csr
from genrec.models.clustered_vae import ClusteredVAE, cluster_index, split_sizes
from genrec.models.denoiser import Denoiser
from genrec.models.diffrec import (
    TimestepSampler,
    diffusion_loss,
    gaussian_noise,
    inference_generator,
    reverse_diffusion,
)
from genrec.models.diffusion_schedule import DiffusionConfig, DiffusionSchedule
from genrec.models.nn_blocks import (
    dropout_values,
    gaussian_kl_to_std_normal,
    multinomial_log_lik_sparse,
    reparameterize,
)
from genrec.models.saved import check_headers
from genrec.models.torch_base import TorchRecommender, check_train_shape
from genrec.train import Batch, FitContext, LinearAnneal, StepContext, TrainConfig, make_optimizer

__all__ = [
    "LDiffRec",
    "LDiffRecConfig",
    "LDiffRecNet",
    "ClusteredVAE",
    "svd_item_embeddings",
    "cluster_items",
    "split_sizes",
    "autoencoder_item_embeddings",
]


@dataclass(frozen=True)
class LDiffRecConfig:
    """Defaults: the authors' example L-DiffRec run (see the module docstring)."""

    n_clusters: Annotated[int, Range(ge=1)] = 2  # C, item groups (the code's n_cate)
    # d, truncated-SVD item embedding size used for k-means
    embedding_dim: Annotated[int, Range(ge=1)] = 64
    normalize_embeddings: bool = True  # k-means on unit-length embeddings (False: raw, the code)
    latent_dim: int = 300  # K, total VAE latent size, split over clusters by item count
    vae_hidden: tuple[int, ...] = ()  # encoder hidden sizes (totals, split like K); () = none
    vae_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1  # input dropout of the encoders
    shared_decoder: bool = False  # one decoder from the whole latent (the code's default)
    vae_lr: Annotated[float, Range(gt=0)] = 5e-4  # learning rate of the VAEs (the code's lr1)
    vae_anneal_cap: Annotated[float, Range(ge=0)] = 0.3  # largest KL weight beta
    vae_anneal_steps: Annotated[int, Range(ge=1)] = 200  # beta = min(cap, step / this)
    # weight of L_diff (reweight on) or L_vae (off), start value
    lamda: Annotated[float, Range(ge=0)] = 0.05
    lamda_min: Annotated[float, Range(ge=0)] = 0.005  # its floor (the code's anneal_cap)
    # lambda falls linearly to lamda_min over these epochs
    lamda_anneal_epochs: Annotated[int, Range(ge=1)] = 500
    # denoiser [K+E -> 300 -> K] (the code's mlp_dims) over z, time embedding 10, input
    # dropout 0.5; T = 5 steps, linear-var betas in 0.5 x [0.001, 0.005]; the rest as DiffRec
    diffusion: DiffusionConfig = field(
        default_factory=lambda: DiffusionConfig(
            dims=(300,),
            emb_size=10,
            dropout=0.5,
            steps=5,
            noise_scale=0.5,
            noise_min=0.001,
            noise_max=0.005,
        )
    )
    # Adam, lr 1e-4 for the denoiser (the code's lr2; vae_lr above for the VAEs), batches of
    # 400 users, at most 1000 epochs, validation Recall@20 every 5 epochs, patience 4 (20
    # epochs); the seed also seeds the SVD and k-means (so it must be in [0, 2**32))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=1000,
            batch_size=400,
            lr=1e-4,
            patience=4,
            select_metric="recall@20",
            eval_every=5,
        )
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.latent_dim < self.n_clusters:
            raise ValueError(
                f"latent_dim ({self.latent_dim}) must be >= n_clusters "
                f"({self.n_clusters}): each cluster needs a latent unit"
            )
        if self.vae_hidden and min(self.vae_hidden) < self.n_clusters:
            raise ValueError(f"vae_hidden sizes must be >= n_clusters, got {self.vae_hidden}")
        if not 0 <= self.train.seed < 2**32:  # scikit-learn's SVD and k-means take no others
            raise ValueError(f"train.seed must be in [0, 2**32), got {self.train.seed}")


# ---------------------------------------------------------------- item clustering (pure)


def svd_item_embeddings(X: Any, dim: int, seed: int = 0) -> np.ndarray:
    """Item factors V S (I, d) of a rank-``dim`` randomized truncated SVD of X (U x I)."""
    TruncatedSVD = require(
        "sklearn.decomposition", "analysis", "L-DiffRec's item clustering"
    ).TruncatedSVD

    X = as_csr(X)
    dim = max(1, min(dim, min(X.shape) - 1))
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", random_state=seed)
    with np.errstate(divide="ignore", invalid="ignore"):  # its explained-variance ratio is
        svd.fit(X)  # 0/0 on data without variance; the factors are still what is asked for
    return (svd.components_.T * svd.singular_values_).astype(np.float32)  # (I, d)


def cluster_items(
    embeddings: np.ndarray, n_clusters: int, seed: int = 0, normalize: bool = True
) -> np.ndarray:
    """k-means labels (I,) int64 of the item embeddings (I, d), relabelled so that cluster
    ids follow the order of each cluster's first item (a canonical numbering).

    ``normalize``: cluster the unit-length embeddings (directions: taste), not the raw ones,
    whose norms mostly measure popularity (raw SVD factors put the few most popular items in
    a cluster of their own).
    """
    KMeans = require("sklearn.cluster", "analysis", "L-DiffRec's item clustering").KMeans

    emb = np.asarray(embeddings, dtype=np.float64)
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    if n_clusters == 1:
        return np.zeros(len(emb), np.int64)
    if len(emb) < n_clusters:
        raise ConfigError(f"n_clusters={n_clusters} but only {len(emb)} items")
    distinct = len(np.unique(emb, axis=0))
    if distinct < n_clusters:  # k-means would leave clusters empty
        raise ConfigError(
            f"n_clusters={n_clusters} but the {len(emb)} item embeddings take only "
            f"{distinct} distinct values{' after normalisation' if normalize else ''}"
            f" (e.g. items without interactions all get the zero embedding); lower "
            f"n_clusters or pass other item_embeddings"
        )
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(emb)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)  # clusters by first appearance
    remap = np.empty(n_clusters, np.int64)
    remap[order] = np.arange(n_clusters)
    return remap[labels].astype(np.int64)


def autoencoder_item_embeddings(model: Any) -> np.ndarray:
    """Item embeddings (I, H) from a trained genrec autoencoder (Mult-VAE, Mult-DAE, ...):
    its ``item_embeddings()``, the weights of its decoder's output layer, one row per item."""
    return np.asarray(model.item_embeddings(), dtype=np.float32)  # (I, H)


# ---------------------------------------------------------------- network


class LDiffRecNet(nn.Module):
    """The clustered VAE, the latent denoiser, the schedule and the timestep sampler."""

    def __init__(self, item_cluster: np.ndarray, c: LDiffRecConfig, generator: torch.Generator):
        super().__init__()
        self.vae = ClusteredVAE(
            item_cluster, c.latent_dim, tuple(c.vae_hidden), generator, c.shared_decoder
        )
        d = c.diffusion
        self.denoiser = Denoiser(
            c.latent_dim, tuple(d.dims), d.emb_size, generator, d.dropout, d.norm
        )
        self.schedule = DiffusionSchedule.from_config(d)
        self.sampler = TimestepSampler(d.steps, d.history_per_step)


# ---------------------------------------------------------------- model


class LDiffRec(TorchRecommender):
    """L-DiffRec (Wang et al. 2023): DiffRec in the latent space of per-cluster VAEs.

    Attributes
    ----------
    item_cluster_ : ndarray (n_items,) int64, the cluster of each item
    module_ : LDiffRecNet
    history_ : list of dict, one per epoch
    best_epoch_ : int or None

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    >>> X.data[:] = 1
    >>> m = LDiffRec(latent_dim=8, embedding_dim=4, diffusion={"dims": (16,)},
    ...              train={"epochs": 2, "batch_size": 25, "device": "cpu"}).fit(X)
    >>> m.recommend(None, X[:2], k=3)[0].shape
    (2, 3)
    """

    name = "ldiffrec"
    module_: LDiffRecNet
    capabilities = Capabilities(trainer=True, selects_on="ranking")
    keyed_noise: ClassVar[bool] = True  # dropout, eps, steps and noise keyed by user
    config_class = LDiffRecConfig
    fitted_attributes: ClassVar[tuple[str, ...]] = ("n_items_", "module_", "item_cluster_")
    item_cluster_: np.ndarray  # (I,) int64

    def fit(
        self,
        X: Any,
        *,
        valid: Any = None,
        item_embeddings: np.ndarray | None = None,
        context: FitContext | None = None,
    ) -> Self:
        """Cluster the items, then train (see :meth:`TorchRecommender.fit`).

        Parameters
        ----------
        item_embeddings : array (n_items, d), optional
            Embeddings to cluster; default: a truncated SVD of X (``embedding_dim``). Resume
            with the same embeddings.
        """
        c = self.config
        X = as_csr(X)
        check_train_shape(X)  # before the item clustering below
        if c.n_clusters > X.shape[1]:
            raise ConfigError(f"n_clusters={c.n_clusters} but only {X.shape[1]} items")
        if item_embeddings is not None:
            item_embeddings = np.asarray(item_embeddings, dtype=np.float64)
            if item_embeddings.ndim != 2 or item_embeddings.shape[0] != X.shape[1]:
                raise ConfigError(
                    f"item_embeddings must be an (n_items={X.shape[1]}, d) array "
                    f"(rows: items), got shape {item_embeddings.shape}"
                )
            if not np.isfinite(item_embeddings).all():
                raise DataError("item_embeddings has NaN or infinite values")
        elif c.n_clusters == 1:  # one cluster whatever the embeddings: no SVD needed
            item_embeddings = np.zeros((X.shape[1], 1))
        else:
            item_embeddings = svd_item_embeddings(X, c.embedding_dim, c.train.seed)
        self.item_cluster_ = cluster_items(
            item_embeddings, c.n_clusters, c.train.seed, c.normalize_embeddings
        )
        try:
            super().fit(X, valid=valid, context=context)
        except BaseException:
            del self.item_cluster_
            raise
        return self

    def _build_module(self, n_items: int, generator: torch.Generator) -> LDiffRecNet:
        return LDiffRecNet(self.item_cluster_, self.config, generator)

    def _arrays(self, counts: np.ndarray | None = None) -> dict[str, ArraySpec]:
        c, d = self.config, self.config.diffusion
        return (
            ClusteredVAE.arrays(
                self.n_items_,
                c.n_clusters,
                c.latent_dim,
                tuple(c.vae_hidden),
                c.shared_decoder,
                counts,
            )
            | Denoiser.arrays("denoiser.", c.latent_dim, tuple(d.dims), d.emb_size)
            | TimestepSampler.arrays("sampler.", d.steps, d.history_per_step)
        )

    def state_arrays(self) -> dict[str, ArraySpec]:
        """The arrays; the clustered VAE's sizes depend on the saved clusters, and
        ``_set_state`` checks them once those are read."""
        return self._arrays()

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        C = self.config.n_clusters
        cluster = np.asarray(state["vae.item_cluster"], dtype=np.int64)  # (I,)
        if cluster.min() < 0 or cluster.max() >= C:
            raise DataError(
                f"{self.name}: array 'vae.item_cluster' holds cluster numbers outside "
                f"[0, {C}) (n_clusters {C}); save the model again"
            )
        counts = np.bincount(cluster, minlength=C)
        if (counts == 0).any():
            raise DataError(
                f"{self.name}: array 'vae.item_cluster' leaves cluster(s) "
                f"{np.flatnonzero(counts == 0).tolist()} empty; save the model again"
            )
        check_headers(
            self._arrays(counts), {k: (v.shape, v.dtype) for k, v in state.items()}, self.name
        )
        for name, want in zip(("vae.local_index", "vae.inv_perm"), cluster_index(cluster, counts)):
            if not np.array_equal(state[name], want):
                raise DataError(
                    f"{self.name}: array {name!r} does not match 'vae.item_cluster'; "
                    f"save the model again"
                )
        self.item_cluster_ = cluster
        super()._set_state(state)

    def build_optimizers(self, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """One optimizer, two learning rates: ``vae_lr`` for the VAEs, ``train.lr`` for the
        rest."""
        net = self.module_
        groups = [
            {"params": list(net.vae.parameters()), "lr": self.config.vae_lr},
            {"params": list(net.denoiser.parameters())},
        ]
        return {"main": make_optimizer(groups, config)}

    def lamda_at(self, epoch: int) -> float:
        """lambda at a 0-based epoch: max((1 - epoch / lamda_anneal_epochs) lamda, lamda_min)."""
        c = self.config
        return max((1.0 - epoch / c.lamda_anneal_epochs) * c.lamda, c.lamda_min)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, Any]:
        c, net, gen = self.config, self.module_, ctx.rng_for(batch.users)
        d = c.diffusion
        # (N,) input dropout
        values = dropout_values(batch.values, c.vae_dropout, gen, batch.indptr, batch.indices)
        mu, logvar = net.vae.encode(batch.indptr, batch.indices, values)  # (B, K) x 2
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar, gen)  # (B, K)
        t, pt = net.sampler.sample(len(batch), gen, d.timestep_sampling, d.uniform_prob)
        noise = gaussian_noise(z, gen)  # (B, K)
        per_user, z0_hat = diffusion_loss(
            net.schedule, net.denoiser, z, t, noise, d.reweight, gen
        )  # (B,), (B, K)
        net.sampler.record(t, per_user)
        diff = (per_user / pt.to(per_user.dtype)).mean()
        logits = net.vae.decode(z0_hat)  # (B, I)
        recon = -multinomial_log_lik_sparse(
            logits, batch.indptr, batch.indices, batch.values
        ).mean()
        kl = gaussian_kl_to_std_normal(mu, logvar).mean()
        beta = LinearAnneal(c.vae_anneal_cap, c.vae_anneal_steps)(ctx.step)
        lam = self.lamda_at(ctx.epoch)
        vae_loss = recon + beta * kl
        loss = lam * diff + vae_loss if d.reweight else diff + lam * vae_loss
        return {
            "loss": loss,
            "diff": diff.detach(),
            "recon": recon.detach(),
            "kl": kl.detach(),
            "beta": beta,
            "lamda": lam,
        }

    def _encode(self, batch: Batch) -> torch.Tensor:
        mu, _ = self.module_.vae.encode(batch.indptr, batch.indices, batch.values)
        return mu  # (B, K)

    def _scores(self, batch: Batch) -> torch.Tensor:
        d, net = self.config.diffusion, self.module_
        mu = self._encode(batch).float()  # (B, K)
        gen = inference_generator(d, self.config.train.seed, mu.device)
        z = reverse_diffusion(
            net.schedule, net.denoiser, mu, d.sampling_steps, d.reverse_steps, gen, d.sampling_noise
        )  # (B, K)
        return net.vae.decode(z)  # (B, I)

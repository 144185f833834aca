"""The clustered VAE of L-DiffRec (Wang et al., SIGIR 2023): one Gaussian encoder and one
decoder per item cluster, the items' cluster indices, and the arrays the network saves.

Dimension letters: B users in a batch, I items, I_c items of cluster c, C clusters, K latent
size (K_c per cluster), H hidden sizes.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import nn

from genrec.errors import ConfigError
from genrec.models.nn_blocks import (
    SparseInputLinear,
    linear_arrays,
    row_ids,
    sparse_input_arrays,
)
from genrec.models.saved import ArraySpec, Dim

__all__ = ["ClusteredVAE", "cluster_index", "split_sizes"]


def split_sizes(total: int, counts: np.ndarray) -> list[int]:
    """Split ``total`` units over groups in proportion to ``counts`` (the code's rule):
    group c < C - 1 gets max(1, floor(count_c / sum * total)), the last the remainder."""
    counts = np.asarray(counts)
    parts = [max(1, int(c / counts.sum() * total)) for c in counts[:-1]]
    parts.append(total - sum(parts))
    if parts[-1] < 1:
        raise ConfigError(
            f"cannot split {total} units over {len(counts)} clusters of sizes "
            f"{counts.tolist()}; raise latent_dim or lower n_clusters"
        )
    return parts


def _xavier_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """Linear with the L-DiffRec autoencoder's init: Glorot-normal weights, zero biases."""
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    with torch.no_grad():
        nn.init.xavier_normal_(layer.weight, generator=generator)
        layer.bias.zero_()
    return layer


def cluster_index(item_cluster: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local_index (I,), inv_perm (I,)): each item's index inside its cluster, and the item
    order of the decoder outputs concatenated cluster by cluster."""
    perm = np.argsort(item_cluster, kind="stable")  # items grouped by cluster
    local = np.empty_like(perm)
    local[perm] = np.arange(len(perm)) - np.repeat(np.cumsum(counts) - counts, counts)
    return local, np.argsort(perm)


class ClusteredVAE(nn.Module):
    """One Gaussian encoder and one decoder per item cluster.

    Encoder c: [I_c, *hidden_c, 2 K_c] (tanh between layers, linear head -> (mu_c, logvar_c));
    its first layer reads the user's entries in cluster c sparsely (``embedding_bag``, see
    :class:`genrec.models.nn_blocks.SparseInputLinear`), so no (B, I) input is formed.
    Decoder c: [K_c, *reversed(hidden_c), I_c] (tanh between layers, linear output); or, with
    ``shared_decoder``, one decoder [K, *reversed(hidden), I] reading the whole latent (the
    authors' code default), so that every cluster's latent can inform every item.
    Buffers (saved): ``item_cluster`` (I,), ``local_index`` (I,) each item's index inside its
    cluster, ``inv_perm`` (I,) the item order of the concatenated decoder outputs.
    """

    item_cluster: torch.Tensor
    local_index: torch.Tensor
    inv_perm: torch.Tensor

    def __init__(
        self,
        item_cluster: np.ndarray,
        latent_dim: int,
        hidden: tuple[int, ...],
        generator: torch.Generator,
        shared_decoder: bool = False,
    ):
        super().__init__()
        self.shared_decoder = shared_decoder
        item_cluster = np.asarray(item_cluster, dtype=np.int64)
        n_clusters = int(item_cluster.max()) + 1
        counts = np.bincount(item_cluster, minlength=n_clusters)
        if (counts == 0).any():
            raise ConfigError(f"empty item cluster(s) {np.flatnonzero(counts == 0).tolist()}")
        local, inv_perm = cluster_index(item_cluster, counts)
        self.register_buffer("item_cluster", torch.from_numpy(item_cluster))
        self.register_buffer("local_index", torch.from_numpy(local))
        self.register_buffer("inv_perm", torch.from_numpy(inv_perm))
        self.item_sizes = counts.tolist()  # I_c
        self.latent_sizes = split_sizes(latent_dim, counts)  # K_c
        hidden_c = [split_sizes(h, counts) for h in hidden]  # per layer, per cluster
        self.inputs = nn.ModuleList()
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c in range(n_clusters):
            hid = [h[c] for h in hidden_c]
            enc = [self.item_sizes[c], *hid, 2 * self.latent_sizes[c]]
            dec = [self.latent_sizes[c], *reversed(hid), self.item_sizes[c]]
            first = SparseInputLinear(enc[0], enc[1], generator)
            with torch.no_grad():  # the autoencoder's init: Glorot-normal, zero bias
                nn.init.xavier_normal_(first.weight.T, generator=generator)
                first.bias.zero_()
            self.inputs.append(first)
            self.encoders.append(
                nn.ModuleList(_xavier_linear(a, b, generator) for a, b in zip(enc[1:-1], enc[2:]))
            )
            if not shared_decoder:
                self.decoders.append(
                    nn.ModuleList(
                        _xavier_linear(a, b, generator) for a, b in zip(dec[:-1], dec[1:])
                    )
                )
        if shared_decoder:
            dec = [latent_dim, *reversed(hidden), len(item_cluster)]
            self.decoders.append(
                nn.ModuleList(_xavier_linear(a, b, generator) for a, b in zip(dec[:-1], dec[1:]))
            )

    @staticmethod
    def arrays(
        n_items: int,
        n_clusters: int,
        latent_dim: int,
        hidden: tuple[int, ...],
        shared_decoder: bool,
        counts: np.ndarray | None = None,
    ) -> dict[str, ArraySpec]:
        """The arrays of the state_dict (names after ``vae.``, as in :class:`LDiffRecNet`);
        the sizes that depend on the items per cluster (``counts``) are any size (None)
        when ``counts`` is not given."""
        C = n_clusters
        if counts is None:
            items: list[Dim] = [None] * C
            latent: list[Dim] = [None] * C
            hidden_c: list[list[Dim]] = [[None] * C for _ in hidden]
        else:
            items = [int(n) for n in counts]
            latent = list(split_sizes(latent_dim, counts))
            hidden_c = [list(split_sizes(h, counts)) for h in hidden]
        out = {
            f"vae.{b}": ArraySpec((n_items,), "i")
            for b in ("item_cluster", "local_index", "inv_perm")
        }
        for c in range(C):
            hid = [h[c] for h in hidden_c]
            k = latent[c]
            enc = [items[c], *hid, None if k is None else 2 * k]
            out |= sparse_input_arrays(f"vae.inputs.{c}.", enc[0], enc[1])
            for j, (a, b) in enumerate(zip(enc[1:-1], enc[2:])):
                out |= linear_arrays(f"vae.encoders.{c}.{j}.", a, b)
            if not shared_decoder:
                dec = [k, *reversed(hid), items[c]]
                for j, (a, b) in enumerate(zip(dec[:-1], dec[1:])):
                    out |= linear_arrays(f"vae.decoders.{c}.{j}.", a, b)
        if shared_decoder:
            dec_all = [latent_dim, *reversed(hidden), n_items]
            for j, (a, b) in enumerate(zip(dec_all[:-1], dec_all[1:])):
                out |= linear_arrays(f"vae.decoders.0.{j}.", a, b)
        return out

    def encode(
        self,
        indptr: torch.Tensor,
        indices: torch.Tensor,
        values: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, K), from the CSR parts of histories x (B, I)."""
        B = len(indptr) - 1
        rows = row_ids(indptr)  # (N,)
        cluster = self.item_cluster[indices]  # (N,)
        mus, logvars = [], []
        for c, k in enumerate(self.latent_sizes):
            m = cluster == c  # (N,) entries of cluster c, still in row order
            ptr = torch.zeros(B + 1, dtype=torch.long, device=indptr.device)
            ptr[1:] = torch.cumsum(torch.bincount(rows[m], minlength=B), 0)  # (B + 1,)
            h = self.inputs[c](ptr, self.local_index[indices[m]], values[m])  # (B, H_1)
            for layer in cast(nn.ModuleList, self.encoders[c]):
                h = layer(torch.tanh(h))  # (B, H_next)
            mus.append(h[:, :k])  # (B, K_c)
            logvars.append(h[:, k:])
        return torch.cat(mus, dim=1), torch.cat(logvars, dim=1)  # (B, K), (B, K)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits (B, I) in item order from latents z (B, K)."""
        parts = [z] if self.shared_decoder else torch.split(z, self.latent_sizes, dim=1)
        outs = []
        for layers, h in zip(self.decoders, parts):  # C x (B, K_c), or the whole (B, K)
            for i, layer in enumerate(cast(nn.ModuleList, layers)):
                h = layer(h if i == 0 else torch.tanh(h))  # (B, ...)
            outs.append(h)  # (B, I_c), or (B, I) in item order
        if self.shared_decoder:
            return outs[0]  # (B, I)
        return torch.cat(outs, dim=1)[:, self.inv_perm]  # (B, I)

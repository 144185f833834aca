"""Noise keyed by (seed, step, user, column): the same numbers however users fall on ranks.

With ``train.noise = "keyed"`` (the default of a distributed run) a model that draws its
training noise through :class:`KeyedNoise` gets, for user ``u`` at step ``t``, numbers that
depend on (seed, t, u, column, salt) alone, not on the batch the user is in, its position
there or the process that trains it. So one process with a global batch of B rows and N
processes with B / N rows each draw the same dropout masks and the same
reparameterisation noise, and their runs agree (to the floating-point order of the
gradient sums).

The generator is counter based: a 32-bit integer hash (the "lowbias32" mixer of
C. Wellons, chained over the key's parts) computed with int64 tensor operations that never
overflow, turned into uniforms on (0, 1] (2^-32 resolution before the rounding to float32),
and into standard normals by the Box-Muller transform. It is vectorised on the key tensors'
device. Its quality is checked in ``tests/test_keyed_noise.py`` (moments, a
Kolmogorov-Smirnov test, independence of neighbouring keys); it is meant for training
noise, not for cryptography.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

import torch

__all__ = ["KeyedNoise", "UserNoise", "WindowDraws", "WindowNoise", "mix32", "to_uniform"]

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for x in [0, 2^32) held in int64, without overflowing int64."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The lowbias32 hash of 32-bit values (int64 tensor in [0, 2^32)); same shape."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """32-bit values (int64 in [0, 2^32)) as uniforms on (0, 1], float32 (2^-32 resolution
    before the rounding to float32, which can reach 1.0)."""
    return ((bits.to(torch.float64) + 0.5) * 2.0**-32).to(torch.float32)


def _salt(name: str) -> int:
    h = 2166136261  # FNV-1a, 32 bits: a fixed number per salt name
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & _M32
    return h


@dataclass(frozen=True)
class KeyedNoise:
    """The noise of one training step: ``seed`` (the run's) and ``step`` (global)."""

    seed: int
    step: int

    def _head(self, salt: str, device: torch.device) -> torch.Tensor:
        """The key of (seed, step, salt): one int64 in [0, 2^32), shape (1,)."""
        head = torch.tensor(
            [self.seed & _M32, (self.seed >> 32) & _M32, self.step & _M32, _salt(salt)],
            dtype=torch.int64,
        )
        k = mix32(head[0:1])
        for v in head[1:]:
            k = mix32(k ^ v)
        return k.to(device)

    def row_keys(self, users: torch.Tensor, salt: str) -> torch.Tensor:
        """The key of each of ``users`` (any shape, int) for the draw ``salt``."""
        return mix32(self._head(salt, users.device) ^ (users.to(torch.int64) & _M32))

    def uniform(self, users: torch.Tensor, cols: torch.Tensor, salt: str) -> torch.Tensor:
        """Uniforms on (0, 1], float32 (rounding can reach 1.0), one per broadcast (user,
        column) pair."""
        return to_uniform(mix32(self.row_keys(users, salt) ^ (cols.to(torch.int64) & _M32)))

    def rand_rows(self, users: torch.Tensor, n: int, salt: str) -> torch.Tensor:
        """(B, n) uniforms for the B users (column j of row u keyed by (u, j))."""
        cols = torch.arange(n, device=users.device)
        return self.uniform(users.reshape(-1, 1), cols.reshape(1, -1), salt)

    def randn_rows(self, users: torch.Tensor, n: int, salt: str) -> torch.Tensor:
        """(B, n) standard normals for the B users (Box-Muller on two keyed uniforms)."""
        u1 = self.rand_rows(users, n, salt + "/r").to(torch.float64)
        u2 = self.rand_rows(users, n, salt + "/theta").to(torch.float64)
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        return z.to(torch.float32)


@dataclass(frozen=True)
class UserNoise:
    """The keyed noise of one step for a batch's users (B,): what a model hands to the
    noise helpers of :mod:`genrec.models.nn_blocks` in place of a ``torch.Generator``."""

    noise: KeyedNoise
    users: torch.Tensor  # (B,) row indices into the training matrix

    @property
    def device(self) -> torch.device:
        return self.users.device

    def normal(self, n: int, salt: str) -> torch.Tensor:
        """(B, n) standard normals, row b keyed by users[b]."""
        return self.noise.randn_rows(self.users, n, salt)

    def uniform(self, n: int, salt: str) -> torch.Tensor:
        """(B, n) uniforms on (0, 1], row b keyed by users[b]."""
        return self.noise.rand_rows(self.users, n, salt)

    def entries(self, indptr: torch.Tensor, indices: torch.Tensor, salt: str) -> torch.Tensor:
        """(N,) uniforms for the stored entries of the batch's CSR rows, keyed by (user,
        item)."""
        counts = indptr[1:] - indptr[:-1]  # (B,)
        rows = torch.repeat_interleave(self.users.to(indptr.device), counts)  # (N,)
        return self.noise.uniform(rows, indices, salt)


@dataclass
class WindowNoise:
    """The keyed noise of one step for a batch of B token windows (B, L, ...), what the
    sequence models hand to their dropouts and negative samplers in place of a
    ``torch.Generator``.

    Element (b, j, ...) of a draw is keyed by (``keys[b]``, the draw's site, j counted from
    the window's end, the other indices): the windows are left-padded and trimmed to the
    batch's longest, so a position's distance from the end is what stays the same whatever
    batch, or process, holds the row. Each draw takes the next site (a counter of this
    step's draws, from 0), so the dropouts of one forward pass differ from each other and a
    network that draws in the same order draws the same numbers. ``keys`` are the users,
    or the examples where a user has several rows in an epoch (TIGER).
    """

    noise: KeyedNoise
    keys: torch.Tensor  # (B,) int64
    prefix: str = "window"  # the salts' (a batches hook's draws: "hook")
    site: int = 0
    #: dims' own keys while a network's windows are not plain left-padded ones (TIGER's
    #: encoder sets dim 1, its slots: the user's first): dim -> (n,) integers, used for a
    #: draw whose dim has that length
    index: dict[int, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def _next_salt(self) -> str:
        salt = f"{self.prefix}/{self.site}"
        self.site += 1
        return salt

    def bits(
        self,
        shape: tuple[int, ...] | torch.Size,
        ends: tuple[int, ...] = (1,),
        shared: bool = False,
    ) -> torch.Tensor:
        """32 random bits (int64 in [0, 2^32)) of ``shape`` (B, ...): dims in ``ends``
        counted from their end, dims in :attr:`index` keyed by its integers, the others
        from 0. ``shared``: no batch dim, the same numbers for every row of the step (the
        draws that a batch shares, such as HSTU's shared negatives)."""
        salt = self._next_salt()
        dev = self.keys.device
        index = self.index or {}
        if shared:
            h = self.noise._head(salt, dev).reshape((1,) * len(shape))
            dims = range(len(shape))
        else:
            h = self.noise.row_keys(self.keys, salt).reshape((-1,) + (1,) * (len(shape) - 1))
            dims = range(1, len(shape))
        for d in dims:
            n = int(shape[d])
            if d in index and len(index[d]) == n:
                idx = index[d].to(dev, torch.int64) & _M32
            elif d in ends:
                idx = torch.arange(n - 1, -1, -1, device=dev)
            else:
                idx = torch.arange(n, device=dev)
            view = [1] * len(shape)
            view[d] = n
            h = mix32(h ^ idx.reshape(view))
        return h.expand(tuple(int(v) for v in shape))

    def uniform(
        self, shape: tuple[int, ...] | torch.Size, ends: tuple[int, ...] = (1,)
    ) -> torch.Tensor:
        """Uniforms on (0, 1], float32, keyed as :meth:`bits`."""
        return to_uniform(self.bits(shape, ends))

    def items(
        self, shape: tuple[int, ...] | torch.Size, n_items: int, shared: bool = False
    ) -> torch.Tensor:
        """Item indices in [0, n_items), int64, keyed as :meth:`bits` (the first of
        ``shape``'s dims after the batch's counted from its end): the top bits of
        ``bits * n_items`` (uniform to within n_items / 2^32 for any catalogue size)."""
        return (self.bits(shape, shared=shared) * n_items) >> 32

    def items_at(self, where: torch.Tensor, k: int, n_items: int) -> torch.Tensor:
        """(N, k) item indices for the N true positions of ``where`` (B, L) (row-major
        order), k per position: ``items((B, L, k), n_items)[where]`` without drawing for the
        other positions."""
        L = where.shape[1]
        rows, cols = where.nonzero(as_tuple=True)  # (N,) each
        dev = self.keys.device
        h = self.noise.row_keys(self.keys, self._next_salt())[rows.to(dev)]  # (N,)
        h = mix32(h ^ (L - 1 - cols.to(dev)))  # the position from the window's end
        h = mix32(h[:, None] ^ torch.arange(k, device=dev)[None])  # (N, k)
        return (h * n_items) >> 32


#: where a sequence network draws its training noise: the trainer's generator, keyed
#: noise, or None (no dropout: scoring)
WindowDraws: TypeAlias = "torch.Generator | WindowNoise | None"

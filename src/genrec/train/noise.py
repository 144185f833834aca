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

import torch

__all__ = ["KeyedNoise", "mix32"]

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

    def _bits(self, users: torch.Tensor, cols: torch.Tensor, salt: str) -> torch.Tensor:
        """32 random bits per (user, column) pair; users and cols broadcast together."""
        dev = users.device
        head = torch.tensor(
            [self.seed & _M32, (self.seed >> 32) & _M32, self.step & _M32, _salt(salt)],
            dtype=torch.int64,
        )
        k = mix32(head[0:1])
        for v in head[1:]:
            k = mix32(k ^ v)
        k = k.to(dev)
        h = mix32(k ^ (users.to(torch.int64) & _M32))
        return mix32(h ^ (cols.to(torch.int64) & _M32))

    def uniform(self, users: torch.Tensor, cols: torch.Tensor, salt: str) -> torch.Tensor:
        """Uniforms on (0, 1], float32 (rounding can reach 1.0), one per broadcast (user,
        column) pair."""
        b = self._bits(users, cols, salt)
        return ((b.to(torch.float64) + 0.5) * 2.0**-32).to(torch.float32)

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

"""Data-parallel training on ``torch.distributed``: what the trainer does with more than one
process.

A :class:`Trainer` that runs inside an initialised process group (``torchrun``, or
:func:`init_from_env` in each process) trains data-parallel:

* every rank builds the same batches hook from the same seeded shuffling generator, with a
  global batch of ``batch_size x world_size`` rows; each global batch is cut into
  ``world_size`` balanced, contiguous shards (:func:`shard_bounds`) and rank ``r`` trains on
  shard ``r``, so a run with N processes sees the same global batches as one process with
  ``batch_size x N``;
* each rank's loss is weighted by its share of the global batch (``b_r / B``) and the
  gradients are summed over the ranks in one flat all-reduce per step
  (:meth:`DataParallel.reduce_gradients`), which gives the gradient of the global batch's mean
  loss for any loss that is a mean over the batch plus terms that do not depend on it (the
  weight decay of BPR...); ranks then take the same optimizer step. A rank whose shard of the
  last global batch is empty takes part with zero gradients;
* noise: models that draw their noise with :class:`genrec.train.noise.KeyedNoise` (keyed by
  seed, step and user: ``train.noise = "keyed"``, the default in a distributed run) give the
  same run whatever the number of processes; the others draw from a per-rank generator,
  reseeded every epoch from (seed, epoch, rank), so a resumed run repeats the uninterrupted
  one, but a run depends on its number of processes (a warning says so);
* validation is sharded: each rank scores a contiguous block of the users, the per-user
  ranked lists are gathered once each, and every rank computes the same means;
* only rank 0 writes the run folder, the training log and the checkpoints; a checkpoint
  records the world size, and resuming with another one is refused (the batches and the
  noise of the remaining epochs would differ from the interrupted run's).

Departure from the usual recipe: gradients are all-reduced by the trainer after
``backward`` rather than by ``torch.nn.parallel.DistributedDataParallel``'s reducer. DDP
requires every training step to go through the wrapper's ``forward``; genrec's models call
parts of their module (RecVAE's encoder alone in one phase, the factor models their
embedding tables), and phases leave some parameters without gradients. The collective is
the same one DDP issues (an all-reduce of the flattened gradients, here one bucket per
step, after backward instead of overlapped with it).

Faults: a collective that fails (a peer that died closes its connection; a peer that hangs
runs into the process group's timeout) is reported as a :class:`DistributedError` naming
the rank, the epoch and the step; checkpoints are written atomically by rank 0 after an
epoch's last collective, so the last complete checkpoint stays valid.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from genrec.errors import DistributedError

__all__ = [
    "DataParallel",
    "DistributedError",
    "current",
    "init_from_env",
    "shard_bounds",
    "epoch_seed",
    "DEFAULT_TIMEOUT_S",
]

#: seconds a collective waits for a peer before the run stops (GENREC_DIST_TIMEOUT overrides)
DEFAULT_TIMEOUT_S = 120.0


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """[lo, hi) of rank ``rank``'s contiguous share of ``n`` rows cut into ``world``
    balanced parts (the first ``n % world`` parts one row longer)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def gather_pending(
    gather: Callable[[np.ndarray], np.ndarray],
    columns: Sequence[torch.Tensor] | None,
    width: int,
) -> torch.Tensor:
    """Every rank's rows (N, width) float64 (CPU) of a step's deferred state, through a
    ``share_step``'s ``gather``: this rank's ``columns`` (each (n,) or (n, w), together
    ``width`` wide) side by side, or no rows (None: this rank trained on nothing)."""
    mine = np.zeros((0, width))
    if columns is not None:
        mine = torch.cat([c.double().reshape(len(c), -1) for c in columns], 1).cpu().numpy()
    return torch.from_numpy(gather(mine))


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit seed for the per-rank noise generator of one epoch."""
    h = hashlib.blake2b(f"{seed}:{epoch}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


def init_from_env(device: str = "cpu", timeout_s: float | None = None) -> DataParallel | None:
    """Join the process group that ``torchrun`` describes in the environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT); None when WORLD_SIZE is absent or 1. gloo on the
    CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    if timeout_s is None:
        timeout_s = float(os.environ.get("GENREC_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    cuda = torch.cuda.is_available() and device != "cpu"
    # CPU tensors (the trainer's numbers, the evaluation's rows) always go through gloo;
    # CUDA tensors through NCCL
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    # messages between runs of the trainer (rank 0 loads, evaluates and saves while the
    # others wait) go through a gloo group of their own, without the training timeout: a
    # peer that dies still closes its connection at once
    control = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7))
    return DataParallel(dist.get_rank(), dist.get_world_size(), control)


def current() -> DataParallel | None:
    """The data-parallel view of torch's default process group; None outside one (or in a
    group of one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return DataParallel(dist.get_rank(), dist.get_world_size())


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the group, and the collectives the trainer uses."""

    rank: int
    world: int
    #: the process group of broadcast_json (None: the default one)
    control: Any = field(default=None, compare=False)
    #: seconds spent in collectives since the last take_seconds (waiting for peers included)
    clock: dict[str, float] = field(default_factory=lambda: {"seconds": 0.0}, compare=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def where(self) -> str:
        return f"rank {self.rank} of {self.world}"

    def bounds(self, n: int) -> tuple[int, int]:
        """[lo, hi) of this rank's block of ``n`` rows (:func:`shard_bounds`)."""
        return shard_bounds(n, self.world, self.rank)

    def take_seconds(self) -> float:
        """Seconds in collectives since the last call (then zero)."""
        s, self.clock["seconds"] = self.clock["seconds"], 0.0
        return s

    def _run(self, what: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            out = fn(*args)
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()  # NCCL returns early: its failures and time here
            return out
        except (RuntimeError, dist.DistBackendError) as e:  # gloo and NCCL failures
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedError(
                f"{self.where()}: {what} failed ({first[:200]}): another process of this "
                f"run stopped or hung; the last complete checkpoint stays valid, resume the "
                f"run with the same number of processes"
            ) from None
        finally:
            self.clock["seconds"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ training
    def shards(
        self, chunks: Any, terms: Callable[[Any], int] = len
    ) -> Iterator[tuple[Any, int, float]]:
        """(this rank's batch or None, rows in the global batch, this rank's share of the
        global batch's loss ``terms``) for every global batch of a
        :class:`~genrec.train.batches.Chunked` built with the global batch size."""
        order, size = chunks.order, chunks.size
        for start in range(0, len(order), size):
            n = min(size, len(order) - start)
            mine, mine_terms, total = None, 0, 0
            # every rank makes every shard, so that a hook drawing from the shared
            # generator as it makes a batch draws alike on all ranks, and every rank
            # counts the global batch's terms without a collective
            for r in range(self.world):
                lo, hi = shard_bounds(n, self.world, r)
                if hi > lo:
                    batch = chunks.make(order[start + lo : start + hi], start + lo)
                    count = terms(batch)
                    total += count
                    if r == self.rank:
                        mine, mine_terms = batch, count
            yield mine, n, mine_terms / max(total, 1)

    def reduce_gradients(
        self, params: list[torch.nn.Parameter], loss: torch.Tensor | None, what: str
    ) -> float:
        """Sum every parameter's gradient over the ranks (in place) and return the summed
        (share-weighted) loss. A parameter gets a gradient where any rank has one (zeros
        elsewhere), and keeps None where no rank has: phases that leave a part of the
        model alone stay alone."""
        dev = params[0].device if params else torch.device("cpu")
        flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
        parts = [flags.to(dev), torch.zeros(1, device=dev) if loss is None else loss.reshape(1)]
        parts += [
            (p.grad.to_dense() if p.grad.is_sparse else p.grad).reshape(-1).float()
            if p.grad is not None
            else torch.zeros(p.numel(), device=dev)
            for p in params
        ]
        flat = torch.cat([t.to(dev) for t in parts])
        self._run(what, dist.all_reduce, flat)
        k = len(params)
        head = flat[: k + 1].cpu()  # one copy to the host: the flags and the loss
        offset = k + 1
        for i, p in enumerate(params):
            n = p.numel()
            if head[i] > 0:  # a view of the summed buffer (no third copy of the gradients)
                p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n
        return float(head[k])

    def sum_numbers(self, numbers: dict[str, float], what: str) -> dict[str, float]:
        """Sum a dict of floats over the ranks (the same keys on every rank)."""
        keys = sorted(numbers)
        t = torch.tensor([numbers[k] for k in keys], dtype=torch.float64)  # gloo: CPU tensors
        self._run(what, dist.all_reduce, t)
        return dict(zip(keys, t.cpu().tolist()))

    # ------------------------------------------------------------------ evaluation
    def gather_rows(self, block: np.ndarray, n: int, what: str) -> np.ndarray:
        """The ``n`` rows of all ranks' blocks in rank order (rank r holds rows
        ``shard_bounds(n, world, r)``); each row once, no padding left."""
        width = block.shape[1:]
        longest = shard_bounds(n, self.world, 0)[1]  # rank 0's block is the longest
        pad = np.zeros((longest, *width), dtype=block.dtype)
        pad[: len(block)] = block
        t = torch.from_numpy(pad.view(np.uint8) if block.dtype == bool else pad)
        out = [torch.empty_like(t) for _ in range(self.world)]
        self._run(what, dist.all_gather, out, t)
        rows = []
        for r, o in enumerate(out):
            lo, hi = shard_bounds(n, self.world, r)
            a = o.cpu().numpy()[: hi - lo]
            rows.append(a.view(bool) if block.dtype == bool else a)
        return np.concatenate(rows)

    # ------------------------------------------------------------------ messages
    def broadcast_json(self, value: Any, what: str) -> Any:
        """Rank 0's ``value`` (JSON-serialisable) on every rank; no pickling. Through the
        ``control`` group when there is one, else the default group (CPU tensors)."""
        group = self.control
        if self.is_main:
            data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
            size = torch.tensor([len(data)], dtype=torch.int64)
        else:
            size = torch.zeros(1, dtype=torch.int64)
        self._run(what, dist.broadcast, size, 0, group)
        buf = (
            torch.from_numpy(data.copy())
            if self.is_main
            else torch.empty(int(size.item()), dtype=torch.uint8)
        )
        self._run(what, dist.broadcast, buf, 0, group)
        return json.loads(bytes(buf.numpy()).decode())

    def wait_all(self, what: str) -> None:
        """A barrier on the control group (without the training timeout; the default group
        when there is none): for the wait while the other ranks load a data set."""
        self._run(what, dist.barrier, self.control)

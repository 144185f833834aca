"""``genrec train`` on several processes: ``--nproc N`` starts torch's launcher on this
machine; under ``torchrun`` each process joins the group, rank 0 runs the run and the
others take part in its fits (:mod:`genrec.runs.distributed`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from genrec.errors import ConfigError, DistributedError

__all__ = ["launch", "joined_group", "NPROC_FLAG"]

NPROC_FLAG = "--nproc"


def _argv_after(command: str) -> list[str]:
    """This process's arguments after the subcommand, without --nproc and its value."""
    args = sys.argv[1:]
    if command in args:
        args = args[args.index(command) + 1 :]
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a == NPROC_FLAG:
            skip = True
        elif not a.startswith(NPROC_FLAG + "="):
            out.append(a)
    return out


def launch(nproc: int, command: str = "train") -> NoReturn:
    """Run ``genrec COMMAND ...`` (this command line, without --nproc) in ``nproc``
    processes on this machine through ``torch.distributed.run`` (torchrun --standalone);
    exits with the group's status."""
    if nproc < 1:
        raise ConfigError(f"{NPROC_FLAG} {nproc}: give a number of processes >= 1")
    if "WORLD_SIZE" in os.environ:
        raise ConfigError(
            f"{NPROC_FLAG} starts torch's launcher; this process runs under one already "
            f"(WORLD_SIZE={os.environ['WORLD_SIZE']}): leave {NPROC_FLAG} out"
        )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    args = ["--standalone", f"--nproc-per-node={nproc}", "-m", "genrec", command]
    # the cores shared out among the processes (torchrun would set 1 and say so)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        torchrun([*args, *_argv_after(command)])
    except ChildFailedError as e:
        failed = sorted(e.failures.items())
        rank, first = failed[0]
        click.echo(
            f"genrec {command} {NPROC_FLAG} {nproc}: rank {rank} exited with code "
            f"{first.exitcode} (its message is above); "
            f"{len(failed)} of {nproc} processes failed",
            err=True,
        )
        raise click.exceptions.Exit(first.exitcode if first.exitcode > 0 else 1) from None
    raise click.exceptions.Exit(0)


@contextlib.contextmanager
def joined_group(device: str | None) -> Iterator[Any]:
    """The process group ``torchrun`` describes (None outside one); rank 0's run ends it
    for the others when it is done or fails."""
    from genrec.train.distributed import init_from_env

    group = init_from_env(device or "auto")
    if group is None:
        yield None
        return
    if not group.is_main:
        logging.getLogger("genrec").setLevel(logging.WARNING)  # rank 0 reports
    import torch.distributed as dist

    try:
        yield group
    finally:
        if group.is_main:
            with contextlib.suppress(DistributedError):  # peers already gone
                from genrec.runs.distributed import announce_stop

                announce_stop(group)
        with contextlib.suppress(Exception):
            dist.destroy_process_group()

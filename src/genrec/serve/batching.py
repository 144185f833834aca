"""Requests scored together: one scoring thread per service process, fed by a queue.

A recommendation request (a known user, a posted history, or a batch of either) is checked
in the event loop, then queued as a :class:`Job`. The scoring thread takes the oldest job and
every job queued behind it, up to ``max_users`` users in all (a job is never split), groups
them by model, kind (known users or posted histories), ``k`` and ``include_seen``, scores each
group with one model call, and hands each job its own answers. Nothing waits for a batch to
fill: under a light load every job is scored alone, exactly as ``Run.recommend`` scores it;
under a heavy one the jobs that arrived while the last call ran share the next. Jobs are taken
in arrival order, so no request waits behind later ones.

Why one thread: on a CPU the model call is the work, and one call over many users costs far
less than as many calls over one (matrix products instead of vector products, one pass
through the framework instead of many). Threads scoring side by side only contend for the same
cores. A batched product may round a user's scores in the last float bit differently from a
lone one, so two items whose scores tie to float precision may swap places; ``max_users=1``
scores every request alone (``genrec serve --batch-users 1``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "Scorer"]

log = logging.getLogger("genrec.serve")

#: ``score(kind, model_name, rows, k, include_seen) -> answers`` (one per row, in order)
ScoreFn = Callable[[str, str, list[Any], int, bool], list[dict[str, Any]]]


Result = list[dict[str, Any]] | BaseException


@dataclass
class Job:
    """One request's rows for one model call: ``kind`` is ``"users"`` (training rows) or
    ``"histories"`` (lists of item rows, in order). ``settle`` hands the answers (or the
    failure) to the waiting request; it runs in ``loop``, the request's event loop."""

    kind: str
    model: str
    rows: list[Any]
    k: int
    include_seen: bool
    loop: asyncio.AbstractEventLoop = field(repr=False)
    settle: Callable[[Result], None] = field(repr=False)

    @property
    def key(self) -> tuple[str, str, int, bool]:
        return (self.model, self.kind, self.k, self.include_seen)


def _settle_all(done: list[tuple[Callable[[Result], None], Result]]) -> None:
    for settle, result in done:
        try:
            settle(result)
        except Exception:  # one request's failure to take its answer stops no other
            log.exception("could not hand an answer to its request")


def _as_failure(e: BaseException) -> Exception:
    """What a waiting request is failed with: the exception itself, or a RuntimeError for
    one a future cannot hold (StopIteration) or that must not surface in the event loop
    (KeyboardInterrupt, SystemExit)."""
    if isinstance(e, Exception) and not isinstance(e, StopIteration):
        return e
    return RuntimeError(f"scoring failed: {type(e).__name__}: {e}")


class Scorer:
    """The scoring thread (started at the first request, again if it ever ended) and its
    queue."""

    def __init__(self, score: ScoreFn, max_users: int = 256):
        if max_users < 1:
            raise ValueError(f"max_users must be at least 1, got {max_users}")
        self._score = score
        self.max_users = max_users
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.calls = 0  # model calls made (a test reads it)

    # ------------------------------------------------------------------ from the event loop
    async def submit(
        self, kind: str, model: str, rows: Sequence[Any], k: int, include_seen: bool
    ) -> list[dict[str, Any]]:
        """The answers for ``rows`` (one per row, in order), scored in the scoring thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()

        def settle(result: Result) -> None:
            if future.done():  # the request went away (the client disconnected)
                return
            if isinstance(result, BaseException):
                future.set_exception(_as_failure(result))
            else:
                future.set_result(result)

        job = Job(kind, model, list(rows), k, include_seen, loop, settle)
        with self._lock:  # a stop in progress either sees this job queued or starts anew
            self._start_locked()
            self._queue.put(job)
        return await future

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then end the thread (a later request starts a new one)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)  # behind every job queued so far
        thread.join(timeout)

    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="genrec-scorer", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ the scoring thread
    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, users, last = [job], len(job.rows), False
            while users < self.max_users:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    last = True
                    break
                jobs.append(nxt)
                users += len(nxt.rows)
            try:
                self.run(jobs)
            except BaseException:  # run hands every failure to its requests; never die
                log.exception("the scoring thread caught an error it could not hand back")
            if last:
                return

    def run(self, jobs: list[Job]) -> None:
        """Score ``jobs``: one model call per group of the same model, kind, k and
        include_seen, in the order the groups first appear; each group's answers are handed
        back as soon as its call returns (one wake-up of each waiting event loop)."""
        groups: dict[tuple[str, str, int, bool], list[Job]] = {}
        for j in jobs:
            groups.setdefault(j.key, []).append(j)
        for (model, kind, k, include_seen), group in groups.items():
            rows = [r for j in group for r in j.rows]
            done: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Result], None], Result]]]
            done = {}
            try:
                answers = self._score(kind, model, rows, k, include_seen)
                self.calls += 1
            except BaseException as e:  # each waiting request of this call gets the failure
                for j in group:
                    done.setdefault(j.loop, []).append((j.settle, e))
            else:
                at = 0
                for j in group:
                    part = answers[at : at + len(j.rows)]
                    done.setdefault(j.loop, []).append((j.settle, part))
                    at += len(j.rows)
            for loop, settled in done.items():
                try:
                    loop.call_soon_threadsafe(_settle_all, settled)
                except RuntimeError:  # that loop has closed: nobody waits there any more
                    pass

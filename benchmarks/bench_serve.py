"""``genrec serve`` under a bounded load on loopback: EASE and Mult-VAE on ML-1M clean.

The two models are trained from their BENCHMARKS.md configs (``configs/ml-1m/ease.toml``, its
lambda grid selected on validation Recall@20, and ``configs/ml-1m/mult-vae.toml``) through
``genrec.runs``, or reused from the cache folder (``--cache``; one folder per config's
settings, so a changed config trains again). ``genrec serve`` then runs as a subprocess on a
free 127.0.0.1 port (one worker, ``--no-access-log``), and the script waits for ``/ready``.

The load is a small asyncio HTTP/1.1 client (``LoadClient``: keep-alive connections, at most
the cell's concurrency of them, each request's status line and body read whole) with a
semaphore as the concurrency cap, a fixed number of requests per cell and a time limit per
cell (a cell that reaches it stops issuing requests and says so). It spends a few tens of
microseconds per request, where httpx spends milliseconds: a load generator slower than the
service would measure itself. httpx checks the lists (below) and waits for ``/ready``. Each cell first sends a few untimed warm-up requests. Cells: the user endpoint
(``GET /v1/models/{name}/users/{id}/recommendations?k=10``) and the batch endpoint (``POST
/v1/models/{name}/recommendations/batch`` with ``{"requests": [{"user": id}, ...], "k": 10}``,
``--batch-users`` users per request) at concurrency 1, 8 and 32, over a fixed random sample
of users (seed 0). An error is any answer but 200 and any transport failure. Before the load,
the lists the service gives for a few users (one by one and as one batch) are checked against
``Run.recommend``.

The floor is the same users scored in this process by ``Recommender.recommend`` (the served
model's, with the history and the excluded items the service uses): one user per call, and
in batches of ``--batch-users``. Resident memory of the server process (``VmRSS`` in
``/proc/PID/status``) is read at ready, then before and after ``--rss-requests`` user
requests at concurrency 8 (both models in turn, sampled every tenth), after every other cell
has warmed the server; flat means within 5%.

Targets: the user endpoint at concurrency 8 reaches >= 50% of the in-process one-at-a-time
rate; the batch endpoint (its best concurrency) >= 80% of in-process batch scoring, in users
per second; p99 <= 5x p50 in every cell; resident memory flat; no errors.

CPUs: the server and this client share the machine unless pinned: ``--server-cpus 1
--client-cpus 0`` runs the server (and the in-process floor, and the torch threads of both:
one per server CPU) on CPU 1 and the load generator on CPU 0. Without them both inherit this
process's CPUs (``taskset -c 0 python benchmarks/bench_serve.py`` puts all on CPU 0).

Usage: python benchmarks/bench_serve.py [--data PATH] [--quick] [--requests N]
       [--batch-requests N] [--batch-users B] [--rss-requests N] [--time-limit S]
       [--cache DIR] [--server-cpus LIST] [--client-cpus LIST] [--out NAME|PATH.md]
``--quick`` (a smoke run: EASE without its grid, Mult-VAE for 3 epochs, small counts) writes
genrec-bench-serve-quick.md in the temporary folder unless ``--out`` names a file, so that
make_report.py never joins a smoke run into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _common import ML1M_CLEAN, ROOT, header, write_result

MODELS = {
    "ease": ROOT / "configs/ml-1m/ease.toml",
    "mult-vae": ROOT / "configs/ml-1m/mult-vae.toml",
}
CONCURRENCY = (1, 8, 32)
K = 10


# ------------------------------------------------------------------------------ the models
def settings(name: str, data: Path, quick: bool) -> dict:
    """The run config of ``name`` (its configs/ml-1m file) on ``data``; smaller when quick."""
    from genrec.config import load_toml

    values = load_toml(MODELS[name])
    values["dataset"] = str(data)
    if quick:
        values.get("run", {}).pop("grid", None)
        if "train" in values:
            values["train"] = {**values["train"], "epochs": 3}
    return values


def trained(name: str, values: dict, cache: Path) -> tuple[Path, str]:
    """The run folder of ``values``: reused from ``cache`` when finished there, else trained."""
    from genrec import __version__
    from genrec.runs import RunSpec, load_run, train_run

    key = hashlib.sha256(json.dumps([values, __version__], sort_keys=True).encode()).hexdigest()
    out = cache / key[:12] / name  # served under its folder name: "ease", "mult-vae"
    try:
        load_run(out)
        return out, "reused"
    except Exception:  # absent, unfinished or damaged: train it again
        pass
    t0 = time.perf_counter()
    train_run(RunSpec.from_mapping(values, out=out, force=True))
    return out, f"trained in {time.perf_counter() - t0:.0f} s"


# ------------------------------------------------------------------------------ in process
def floor(run, users: np.ndarray, batch: int) -> dict:
    """Users per second of ``Recommender.recommend``: one user per call, and ``batch`` per
    call, for the rows ``users`` (their whole histories; every known item left out)."""
    model, hist, known = run.model, run.data.history, run.data.known
    for u in users[:20]:  # warm-up
        model.recommend(np.array([u]), hist[u], k=K, exclude=known[u])
    t0 = time.perf_counter()
    for u in users:
        model.recommend(np.array([u]), hist[u], k=K, exclude=known[u])
    one = len(users) / (time.perf_counter() - t0)
    model.recommend(users[:batch], hist[users[:batch]], k=K, exclude=known[users[:batch]])
    t0 = time.perf_counter()
    for a in range(0, len(users), batch):
        sel = users[a : a + batch]
        model.recommend(sel, hist[sel], k=K, exclude=known[sel])
    return {"one": one, "batch": len(users) / (time.perf_counter() - t0)}


# ------------------------------------------------------------------------------ the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(folders: list[Path], log: Path, cpus: set[int] | None, threads: int) -> Server:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "genrec", "serve", *map(str, folders), "--port", str(port)]
    cmd += ["--no-access-log"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = open(log, "wb")  # the server writes it until stopped
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=pin)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"genrec serve exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("genrec serve was not ready within 300 s")


# ------------------------------------------------------------------------------ the load
@dataclass
class Cell:
    """One load cell: ``asked`` requests at ``concurrency``."""

    asked: int
    concurrency: int
    users_per_request: int = 1
    latencies: list[float] = field(default_factory=list)  # seconds, completed requests
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    stopped: bool = False  # the time limit stopped it

    @property
    def done(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        return float(np.percentile(np.array(self.latencies) * 1e3, q)) if self.latencies else 0.0

    @property
    def rps(self) -> float:
        return self.done / self.wall if self.wall else 0.0


class LoadError(Exception):
    """A transport failure or a malformed answer (counted as an error)."""


@dataclass
class Answer:
    status_code: int
    body: bytes


class LoadClient:
    """A minimal HTTP/1.1 client for the load: keep-alive connections to ``url`` (at most
    ``connections``, opened on demand), ``GET`` and ``POST``, answers read whole (a
    ``Content-Length`` body or a chunked one)."""

    def __init__(self, url: str, connections: int, timeout: float = 60.0):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.slots = asyncio.Semaphore(connections)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc) -> None:
        for _, w in self.idle:
            w.close()
        self.idle.clear()

    async def get(self, path: str) -> Answer:
        return await self.request(b"GET", path, b"")

    async def post(self, path: str, content: bytes, headers: dict | None = None) -> Answer:
        return await self.request(b"POST", path, content)

    async def request(self, method: bytes, path: str, body: bytes) -> Answer:
        head = method + b" " + path.encode() + b" HTTP/1.1\r\nHost: " + self.host.encode()
        if body:
            head += b"\r\nContent-Type: application/json\r\nContent-Length: "
            head += str(len(body)).encode()
        async with self.slots:
            conn = self.idle.pop() if self.idle else None
            try:
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                reader, writer = conn
                writer.write(head + b"\r\n\r\n" + body)
                answer, keep = await asyncio.wait_for(self._read(reader), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                if conn is not None:
                    conn[1].close()
                raise LoadError(type(e).__name__) from None
            if keep:
                self.idle.append(conn)
            else:
                writer.close()
            return answer

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        return Answer(status, body), headers.get(b"connection") != b"close"


async def load(client, request, n: int, concurrency: int, limit: float, per: int = 1) -> Cell:
    """Send ``request(client, i)`` for i < n, at most ``concurrency`` at a time (a
    semaphore), none started after ``limit`` seconds."""
    cell = Cell(n, concurrency, per)
    sem = asyncio.Semaphore(concurrency)
    start = time.perf_counter()
    deadline = start + limit

    async def one(i: int) -> None:
        async with sem:
            if time.perf_counter() > deadline:
                cell.stopped = True
                return
            t0 = time.perf_counter()
            try:
                r = await request(client, i)
                ok = r.status_code == 200
                what = str(r.status_code)
            except LoadError as e:
                ok, what = False, str(e)
            cell.latencies.append(time.perf_counter() - t0)
            if not ok:
                cell.errors += 1
                cell.statuses[what] = cell.statuses.get(what, 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    cell.wall = time.perf_counter() - start
    return cell


def user_request(name: str, users: list):
    def request(client, i: int):
        return client.get(f"/v1/models/{name}/users/{users[i % len(users)]}/recommendations?k={K}")

    return request


def batch_request(name: str, users: list, per: int):
    bodies = [
        json.dumps({"requests": [{"user": u} for u in users[a : a + per]], "k": K}).encode()
        for a in range(0, len(users) - per + 1, per)
    ]

    def request(client, i: int):
        return client.post(
            f"/v1/models/{name}/recommendations/batch",
            content=bodies[i % len(bodies)],
            headers={"content-type": "application/json"},
        )

    return request


def client_for(url: str, concurrency: int) -> LoadClient:
    return LoadClient(url, concurrency)


def checking_client(url: str):
    import httpx

    return httpx.AsyncClient(base_url=url, timeout=60)


async def cell(url: str, request, n: int, c: int, limit: float, per: int = 1) -> Cell:
    async with client_for(url, c) as client:
        await load(client, request, min(n, 2 * c + 8), c, limit, per)  # warm-up, untimed
        return await load(client, request, n, c, limit, per)


async def check_lists(url: str, name: str, run, users: list) -> tuple[int, int]:
    """(users whose served lists equal ``Run.recommend``'s, users checked): each user by the
    user endpoint and all of them as one batch."""
    async with checking_client(url) as client:
        body = {"requests": [{"user": u} for u in users], "k": K}
        r = await client.post(f"/v1/models/{name}/recommendations/batch", json=body)
        batch = r.json()["results"] if r.status_code == 200 else [None] * len(users)
        same = 0
        for u, b in zip(users, batch):
            want = [x["item"] for x in run.recommend(user=u, k=K).items]
            r = await client.get(f"/v1/models/{name}/users/{u}/recommendations?k={K}")
            got = [x["item"] for x in r.json()["recommendations"]] if r.status_code == 200 else []
            same += (
                got == want and b is not None and [x["item"] for x in b["recommendations"]] == want
            )
    return same, len(users)


async def rss_phase(server: Server, names: list[str], users: list, n: int, limit: float):
    """RSS before, during (every tenth) and after ``n`` user requests at concurrency 8."""
    requests = [user_request(m, users) for m in names]

    def mixed(client, i: int):
        return requests[i % len(requests)](client, i // len(requests))

    samples = [rss_mib(server.proc.pid)]
    cells = []
    async with client_for(server.url, 8) as client:
        for _ in range(10):
            cells.append(await load(client, mixed, n // 10, 8, limit / 10))
            samples.append(rss_mib(server.proc.pid))
    return samples, cells


# ------------------------------------------------------------------------------ report
def ms(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def report(args, models, floors, cells, checks, rss, minutes) -> str:
    lines = [args.header]
    lines.append(
        f"`genrec serve` (one uvicorn worker, no access log) answered an asyncio HTTP/1.1 "
        f"keep-alive client (`LoadClient`) on 127.0.0.1: per cell {args.requests} user requests or {args.batch_requests} batch "
        f"requests of {args.batch_users} users (k={K}) after a few untimed warm-up requests, "
        f"at most the cell's concurrency in flight (a semaphore), {args.time_limit:.0f} s "
        f"per cell at most; users drawn once (seed 0) from the {floors['n_users']} of the "
        f"data, {len(floors['users'])} of them cycled. The floor: the same users scored in "
        f"this process by `Recommender.recommend`, one per call and {args.batch_users} per "
        f"call. CPUs: {args.cpus_note}. Load average at the end {os.getloadavg()[0]:.2f}. "
        f"Whole script {minutes:.1f} min."
        + (
            " **Quick smoke run** (EASE without its grid, Mult-VAE 3 epochs, small counts)."
            if args.quick
            else ""
        )
        + "\n\n"
    )
    lines.append("| model | config | run | test R@20 | served lists equal `Run.recommend` |\n")
    lines.append("|---|---|---|---|---|\n")
    for name, (_, how, r20) in models.items():
        same, n = checks[name]
        cfg = MODELS[name].relative_to(ROOT)
        lines.append(
            f"| {name} | [{cfg.name}]({cfg}) | {how} | {r20:.4f} | {same} of {n} users |\n"
        )
    lines.append(
        "\n| model | endpoint | concurrency | requests | errors | req/s | users/s | p50 ms | p95 ms | p99 ms | p99 / p50 |\n"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|\n")
    for name in models:
        f = floors[name]
        lines.append(
            f"| {name} | in process, one user per call | 1 | {len(floors['users'])} | - | - | {f['one']:.0f} | | | | |\n"
        )
        lines.append(
            f"| {name} | in process, {args.batch_users} users per call | 1 | {len(floors['users']) // args.batch_users} | - | - | {f['batch']:.0f} | | | | |\n"
        )
        for (m, kind, c), x in cells.items():
            if m != name:
                continue
            done = (
                f"{x.done}"
                + ("" if x.done == x.asked else f" of {x.asked}")
                + (" (time limit)" if x.stopped else "")
            )
            errs = f"{x.errors}" + (
                f" ({', '.join(f'{k}: {v}' for k, v in x.statuses.items())})" if x.errors else ""
            )
            p50 = x.pct(50)
            lines.append(
                f"| {name} | {kind} | {c} | {done} | {errs} | {x.rps:.0f} | {x.rps * x.users_per_request:.0f} "
                f"| {ms(p50)} | {ms(x.pct(95))} | {ms(x.pct(99))} | {x.pct(99) / p50 if p50 else 0:.1f} |\n"
            )
    samples, rss_cells = rss
    before, after = samples[0], samples[-1]
    change = (after - before) / before
    rss_errors = sum(c.errors for c in rss_cells)
    kinds: dict[str, int] = {}
    for c in rss_cells:
        for k, v in c.statuses.items():
            kinds[k] = kinds.get(k, 0) + v
    rss_what = f"{rss_errors} errors" + (
        f": {', '.join(f'{k} {v}' for k, v in kinds.items())}" if kinds else ""
    )
    lines.append(
        f"\nResident memory of the server: {floors['rss_ready']:.0f} MiB at ready; "
        f"{before:.0f} MiB before and {after:.0f} MiB after {sum(c.done for c in rss_cells)} more "
        f"user requests at concurrency 8 (both models in turn; {rss_what}), "
        f"{change:+.1%}; every tenth: {', '.join(f'{s:.0f}' for s in samples)} MiB.\n\n"
    )
    lines.append("| target | model | measured | needed | |\n|---|---|---|---|---|\n")
    for name in models:
        f = floors[name]
        c8 = cells[(name, "user endpoint", 8)]
        lines.append(
            f"| user endpoint at concurrency 8 >= 50% of in-process one at a time | {name} | {c8.rps / f['one']:.0%} ({c8.rps:.0f} of {f['one']:.0f} users/s) | 50% | {verdict(c8.rps >= 0.5 * f['one'])} |\n"
        )
        best = max((cells[(name, "batch endpoint", c)] for c in CONCURRENCY), key=lambda x: x.rps)
        ups = best.rps * best.users_per_request
        lines.append(
            f"| batch endpoint >= 80% of in-process batch scoring (best concurrency: {best.concurrency}) | {name} | {ups / f['batch']:.0%} ({ups:.0f} of {f['batch']:.0f} users/s) | 80% | {verdict(ups >= 0.8 * f['batch'])} |\n"
        )
        mine = [(k, x) for k, x in cells.items() if k[0] == name]
        (_, kind, c), worst = max(mine, key=lambda kx: kx[1].pct(99) / max(kx[1].pct(50), 1e-9))
        ratio = worst.pct(99) / max(worst.pct(50), 1e-9)
        lines.append(
            f"| p99 <= 5x p50 in every cell (worst: {kind}, concurrency {c}) | {name} | {ratio:.1f}x | 5x | {verdict(ratio <= 5)} |\n"
        )
    errors = sum(x.errors for x in cells.values()) + rss_errors
    lines.append(
        f"| resident memory flat (within 5%) over {sum(c.done for c in rss_cells)} requests | both | {change:+.1%} | ±5% | {verdict(abs(change) <= 0.05)} |\n"
    )
    lines.append(f"| no errors | both | {errors} | 0 | {verdict(errors == 0)} |\n")
    return "".join(lines)


# ------------------------------------------------------------------------------ main
def cpu_list(text: str | None) -> set[int] | None:
    if not text:
        return None
    out: set[int] = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(ML1M_CLEAN))
    ap.add_argument("--quick", action="store_true", help="a smoke run: small models and counts")
    ap.add_argument("--requests", type=int, help="user requests per cell (default 2000; quick 200)")
    ap.add_argument(
        "--batch-requests", type=int, help="batch requests per cell (default 200; quick 20)"
    )
    ap.add_argument("--batch-users", type=int, default=100, help="users per batch request")
    ap.add_argument(
        "--rss-requests",
        type=int,
        help="requests between the RSS samples (default 20000; quick 2000)",
    )
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds per cell at most")
    ap.add_argument("--users", type=int, default=1000, help="users in the sample")
    ap.add_argument(
        "--cache",
        default=str(
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            / "genrec"
            / "bench_serve"
        ),
    )
    ap.add_argument(
        "--server-cpus", help="CPUs of the server and the in-process floor, e.g. 1 or 2-3"
    )
    ap.add_argument("--client-cpus", help="CPUs of the load generator, e.g. 0")
    ap.add_argument("--out", help="results/NAME.md (default serve) or a path ending in .md")
    args = ap.parse_args()
    q = args.quick
    args.requests = args.requests or (200 if q else 2000)
    args.batch_requests = args.batch_requests or (20 if q else 200)
    args.rss_requests = args.rss_requests or (2000 if q else 20000)
    out = args.out or (
        str(Path(tempfile.gettempdir()) / "genrec-bench-serve-quick.md") if q else "serve"
    )
    if not Path(args.data).exists():
        sys.exit(f"no data at {args.data}; give --data PATH (the DiffRec ML-1M clean folder)")
    server_cpus, client_cpus = cpu_list(args.server_cpus), cpu_list(args.client_cpus)
    mine = os.sched_getaffinity(0)
    threads = len(server_cpus or mine)
    args.cpus_note = (
        f"server and floor on {sorted(server_cpus or mine)}, client on {sorted(client_cpus or mine)}, "
        f"{threads} torch thread{'s' if threads > 1 else ''} in each"
    )
    t_start = time.perf_counter()

    import torch

    from genrec.runs import load_run

    torch.set_num_threads(threads)
    args.header = header("Serving: genrec serve under load, ML-1M clean (loopback)")  # now
    cache = Path(args.cache)
    models = {}
    for name in MODELS:
        folder, how = trained(name, settings(name, Path(args.data), q), cache)
        run = load_run(folder)
        r20 = (
            (run.record.get("results") or {})
            .get("test", {})
            .get("metrics", {})
            .get("recall@20", float("nan"))
        )
        models[name] = (folder, how, r20)
        print(f"{name}: {how} ({folder})", flush=True)

    runs = {name: load_run(folder) for name, (folder, _, _) in models.items()}
    first = next(iter(runs.values()))
    rng = np.random.default_rng(0)
    rows = np.sort(
        rng.choice(len(first.users), size=min(args.users, len(first.users)), replace=False)
    )
    users = [first.users.raw[r].item() for r in rows]
    floors: dict = {"users": users, "n_users": len(first.users)}
    if server_cpus:
        os.sched_setaffinity(0, server_cpus)
    for name, run in runs.items():
        floors[name] = floor(run, run.users.indices(users), args.batch_users)
        print(
            f"{name}: in process {floors[name]['one']:.0f} users/s one at a time, {floors[name]['batch']:.0f} in batches",
            flush=True,
        )
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(
            [f for f, _, _ in models.values()], Path(tmp) / "serve.log", server_cpus, threads
        )
        try:
            floors["rss_ready"] = rss_mib(server.proc.pid)
            checks = {n: asyncio.run(check_lists(server.url, n, runs[n], users[:50])) for n in runs}
            cells: dict = {}
            for name in runs:
                for c in CONCURRENCY:
                    x = asyncio.run(
                        cell(
                            server.url, user_request(name, users), args.requests, c, args.time_limit
                        )
                    )
                    cells[(name, "user endpoint", c)] = x
                    print(
                        f"{name} user c={c}: {x.rps:.0f} req/s p50 {x.pct(50):.2f} p99 {x.pct(99):.2f} ms errors {x.errors}",
                        flush=True,
                    )
                for c in CONCURRENCY:
                    req = batch_request(name, users, args.batch_users)
                    x = asyncio.run(
                        cell(
                            server.url,
                            req,
                            args.batch_requests,
                            c,
                            args.time_limit,
                            args.batch_users,
                        )
                    )
                    cells[(name, "batch endpoint", c)] = x
                    print(
                        f"{name} batch c={c}: {x.rps * args.batch_users:.0f} users/s p50 {x.pct(50):.1f} p99 {x.pct(99):.1f} ms errors {x.errors}",
                        flush=True,
                    )
            rss = asyncio.run(
                rss_phase(server, list(runs), users, args.rss_requests, args.time_limit * 4)
            )
            print(f"RSS {rss[0][0]:.0f} -> {rss[0][-1]:.0f} MiB", flush=True)
        finally:
            code = server.stop()
            log = server.log.read_text(errors="replace")
            if code not in (0, -signal.SIGTERM):
                print(f"genrec serve stopped with {code}:\n" + log[-2000:])
            else:  # what the server said about any failed request
                said = [x for x in log.splitlines() if "WARNING" in x or "ERROR" in x]
                print("\n".join(["server log warnings and errors:", *said[-20:]] if said else []))
    text = report(args, models, floors, cells, checks, rss, (time.perf_counter() - t_start) / 60)
    if out.endswith(".md") or "/" in out:
        from genrec.io import atomic_write_text

        atomic_write_text(out, text)
        print(f"wrote {out}")
    else:
        write_result(out, text)
    print(text)


if __name__ == "__main__":
    main()

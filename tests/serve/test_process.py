"""A real ``genrec serve`` process on a free loopback port: it answers, and SIGTERM lets
the request in flight finish before the process exits 0."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from genrec.runs import load_run

SRC = Path(__file__).resolve().parents[2] / "src"


class Server:
    """``python -m genrec serve ARGS`` with its stderr read line by line in a thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        environ = {**os.environ, **(env or {})}
        environ["PYTHONPATH"] = os.pathsep.join([str(SRC), environ.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genrec", "serve", *args, "--port", "0", "--no-access-log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for(r"serving .* on http://127\.0\.0\.1:(\d+)")
        port = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert port is not None
        self.url = f"http://127.0.0.1:{port.group(1)}"
        self.port = int(port.group(1))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> str:
        """The next stderr line matching ``pattern`` (a failure, with the log, if the
        process ends or stays silent first)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r}; stderr so far:\n{''.join(self.seen)}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def ready(self) -> dict:
        for _ in range(600):
            try:
                r = httpx.get(f"{self.url}/ready", timeout=5)
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            threading.Event().wait(0.1)
        pytest.fail(f"the service never became ready:\n{''.join(self.seen)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


@pytest.fixture()
def server(run_dirs):
    s = Server(str(run_dirs["ease"]), str(run_dirs["vae"]))
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def test_a_real_process_serves_and_finishes_the_request_in_flight_on_sigterm(server, run_dirs):
    assert server.ready() == {"status": "ready", "models": ["ease", "vae"]}
    r = httpx.get(f"{server.url}/v1/models/vae/users/5/recommendations", params={"k": 4})
    want = load_run(run_dirs["vae"]).recommend(user=5, k=4)
    assert r.status_code == 200 and r.json()["recommendations"] == want.items
    missing = httpx.get(f"{server.url}/v1/models/ease/users/ghost/recommendations")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_user"

    # a request in flight: headers sent, the app waiting for the body (the server's
    # "100 Continue" says it reads it), then SIGTERM, then the body
    body = json.dumps({"items": ["1", "2", "3"], "k": 3}).encode()
    head = (
        "POST /v1/models/ease/recommendations HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
        conn.sendall(head)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = conn.recv(4096)
            assert chunk, "the server closed the connection before reading the body"
            got += chunk
        assert got.startswith(b"HTTP/1.1 100 Continue"), got
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for("Shutting down")  # the shutdown has begun, the request still open
        conn.sendall(body)
        response = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            response += chunk
    status, _, rest = response.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK", response[:300]
    payload = json.loads(rest.partition(b"\r\n\r\n")[2])
    want = load_run(run_dirs["ease"]).recommend(items=["1", "2", "3"], k=3)
    assert payload["recommendations"] == want.items
    assert server.stop() == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=5)


def test_workers_serve_from_the_factory_and_stop_on_sigterm(run_dirs):
    s = Server(str(run_dirs["ease"]), "--workers", "2")
    try:
        assert s.ready()["models"] == ["ease"]
        for u in (1, 2, 3, 4):
            r = httpx.get(f"{s.url}/v1/models/ease/users/{u}/recommendations")
            assert r.status_code == 200 and len(r.json()["recommendations"]) == 10
        assert s.stop() == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()

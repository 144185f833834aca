"""``genrec serve``: the HTTP recommendation service over trained run folders."""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from genrec.cli.render import err_console
from genrec.errors import ConfigError
from genrec.serve.config import DEFAULT_BATCH_USERS

_LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _graceful_signals() -> Iterator[None]:
    """While uvicorn serves: SIGTERM and SIGINT are uvicorn's (it finishes the requests in
    flight, then stops); the signal it raises again after stopping is absorbed here, so a
    graceful stop exits 0 instead of as an interrupt."""
    names = [signal.SIGTERM, signal.SIGINT]
    try:
        previous = {s: signal.signal(s, lambda *_: None) for s in names}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _positive(name: str, default: int, what: str) -> Any:
    return click.option(
        name, type=click.IntRange(min=1), default=default, show_default=True, help=what
    )


def _seconds(name: str, default: float, least: float, what: str) -> Any:
    return click.option(
        name, type=click.FloatRange(min=least), default=default, show_default=True, help=what
    )


@click.command("serve")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to bind (0: any free port, printed at start-up).",
)
@_positive("--workers", 1, "Worker processes (each loads every model).")
@click.option(
    "--api-key-env",
    default=None,
    metavar="NAME",
    help="Require the API key held in the environment variable NAME on every /v1 request.",
)
@_positive("--max-k", 1000, "Largest k a request may ask for.")
@_positive("--max-history", 2000, "Most item ids in one posted history.")
@_positive("--max-batch", 1000, "Most users or histories in one batch request.")
@_positive("--max-body-bytes", 2 * 1024 * 1024, "Largest request body in bytes.")
@_seconds(
    "--graceful-timeout", 30.0, 0, "Seconds a stop (SIGTERM, Ctrl-C) waits for requests in flight."
)
@_positive(
    "--batch-users",
    DEFAULT_BATCH_USERS,
    "Most users one model call scores for the requests waiting together (1: each request alone).",
)
@_seconds(
    "--keep-alive",
    75.0,
    1,
    "Seconds an idle keep-alive connection stays open (longer than clients keep theirs, so a "
    "client never sends on a connection the service is closing).",
)
@click.option("--access-log/--no-access-log", default=True, help="Log every request.")
def serve_cmd(
    run_dirs: tuple[str, ...],
    host: str,
    port: int,
    workers: int,
    api_key_env: str | None,
    max_k: int,
    max_history: int,
    max_batch: int,
    max_body_bytes: int,
    graceful_timeout: float,
    batch_users: int,
    keep_alive: float,
    access_log: bool,
) -> None:
    """Serve the runs in RUN_DIRS over HTTP, each under its folder name.

    JSON endpoints under /v1 (the OpenAPI page is /docs), /health, /ready and a try-it
    page at /. Binds 127.0.0.1 unless --host says otherwise. Stop it with SIGTERM or
    Ctrl-C: requests in flight finish first.
    """
    from genrec.serve import Limits, ServeConfig, require_serve
    from genrec.serve.config import CONFIG_ENV

    require_serve()
    import uvicorn

    from genrec.serve.app import create_app, freeze_loaded

    if api_key_env is not None and not api_key_env.strip():
        raise ConfigError("--api-key-env: give the name of an environment variable")
    limits = Limits(max_k, max_history, max_batch, max_body_bytes)
    config = ServeConfig(tuple(Path(d) for d in run_dirs), limits, api_key_env, batch_users)
    config.api_key()  # an unset variable is an error before anything loads
    app = create_app(config)  # loads and checks every run (and serves them with one worker)
    say = err_console()
    if not _loopback(host):
        key = "with an API key" if api_key_env else "WITHOUT an API key (--api-key-env)"
        say.print(
            f"warning: --host {host} makes the service reachable from other machines, "
            f"{key} and without TLS; put it behind a reverse proxy that terminates TLS",
            soft_wrap=True,
        )
    common: dict[str, Any] = dict(
        host=host,
        port=port,
        timeout_graceful_shutdown=graceful_timeout,
        timeout_keep_alive=keep_alive,
        access_log=access_log,
        log_level="info",
        lifespan="on",
    )
    if workers > 1:
        os.environ[CONFIG_ENV] = config.to_json()  # read by each worker's factory
        del app  # each worker loads its own copy
        uconfig = uvicorn.Config(
            "genrec.serve.app:app_from_env", factory=True, workers=workers, **common
        )
    else:
        freeze_loaded()
        uconfig = uvicorn.Config(app, **common)
    try:
        sock = uconfig.bind_socket()
    except SystemExit:  # uvicorn logged why (address in use, no permission)
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen there (see the line above); choose "
            f"another port, or --port 0 for any free one"
        ) from None
    bound = sock.getsockname()[1]
    names = ", ".join(m.resolve().name for m in config.runs)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    say.print(
        f"serving {names} on http://{shown}:{bound} (docs at /docs, try-it page at /); "
        f"{workers} worker{'s' if workers > 1 else ''}",
        soft_wrap=True,
    )
    server = uvicorn.Server(uconfig)
    with _graceful_signals():
        if workers > 1:
            import inspect

            from uvicorn.supervisors import Multiprocess

            # uvicorn before 0.30 takes the target; later ones build it from the config
            takes = "target" in inspect.signature(Multiprocess).parameters
            extra = {"target": server.run} if takes else {}
            Multiprocess(uconfig, sockets=[sock], **extra).run()
        else:
            server.run(sockets=[sock])
    if not server.started and workers == 1:
        raise ConfigError(f"the service on {host}:{bound} did not start; see the log above")


COMMANDS = [serve_cmd]

"""The FastAPI app: routes over :class:`genrec.serve.service.Catalog`, JSON errors, the
request guard (API key, body size) and the try-it page.

The recommendation endpoints check a request in the event loop and queue it for the scoring
thread (:class:`genrec.serve.batching.Scorer`), which scores the requests waiting together;
the other endpoints are plain ``def`` functions, run in FastAPI's thread pool. The event loop
never waits on a model.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.responses import JSONResponse as _StarletteJSON
from fastapi.routing import APIRouter
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from genrec import __version__
from genrec.errors import GenrecError
from genrec.serve import schemas as s
from genrec.serve.batching import Scorer
from genrec.serve.config import CONFIG_ENV, DEFAULT_BATCH_USERS, ServeConfig
from genrec.serve.errors import ServeError, error_body
from genrec.serve.service import Catalog

__all__ = ["create_app", "app_from_env", "freeze_loaded"]

log = logging.getLogger("genrec.serve")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorResponse, "description": what}
    for code, what in (
        (401, "No or a wrong API key"),
        (404, "Unknown model, user or item"),
        (409, "The model cannot do this (fold in, similar items, predict)"),
        (413, "Above a limit (k, items per history, users per batch, body bytes)"),
        (422, "Malformed body or parameters"),
    )
}


class JSONResponse(_StarletteJSON):
    """A JSON answer encoded by orjson when it is installed (part of ``genrec[serve]``;
    some twenty times faster than the standard library on a list of recommendations), else
    by ``json`` as Starlette encodes it. Non-finite floats never reach it (the answers hold
    ``null`` for them)."""

    def render(self, content: Any) -> bytes:
        return _dumps(content)


def _std_dumps(content: Any) -> bytes:
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


_dumps: Callable[[Any], bytes]
try:
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - orjson comes with genrec[serve]
    _dumps = _std_dumps

_UNION_BRANCHES = ("str", "int", "constrained-str")  # pydantic's names in an id's error place
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def create_app(config: ServeConfig | None = None, *, catalog: Catalog | None = None) -> FastAPI:
    """The service for ``config``'s run folders (loaded here, once), or for a loaded
    ``catalog``."""
    if catalog is None:
        if config is None:
            raise TypeError("create_app needs a ServeConfig or a Catalog")
        catalog = Catalog.load(config)
    key = config.api_key() if config is not None else None
    scorer = Scorer(
        catalog.score, config.batch_users if config is not None else DEFAULT_BATCH_USERS
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(scorer.stop)  # after the requests in flight have finished

    app = FastAPI(
        title="genrec",
        version=__version__,
        description="Recommendations from trained genrec runs. Errors are "
        '`{"error": {"code": ..., "message": ...}}`; see docs/serving.md.',
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.catalog = catalog
    app.state.scorer = scorer
    _install_errors(app)
    app.add_middleware(_Guard, key=key, max_body=catalog.limits.max_body_bytes)
    app.include_router(_meta_routes(catalog))
    auth = (
        [
            Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
            Security(HTTPBearer(auto_error=False)),
        ]
        if key is not None
        else []
    )
    app.include_router(
        _v1_routes(catalog, scorer), prefix="/v1", dependencies=auth, responses=_ERRORS
    )
    return app


def app_from_env() -> FastAPI:
    """The app of the config in :data:`CONFIG_ENV` (uvicorn's factory in worker processes)."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the service with genrec serve")
    app = create_app(ServeConfig.from_json(text))
    freeze_loaded()
    return app


def freeze_loaded() -> None:
    """Exempt what is loaded so far (the models, their id maps) from the garbage collector's
    scans, for a process that serves: every answer builds thousands of small objects, and
    each collection would otherwise walk the loaded ones too."""
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------- errors
def _json_error(status: int, code: str, message: str, headers: Any = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return _json_error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {allow})"
        else:
            message = str(exc.detail)
        return _json_error(exc.status_code, code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json_error(422, "invalid_request", _validation_message(exc.errors()))

    @app.exception_handler(GenrecError)
    async def _library_error(request: Request, exc: GenrecError) -> JSONResponse:
        return _json_error(422, "invalid_request", str(exc))  # a check the service missed

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _json_error(500, "internal_error", "internal error; the server log has details")


def _validation_message(errors: Any) -> str:
    """One line from pydantic's errors: where (``body.requests[2].items``) and what; the
    branches of a string-or-integer id that failed together read as one."""
    by_place: dict[str, list[str]] = {}
    for e in errors:
        where = ""
        for x in (str(x) for x in e.get("loc", ())):
            if x.isdigit():
                where += f"[{x}]"
            elif x in _UNION_BRANCHES or x.startswith("function-"):
                continue  # the branch of a str | int union pydantic tried
            else:
                where += f".{x}" if where else x
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "json_invalid":
            msg = "the body is not valid JSON"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field (see /docs for the fields)"
        elif str((e.get("loc") or ("",))[-1]) in _UNION_BRANCHES:
            msg = "should be a string or an integer id"
        said = by_place.setdefault(where or "request", [])
        if msg not in said:
            said.append(msg)
    parts = [f"{where}: {' or '.join(msgs)}" for where, msgs in by_place.items()]
    more = len(parts) - 3
    return "; ".join(parts[:3]) + (f" (and {more} more)" if more > 0 else "")


# ---------------------------------------------------------------------- guard
class _Guard:
    """ASGI middleware: the API key on /v1 (constant-time comparison) and the body limit
    (the body is read here, at most ``max_body`` + one chunk, and replayed to the app)."""

    def __init__(self, app: Any, key: str | None, max_body: int):
        self.app = app
        self.key = None if key is None else key.encode("utf-8")
        self.max_body = max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if self.key is not None and (path == "/v1" or path.startswith("/v1/")):
            if not self._authorized(headers):
                await _send(
                    send,
                    _json_error(
                        401,
                        "unauthorized",
                        "this service needs an API key: send 'Authorization: Bearer KEY' "
                        "or 'X-API-Key: KEY'",
                        {"WWW-Authenticate": "Bearer"},
                    ),
                    scope,
                    receive,
                )
                return
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            await _send(send, self._too_large(int(length)), scope, receive)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _send(send, self._too_large(None), scope, receive)
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, headers: dict[str, bytes]) -> bool:
        assert self.key is not None
        given = headers.get("x-api-key")
        if given is None:
            auth = headers.get("authorization", b"")
            scheme, _, value = auth.partition(b" ")
            if scheme.lower() != b"bearer":
                return False
            given = value.strip()
        return hmac.compare_digest(given.strip(), self.key)

    def _too_large(self, length: int | None) -> JSONResponse:
        size = f"{length} bytes, more" if length is not None else "more bytes"
        return _json_error(
            413,
            "limit_exceeded",
            f"the request body holds {size} than this service's limit of {self.max_body} "
            f"bytes (max_body_bytes); send less",
        )


async def _send(send: Any, response: JSONResponse, scope: Any, receive: Any) -> None:
    await response(scope, receive, send)


# ---------------------------------------------------------------------- routes
def _page() -> str:
    return resources.files("genrec.serve").joinpath("page.html").read_text(encoding="utf-8")


def _meta_routes(catalog: Catalog) -> APIRouter:
    router = APIRouter()
    page = _page()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def try_it() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/health", response_model=s.Health, tags=["service"])
    def health() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @router.get("/ready", response_model=s.Ready, tags=["service"])
    def ready() -> dict[str, Any]:
        """Ready: every model is loaded (they load before the server binds its port)."""
        return {"status": "ready", "models": sorted(catalog.models)}

    return router


async def _nothing() -> list[dict[str, Any]]:
    return []


Name = Path(description="A served model's name (its run folder's name).")
KQuery = Query(10, ge=1, description="How many items (at most the max_k limit).")


def _v1_routes(c: Catalog, scorer: Scorer) -> APIRouter:
    r = APIRouter(tags=["v1"])

    @r.get("/models", response_model=s.ModelList)
    def models() -> JSONResponse:
        """Every served model: model, data set, protocol, test metrics, sizes, version."""
        return JSONResponse({"models": [c.models[n].info() for n in sorted(c.models)]})

    @r.get("/models/{name}", response_model=s.ModelInfo)
    def model(name: str = Name) -> JSONResponse:
        """One served model."""
        return JSONResponse(c.get(name).info())

    @r.get(
        "/models/{name}/users/{user_id}/recommendations", response_model=s.RecommendationsResponse
    )
    async def for_user(
        name: str = Name,
        user_id: str = Path(max_length=256, description="A raw user id from the data."),
        k: int = KQuery,
        include_seen: bool = Query(False, description="Keep the items the user already has."),
    ) -> JSONResponse:
        """Top-k for a known user, scored from the user's whole history."""
        m, u = c.check_user(name, user_id, k)
        answers = await scorer.submit("users", m.name, [u], k, include_seen)
        return JSONResponse(answers[0])

    @r.post("/models/{name}/recommendations", response_model=s.RecommendationsResponse)
    async def for_items(body: s.HistoryRequest, name: str = Name) -> JSONResponse:
        """Top-k for a new user folded in from raw item ids; unknown ids are listed and
        skipped."""
        m, rows, unknown = c.check_items(name, body.items, body.k)
        answers = await scorer.submit("histories", m.name, [rows], body.k, body.include_seen)
        return JSONResponse(c.with_unknown(answers[0], unknown))

    @r.post("/models/{name}/recommendations/batch", response_model=s.BatchResponse)
    async def batch(body: s.BatchRequest, name: str = Name) -> JSONResponse:
        """Many users or histories in one request, scored as one batch; one answer per
        request, in order."""
        entries = [e.model_dump() for e in body.requests]
        m, users, histories = c.check_batch(name, entries, body.k)
        k, seen = body.k, body.include_seen
        ua, ha = await asyncio.gather(
            scorer.submit("users", m.name, [u for _, u in users], k, seen) if users else _nothing(),
            scorer.submit("histories", m.name, [x for _, x, _ in histories], k, seen)
            if histories
            else _nothing(),
        )
        return JSONResponse(c.batch_answer(m, len(entries), users, ua, histories, ha))

    @r.get("/models/{name}/items", response_model=s.ItemSearchResponse)
    def search(
        name: str = Name,
        q: str = Query(max_length=256, description="An item id, or part of a title."),
        limit: int = Query(20, ge=1, le=100),
    ) -> JSONResponse:
        """Items by id or by title (a case-insensitive part of it)."""
        return JSONResponse(c.search_items(name, q, limit))

    @r.get("/models/{name}/items/{item_id}/similar", response_model=s.SimilarResponse)
    def similar(
        name: str = Name,
        item_id: str = Path(max_length=256, description="A raw item id."),
        k: int = KQuery,
    ) -> JSONResponse:
        """The items nearest this one by the cosine of the model's item embeddings (409
        for a model without them)."""
        return JSONResponse(c.similar(name, item_id, k))

    @r.post("/models/{name}/predict", response_model=s.PredictResponse)
    def predict(body: s.PredictRequest, name: str = Name) -> JSONResponse:
        """The predicted rating of (user, item), for rating models (409 otherwise)."""
        return JSONResponse(c.predict(name, body.user, body.item))

    return r

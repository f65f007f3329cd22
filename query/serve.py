"""``semindex serve``: one warm index behind an HTTP API, the MCP tools and a search page.

Every request takes the live :class:`Generation` once and uses only it, so a rebuild
(``semindex build`` into the served folder) is picked up without a restart and no
response mixes two generations. A new generation is loaded and warmed in the background
while requests keep going to the old one (a build keeps the generation before the live one
on disk, so in-flight requests finish on it).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from indexer.errors import QueryError, SemindexError

MAX_QUESTION_CHARS = 2000
MAX_K = 100
MAX_BODY_BYTES = 16 * 1024
LOOPBACK_NAMES = ("localhost",)
GENERATION_HEADER = "X-Semindex-Generation"
WARM_QUESTION = "warm up the index"


def searches_at_once() -> int:
    """How many searches a server computes at once: one per core it may use.

    A search is Python between calls that release the GIL (ONNX Runtime, FAISS, numpy). More
    threads than cores do not add work done, they fight over the GIL: each call's return
    waits out another thread's switch interval. On two cores, 8 clients of the bundled index
    got 147 searches a second with every request computing at once, 220 with two at a time
    (docs/experiments/serve.md)."""
    from indexer.onnx_embedder import usable_cores

    return usable_cores()


@dataclass(frozen=True)
class Generation:
    """One loaded index generation as the server answers from it: a request keeps the one
    it started with to the end. Search, ask and info give the CLI's ``--json`` objects.
    ``gate`` bounds the searches computed at once (:func:`searches_at_once`), and the asks the
    sentence picker answers; an ask read by the language model, seconds long, is not held to
    it (the model serialises its own reads)."""

    opened: Any  # query.index.Generation, imported lazily
    gate: threading.Semaphore

    @property
    def name(self) -> str:
        return self.opened.name

    @classmethod
    def load(cls, index: Path, *, gate: threading.Semaphore) -> Generation:
        """Open the live generation of ``index`` and load everything a query touches."""
        from query.index import Index

        generation = cls(Index.open(index).live(), gate)
        generation.opened.search(WARM_QUESTION, k=1, mode="hybrid")
        generation.opened.stale_warning  # hashes the corpus once, not inside a request
        return generation

    def search(self, question: str, *, k: int, mode: str, **filters: Any) -> dict[str, Any]:
        """``semindex search --json``."""
        from query.filters import Filters
        from query.results import search_to_dict

        checked = Filters.from_args(**filters)
        with self.gate:
            hits = self.opened.search(question, k=k, mode=mode, filters=checked)
        return search_to_dict(question, mode=mode, hits=hits, warning=self.opened.stale_warning, filters=checked)

    def ask(self, question: str, *, k: int, mode: str, reader: str | None = None, **filters: Any) -> dict[str, Any]:
        """``semindex ask --json`` (``--reader``: "llm", "sentence", or None for the CLI's
        default). The LLM reader's model is loaded once per process, by the first ask using it."""
        from query.filters import Filters
        from query.llm_reader import default_reader_note, reader_for

        checked = Filters.from_args(**filters)
        chosen = reader_for(reader)
        with self.gate if chosen.name == "sentence" else contextlib.nullcontext():
            answer = self.opened.ask(question, k=k, mode=mode, reader=chosen, filters=checked)
        if reader is None and (note := default_reader_note()):
            answer.warnings.append(note)
        return answer.to_dict()

    def info(self) -> dict[str, Any]:
        """``semindex info --json``: the generation's manifest and what it can be filtered by."""
        return self.opened.info()


class LiveIndex:
    """The served index folder: hands out its live generation, loading a new one in the
    background when ``CURRENT`` moves and switching to it once it is warm."""

    def __init__(self, index: Path) -> None:
        self.index = Path(index).absolute()
        self.gate = threading.Semaphore(searches_at_once())  # shared by the generations it serves in turn
        self._current = Generation.load(self.index, gate=self.gate)
        self._loading = False
        self._flag = threading.Lock()  # guards _loading only, never held while loading
        self._load = threading.Lock()  # one load at a time

    def generation(self) -> Generation:
        """The generation to answer one request with."""
        from indexer.store import live_generation

        current = self._current
        try:
            live = live_generation(self.index).name
        except SemindexError:
            return current  # CURRENT unreadable for a moment: keep serving what is loaded
        if live == current.name:
            return current
        if not (self.index / current.name).is_dir():  # removed (two builds since): wait for the live one
            return self._switch(live)
        with self._flag:
            start, self._loading = not self._loading, True
        if start:
            threading.Thread(target=self._switch_in_background, args=(live,), daemon=True).start()
        return current

    def _switch_in_background(self, live: str) -> None:
        try:
            self._switch(live)
        finally:
            with self._flag:
                self._loading = False

    def _switch(self, live: str) -> Generation:
        """Load the live generation and make it current (once per generation)."""
        with self._load:
            if self._current.name != live:
                self._current = Generation.load(self.index, gate=self.gate)
            return self._current


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before anything parses
    it (declared by Content-Length, or counted as a chunked body arrives)."""

    def __init__(self, app, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error_response(413, f"request body over {self.limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await too_large(scope, receive, send)
        body, message = b"", {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def error_response(status: int, message: str):
    """The one error shape: ``{"error": "one line"}`` with a 4xx status."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line from pydantic's validation errors: ``field: problem; ...``."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "body"))
        kind = error.get("type")
        problem = {"extra_forbidden": "unknown field", "json_invalid": "not valid JSON"}.get(kind, error.get("msg", "invalid"))
        if kind == "json_invalid":
            where = ""
        parts.append(f"{where or 'body'}: {problem}")
    return "; ".join(dict.fromkeys(parts))


@dataclass(frozen=True)
class ServeOptions:
    """How ``semindex serve`` runs."""

    index: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    no_auth: bool = False
    cors: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """Why these options must not run, or None."""
        if self.token is not None and not self.token.strip():
            return "--token is empty"
        if self.token and self.no_auth:
            return "--token and --no-auth exclude each other"
        if not is_loopback(self.host) and not (self.token or self.no_auth):
            return f"--host {self.host} accepts connections from other machines: give --token T (bearer) or --no-auth"
        return None


class Api:
    """The FastAPI application over one :class:`LiveIndex`."""

    def __init__(self, live: LiveIndex, *, options: ServeOptions) -> None:
        self.live, self.options = live, options

    @cached_property
    def app(self):
        from contextlib import asynccontextmanager

        from fastapi import FastAPI
        from fastapi.exceptions import RequestValidationError
        from starlette.exceptions import HTTPException

        from query.mcp_server import build_mcp
        from query.serve_routes import add_routes

        mcp = build_mcp(self.live.generation)
        mcp_app = mcp.streamable_http_app(streamable_http_path="/mcp", host=self.options.host)

        @asynccontextmanager
        async def lifespan(_app):
            async with mcp.session_manager.run():
                yield

        app = FastAPI(title="semindex", version=package_version(), lifespan=lifespan,
                      description="Search and ask a semindex index; responses are the CLI's --json objects.")
        add_routes(app, self.live)
        app.router.routes.extend(mcp_app.routes)  # /mcp, under this app's auth and body limit

        @app.exception_handler(RequestValidationError)
        async def invalid(_request, exc: RequestValidationError):
            return error_response(422, validation_message(list(exc.errors())))

        @app.exception_handler(HTTPException)
        async def http_error(_request, exc: HTTPException):
            return error_response(exc.status_code, str(exc.detail))

        @app.exception_handler(QueryError)
        async def bad_query(_request, exc: QueryError):
            return error_response(422, str(exc))

        @app.exception_handler(SemindexError)
        async def unusable(_request, exc: SemindexError):
            return error_response(503, str(exc))

        @app.exception_handler(Exception)
        async def bug(_request, exc: Exception):  # logged by uvicorn; the client still gets JSON
            return error_response(500, f"internal error ({type(exc).__name__})")

        if self.options.token:  # a middleware per request costs a task and two streams: only when it guards something
            app.middleware("http")(self._authorize)
        if self.options.cors:
            from starlette.middleware.cors import CORSMiddleware

            app.add_middleware(CORSMiddleware, allow_origins=list(self.options.cors), allow_methods=["GET", "POST"],
                               allow_headers=["Authorization", "Content-Type"])
        app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
        return app

    async def _authorize(self, request, call_next):
        """With ``--token``, everything but the page, the health check and the API schema
        needs ``Authorization: Bearer <token>``."""
        token = self.options.token
        if token and request.url.path not in ("/", "/healthz", "/openapi.json", "/docs"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                response = error_response(401, "missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return await call_next(request)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("semindex")
    except PackageNotFoundError:
        return "0"


def require_serve_extra() -> None:
    """Refuse in one line when the ``serve`` extra is not installed."""
    from importlib.util import find_spec

    missing = [name for name in ("fastapi", "uvicorn", "mcp") if find_spec(name) is None]
    if missing:
        raise SemindexError(f"{', '.join(missing)} not installed; install the server with: pip install 'semindex[serve]'")


def listening_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port``, made before the index loads so a port in use
    is refused at once.

    Its protocol is named (``IPPROTO_TCP``, not the default 0): asyncio turns Nagle's
    algorithm off only on sockets that say they are TCP, and with it on, a response written
    as headers then body waits for the client's delayed ACK, 40 ms on Linux, on every
    keep-alive request."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise SemindexError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def run_server(options: ServeOptions) -> None:
    """Bind, load the index, then serve until interrupted."""
    if problem := options.problem():
        raise SemindexError(problem)
    require_serve_extra()
    import uvicorn

    sock = listening_socket(options.host, options.port)
    api = Api(LiveIndex(options.index), options=options)
    port = sock.getsockname()[1]
    host = f"[{options.host.strip('[]')}]" if ":" in options.host else options.host
    from query.display import one_line

    print(one_line(f"serving {options.index} ({api.live.generation().name}) at http://{host}:{port}/"), flush=True)
    config = uvicorn.Config(api.app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def run_mcp(index: Path) -> None:
    """``semindex mcp``: the MCP tools over stdio (stdout carries only the protocol)."""
    require_serve_extra()
    from query.mcp_server import build_mcp

    live = LiveIndex(index)
    build_mcp(live.generation).run("stdio")

"""The HTTP routes of ``semindex serve``: search, ask, info, health and the page.

Handlers are plain functions, so FastAPI runs them in its thread pool (the query path
releases the GIL in ONNX Runtime and FAISS). Each takes one generation and answers from it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from query.serve import GENERATION_HEADER, MAX_K, MAX_QUESTION_CHARS, Generation, LiveIndex

Mode = Literal["hybrid", "dense", "keyword"]
ReaderName = Literal["llm", "sentence"]
Question = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS, description="What to look for.")]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many passages.")]
FILTERS = ("since", "until", "publisher", "topic", "path")
QUERY_FIELDS = frozenset({"q", "k", "mode", *FILTERS})
ASK_FIELDS = QUERY_FIELDS | {"reader"}
Filter = Annotated[str | None, Field(max_length=MAX_QUESTION_CHARS)]


class SearchRequest(BaseModel):
    """A search as a JSON body (the same fields as the query string)."""

    model_config = ConfigDict(extra="forbid")
    q: Question
    k: K = 5
    mode: Mode = "hybrid"
    since: Filter = Field(None, description="Only articles published on or after this date (YYYY-MM-DD).")
    until: Filter = Field(None, description="Only articles published on or before this date (YYYY-MM-DD).")
    publisher: Filter = Field(None, description="Only articles of this publisher (any case).")
    topic: Filter = Field(None, description="Only articles with this topic (any case).")
    path: Filter = Field(None, description="Only passages of corpus files matching this glob.")

    def filters(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FILTERS}


class AskRequest(SearchRequest):
    """An ask as a JSON body: a search's fields and the reader."""

    reader: ReaderName | None = Field(None, description="llm (a local model reads the top passages; the default where "
                                                        "it is installed) or sentence (the sentence picker).")


def query_fields(
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUESTION_CHARS, description="What to look for.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many passages.")] = 5,
    mode: Annotated[Mode, Query(description="hybrid, dense or keyword.")] = "hybrid",
    since: Annotated[str | None, Query(max_length=MAX_QUESTION_CHARS, description="YYYY-MM-DD, inclusive.")] = None,
    until: Annotated[str | None, Query(max_length=MAX_QUESTION_CHARS, description="YYYY-MM-DD, inclusive.")] = None,
    publisher: Annotated[str | None, Query(max_length=MAX_QUESTION_CHARS, description="Publisher, any case.")] = None,
    topic: Annotated[str | None, Query(max_length=MAX_QUESTION_CHARS, description="Topic, any case.")] = None,
    path: Annotated[str | None, Query(max_length=MAX_QUESTION_CHARS, description="Glob over corpus files.")] = None,
) -> SearchRequest:
    """The query string's search fields as a :class:`SearchRequest`."""
    return SearchRequest.model_construct(q=q, k=k, mode=mode, since=since, until=until, publisher=publisher,
                                         topic=topic, path=path)


def refuse_unknown(request: Request, known: frozenset[str]) -> None:
    """A 422 naming each query parameter that is not one of ``known``."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError([{"loc": ("query", name), "msg": "unknown field", "type": "extra_forbidden"}
                                      for name in unknown])


def query_request(request: Request, fields: Annotated[SearchRequest, Depends(query_fields)]) -> SearchRequest:
    """The query string of a search, refusing parameters it does not know."""
    refuse_unknown(request, QUERY_FIELDS)
    return fields


def ask_query_request(
    request: Request, fields: Annotated[SearchRequest, Depends(query_fields)],
    reader: Annotated[ReaderName | None, Query(description="llm or sentence (default: llm where it is installed).")] = None,
) -> AskRequest:
    """The query string of an ask, refusing parameters it does not know."""
    refuse_unknown(request, ASK_FIELDS)
    return AskRequest.model_construct(**dict(fields), reader=reader)


def add_routes(app: FastAPI, live: LiveIndex) -> None:
    """Register the routes of ``app`` over ``live``.

    The JSON routes return their response ready made: the objects are already plain JSON
    (the CLI prints them), so FastAPI's validation and re-encoding of a returned dict, a
    walk over every field of every hit, would only cost time. ``response_model`` still
    describes them in the schema."""

    def answer(run) -> JSONResponse:
        generation: Generation = live.generation()
        return JSONResponse(run(generation), headers={GENERATION_HEADER: generation.name})

    def search(ask: SearchRequest) -> JSONResponse:
        return answer(lambda g: g.search(ask.q, k=ask.k, mode=ask.mode, **ask.filters()))

    def ask(ask: AskRequest) -> JSONResponse:
        return answer(lambda g: g.ask(ask.q, k=ask.k, mode=ask.mode, reader=ask.reader, **ask.filters()))

    json_object = {"response_model": dict[str, Any]}

    @app.get("/search", summary="Ranked passages with citations (semindex search --json)", **json_object)
    def search_get(request: Annotated[SearchRequest, Depends(query_request)]) -> JSONResponse:
        return search(request)

    @app.post("/search", summary="Ranked passages with citations (semindex search --json)", **json_object)
    def search_post(request: SearchRequest) -> JSONResponse:
        return search(request)

    @app.get("/ask", summary="A short answer with its citation, or none (semindex ask --json)", **json_object)
    def ask_get(request: Annotated[AskRequest, Depends(ask_query_request)]) -> JSONResponse:
        return ask(request)

    @app.post("/ask", summary="A short answer with its citation, or none (semindex ask --json)", **json_object)
    def ask_post(request: AskRequest) -> JSONResponse:
        return ask(request)

    @app.get("/info", summary="The served generation's manifest (semindex info --json)", **json_object)
    def info() -> JSONResponse:
        return answer(lambda g: g.info())

    @app.get("/healthz", summary="The server is up; which generation it serves")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "generation": live.generation().name}

    page = files("query").joinpath("static/index.html").read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": content_policy(page), "X-Content-Type-Options": "nosniff"}

    @app.get("/", include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)


def content_policy(page: str) -> str:
    """The page's Content-Security-Policy: only its own inline script runs (by hash, so an
    injected handler would not), and it may fetch only from this server."""
    import base64
    import hashlib
    import re

    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'none'; base-uri 'none'; form-action 'self'")

"""The MCP tools ``search``, ``ask`` and ``info`` (official ``mcp`` SDK, ``MCPServer``).

``semindex mcp`` serves them over stdio; ``semindex serve`` mounts the same server at
``/mcp`` (streamable HTTP). Each result carries the CLI's ``--json`` object as structured
content and the passages with their citations as readable text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp_types import CallToolResult, TextContent
from pydantic import Field

from query.display import for_people, one_line
from query.serve import MAX_K, MAX_QUESTION_CHARS

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from query.serve import Generation

READERS = ("llm", "sentence")
"""Readers ``ask`` can answer with: ``llm``, a local model whose short answer is a verified
span of a passage (needs ``semindex[reader]``), and ``sentence``, the built-in picker of the
best passage's answering sentence or span. Without one, ``ask`` takes llm where it is
installed, else sentence (as the CLI does)."""

Text = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many passages (1-100).")]
Mode = Annotated[Literal["hybrid", "dense", "keyword"], Field(description="hybrid (default), dense or keyword.")]
Since = Annotated[str | None, Field(max_length=32, description="Only articles published on or after YYYY-MM-DD.")]
Until = Annotated[str | None, Field(max_length=32, description="Only articles published on or before YYYY-MM-DD.")]
Publisher = Annotated[str | None, Field(max_length=MAX_QUESTION_CHARS, description="Only this publisher (any case).")]
Topic = Annotated[str | None, Field(max_length=MAX_QUESTION_CHARS, description="Only this topic (any case).")]
ReaderName = Annotated[Literal[READERS] | None, Field(  # type: ignore[valid-type]
    description="llm (a local model's short answer, verified in a passage) or sentence (the answering sentence); "
                "default: llm where it is installed, else sentence.")]
PathGlob = Annotated[str | None, Field(max_length=MAX_QUESTION_CHARS, description="Only corpus files matching this glob.")]


def cite(citation: dict[str, Any]) -> str:
    """A citation as one line: title, publisher, date, link and file:lines."""
    parts = [citation["title"] or citation["file"], citation["publisher"], citation["published"], citation["url"]]
    where = f"{citation['file']}:{citation['lines'][0]}-{citation['lines'][1]}"
    return ", ".join(p for p in parts if p) + f" [{where}]"


def hits_text(hits: list[dict[str, Any]]) -> str:
    """Ranked passages as numbered, readable text with their citations."""
    return "\n\n".join(f"{hit['rank']}. {hit['text']}\n   — {cite(hit['citation'])}" for hit in hits) or "No passages."


def answer_text(data: dict[str, Any]) -> str:
    """An ``ask`` object as text: the answer and its citation (or that there is none), then the passages."""
    if data["answer"] is None:
        head = f"No confident answer in the corpus (confidence {data['confidence']:.2f}); nearest passages:"
    else:
        hit = data["hits"][data["answer_hit"] - 1]
        head = f"Answer: {data['answer']}\n— {cite(hit['citation'])} (confidence {data['confidence']:.2f})\n\nPassages:"
    return "\n\n".join([head, hits_text(data["hits"]), *(f"warning: {w}" for w in data["warnings"])])


def tool_result(data: dict[str, Any], text: str) -> CallToolResult:
    """A tool result with ``data`` as structured content (exact) and ``text`` for people
    (control characters escaped, as everything semindex prints for people)."""
    return CallToolResult(content=[TextContent(type="text", text=for_people(text))], structured_content=data)


def build_mcp(generation: Callable[[], Generation]) -> MCPServer:
    """The MCP server over ``generation()`` (called once per tool call, so a rebuild is
    picked up and one call never mixes generations)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from indexer.errors import SemindexError
    from query.serve import package_version

    server = MCPServer("semindex", version=package_version(), log_level="WARNING",
                       instructions="Search and ask a local index of articles; every passage comes with its citation.")

    def guarded(run: Callable[[Generation], tuple[dict[str, Any], str]]) -> CallToolResult:
        try:
            return tool_result(*run(generation()))
        except SemindexError as error:  # a bad question or an unusable index: one line, not a traceback
            raise ToolError(one_line(str(error))) from None

    @server.tool()
    def search(query: Text, k: K = 5, mode: Mode = "hybrid", since: Since = None, until: Until = None,
               publisher: Publisher = None, topic: Topic = None, path: PathGlob = None) -> CallToolResult:
        """Ranked passages for a query, best first, each with its citation (title, publisher,
        date, URL, file and line span). Structured content is `semindex search --json`."""

        def run(g: Generation) -> tuple[dict[str, Any], str]:
            data = g.search(query, k=k, mode=mode, since=since, until=until, publisher=publisher, topic=topic, path=path)
            return data, "\n\n".join([hits_text(data["hits"]), *(f"warning: {w}" for w in data["warnings"])])

        return guarded(run)

    @server.tool()
    def ask(question: Text, reader: ReaderName = None, k: K = 5, mode: Mode = "hybrid",
            since: Since = None, until: Until = None, publisher: Publisher = None, topic: Topic = None,
            path: PathGlob = None) -> CallToolResult:
        """A short answer quoted from the corpus with its citation, or none when the corpus
        holds no confident answer; the passages behind it follow. Structured content is
        `semindex ask --json`."""

        def run(g: Generation) -> tuple[dict[str, Any], str]:
            data = g.ask(question, k=k, mode=mode, reader=reader, since=since, until=until, publisher=publisher,
                         topic=topic, path=path)
            return data, answer_text(data)

        return guarded(run)

    @server.tool()
    def info() -> CallToolResult:
        """The served index: its generation, model, counts and files (`semindex info --json`)."""

        def run(g: Generation) -> tuple[dict[str, Any], str]:
            data = g.info()
            counts = ", ".join(f"{name} {value}" for name, value in data["counts"].items())
            return data, f"{g.name}: model {data['model']['id']}, {counts}, built {data['built_at']}"

        return guarded(run)

    return server

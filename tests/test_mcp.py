"""``semindex mcp`` through the MCP SDK's own client over stdio."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from serving import ROOT, semindex

QUESTION = "Who is the executive director of EleutherAI?"


@pytest.fixture(scope="module")
def session_results(bundled_index: Path) -> dict:
    """One stdio session: the tool list and a call of each tool (and two bad calls)."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    server = StdioServerParameters(command=sys.executable, args=["-m", "query.cli", "mcp", "--index", str(bundled_index)],
                                   cwd=str(ROOT))

    async def run() -> dict:
        async with Client(server) as client:
            return {
                "tools": {tool.name: tool for tool in (await client.list_tools()).tools},
                "search": await client.call_tool("search", {"query": QUESTION, "k": 3, "mode": "hybrid"}),
                "ask": await client.call_tool("ask", {"question": QUESTION, "k": 3}),
                "ask_sentence": await client.call_tool("ask", {"question": QUESTION, "reader": "sentence", "k": 3}),
                "bad_reader": await client.call_tool("ask", {"question": QUESTION, "reader": "magic"}),
                "info": await client.call_tool("info", {}),
                "empty": await client.call_tool("ask", {"question": "  "}),
                "bad_k": await client.call_tool("search", {"query": QUESTION, "k": 500}),
            }

    return anyio.run(run)


def test_the_tools_and_their_arguments(session_results: dict) -> None:
    tools = session_results["tools"]
    assert set(tools) == {"search", "ask", "info"}
    assert set(tools["search"].input_schema["properties"]) >= {"query", "k", "mode"}
    assert set(tools["ask"].input_schema["properties"]) >= {"question", "reader"}


@pytest.mark.parametrize(("call", "command"), [("search", ["search"]), ("ask", ["ask"]),
                                             ("ask_sentence", ["ask", "--reader", "sentence"])])
def test_structured_content_is_the_cli_json_and_the_text_cites(session_results: dict, bundled_index: Path,
                                                              call: str, command: list[str]) -> None:
    """``ask`` without a reader takes the CLI's default (llm where it is installed)."""
    cli = semindex(command[0], QUESTION, *command[1:], "-k", "3", "--index", str(bundled_index), "--json")
    result = session_results[call]
    assert not result.is_error
    assert result.structured_content == json.loads(cli.stdout)
    text = result.content[0].text
    first = result.structured_content["hits"][0]["citation"]
    assert f"{first['file']}:{first['lines'][0]}-{first['lines'][1]}" in text and first["title"] in text
    if call != "search":
        assert text.startswith("Answer: ") and "Stella Biderman" in text.splitlines()[0]


def test_info_names_the_generation(session_results: dict, bundled_index: Path) -> None:
    result = session_results["info"]
    assert result.structured_content["format"] == "semindex-index"
    assert result.content[0].text.startswith((bundled_index / "CURRENT").read_text().strip() + ":")


def test_bad_calls_are_tool_errors_in_one_line(session_results: dict) -> None:
    empty, bad_k, bad_reader = session_results["empty"], session_results["bad_k"], session_results["bad_reader"]
    assert empty.is_error and "the question is empty" in empty.content[0].text
    assert bad_reader.is_error and "reader" in bad_reader.content[0].text and "Traceback" not in bad_reader.content[0].text
    assert bad_k.is_error and "k" in bad_k.content[0].text and "Traceback" not in bad_k.content[0].text

"""``semindex serve`` through a real uvicorn server on a loopback port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serving import Server, semindex

from query.llm_reader import reader_available

QUESTION = "Who is the executive director of EleutherAI?"


@pytest.fixture(scope="module")
def server(bundled_index: Path):
    with Server(bundled_index) as running:
        yield running


@pytest.mark.parametrize("command", ["search", "ask"])
def test_get_and_post_answer_exactly_the_cli_json(server: Server, bundled_index: Path, command: str) -> None:
    cli = semindex(command, QUESTION, "-k", "3", "--mode", "hybrid", "--index", str(bundled_index), "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    got = server.request("GET", f"/{command}", params={"q": QUESTION, "k": 3})
    posted = server.request("POST", f"/{command}", body={"q": QUESTION, "k": 3, "mode": "hybrid"})
    assert got.status == posted.status == 200
    assert got.json() == posted.json() == expected
    assert got.headers["x-semindex-generation"].startswith("gen-")
    if command == "ask":
        assert expected["answer"] and "Stella Biderman" in expected["answer"]



@pytest.mark.parametrize("command", ["search", "ask"])
def test_filters_give_the_cli_hits(server: Server, bundled_index: Path, command: str) -> None:
    filters = {"publisher": "venturebeat", "since": "2023-05-01", "until": "2023-12-31"}
    flags = [part for name, value in filters.items() for part in (f"--{name}", value)]
    cli = semindex(command, QUESTION, "-k", "3", *flags, "--index", str(bundled_index), "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    got = server.request("GET", f"/{command}", params={"q": QUESTION, "k": 3, **filters})
    posted = server.request("POST", f"/{command}", body={"q": QUESTION, "k": 3, **filters})
    assert got.json() == posted.json() == expected
    assert expected["hits"] and all(hit["citation"]["publisher"] == "VentureBeat" for hit in expected["hits"])
    bad = server.request("GET", f"/{command}", params={"q": QUESTION, "since": "2023-13-45"})
    assert bad.status == 422 and "2023-13-45" in bad.json()["error"]

@pytest.mark.parametrize("reader", ["sentence", "llm"])
def test_ask_with_a_reader_answers_exactly_the_cli_json(server: Server, bundled_index: Path, reader: str) -> None:
    if reader == "llm" and (why := reader_available()):
        pytest.skip(f"reader not installed: {why}")
    cli = semindex("ask", QUESTION, "-k", "3", "--reader", reader, "--index", str(bundled_index), "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    got = server.request("GET", "/ask", params={"q": QUESTION, "k": 3, "reader": reader})
    posted = server.request("POST", "/ask", body={"q": QUESTION, "k": 3, "reader": reader})
    assert got.json() == posted.json() == expected
    assert expected["reader"] == reader and "Stella Biderman" in expected["answer"] and expected["evidence"]


def test_info_is_the_manifest_and_healthz_names_the_generation(server: Server, bundled_index: Path) -> None:
    cli = semindex("info", "--index", str(bundled_index), "--json")
    info = server.request("GET", "/info")
    health = server.request("GET", "/healthz").json()
    assert info.json() == json.loads(cli.stdout)
    assert health == {"status": "ok", "generation": info.headers["x-semindex-generation"]}
    assert (bundled_index / "CURRENT").read_text().strip() == health["generation"]


BAD_REQUESTS = [
    ("GET", "/search", {}, None, 422, "q:"),
    ("GET", "/search", {"q": ""}, None, 422, "q:"),
    ("GET", "/ask", {"q": "   "}, None, 422, "empty"),
    ("GET", "/search", {"q": "x", "k": 0}, None, 422, "k:"),
    ("GET", "/search", {"q": "x", "k": 101}, None, 422, "k:"),
    ("GET", "/search", {"q": "x", "k": "two"}, None, 422, "k:"),
    ("GET", "/ask", {"q": "x", "mode": "fuzzy"}, None, 422, "mode:"),
    ("GET", "/search", {"q": "x", "limit": 3}, None, 422, "limit: unknown field"),
    ("GET", "/search", {"q": "x" * 2001}, None, 422, "q:"),
    ("POST", "/search", None, {"q": "x", "filter": "y"}, 422, "filter: unknown field"),
    ("POST", "/ask", None, {"k": 3}, 422, "q:"),
    ("POST", "/ask", None, {"q": "x", "k": 1.5}, 422, "k:"),
    ("GET", "/ask", {"q": "x", "reader": "magic"}, None, 422, "reader:"),
    ("POST", "/ask", None, {"q": "x", "reader": "magic"}, 422, "reader:"),
    ("GET", "/search", {"q": "x", "reader": "sentence"}, None, 422, "reader: unknown field"),
    ("POST", "/search", None, {"q": "x", "reader": "sentence"}, 422, "reader: unknown field"),
    ("POST", "/search", None, {"q": "\ud800"}, 422, "q:"),
    ("POST", "/search", None, ["x"], 422, "body:"),
    ("POST", "/search", None, b"{not json", 422, "not valid JSON"),
    ("POST", "/search", None, b'{"q": "' + b"x" * 20000 + b'"}', 413, "over 16384 bytes"),
    ("PUT", "/search", None, None, 405, ""),
    ("GET", "/nowhere", None, None, 404, ""),
]


@pytest.mark.parametrize(("method", "path", "params", "body", "status", "says"), BAD_REQUESTS)
def test_bad_requests_get_one_line_json_errors(server: Server, method, path, params, body, status, says) -> None:
    raw = body if isinstance(body, bytes) else None
    response = server.request(method, path, params=params, body=None if raw else body, raw=raw)
    assert response.status == status, response.body
    error = response.json()["error"]
    assert says in error and "\n" not in error and "Traceback" not in error


def test_a_chunked_body_over_the_limit_is_refused_before_parsing(server: Server) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    chunks = (b'{"q": "' + b"x" * 4096 for _ in range(8))
    conn.request("POST", "/search", body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
    reply = conn.getresponse()
    assert reply.status == 413 and "over" in json.loads(reply.read())["error"]


def test_the_page_runs_only_its_own_script(server: Server) -> None:
    page = server.request("GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert b"innerHTML" not in page.body.replace(b"never innerHTML", b"")


def test_no_cors_unless_asked(server: Server) -> None:
    response = server.request("GET", "/healthz", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers


def test_a_token_guards_the_api_but_not_the_page(bundled_index: Path) -> None:
    with Server(bundled_index, extra=("--token", "s3cret", "--cors", "http://app.example")) as guarded:
        assert guarded.request("GET", "/search", params={"q": QUESTION}).status == 401
        wrong = guarded.request("GET", "/info", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401 and wrong.json() == {"error": "missing or wrong bearer token"}
        right = guarded.request("GET", "/search", params={"q": QUESTION, "k": 1},
                                headers={"Authorization": "Bearer s3cret", "Origin": "http://app.example"})
        assert right.status == 200 and right.json()["hits"]
        assert right.headers["access-control-allow-origin"] == "http://app.example"
        assert guarded.request("GET", "/").status == 200
        assert guarded.request("GET", "/healthz").status == 200


@pytest.mark.parametrize(("args", "says"), [
    (("--host", "0.0.0.0"), "--token"),
    (("--host", "0.0.0.0", "--token", "t", "--no-auth"), "exclude"),
    (("--token", " "), "empty"),
])
def test_unsafe_options_are_refused_in_one_line(bundled_index: Path, args, says) -> None:
    result = semindex("serve", "--index", str(bundled_index), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and says in result.stderr and result.stderr.count("\n") == 1


def test_mcp_tools_over_streamable_http(server: Server) -> None:
    import anyio
    from mcp import Client

    async def call():
        async with Client(f"{server.url}/mcp") as client:
            return await client.call_tool("search", {"query": QUESTION, "k": 2})

    result = anyio.run(call)
    assert not result.is_error
    assert result.structured_content == server.request("GET", "/search", params={"q": QUESTION, "k": 2}).json()
    assert "Stella Biderman" in result.content[0].text and "002_d47237756c0cdcf3.txt:9-9" in result.content[0].text


def test_a_port_in_use_is_refused_in_one_line(bundled_index: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = semindex("serve", "--index", str(bundled_index), "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot listen on 127.0.0.1:") and result.stderr.count("\n") == 1


def test_served_connections_send_without_waiting_for_acks() -> None:
    """Accepted connections have Nagle's algorithm off, as asyncio (so uvicorn) leaves them."""
    import asyncio
    import socket

    from query.serve import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    seen: list[int] = []

    async def handle(_reader, writer) -> None:
        seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    async def connect() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            await reader.read()
            writer.close()

    asyncio.run(connect())
    assert seen and seen[0] != 0


def test_kept_alive_requests_are_not_held_by_delayed_acks(server: Server) -> None:
    """With Nagle's algorithm on, each response's body waited for the client's delayed ACK
    (40 ms on Linux) on a kept-alive connection; /healthz itself takes a few ms."""
    import http.client
    import statistics
    import time

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    took = []
    for _ in range(21):
        start = time.perf_counter()
        assert server.request("GET", "/healthz", connection=conn).status == 200
        took.append(time.perf_counter() - start)
    conn.close()
    assert statistics.median(took[1:]) < 0.035

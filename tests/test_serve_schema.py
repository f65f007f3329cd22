"""schemathesis against the running server's own ``/openapi.json``: whatever a client sends
that the schema describes, and much that it forbids (negative cases), the answer is never a
5xx, and every error is one JSON line.

The operations are driven through schemathesis' Hypothesis strategies: its pytest plugin does
not load under pytest 9.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from serving import Server

OPERATIONS = [("/search", "GET"), ("/search", "POST"), ("/ask", "GET"), ("/ask", "POST"), ("/info", "GET"),
              ("/healthz", "GET")]
EXAMPLES = 25


@pytest.fixture(scope="module")
def server(bundled_index: Path):
    with Server(bundled_index) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(server: Server):
    import schemathesis

    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_the_schema_lists_exactly_the_api(api_schema) -> None:
    listed = {(result.ok().path, result.ok().method.upper()) for result in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(("path", "method", "mode"), [
    *((path, method, "positive") for path, method in OPERATIONS),
    *((path, method, "negative") for path, method in OPERATIONS if path in ("/search", "/ask")),  # the rest take no input
])
def test_no_request_gets_a_server_error(api_schema, server: Server, path: str, method: str, mode: str) -> None:
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode))

    @settings(max_examples=EXAMPLES)
    @given(case=strategy)
    def check(case) -> None:
        response = case.call(base_url=server.url, timeout=120)
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            error = response.json()["error"]
            assert isinstance(error, str) and "\n" not in error

    check()

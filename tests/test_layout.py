"""The house rules of the code base: small modules, and the indexer never depends on the query side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450


@pytest.mark.parametrize("package", ["indexer", "query"])
def test_no_module_is_over_the_line_limit(package):
    long = {path.name: n for path in sorted((ROOT / package).glob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_indexer_imports_nothing_from_the_query_side():
    for path in sorted((ROOT / "indexer").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name == "query" or name.startswith("query.") for name in names), f"{path.name} imports {names}"

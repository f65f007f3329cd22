"""The README's examples, run against the committed index (what `make ask` uses), so the
manual cannot drift from what semindex prints; CI's `make check-index` keeps that index equal
to what the code builds.

Every ``$ semindex …`` line of a ```console block is run as a real process and its output
compared with the lines shown under it (JSON as data); every ```python block is run as a
doctest. Printed decimals may differ by one unit in their last place (at least 0.001), as scores
may between machines."""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
INDEX = ROOT / "index"
SEMINDEX = Path(sys.executable).with_name("semindex")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DECIMAL = re.compile(r"-?\d+\.\d+")
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


def blocks(language: str) -> list[str]:
    """The text of every fenced block of ``language`` in the README, in order."""
    text = README.read_text(encoding="utf-8")
    return [match.group(2) for match in FENCE.finditer(text) if match.group(1) == language]


def console_examples() -> list[tuple[str, str]]:
    """(command line after ``$ ``, the output shown under it) for each console command."""
    examples = []
    for block in blocks("console"):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, shown = chunk.partition("\n")
            examples.append((command, shown))
    return examples


def close(shown: float, actual: float, *, decimals: int) -> bool:
    """Within one unit in the last decimal shown, and never closer than 0.001 is asked."""
    return abs(shown - actual) <= max(10**-decimals, 1e-3) + 1e-9


def same_data(shown: Any, actual: Any) -> bool:
    """JSON values equal, numbers to one unit in the last decimal the README shows."""
    if isinstance(shown, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        decimals = len(repr(shown).partition(".")[2])
        return close(shown, float(actual), decimals=decimals)
    if isinstance(shown, dict) and isinstance(actual, dict):
        return shown.keys() == actual.keys() and all(same_data(shown[key], actual[key]) for key in shown)
    if isinstance(shown, list) and isinstance(actual, list):
        return len(shown) == len(actual) and all(map(same_data, shown, actual))
    return type(shown) is type(actual) and shown == actual


def same_line(shown: str, actual: str) -> bool:
    """Lines equal but for trailing blanks and decimals within one unit in the last place."""
    shown, actual = shown.rstrip(), actual.rstrip()
    if DECIMAL.split(shown) != DECIMAL.split(actual):
        return False
    pairs = zip(DECIMAL.findall(shown), DECIMAL.findall(actual))
    return all(close(float(a), float(b), decimals=len(a.partition(".")[2])) for a, b in pairs)


def test_the_readme_has_examples_of_both_kinds():
    commands = [command for command, _ in console_examples()]
    assert any(command.startswith("semindex ask") for command in commands)
    assert any("--json" in command for command in commands)
    assert any(">>> " in block for block in blocks("python"))


def test_the_readme_is_a_short_manual_without_commit_hashes():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 350
    assert not [line for line in lines if COMMIT_HASH.search(line)]


@pytest.mark.parametrize("command, shown", console_examples(), ids=[c for c, _ in console_examples()])
def test_a_console_example_prints_what_the_readme_shows(command: str, shown: str):
    program, *args = shlex.split(command)
    assert program == "semindex"
    result = subprocess.run(
        [str(SEMINDEX), *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "SEMINDEX_INDEX": str(INDEX)},
    )
    assert result.returncode == 0, result.stderr
    if "--json" in args:
        assert same_data(json.loads(shown), json.loads(result.stdout)), result.stdout
        return
    expected, printed = shown.rstrip("\n").splitlines(), result.stdout.rstrip("\n").splitlines()
    assert len(expected) == len(printed), result.stdout
    for number, (want, got) in enumerate(zip(expected, printed), start=1):
        assert same_line(want, got), f"line {number}:\nREADME:  {want}\nprinted: {got}"


@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_a_python_example_returns_what_the_readme_shows(number: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEMINDEX_INDEX", str(INDEX))
    test = doctest.DocTestParser().get_doctest(blocks("python")[number], {}, f"README python block {number + 1}", str(README), 0)
    assert test.examples
    report: list[str] = []
    runner = doctest.DocTestRunner()
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)

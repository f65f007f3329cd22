"""Usage errors of the semindex command line are one line on stderr, run as a real subprocess."""

from __future__ import annotations

import pytest
from test_cli import semindex


@pytest.mark.parametrize("args, line", [
    (("search",), "error: search: Missing argument 'question'."),
    (("eval",), "error: eval: Missing argument 'target'."),
    (("search", "q", "-k", "abc"), "error: search: Invalid value for '-k' / '--k': "),
    (("search", "q", "--json", "extra"), "error: search: Got unexpected extra argument(s) (extra)"),
    (("build", "--precision", "fp16"), "error: build: Invalid value for '--precision': "),
    (("--nope",), "error: semindex: No such option: --nope"),
    (("--nope", "search", "q"), "error: semindex: No such option: --nope"),
    (("nosuch",), "error: semindex: No such command 'nosuch'."),
    (("search", "q", "--mode"), "error: search: Option '--mode' requires an argument."),
])
def test_usage_errors_are_one_line_with_exit_code_2(args: tuple[str, ...], line: str) -> None:
    result = semindex(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("args, line", [
    (("build", "--model"), "error: build: Option '--model' requires an argument."),
    (("eval", "beir/scifact", "--limit"), "error: eval: Option '--limit' requires an argument."),
])
def test_an_option_missing_its_value_names_the_command(args: tuple[str, ...], line: str) -> None:
    result = semindex(*args)
    assert result.returncode == 2
    assert result.stderr == line + "\n"


@pytest.mark.parametrize("args", [("--help",), ("search", "--help"), ("build", "--help")])
def test_help_is_still_printed_with_exit_code_0(args: tuple[str, ...]) -> None:
    result = semindex(*args)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: ") and "--help" in result.stdout


def test_no_arguments_still_print_the_help() -> None:
    result = semindex()
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("Usage: ") and "Commands" in result.stderr and "error:" not in result.stderr

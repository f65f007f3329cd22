"""Text for people's terminals: control characters shown, never obeyed.

A corpus file (its name, its text, its front matter) and a tampered index can hold escape
sequences that would retitle, clear or recolour a terminal, or BEL and backspace that hide
what is printed. Everything printed for people passes through :func:`for_people`; JSON
output stays exact (``json.dumps`` escapes control characters itself).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePath
from typing import Any, TypeVar

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), the Unicode
line and paragraph separators, and the bidirectional embeddings, overrides and isolates
that reorder what follows them on screen."""
_LINE_BREAKS = re.compile(r"[\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_people(text: str, *, keep_lines: bool = True) -> str:
    """``text`` with every control character written as ``\\xNN`` (or ``\\uNNNN``); tab and
    newline kept when ``keep_lines`` (passage text in a table), escaped otherwise (a
    one-line message)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (bytes of a name that are not UTF-8) cannot be printed
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")  # the bytes, as \xff
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub(_escape, text)
    return text if keep_lines else _LINE_BREAKS.sub(_escape, text)


def one_line(text: str) -> str:
    """A message on one line: whitespace runs (newlines too) as one space, controls escaped."""
    return for_people(" ".join(text.split()))


def sanitized(value: T) -> T:
    """A copy of ``value`` (text, paths, lists, tuples, dicts, dataclasses such as hits and
    reports, nested) with :func:`for_people` applied to every string in it, for printing."""
    if isinstance(value, str):
        return for_people(value)  # type: ignore[return-value]
    if isinstance(value, PurePath):
        return type(value)(for_people(str(value)))  # type: ignore[return-value]
    if isinstance(value, (list, tuple)):
        return type(value)(sanitized(item) for item in value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {sanitized(key): sanitized(item) for key, item in value.items()}  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes: dict[str, Any] = {f.name: sanitized(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value


def visible(text: str) -> bool:
    """Whether ``text`` has a character that shows: not only spaces, controls, format
    characters (zero-width space and joiners, bidi marks) or unassigned code points."""
    import unicodedata

    return any(not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf", "Cn", "Zs", "Zl", "Zp")
               for char in text)

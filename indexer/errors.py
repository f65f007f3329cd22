"""Errors that reach the user as one line: what file, what is wrong, what to do."""

from __future__ import annotations


class SemindexError(Exception):
    """Base class: the CLI prints ``str(error)`` and exits with code 2."""


class InputError(SemindexError):
    """A corpus file cannot be indexed; the build skips it with a warning."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


class CorpusError(SemindexError):
    """The corpus as a whole cannot be indexed (missing folder, nothing to index)."""


class IndexFormatError(SemindexError):
    """An index on disk is missing, corrupt, or was built differently from what is asked."""


class QueryError(SemindexError, ValueError):
    """A question cannot be searched as asked (empty, no results asked for, unknown mode)."""


def unencodable(text: str) -> str | None:
    """Why ``text`` cannot be encoded as UTF-8 (an unpaired surrogate, as Python makes of
    invalid bytes in a command line), or None when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"unpaired surrogate {text[error.start]!r} at character {error.start}"
    return None

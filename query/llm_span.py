"""Find a reader model's answer verbatim in a passage, so the quote is the file's own text.

A model copies text imperfectly: it straightens curly quotes, joins lines, drops a final
full stop. The answer and the passage are compared after the same normalisation (white
space runs as one space, curly quotes and apostrophes as straight ones, dashes as ``-``),
and the match is mapped back to the passage's own characters, so the span shown and cited
is what the file holds at those offsets, never the model's spelling of it.
"""

from __future__ import annotations

import re

FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
                      "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                      "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
                      "\u00a0": " "})
TRIM = " \t\n\"'.,;:!?()[]"
"""Stripped from both ends of an answer: a model wraps quotes around a copy, ends it with a
full stop, or puts it in brackets; none of that is the answer."""


def normalized(text: str) -> tuple[str, list[int]]:
    """``text`` with quotes and dashes folded and each white space run as one space, and for
    each of its characters the offset in ``text`` it came from."""
    out, where = [], []
    for match in re.finditer(r"\s+|\S", text.translate(FOLD)):
        out.append(" " if match.group(0).isspace() else match.group(0))
        where.append(match.start())
    return "".join(out), where


def clean_answer(answer: str) -> str:
    """The model's reply with a label ("Answer:"), wrapping quotes and a final stop removed."""
    answer = answer.strip().splitlines()[0] if answer.strip() else ""
    answer = re.sub(r"^(answer|short answer)\s*:\s*", "", answer, flags=re.IGNORECASE)
    return answer.strip(TRIM)


def find_span(answer: str, text: str) -> tuple[int, int] | None:
    """[start, end) of ``answer`` in ``text`` compared normalised, or None. Case must match
    when it can (the first case-sensitive match wins); otherwise the first case-blind one.
    A match must start and end on word boundaries ("art" is not found in "party")."""
    needle, _ = normalized(answer.strip(TRIM).translate(FOLD))
    needle = needle.strip()
    if not needle:
        return None
    haystack, where = normalized(text)
    for flags in (0, re.IGNORECASE):
        pattern = (r"(?<!\w)" if needle[0].isalnum() else "") + re.escape(needle) + (r"(?!\w)" if needle[-1].isalnum() else "")
        match = re.search(pattern, haystack, flags)
        if match:
            return where[match.start()], where[match.end() - 1] + 1
    return None


def evidence_span(text: str, span: tuple[int, int]) -> tuple[int, int]:
    """The sentence(s) of ``text`` that hold ``span``: the evidence shown with a short answer."""
    from indexer.chunking import sentence_spans

    sentences = sentence_spans(text) or [(0, len(text))]
    start = max((s for s, e in sentences if s <= span[0]), default=0)
    end = min((e for s, e in sentences if e >= span[1]), default=len(text))
    return start, max(end, span[1])

"""Sentence-aware passages sized with the embedding model's own tokenizer.

Passages are spans of the file text: sentences are found with their character spans,
packed greedily up to ``max_tokens`` (counted by the model's tokenizer, so nothing is
silently truncated when embedded), and consecutive passages of one segment share
``overlap`` sentences. A single sentence longer than the budget is cut at token
boundaries using the tokenizer's offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# A sentence ends at . ! ? or … (plus closing quotes/brackets) followed by white space,
# unless the word before the stop is a common abbreviation or a single initial.
_SENTENCE_END = re.compile(r"[.!?…]+[\"”’')\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc eg ie e.g i.e al fig no inc ltd co corp u.s u.k jan feb mar apr "
    "jun jul aug sep sept oct nov dec".split()
)


@dataclass(frozen=True)
class ChunkSettings:
    """How text is cut into passages; recorded in the manifest."""

    max_tokens: int = 64
    overlap: int = 1

    def to_dict(self) -> dict[str, int]:
        return {"max_tokens": self.max_tokens, "overlap": self.overlap}


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text[start:end]``, trimmed of white space.

    Line breaks always end a sentence, so headings and list items stand alone.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        line_start = start + line.start()
        cut = line_start
        for stop in _SENTENCE_END.finditer(line.group(0)):
            stop_end = line_start + stop.end()
            word = re.search(r"(\S+?)[.!?…]*[\"”’')\]]*$", text[cut:stop_end])
            token = word.group(1).lower().rstrip(".") if word else ""
            if stop.group(0).startswith(".") and (token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())):
                continue
            spans.append((cut, stop_end))
            cut = stop_end
        spans.append((cut, line_start + len(line.group(0))))
    trimmed = []
    for s, e in spans:
        piece = text[s:e]
        s += len(piece) - len(piece.lstrip())
        e -= len(piece) - len(piece.rstrip())
        if e > s:
            trimmed.append((s, e))
    return trimmed


TokenCounter = Callable[[str], int]
TokenOffsets = Callable[[str], list[tuple[int, int]]]


def pack_passages(
    text: str,
    spans: list[tuple[int, int]],
    *,
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets,
    settings: ChunkSettings,
) -> Iterator[tuple[int, int]]:
    """Greedily pack sentence ``spans`` into passage spans of at most ``max_tokens`` tokens.

    Larger ``max_tokens`` keeps more context per passage (better for long documents)
    but blurs which sentence matched; ``overlap`` repeats sentences across a cut so a
    fact split over two passages is still found, at the cost of more passages.
    """
    pieces: list[tuple[int, int, int]] = []
    for s, e in spans:
        size = count_tokens(text[s:e])
        if size <= settings.max_tokens:
            pieces.append((s, e, size))
        else:
            pieces.extend(_split_long(text, s, e, token_offsets, settings.max_tokens, count_tokens))
    first = 0
    while first < len(pieces):
        last, total = first, pieces[first][2]
        while last + 1 < len(pieces) and total + pieces[last + 1][2] <= settings.max_tokens:
            last += 1
            total += pieces[last][2]
        # Token counts of sentences add up to the passage's count for word-piece
        # tokenizers; check the joined text anyway and give back sentences if needed.
        while last > first and count_tokens(text[pieces[first][0] : pieces[last][1]]) > settings.max_tokens:
            last -= 1
        yield pieces[first][0], pieces[last][1]
        if last + 1 >= len(pieces):
            break
        first = max(last + 1 - settings.overlap, first + 1)


def _split_long(
    text: str, start: int, end: int, token_offsets: TokenOffsets, max_tokens: int, count_tokens: TokenCounter
) -> list[tuple[int, int, int]]:
    offsets = token_offsets(text[start:end])
    pieces = []
    first = 0
    while first < len(offsets):
        size = min(max_tokens, len(offsets) - first)
        s, e = start + offsets[first][0], start + offsets[first + size - 1][1]
        while size > 1 and count_tokens(text[s:e]) > max_tokens:
            size -= 1
            e = start + offsets[first + size - 1][1]
        pieces.append((s, e, count_tokens(text[s:e])))
        first += size
    return pieces

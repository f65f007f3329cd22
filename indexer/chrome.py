"""Tell site chrome from article text in scraped pages, block by block.

A scraped page is a sequence of blocks (runs of non-blank lines). The method is the
one boilerplate removers such as jusText use, adapted to text that has lost its HTML:
each block gets a class from its own shape (length, sentence punctuation, cue
phrases) and from its neighbours (what precedes a credit line is an image
description; what follows the page's navigation is the page's tail).

- ``nav``: navigation cues ("Explore more", "Discover more", "Read next", "Sign up").
- ``meta``: lines describing the article itself (byline, illustration credit, print
  headline and section, edition date, a "Section | rubric" kicker). They are kept as
  passages and parsed into the article's metadata.
- ``image``: an image's description (the block right before a credit line).
- ``tail``: anything after navigation once the article body has begun (teasers for
  other stories), unless it is ``meta``.
- ``text``: everything else; the only class, with ``meta``, that becomes passages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

NAV_CUE = re.compile(
    r"^(explore|discover|read (more|next)|see (more|also)|more (from|on|in|stories)|related"
    r"|recommended|trending|most (read|popular)|sign up|subscribe|newsletter|share (this|on)"
    r"|advertisement|skip to|back to top|follow us|you (may|might) also like|list of contents"
    r"|\d+ comments|leave a comment)\b",
    re.IGNORECASE,
)
CREDIT = re.compile(
    r"^(?P<kind>illustration|photograph|photo|image|picture|graphic|credit)s?\s*:\s*(?P<who>.+)$",
    re.IGNORECASE,
)
BYLINE = re.compile(r"^by\s+(?P<who>[A-Z][\w.'’-]+(?:\s+[A-Z][\w.'’-]+){0,3})$")
PRINT_EDITION = re.compile(
    r"appeared in the (?P<section>.+?) section of the print edition"
    r"(?: under the headline [\"“](?P<headline>.+?)[\"”])?",
    re.IGNORECASE,
)
EDITION_DATE = re.compile(r"^from the (?P<date>.+?) edition$", re.IGNORECASE)
KICKER = re.compile(r"^(?P<section>[A-Z][\w&’' ]{1,30}) \| (?P<rubric>.{1,80})$")

MAX_NAV_WORDS = 12
MIN_PROSE_WORDS = 40
"""A paragraph this long, ending like a sentence, is article prose: teasers never are, so
finding one after a navigation cue means the cue was a subheading, not navigation."""


@dataclass
class Block:
    """A run of non-blank lines: its span in the file and its class."""

    start: int
    end: int
    text: str
    kind: str = "text"
    facts: dict[str, str] = field(default_factory=dict)


def split_blocks(text: str, *, offset: int = 0) -> list[Block]:
    """Split ``text`` on blank lines, and a line that describes the article (a credit,
    a byline) off the lines around it; spans are absolute when ``offset`` is the
    text's start."""
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []

    def flush() -> None:
        if pending:
            start, end = pending[0][0], pending[-1][0] + len(pending[-1][1])
            blocks.append(Block(start=offset + start, end=offset + end, text=text[start:end]))
            pending.clear()

    position = 0
    for line in text.split("\n"):
        line_start, position = position, position + len(line) + 1
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        start = line_start + len(line) - len(line.lstrip())
        if _meta_facts(stripped) is not None:
            flush()
            pending.append((start, stripped))
            flush()
        else:
            pending.append((start, stripped))
    flush()
    return blocks


def _is_sentence_like(text: str) -> bool:
    return bool(re.search(r"[.!?…][\"”’)]*$", text))


def _meta_facts(text: str) -> dict[str, str] | None:
    if match := CREDIT.match(text):
        return {match["kind"].lower(): match["who"].strip()}
    if match := BYLINE.match(text):
        return {"byline": match["who"]}
    if match := PRINT_EDITION.search(text):
        facts = {"section": match["section"].strip()}
        if match["headline"]:
            facts["print_headline"] = match["headline"].strip()
        return facts
    if match := EDITION_DATE.match(text):
        facts = {"edition": match["date"]}
        if parsed := parse_loose_date(match["date"]):
            facts["edition_date"] = parsed
        return facts
    return None


def parse_loose_date(text: str) -> str | None:
    """'November 9th 2024' / '9 November 2024' / '2024-11-09' → ISO date, else None."""
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text.replace(",", "")).strip()
    for pattern in ("%B %d %Y", "%d %B %Y", "%b %d %Y", "%d %b %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(cleaned, pattern).date().isoformat()
        except ValueError:
            continue
    return None


def classify_blocks(blocks: list[Block]) -> list[Block]:
    """Label each block ``text``, ``meta``, ``nav``, ``image`` or ``tail`` (in place)."""
    not_nav: set[int] = set()
    while (false_cue := _classify(blocks, not_nav)) is not None:
        not_nav.add(false_cue)
    for before, after in zip(blocks, blocks[1:]):
        if before.kind == "text" and after.kind == "meta" and CREDIT.match(after.text):
            before.kind = "image"
    return blocks


def _is_prose(block: Block) -> bool:
    return len(block.text.split()) >= MIN_PROSE_WORDS and _is_sentence_like(block.text)


def _classify(blocks: list[Block], not_nav: set[int]) -> int | None:
    """One labelling pass; returns the index of a cue that opened a tail holding prose."""
    body_started = False
    tail_opened_by: int | None = None
    for index, block in enumerate(blocks):
        single_line = "\n" not in block.text
        words = len(block.text.split())
        facts = _meta_facts(block.text) if single_line else None
        if index == 0 and (kicker := KICKER.match(block.text)):
            block.kind, block.facts = "meta", {"section": kicker["section"], "rubric": kicker["rubric"]}
        elif facts is not None:
            block.kind, block.facts = "meta", facts
        elif (
            index not in not_nav and single_line and words <= MAX_NAV_WORDS
            and NAV_CUE.match(block.text) and not _is_sentence_like(block.text)
        ):
            block.kind = "nav"
            if body_started and tail_opened_by is None:
                tail_opened_by = index
        elif tail_opened_by is not None:
            if _is_prose(block):
                return tail_opened_by
            block.kind = "tail"
        else:
            block.kind = "text"
            body_started = body_started or (words >= 25 and _is_sentence_like(block.text))
    return None

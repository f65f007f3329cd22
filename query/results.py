"""What search and ask return: hits with citations built from stored fields only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexer.types import Article, Source


@dataclass(frozen=True)
class Citation:
    """Where a passage came from: the article it belongs to and its exact span in a file.

    ``lines`` is [first, last] (1-based, inclusive); ``chars`` is [start, end) into the
    file's text, so ``text[start:end]`` is the passage.
    """

    file: str
    title: str | None
    publisher: str | None
    url: str | None
    published: str | None
    lines: tuple[int, int]
    chars: tuple[int, int]
    kind: str = "body"
    listed_by: str | None = None

    @classmethod
    def from_stored(cls, source: Source, article: Article | None) -> Citation:
        """The citation of one stored source of a passage, with its article's fields."""
        return cls(
            file=source.file,
            title=article.title if article else None,
            publisher=article.publisher if article else None,
            url=article.url if article else None,
            published=article.published if article else None,
            lines=source.lines,
            chars=source.chars,
            kind=source.kind.value,
            listed_by=source.listed_by,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "title": self.title,
            "publisher": self.publisher,
            "url": self.url,
            "published": self.published,
            "lines": list(self.lines),
            "chars": list(self.chars),
            "kind": self.kind,
            "listed_by": self.listed_by,
        }


@dataclass(frozen=True)
class Hit:
    """One ranked paragraph: ``text`` is the paragraph, ``passage_id`` the passage in it that
    matched best. ``also_in`` lists other places the same text appears."""

    rank: int
    score: float
    text: str
    citation: Citation
    passage_id: int
    article: str
    also_in: tuple[Citation, ...] = ()
    embedded: str | None = None
    """What was embedded when it differs from ``text`` (a byline rendered as a sentence)."""
    paragraph_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "text": self.text,
            "citation": self.citation.to_dict(),
            "passage_id": self.passage_id,
            "paragraph_id": self.paragraph_id,
            "article": self.article,
            "also_in": [c.to_dict() for c in self.also_in],
        }


@dataclass(frozen=True)
class Answer:
    """A short answer or None, with where it came from.

    ``answer_chars`` is the answer's [start, end) in the file of ``hits[answer_hit - 1]``'s
    citation, so the quoted answer is always the file's own text; ``evidence`` is the
    sentence holding the answer (for the sentence reader, the answer itself); ``reader``
    names the :class:`~query.readers.Reader` that chose it.
    """

    question: str
    answer: str | None
    confident: bool
    confidence: float
    citations: list[Citation]
    hits: list[Hit]
    answer_chars: tuple[int, int] | None = None
    answer_hit: int | None = None
    warnings: list[str] = field(default_factory=list)
    evidence: str | None = None
    reader: str = "sentence"

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "confident": self.confident,
            "confidence": round(float(self.confidence), 4),
            "answer_chars": list(self.answer_chars) if self.answer_chars else None,
            "answer_hit": self.answer_hit,
            "citations": [c.to_dict() for c in self.citations],
            "hits": [h.to_dict() for h in self.hits],
            "warnings": self.warnings,
            "evidence": self.evidence,
            "reader": self.reader,
        }


def search_to_dict(query: str, *, mode: str, hits: list[Hit], warning: str | None, filters: Any = None) -> dict[str, Any]:
    """``semindex search --json``: the query, the mode, the hits, any warning, and the
    filters (``query.filters.Filters``) when some are set."""
    data = {"query": query, "mode": mode, "hits": [h.to_dict() for h in hits], "warnings": [warning] if warning else []}
    if filters is not None and filters.active:
        data["filters"] = filters.to_dict()
    return data

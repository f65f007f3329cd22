"""Readers: the last stage of ``ask``, which turns ranked hits into an answer (or abstains).

A :class:`Reader` is given the question, the ranked hits and the index's own tools
(:class:`ReaderTools`: its model and keyword side), and returns an :class:`Answer` whose
quoted answer is a span of one hit's text, cited by that hit. :class:`SentenceReader`
picks the sentence of the top passages that answers best (:mod:`query.answer`); a reader
built on a language model plugs in by the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from query.results import Answer, Hit

if TYPE_CHECKING:
    from indexer.keyword import KeywordIndex
    from indexer.types import Passage
    from query.searcher import Searcher


@dataclass(frozen=True)
class ReaderTools:
    """What an index lends a reader: ``embed`` maps passage-like texts and ``embed_question``
    a question to unit vectors with the index's model; ``keyword`` is its BM25 side (tokens
    and IDF); ``passage`` reads a stored passage by id (a hit's best, ``Hit.passage_id``)."""

    embed: Callable[[list[str]], Any]
    embed_question: Callable[[str], Any]
    keyword: KeywordIndex
    passage: Callable[[int], Passage]

    @classmethod
    def of(cls, searcher: Searcher) -> ReaderTools:
        """The tools of ``searcher``'s generation."""
        return cls(embed=searcher.embed, embed_question=searcher.embed_question, keyword=searcher.keyword,
                   passage=searcher.stored.passage)


@runtime_checkable
class Reader(Protocol):
    """Turns ranked hits into an :class:`Answer`.

    ``name`` is reported as ``Answer.reader``; ``passages`` is how many of the best hits it
    reads (``ask`` searches at least that many). ``read`` returns an Answer whose ``hits``
    are the ``hits`` given, whose ``answer_hit`` is the 1-based rank of the hit it quotes and
    ``answer_chars`` the answer's span in that hit's file; ``answer`` is None (and
    ``confident`` False) when it abstains.
    """

    name: str
    passages: int

    def read(self, question: str, hits: Sequence[Hit], *, tools: ReaderTools) -> Answer: ...


class SentenceReader:
    """The sentence of the top passages closest to the question in meaning and wording among
    those that can answer it, when the evidence clears the calibrated threshold."""

    name = "sentence"

    @property
    def passages(self) -> int:
        from query.answer import ANSWER_PASSAGES

        return ANSWER_PASSAGES

    def read(self, question: str, hits: Sequence[Hit], *, tools: ReaderTools) -> Answer:
        from query.answer import answer_from_hits

        return answer_from_hits(question, list(hits), embed=tools.embed, embed_question=tools.embed_question,
                                keyword=tools.keyword)

"""Stage 4 of a build: cut each file's segments into paragraphs and passages, sized by the
model's tokenizer. Passages are embedded and matched; the paragraph a passage sits in is what
search ranks and shows.

A passage is a span of a file's text; what is embedded may add its article as context (a
date rendered as a sentence with its title). The same text of one article from two places
is stored once, with both sources.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass
from datetime import date

from indexer.build_model import BuildModel, HFTokens
from indexer.chunking import ChunkSettings, pack_passages, sentence_spans
from indexer.documents import ParsedFile, iso_date
from indexer.embedder import Embedder
from indexer.types import Article, Paragraph, Passage, PassageKind, Source


class LineIndex:
    """Maps character offsets of one text to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]

    def span(self, start: int, end: int) -> tuple[int, int]:
        return (bisect.bisect_right(self.starts, start), bisect.bisect_right(self.starts, max(start, end - 1)))


def embed_text(kind: str, text: str, article: Article) -> str:
    """What is embedded for a passage: short metadata passages get their article as context
    (a date as "Government Technology published “…” on May 12, 2023 (2023-05-12).")."""
    title = article.title or ""
    if kind == "publisher":
        return f"“{title}” was published by {text}." if title else f"Published by {text}."
    if kind == "date":
        by = f"{article.publisher} published" if article.publisher else "Published"
        day = iso_date(text) or article.published  # the field as written may be "2023-5-12T10:00:00Z"
        when = f"{spelled_date(day)} ({text})" if text and day else text  # "": the context alone, measured for its length
        return f"{by} “{title}” on {when}." if title else f"{by} on {when}."
    if kind in ("excerpt", "related") and title:
        return f"{title}\n{text}"
    return text


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def spelled_date(iso: str) -> str:
    """'2023-05-12' as 'May 12, 2023', the way articles and questions write a date (in English
    whatever the locale: it is embedded, and vectors must not depend on LC_TIME)."""
    day = date.fromisoformat(iso)
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


PARAGRAPH_TOKENS = 384
"""The most tokens a paragraph shown as one hit holds: a longer paragraph (a file without
blank lines) is shown in pieces of whole sentences up to this size. Far above a typical
paragraph, so paragraphs are shown whole; not a model limit (paragraphs are scored by their
passages and by BM25, never embedded whole)."""


@dataclass
class Cut:
    """What cutting a corpus gives: passages (embedded) and the paragraphs they were cut from
    (ranked and shown); ``passages[i].paragraph`` is the id of passage i's paragraph."""

    passages: list[Passage]
    paragraphs: list[Paragraph]


def make_passages(
    parsed: list[ParsedFile], articles: dict[str, Article], embedder: BuildModel | Embedder, settings: ChunkSettings
) -> Cut:
    """Cut each segment into paragraphs and each paragraph into passages; the same text of one
    article from two places is stored once (passages and paragraphs alike).

    A passage never crosses a paragraph break: packing sentences across one blurs two topics
    into one vector, and a hit that spans two paragraphs cannot be shown as either. Token
    counts come from ``embedder.tokens`` (see ``BuildModel.tokens``: the model folder's
    ``tokenizer.json``, so that a build that does not load the model cuts like one that does),
    or from a loaded Embedder's own tokenizer.
    """
    tokens = embedder.tokens if isinstance(embedder, BuildModel) else HFTokens(embedder.tokenizer)
    count_tokens, token_offsets = tokens.count, tokens.offsets
    limit = embedder.max_seq_length - 2 - count_tokens(embedder.prompts.document)  # [CLS], [SEP] and the prompt
    by_key: dict[tuple[str, str], Passage] = {}
    ordered: list[Passage] = []
    paragraph_by_key: dict[tuple[str, str], Paragraph] = {}
    paragraphs: list[Paragraph] = []
    for file in parsed:
        lines = LineIndex(file.text)
        for segment in file.segments:
            article = articles[segment.article]
            context_tokens = count_tokens(embed_text(segment.kind, "", article))
            if context_tokens > limit // 2:  # a title too long to be context would crowd out the text
                article = dataclasses.replace(article, title=None)
                context_tokens = count_tokens(embed_text(segment.kind, "", article))
            budget = ChunkSettings(
                max_tokens=max(16, min(settings.max_tokens if segment.kind == "body" else limit, limit - context_tokens)),
                overlap=settings.overlap,
            )
            kind = PassageKind(segment.kind)
            sentences = sentence_spans(file.text, segment.start, segment.end)
            pieces = pack_passages(file.text, sentences, count_tokens=count_tokens, token_offsets=token_offsets,
                                   settings=ChunkSettings(max_tokens=max(PARAGRAPH_TOKENS, budget.max_tokens), overlap=0))
            for piece_start, piece_end in pieces:
                text = file.text[piece_start:piece_end]
                source = Source(file=file.name, chars=(piece_start, piece_end), lines=lines.span(piece_start, piece_end),
                                kind=kind, listed_by=segment.listed_by)
                paragraph = paragraph_by_key.get((segment.article, text))
                if paragraph is not None:  # its passages exist too: they gain this place as a source
                    paragraph.sources.append(source)
                else:
                    indexed = embed_text(segment.kind, text, article)
                    paragraph = Paragraph(id=len(paragraphs), text=text, kind=kind, article=segment.article,
                                          sources=[source], indexed=None if indexed == text else indexed)
                    paragraph_by_key[(segment.article, text)] = paragraph
                    paragraphs.append(paragraph)
                inside = [(max(s, piece_start), min(e, piece_end)) for s, e in sentences if s < piece_end and e > piece_start]
                for start, end in pack_passages(file.text, inside, count_tokens=count_tokens, token_offsets=token_offsets,
                                                settings=budget):
                    text = file.text[start:end]
                    embedded = embed_text(segment.kind, text, article)
                    source = Source(file=file.name, chars=(start, end), lines=lines.span(start, end), kind=kind,
                                    listed_by=segment.listed_by)
                    key = (segment.article, embedded)
                    if key in by_key:
                        by_key[key].sources.append(source)
                        continue
                    passage = Passage(id=len(ordered), text=text, kind=kind, article=segment.article,
                                      sources=[source], embedded=embedded, paragraph=paragraph.id)
                    by_key[key] = passage
                    ordered.append(passage)
                    paragraph.passages.append(passage.id)
    for passage in ordered:
        passage.sources.sort(key=lambda source: source.listed_by is not None)
        passage.kind = passage.sources[0].kind
        if passage.embedded == passage.text:
            passage.embedded = None
    for paragraph in paragraphs:
        paragraph.sources.sort(key=lambda source: source.listed_by is not None)
        paragraph.kind = paragraph.sources[0].kind
    return Cut(passages=ordered, paragraphs=paragraphs)


def mark_copies(passages: list[Passage]) -> list[list[int]]:
    """The groups of passages embedded from one text (an article syndicated by two outlets,
    a file copied into two folders), each passage of a group given its number as
    ``copy_group``, so a search shows the text once and cites every place it appears. One
    list per text, not one per passage: 8,000 copies of a page cost 8,000 ids, not 64 million."""
    ids_by_text: dict[str, list[int]] = {}
    for passage in passages:
        ids_by_text.setdefault(passage.embed_text, []).append(passage.id)
    groups = [ids for ids in ids_by_text.values() if len(ids) > 1]
    for number, ids in enumerate(groups):
        for pid in ids:
            passages[pid].copy_group = number
    return groups


def article_texts(parsed: list[ParsedFile], keys: list[str]) -> list[str]:
    """The whole indexed text of each article (row i for ``keys[i]``): every segment citing it,
    in corpus order, each span once. Whole-article BM25 ranks documents better than the
    best of their passages (bench/quality.py)."""
    pieces: dict[str, list[str]] = {key: [] for key in keys}
    seen: set[tuple[str, str, int, int]] = set()
    for file in parsed:
        for segment in file.segments:
            span = (segment.article, file.name, segment.start, segment.end)
            if segment.article in pieces and span not in seen:
                seen.add(span)
                pieces[segment.article].append(file.text[segment.start : segment.end])
    return ["\n\n".join(texts) for texts in pieces.values()]

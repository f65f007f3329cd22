"""Stage 3 of a build: merge each article's records, and link bare bodies to their article.

A bare body (a page's text without front matter) says nothing of which article it is; it is
linked to the same-day article whose title and excerpt it matches in meaning and wording,
so its passages are cited to that article.
"""

from __future__ import annotations

import re
from typing import Any

from indexer.documents import ParsedFile
from indexer.encoders import Encoder
from indexer.types import Article
from indexer.wordlists import LINK_STOPWORDS

LINK_MIN_SCORE = 0.5
LINK_MIN_MARGIN = 0.1
"""A bare body is linked to a same-day article when the link score (see ``link_bodies``)
reaches this value and beats the runner-up by this margin: a body is left unlinked rather
than cited to the wrong article of the same day."""


def merge_articles(parsed: list[ParsedFile]) -> dict[str, Article]:
    """One Article per key; an article's own record wins over mentions in others' ``related``."""
    merged: dict[str, Article] = {}
    own = [next(iter(f.articles.values())) for f in parsed if f.articles]
    mentions = [a for f in parsed for a in list(f.articles.values())[1:]]
    for article in own + mentions:
        if article.key in merged:
            merged[article.key].merge(article)
        else:
            merged[article.key] = article.copy()
    return merged


def link_bodies(parsed: list[ParsedFile], articles: dict[str, Article], embedder: Encoder) -> list[dict[str, Any]]:
    """Link each bare body to the same-day article whose title + excerpt its text matches.

    Candidates are articles with a URL published on the body's date. The score is the
    mean of two kinds of evidence: the best cosine between a paragraph of the body and
    the article's title + excerpt (meaning), and the share of the summary's content
    words that occur in the body (wording). Either alone confuses two articles about
    one story; together they separate them.
    """
    links = []
    summaries = _article_summaries(parsed)
    for file in parsed:
        if file.has_metadata or file.body_date is None:
            continue
        candidates = [a for a in articles.values() if a.url and a.published == file.body_date and a.key in summaries]
        paragraphs = [file.text[s.start : s.end] for s in file.segments if s.kind == "body"]
        if not candidates or not paragraphs:
            continue
        summary_vectors = embedder.encode([summaries[a.key] for a in candidates])
        body_vectors = embedder.encode(paragraphs)
        body_words = set(_content_words(file.text))
        overlap = [
            sum(word in body_words for word in words) / max(1, len(words))
            for words in (_content_words(summaries[a.key]) for a in candidates)
        ]
        scores = ((body_vectors @ summary_vectors.T).max(axis=0) + overlap) / 2
        order = scores.argsort()[::-1]
        best = float(scores[order[0]])
        runner_up = float(scores[order[1]]) if len(order) > 1 else 0.0
        if best < LINK_MIN_SCORE or best - runner_up < LINK_MIN_MARGIN:
            continue
        target = candidates[int(order[0])]
        old_key = file.body_article
        for segment in file.segments:
            if segment.article == old_key:
                segment.article = target.key
        if old_key in articles:
            target.merge(articles.pop(old_key))
        target.details.setdefault("body_file", file.name)
        file.body_article = target.key
        links.append({"file": file.name, "article": target.key, "score": round(best, 4), "runner_up": round(runner_up, 4)})
    return links


def _content_words(text: str) -> list[str]:
    return [word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in LINK_STOPWORDS]


def _article_summaries(parsed: list[ParsedFile]) -> dict[str, str]:
    """Title + excerpt of every article that has an excerpt somewhere in the corpus, and the
    title alone of one that another page lists without an excerpt."""
    summaries: dict[str, str] = {}
    listed: dict[str, str] = {}
    for file in parsed:
        for segment in file.segments:
            if segment.kind in ("excerpt", "related") and segment.article not in summaries:
                title = file.articles[segment.article].title or ""
                summaries[segment.article] = f"{title}\n{file.text[segment.start:segment.end]}".strip()
            elif segment.kind == "title" and segment.listed_by:
                listed.setdefault(segment.article, file.text[segment.start:segment.end])
    return listed | summaries

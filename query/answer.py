"""Pick the sentence that answers a question from the best passages, or abstain.

No extractive QA reader ships for offline use, so the answer is the sentence (or the
whole short passage, for titles and bylines) of the top passages that is closest to the
question in the embedding space. Whether to trust it is decided from two kinds of
evidence that fail differently: how close that sentence is in meaning (dense cosine),
and how many of the question's content words the answering passage actually contains
(keyword coverage). Off-topic questions fail both; the thresholds were calibrated by
``bench/calibrate.py`` (see the README).
"""

from __future__ import annotations

import re

from indexer.chunking import sentence_spans
from query.results import Answer, Hit

ANSWER_PASSAGES = 3
"""Sentences are drawn from this many top passages: more gives the sentence scorer more to
choose from, and more chances to prefer a sentence of a lower-ranked passage wrongly."""
RANK_PENALTY = 0.05
"""Subtracted from a sentence's cosine per rank of its passage, so retrieval order breaks near-ties."""
METADATA_KINDS = frozenset({"title", "publisher", "meta"})
"""Passages that are one fact about an article: answered whole, judged by their embedded
rendering (e.g. "Government Technology published “…” on 2023-05-12.")."""
CONFIDENCE_THRESHOLD = 0.40
"""``confident`` is ``confidence >= CONFIDENCE_THRESHOLD``; set by bench/calibrate.py."""
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in is "
    "it its may of on or so than that the their them then there these they this those to was were "
    "what when where which who whom whose why will with would".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words minus stopwords, with a crude plural/verb suffix strip."""
    return {re.sub(r"(ing|ed|es|s)$", "", w) or w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def coverage(question: str, text: str) -> float:
    """Share of the question's content words that occur in ``text``. A question with none
    ("Who?", "What is it?") gets 0.0: no wording can agree with it, so only meaning speaks."""
    wanted = content_words(question)
    return len(wanted & content_words(text)) / len(wanted) if wanted else 0.0


def confidence_score(sentence_cosine: float, keyword_coverage: float) -> float:
    """The evidence that a passage answers: the mean of meaning and wording agreement."""
    return (sentence_cosine + keyword_coverage) / 2


def best_sentence(question: str, hits: list[Hit], *, embed, embed_question) -> tuple[Hit, int, int, float] | None:
    """(hit, start, end, cosine) of the sentence of the top hits that best answers
    ``question`` by meaning and wording; ``start``/``end`` index into the hit's text.
    ``embed`` maps passage-like texts and ``embed_question`` the question to unit vectors."""
    candidates = []
    for hit in hits[:ANSWER_PASSAGES]:
        if hit.citation.kind in METADATA_KINDS:
            candidates.append((hit, 0, len(hit.text), hit.embedded or hit.text))
        else:
            spans = sentence_spans(hit.text) or [(0, len(hit.text))]
            candidates.extend((hit, start, end, hit.text[start:end]) for start, end in spans)
    if not candidates:
        return None
    cosines = embed([evidence for *_, evidence in candidates]) @ embed_question(question)
    scored = [
        (
            confidence_score(float(cosine), coverage(question, evidence)) - RANK_PENALTY * (hit.rank - 1),
            hit, start, end, float(cosine),
        )
        for cosine, (hit, start, end, evidence) in zip(cosines, candidates)
    ]
    _, hit, start, end, cosine = max(scored, key=lambda item: item[0])
    return hit, start, end, cosine


def answer_from_hits(question: str, hits: list[Hit], *, embed, embed_question) -> Answer:
    """Build an Answer from ranked hits (``embed``, ``embed_question``: see :func:`best_sentence`)."""
    chosen = best_sentence(question, hits, embed=embed, embed_question=embed_question)
    if chosen is None:
        return Answer(question=question, answer=None, confident=False, confidence=0.0, citations=[], hits=hits)
    hit, start, end, cosine = chosen
    confidence = confidence_score(cosine, coverage(question, hit.embedded or hit.text))
    confident = confidence >= CONFIDENCE_THRESHOLD
    base = hit.citation.chars[0]
    return Answer(
        question=question,
        answer=hit.text[start:end] if confident else None,
        confident=confident,
        confidence=confidence,
        citations=[hit.citation] if confident else [],
        hits=hits,
        answer_chars=(base + start, base + end) if confident else None,
        answer_hit=hit.rank if confident else None,
    )

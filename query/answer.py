"""Pick the sentence that answers a question from the best passages, or abstain.

No extractive QA reader ships for offline use, so the answer is the sentence (or the
whole short passage, for titles and bylines) of the top passages that is closest to the
question in the embedding space, among those that can be an answer at all: a sentence must
say something the question does not (a title that only restates the question is no answer)
and, for who/when/how-many questions, hold a name, time or quantity
(:mod:`query.answer_kinds`). Whether to trust it is decided from two kinds of evidence that
fail differently: how close that sentence is in meaning (dense cosine), and how much of the
question's wording the answering passage actually contains (keyword coverage, weighted by
how rare each word is). Off-topic questions fail both; the threshold was calibrated by
``bench/calibrate.py`` (see the README).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from indexer.chunking import sentence_spans
from indexer.types import PassageKind
from indexer.wordlists import FUNCTION_WORDS
from query.answer_kinds import WHEN, WHO, as_phrase, expected_kind, kind_fit
from query.results import Answer, Hit

if TYPE_CHECKING:
    from indexer.keyword import KeywordIndex

ANSWER_PASSAGES = 3
"""Sentences are drawn from this many top passages: more gives the sentence scorer more to
choose from, and more chances to prefer a sentence of a lower-ranked passage wrongly."""
RANK_PENALTY = 0.05
"""Subtracted from a sentence's cosine per rank of its passage, so retrieval order breaks near-ties."""
CONFIDENCE_THRESHOLD = 0.4514
"""``confident`` is ``confidence >= CONFIDENCE_THRESHOLD``; set by bench/calibrate.py."""
FULL_NAME_EVIDENCE = 0.10
"""Added to the confidence of a who-question's answer that holds a full name, the shape the
question asks for, which meaning and wording miss: "Who runs EleutherAI?" shares one word with
"…says Stella Biderman, who divides her time between EleutherAI, where she is executive
director…". Chosen by bench/calibrate.py's objective on the development questions."""


class Wording:
    """How a text's words agree with a question's, as the index's keyword side tokenizes and
    stems them ("reverses" matches "reversing"), each question term weighted by its BM25 IDF."""

    def __init__(self, question: str, *, keyword: KeywordIndex) -> None:
        self.keyword = keyword
        self.function_terms = frozenset(keyword.terms(" ".join(sorted(FUNCTION_WORDS))))
        self.weights = keyword.term_weights(list(dict.fromkeys(self.terms(question))))

    def terms(self, text: str) -> list[str]:
        """``text``'s stemmed terms, function words out."""
        return [term for term in self.keyword.terms(text) if term not in self.function_terms]

    def coverage(self, text: str) -> float:
        """IDF-weighted share of the question's terms that occur in ``text``: the rare words
        ("underestimate") decide, not those every passage has ("open-source", "AI"). A
        question with no terms ("Who?", "What is it?") gets 0.0: only meaning speaks."""
        total = sum(self.weights.values())
        if not total:
            return 0.0
        present = set(self.terms(text))
        return sum(weight for term, weight in self.weights.items() if term in present) / total

    def adds_to_question(self, text: str) -> bool:
        """Does ``text`` hold a term the question lacks? One that does not only restates it."""
        return any(term not in self.weights for term in self.terms(text))


PUBLICATION_WORDS = re.compile(r"\b(publish\w*|publication\w*|print\w*|outlets?|ran|run|runs|carr(y|ies|ied))\b")
"""Words of a question about where an article appeared, which a publisher passage answers."""
ARTICLE_WORDS = re.compile(r"\b(publish\w*|publication|print\w*|articles?|stor(y|ies)|pieces?|report(s|ed|ing)?|"
                           r"posts?|summar(y|ies)|leaders?|columns?|editorials?|features?|versions?)\b")
"""Words of a question about an article, whose date passage may say when it appeared and whose
listing may say what it reported."""
NAMING_WORDS = re.compile(r"\b(call(s|ed)?|(en)?titled|titles?|headlines?|headlined|names?|named)\b")
"""Words of a question about what something is called, which a title may answer."""


def answers_this_kind_of_question(passage_kind: str, *, question: str, kind: str | None,
                                   listed: bool = False, publisher: str | None = None) -> bool:
    """May a passage of ``passage_kind`` answer ``question`` at all? A date passage, the bare
    date of an article, answers only when-questions about an article ("When did VentureBeat
    publish …?", not "When will the open-source AI boom end?"); a publisher passage only
    questions about where one appeared ("Which outlet ran …?", not "Who is quoted in the
    story …?"). Both are judged by renderings full of their article's title, which would
    otherwise make them confident answers to any question about its subject.

    A title answers a question about an article ("the leader on …", "MIT Technology Review's
    article on …") only when it asks what the article is called: otherwise the question
    names the article by its title's words, and the title only matches the naming. A title
    answers other questions as content ("What is the open-source AI boom built on?").

    A ``listed`` passage, another page's listing of an article (a related article's teaser or
    title), answers no who-question and others only when they are about an article or name
    its ``publisher`` ("What did the VentureBeat story say …?"): it restates the news in a few
    loaded words ("A Google engineer's leaked memo … signals Big Tech worries."), which are no
    answer to "Who wrote the leaked Google memo?"."""
    lowered = question.lower()
    if passage_kind == PassageKind.DATE:
        return kind == WHEN and bool(ARTICLE_WORDS.search(lowered))
    if passage_kind == PassageKind.PUBLISHER:
        return bool(PUBLICATION_WORDS.search(lowered))
    if passage_kind == PassageKind.TITLE and ARTICLE_WORDS.search(lowered) and not NAMING_WORDS.search(lowered):
        return False
    if listed:
        names_publisher = bool(publisher and publisher.strip()) and as_phrase(publisher).search(question) is not None
        return kind != WHO and (names_publisher or bool(ARTICLE_WORDS.search(lowered)))
    return True


def confidence_score(sentence_cosine: float, keyword_coverage: float) -> float:
    """The evidence that a passage answers: the mean of meaning and wording agreement."""
    return (sentence_cosine + keyword_coverage) / 2


def best_sentence(question: str, hits: list[Hit], *, embed, embed_question,
                  wording: Wording) -> tuple[Hit, int, int, float, bool] | None:
    """(hit, start, end, cosine, full_name) of the sentence of the top hits that best answers
    ``question`` by meaning and wording; ``start``/``end`` index into the hit's text;
    ``full_name``: it holds the full name a who-question asks for. None when no sentence can
    be an answer. ``embed`` maps passage-like texts and ``embed_question`` the question to
    unit vectors."""
    kind = expected_kind(question)
    candidates, fits = [], []
    for hit in hits[:ANSWER_PASSAGES]:
        if not answers_this_kind_of_question(hit.citation.kind, question=question, kind=kind,
                                             listed=hit.citation.listed_by is not None,
                                             publisher=hit.citation.publisher):
            continue
        if PassageKind(hit.citation.kind).is_metadata:  # one fact: answered whole, judged by its rendering
            spans, evidence = [(0, len(hit.text))], hit.embedded
        else:
            spans, evidence = sentence_spans(hit.text) or [(0, len(hit.text))], None
        for start, end in spans:
            shown = hit.text[start:end]
            is_name = hit.citation.kind == PassageKind.PUBLISHER
            fit = 1 if kind is None else kind_fit(kind, question=question, text=shown, is_name=is_name,
                                                  reporter=None if is_name else hit.citation.publisher)
            if fit and wording.adds_to_question(shown):
                candidates.append((hit, start, end, evidence or shown))
                fits.append(fit)
    if not candidates:
        return None
    best_fit = max(fits)
    candidates = [candidate for candidate, fit in zip(candidates, fits) if fit == best_fit]  # full names first
    cosines = embed([evidence for *_, evidence in candidates]) @ embed_question(question)
    scored = [
        (
            confidence_score(float(cosine), wording.coverage(evidence)) - RANK_PENALTY * (hit.rank - 1),
            hit, start, end, float(cosine),
        )
        for cosine, (hit, start, end, evidence) in zip(cosines, candidates)
    ]
    _, hit, start, end, cosine = max(scored, key=lambda item: item[0])
    return hit, start, end, cosine, best_fit == 2


def answer_from_hits(question: str, hits: list[Hit], *, embed, embed_question, keyword: KeywordIndex) -> Answer:
    """Build an Answer from ranked hits (``embed``, ``embed_question``: see :func:`best_sentence`;
    ``keyword``: the index's keyword side, whose tokens and IDF weigh the wording)."""
    wording = Wording(question, keyword=keyword)
    chosen = best_sentence(question, hits, embed=embed, embed_question=embed_question, wording=wording)
    if chosen is None:
        return Answer(question=question, answer=None, confident=False, confidence=0.0, citations=[], hits=hits,
                      reader="sentence")
    hit, start, end, cosine, full_name = chosen
    confidence = confidence_score(cosine, wording.coverage(hit.embedded or hit.text)) + FULL_NAME_EVIDENCE * full_name
    confident = confidence >= CONFIDENCE_THRESHOLD
    base = hit.citation.chars[0]
    answer = hit.text[start:end] if confident else None
    return Answer(
        question=question,
        answer=answer,
        confident=confident,
        confidence=confidence,
        citations=[hit.citation] if confident else [],
        hits=hits,
        answer_chars=(base + start, base + end) if confident else None,
        answer_hit=hit.rank if confident else None,
        evidence=answer,
        reader="sentence",
    )

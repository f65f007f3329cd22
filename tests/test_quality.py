"""Gold questions over the bundled index: retrieval hits and abstention (issue: the core)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from query import ask, search

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "index"
GOLD = yaml.safe_load((ROOT.parent / "shared" / "eval" / "questions.yaml").read_text(encoding="utf-8"))
ANSWERABLE = [q for q in GOLD if q["answers"]]
UNANSWERABLE = [q for q in GOLD if not q["answers"]]


def is_relevant(hit, question) -> bool:
    """The gold rule: from one of the sources, and the text contains one of the answers."""
    files = {hit.citation.file, *(c.file for c in hit.also_in)}
    text = hit.text.lower()
    return bool(files & set(question["sources"])) and any(a.lower() in text for a in question["answers"])


def first_relevant_rank(question) -> int | None:
    hits = search(question["question"], k=10, index=INDEX)
    return next((hit.rank for hit in hits if is_relevant(hit, question)), None)


def test_gold_questions_hit_at_1_and_3():
    ranks = {q["id"]: first_relevant_rank(q) for q in ANSWERABLE}
    hit1 = sum(rank == 1 for rank in ranks.values()) / len(ranks)
    hit3 = sum(rank is not None and rank <= 3 for rank in ranks.values()) / len(ranks)
    assert hit3 == 1.0, ranks
    assert hit1 == 1.0, ranks


@pytest.mark.parametrize("question", UNANSWERABLE, ids=[q["id"] for q in UNANSWERABLE])
def test_unanswerable_questions_abstain(question):
    answer = ask(question["question"], index=INDEX)
    assert answer.confident is False
    assert answer.answer is None
    assert answer.hits, "the nearest passages are still listed"


@pytest.mark.parametrize("question", ANSWERABLE, ids=[q["id"] for q in ANSWERABLE])
def test_answerable_questions_are_confident(question):
    answer = ask(question["question"], index=INDEX)
    assert answer.confident is True
    assert answer.citations and answer.answer


def test_short_answer_names_the_executive_director():
    answer = ask("Who is the executive director of EleutherAI?", index=INDEX)
    assert "Stella Biderman" in answer.answer
    citation = answer.citations[0]
    assert citation.file == "002_d47237756c0cdcf3.txt"
    assert citation.publisher == "MIT Technology Review"
    assert citation.url.startswith("https://www.technologyreview.com/")
    assert citation.published == "2023-05-12"
    text = (ROOT / "corpus" / citation.file).read_text(encoding="utf-8")
    start, end = answer.answer_chars
    assert text[start:end] == answer.answer

"""Clause-level rescoring (query.rescoring): splitting, mixing, and its effect on a real question."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.store import StoredIndex
from query.encoder import KeptVectors
from query.rescoring import CLAUSE_MIX, clauses, mix_clause_scores
from query.index import open_searcher
from query.searcher import Searcher

INDEX = Path(__file__).resolve().parent.parent / "index"


def test_clauses_split_at_punctuation_and_drop_short_pieces():
    text = "“I honestly feel it’s the right thing to do right now,” says Joelle Pineau, Meta AI’s managing director, of opening the code (he said) to outsiders."
    assert clauses(text) == [
        "I honestly feel it’s the right thing to do right now",
        "says Joelle Pineau",
        "Meta AI’s managing director",
        "of opening the code",
    ]  # "he said" and "to outsiders." have under three words
    assert clauses("") == [] and clauses("a, b; c") == []


def test_mix_lifts_only_and_never_lowers():
    dense = [("a", 0.70), ("b", 0.40), ("c", 0.30)]
    mixed = dict(mix_clause_scores(dense, {"a": 0.10, "b": 0.95}, mix=0.5))
    assert mixed["a"] == 0.70  # a weak clause leaves the passage's own score
    assert mixed["b"] == pytest.approx(0.675)  # (0.40 + 0.95) / 2
    assert mixed["c"] == 0.30
    assert [item for item, _ in mix_clause_scores(dense, {"b": 0.95}, mix=1.0)] == ["b", "a", "c"]


def test_mix_of_an_item_missing_from_the_run_starts_from_its_floor():
    mixed = dict(mix_clause_scores([("a", 0.6), ("b", 0.2)], {"z": 1.0}, mix=CLAUSE_MIX))
    assert mixed["z"] == pytest.approx((1 - CLAUSE_MIX) * 0.2 + CLAUSE_MIX * 1.0)


def test_rescoring_puts_the_answering_appositive_first():
    """MiniLM ranks another paragraph above the one naming Meta AI's managing director in a
    quotation; the best clause of its best passage puts it right."""
    searcher = open_searcher(INDEX)
    question = "Who is Meta AI's managing director?"
    plain = searcher.rank(question, k=3, rescore=False)
    rescored = searcher.rank(question, k=3)
    assert "Joelle Pineau" not in searcher.stored.paragraph(plain[0][0]).text
    assert "Joelle Pineau" in searcher.stored.paragraph(rescored[0][0]).text



def test_clause_vectors_are_kept_bounded_and_equal_to_embedding_alone():
    searcher = open_searcher(INDEX)
    calls: list[list[str]] = []

    def embed(texts):
        calls.append(list(texts))
        return searcher.embed(texts)

    kept = KeptVectors(embed, limit=3)
    texts = ["says Joelle Pineau", "Meta AI’s managing director", "of opening the code"]
    first = kept(texts + texts[:1])  # a repeated clause is embedded once
    assert first.shape == (4, searcher.stored.dimension) and np.array_equal(first[0], first[3])
    assert calls == [[text] for text in texts]  # one at a time: a vector does not depend on its batch
    for row, text in zip(first, texts):
        assert np.array_equal(row, searcher.embed([text])[0])
    again = kept(list(reversed(texts)))
    assert len(calls) == 3 and np.array_equal(again, first[2::-1])  # all kept, none embedded again
    kept(["the fourth clause here"])  # over the limit: the least recently used goes
    assert len(kept) == 3 and len(calls) == 4
    kept([texts[0]])
    assert len(calls) == 4  # texts[0] was used last, so it stayed
    kept([texts[2]])
    assert calls[-1] == [texts[2]]  # texts[2] was the oldest: dropped, embedded again


def test_a_ranking_from_kept_clause_vectors_is_the_fresh_ranking():
    """Questions sharing passages share clauses: the second one embeds only the clauses it
    has not seen, and ranks exactly as it does in a searcher that has seen nothing."""
    question = "Who is Meta AI's managing director?"
    fresh = Searcher(StoredIndex.open(INDEX))
    alone = fresh.rank(question, k=10)
    needed = len(fresh.rescorer.embed)
    primed = Searcher(StoredIndex.open(INDEX))
    primed.rank("Who leads Meta AI?", k=10)
    before = len(primed.rescorer.embed)
    assert primed.rank(question, k=10) == alone
    assert len(primed.rescorer.embed) - before < needed  # some of its clauses were kept
    assert fresh.rank(question, k=10) == alone

"""The query-side BM25 scorer agrees with bm25s, which built the index."""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import Stemmer

from bm25s.tokenization import _infer_stopwords

from indexer.keyword import KeywordIndex, KeywordSettings
from indexer.wordlists import QUESTION_WORDS

SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "scifact"


def test_scores_match_bm25s(tmp_path):
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        docs = [json.loads(line)["text"] for _, line in zip(range(500), handle)]
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for _, line in zip(range(60), handle)]
    ours = KeywordIndex(tmp_path / "bm25", KeywordSettings())
    ours.build(docs)
    reference = bm25s.BM25.load(str(tmp_path / "bm25"), allow_pickle=False)
    stemmer = Stemmer.Stemmer("english")
    query_stopwords = sorted(set(_infer_stopwords("en")) | QUESTION_WORDS)
    compared = 0
    for query in queries:
        ids, scores = reference.retrieve(
            bm25s.tokenize([query], stopwords=query_stopwords, stemmer=stemmer, show_progress=False), k=10, show_progress=False
        )
        expected = [round(float(s), 4) for s in scores[0] if s > 0]
        got = [round(score, 4) for _, score in ours.search(query, k=10)]
        assert got == expected, query
        compared += bool(expected)
    assert compared > 40


def test_unknown_and_stopword_queries_return_nothing(tmp_path):
    index = KeywordIndex(tmp_path / "bm25", KeywordSettings())
    index.build(["the cat sat on the mat", "OpenAI is reversing its open policy"])
    assert index.search("the and of", k=5) == []
    assert index.search("zebra", k=5) == []
    assert [pid for pid, _ in index.search("reverses policies", k=5)] == [1]


def test_question_words_do_not_match(tmp_path):
    index = KeywordIndex(tmp_path / "bm25", KeywordSettings())
    index.build(["Biderman, who is executive director of EleutherAI", "Pineau, Meta AI's managing director"])
    assert index.search("Who? What? Which, how, why, when, where?", k=2) == []
    assert index.search("Who is the managing director?", k=2)[0][0] == 1


def test_equal_scores_rank_by_passage_id_whatever_k(tmp_path):
    index = KeywordIndex(tmp_path / "bm25", KeywordSettings())
    index.build(["a ferry crossing", "the ferry crossing", "ferry crossing", "a ferry crossing today", "ferries"] * 4)
    full = index.search("ferry crossing", k=20)
    assert [pid for pid, _ in full] == sorted((pid for pid, _ in full), key=lambda pid: (-dict(full)[pid], pid))
    for k in range(1, 21):
        assert index.search("ferry crossing", k=k) == full[:k], k


def test_unicode_forms_of_one_word_match(tmp_path):
    index = KeywordIndex(tmp_path / "bm25", KeywordSettings())
    index.build(["Herr Mu\u0308ller opened the ferry terminal", "The ﬁnal ferry leaves at noon"])
    assert [pid for pid, _ in index.search("M\u00fcller", k=2)] == [0]  # composed ü against u + combining mark
    assert [pid for pid, _ in index.search("final ferry", k=2)][0] == 1  # the ligature ﬁ is fi

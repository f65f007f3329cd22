"""The importable API: query.search() / query.ask() and their result objects."""

from __future__ import annotations

from pathlib import Path

import pytest

import query
from query import ask, search

INDEX = Path(__file__).resolve().parent.parent / "index"
CITATION_KEYS = {"file", "title", "publisher", "url", "published", "lines", "chars"}


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_each_mode_ranks_the_answer_first(mode):
    hits = search("What public data set did EleutherAI put together?", k=5, index=INDEX, mode=mode)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert "the Pile" in hits[0].text


def test_search_respects_k_and_returns_citations():
    hits = search("open-source AI", k=3, index=INDEX)
    assert len(hits) == 3
    for hit in hits:
        data = hit.to_dict()
        assert {"rank", "score", "text", "citation"} <= data.keys()
        assert CITATION_KEYS <= data["citation"].keys()
        assert len(data["citation"]["lines"]) == 2 and len(data["citation"]["chars"]) == 2


def test_related_entry_is_cited_to_its_own_article():
    hits = search("Which outlet reported that a leaked memo signals Big Tech worries?", k=3, index=INDEX)
    top = hits[0]
    assert "signals Big Tech worries" in top.text
    assert top.citation.publisher == "VentureBeat"
    assert top.citation.url.startswith("https://venturebeat.com/")
    assert top.citation.listed_by == "001_b1e94322d9932e65.txt"


def test_ask_to_dict_has_the_contract_keys():
    data = ask("Which data set did EleutherAI put together?", index=INDEX).to_dict()
    assert {"question", "answer", "confident", "citations", "hits"} <= data.keys()
    assert "the Pile" in data["answer"]
    assert data["confident"] is True
    assert CITATION_KEYS <= data["citations"][0].keys()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode"):
        search("anything", index=INDEX, mode="magic")


def test_result_types_are_exported():
    assert query.Hit.__name__ == "Hit" and query.Answer.__name__ == "Answer" and query.Citation.__name__ == "Citation"


@pytest.mark.parametrize(("question", "k", "problem"), [
    ("", 5, "the question is empty"), ("   ", 5, "the question is empty"),
    ("open-source AI", 0, "k must be a whole number of at least 1, got 0"),
    ("open-source AI", -1, "k must be a whole number of at least 1, got -1"),
    ("open-source AI", 2.5, "got 2.5"), ("open-source AI", "3", "got '3'"), ("open-source AI", None, "got None"),
    ("open-source AI", True, "got True"),
    (123, 5, "the question must be a string, not int"), (b"EleutherAI", 5, "the question must be a string, not bytes"),
    ("EleutherAI \udcff", 5, r"the question is not valid Unicode: unpaired surrogate '\\udcff' at character 11"),
])
def test_what_cannot_be_searched_is_refused(question, k, problem):
    for call in (search, ask):
        with pytest.raises(ValueError, match=problem):
            call(question, k=k, index=INDEX)


def test_k_may_be_any_whole_number_type():
    import numpy as np

    assert len(search("EleutherAI", k=np.int64(2), index=INDEX)) == 2


@pytest.mark.parametrize("question", ["?", "Who?", "What is it?", "Why is that so?"])
def test_a_question_without_content_words_is_not_answered(question):
    answer = ask(question, index=INDEX)
    assert answer.answer is None and not answer.confident


def test_copies_of_a_text_are_one_hit_citing_all_of_them(write_corpus, tmp_path, embedder):
    from indexer.build import build_index

    story = "Kites fly over the beach in Brighton every summer, and the council counts them.\n"
    others = {"p.txt": "Parrots live in the Amazon.\n", "q.txt": "Kite festivals draw crowds to the coast.\n",
              "r.txt": "Brighton council counts visitors on the beach.\n"}
    copies = {f"copy{n}/story.txt": story for n in range(6)}
    corpus = write_corpus({**copies, **others})
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    for k, mode in ((k, mode) for k in (1, 3, 4) for mode in ("hybrid", "dense", "keyword")):
        hits = search("How many kites fly in Brighton?", k=k, index=tmp_path / "index", mode=mode)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1)) and len(hits) == min(k, 4 if mode != "keyword" else 3)
        assert hits[0].text == story.strip()
        assert {hits[0].citation.file, *(c.file for c in hits[0].also_in)} == set(copies)
        assert len({h.text for h in hits}) == len(hits)


def test_hybrid_reads_past_copies_that_fill_both_runs(write_corpus, tmp_path, embedder):
    """300 copies of one text fill the dense and the keyword run at every depth below the
    index's size, so the fused ranking is shorter than asked while more is left."""
    from indexer.build import build_index

    story = "Kites fly over the beach in Brighton every summer, and the council counts them.\n"
    others = {f"other{n}.txt": f"Parrot number {n} lives in the Amazon rainforest.\n" for n in range(5)}
    corpus = write_corpus({**{f"copy{n:03d}/story.txt": story for n in range(300)}, **others})
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    hits = search("How many kites fly over Brighton beach?", k=3, index=tmp_path / "index")
    assert len(hits) == 3 and hits[0].text == story.strip() and len(hits[0].also_in) == 299
    assert all("Parrot" in hit.text for hit in hits[1:])


def test_a_relative_index_path_stays_that_index_after_a_change_of_directory(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(INDEX, tmp_path / "index")
    monkeypatch.chdir(tmp_path)
    first = search("Who is the executive director of EleutherAI?", k=1, index="index")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = search("Who is the executive director of EleutherAI?", k=1, index="../index", mode="keyword")
    assert "Stella Biderman" in first[0].text and "Stella Biderman" in again[0].text


def test_publishers_of_different_articles_stay_apart(write_corpus, tmp_path, embedder):
    from indexer.build import build_index

    corpus = write_corpus({
        f"{n}.md": f"---\ntitle: Story number {n} about kites\nprovider:\n  name: Daily Planet\n"
                   f"webUrl: https://example.com/{n}\n---\nKites number {n} flew.\n" for n in range(3)
    })
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    hits = search("Daily Planet", k=5, index=tmp_path / "index", mode="keyword")
    publishers = [h for h in hits if h.citation.kind == "publisher"]
    assert len(publishers) == 3 and all(not h.also_in for h in publishers)


def test_asking_for_more_hits_keeps_the_first_ones(make_corpus, tmp_path, embedder):
    """The hybrid pool (and so every z-score) is that of rank(k): reading deeper for copies
    does not reorder the top. Over 100 passages of SciFact abstracts, so that a pool of
    2k = 102 or 120 would differ from rank(k)'s 100."""
    import json

    from indexer.build import build_index

    scifact = Path(__file__).resolve().parents[2] / "shared" / "eval" / "scifact"
    lines = (scifact / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    corpus = make_corpus({f"{json.loads(line)['_id']}.txt": f"{json.loads(line)['title']}\n\n{json.loads(line)['text']}\n"
                          for line in lines})
    index = tmp_path / "index"
    build_index(corpus=corpus, index=index, embedder=embedder)
    claims = [json.loads(line)["text"] for line in (scifact / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:15]]
    for claim in claims:
        first = [h.passage_id for h in search(claim, k=5, index=index)]
        for k in (51, 60):
            assert [h.passage_id for h in search(claim, k=k, index=index)][:5] == first, (claim, k)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_sets_how_many_hits_ask_shows_not_where_it_looks(k):
    """The answer comes from the best three passages whatever k is; the hits are the k best,
    or down to the answering one when it ranks below them."""
    question = "When did VentureBeat publish its story on Big Tech mulling over moats?"
    answer = ask(question, k=k, index=INDEX)
    assert answer.confident and answer.answer == "2023-05-15"
    assert answer.hits[answer.answer_hit - 1].citation.kind == "date"
    assert len(answer.hits) == max(k, answer.answer_hit)
    assert [h.passage_id for h in answer.hits][:k] == [h.passage_id for h in search(question, k=k, index=INDEX)]
    assert len(ask("Who won the 2022 FIFA World Cup?", k=k, index=INDEX).hits) == k

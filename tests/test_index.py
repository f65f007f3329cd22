"""The query façade: ``query.Index`` (one per folder, one live generation held) and readers."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import query
from indexer.chunking import sentence_spans
from query import Answer, Index, ask, search
from query.readers import Reader, SentenceReader

INDEX = Path(__file__).resolve().parent.parent / "index"


def test_one_index_object_per_folder(tmp_path, monkeypatch):
    import shutil

    assert Index.open(INDEX) is Index.open(str(INDEX))
    shutil.copytree(INDEX, tmp_path / "index")
    monkeypatch.chdir(tmp_path)
    assert Index.open("index") is Index.open(tmp_path / "index") is not Index.open(INDEX)


def test_the_facade_answers_as_the_shorthands_do():
    question = "Who is the executive director of EleutherAI?"
    index = Index.open(INDEX)
    assert [h.to_dict() for h in index.search(question, k=3)] == [h.to_dict() for h in search(question, k=3, index=INDEX)]
    assert index.ask(question).to_dict() == ask(question, index=INDEX).to_dict()
    manifest = json.loads((INDEX / (INDEX / "CURRENT").read_text().strip() / "manifest.json").read_text(encoding="utf-8"))
    assert index.info() == manifest and index.info(verify=True) == manifest


def test_the_sentence_reader_reports_its_evidence():
    answer = ask("Which data set did EleutherAI put together?", index=INDEX)
    data = answer.to_dict()
    assert data["reader"] == "sentence" and answer.reader == "sentence"
    assert data["evidence"] == answer.answer and "the Pile" in data["evidence"]
    hit = answer.hits[answer.answer_hit - 1]
    start, end = answer.answer_chars
    assert hit.text[start - hit.citation.chars[0]:end - hit.citation.chars[0]] == answer.answer
    abstained = ask("Who won the 2022 FIFA World Cup?", index=INDEX)
    assert abstained.answer is None and abstained.evidence is None and abstained.reader == "sentence"
    assert isinstance(SentenceReader(), Reader)


class FirstSentenceReader:
    """A reader of another kind: the first sentence of the top hit, always confident."""

    name = "first-sentence"
    passages = 1

    def __init__(self) -> None:
        self.seen: list[int] = []

    def read(self, question, hits, *, tools) -> Answer:
        self.seen.append(len(hits))
        top = hits[0]
        start, end = (sentence_spans(top.text) or [(0, len(top.text))])[0]
        base = top.citation.chars[0]
        return Answer(question=question, answer=top.text[start:end], confident=True, confidence=1.0,
                      citations=[top.citation], hits=list(hits), answer_chars=(base + start, base + end), answer_hit=1,
                      evidence=top.text, reader=self.name)


def test_ask_takes_any_reader():
    reader = FirstSentenceReader()
    assert isinstance(reader, Reader)
    question = "What public data set did EleutherAI put together?"
    answer = Index.open(INDEX).ask(question, k=2, reader=reader)
    assert reader.seen == [2]  # searched max(k, reader.passages) deep
    assert answer.reader == "first-sentence" and answer.to_dict()["reader"] == "first-sentence"
    assert len(answer.hits) == 2 and answer.answer == answer.hits[0].text[:len(answer.answer)]
    assert query.ask(question, index=INDEX, k=2, reader=reader).to_dict() == answer.to_dict()


def test_a_new_generation_replaces_the_one_held(write_corpus, tmp_path, embedder):
    from indexer.build import build_index

    files = {"kites.txt": "Kites fly over the beach in Brighton every summer.\n",
             "parrots.txt": "Parrots live in the Amazon rainforest.\n"}
    corpus = write_corpus(files)
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    index = Index.open(tmp_path / "index")
    first = index.searcher()
    assert index.search("kites", k=1)[0].citation.file == "kites.txt"
    (corpus / "owls.txt").write_text("Owls hunt at night over the fields of Norfolk.\n", encoding="utf-8")
    assert "added owls.txt" in index.stale_warning()  # the corpus is hashed once per generation
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    assert index.search("Which birds hunt at night?", k=1)[0].citation.file == "owls.txt"
    assert index.searcher() is not first and index.generation == index.searcher().stored.generation.name
    assert index.stale_warning() is None
    held = weakref.ref(first)
    del first
    gc.collect()
    assert held() is None, "the old generation is still held"


def test_searchers_for_many_faiss_parameters_are_not_all_kept():
    from query.index import MAX_SEARCHERS

    index = Index.open(INDEX)
    first = index.searcher(faiss_params="efSearch=1")
    assert index.searcher(faiss_params="efSearch=1") is first
    for n in range(2, MAX_SEARCHERS + 2):
        index.searcher(faiss_params=f"efSearch={n}")
    assert index.searcher(faiss_params="efSearch=1") is not first, "the oldest parameters were not let go"
    assert index.searcher() is index.searcher()

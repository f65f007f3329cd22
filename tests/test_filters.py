"""Filters (--since/--until/--publisher/--topic/--path): random filters over a generated corpus
against brute force, every surface giving the same hits, empty and bad filters."""

from __future__ import annotations

import fnmatch
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import TOPICS, brief_corpus, news_corpus

PUBLISHERS = ["Harbour Herald", "Valley Times", "Coast Courier"]
QUESTIONS = ["Which council approved a new bridge over the river?", "strike over pay at the hospital",
             "electric ferries on the coast", "interest rates and the central bank"]
GLOBS = ["east/*", "*.txt", "briefs/*", "west/r00[0-4]*", "*", "nowhere/*"]


def corpus_files() -> dict[str, str]:
    """Dated records of three publishers in two folders, linked bare bodies, undated briefs."""
    files = {f"{'east' if number % 2 else 'west'}/{name}": text
             for number, (name, text) in enumerate(news_corpus(36, seed=7).items())}
    files.update({f"briefs/{name}": text for name, text in brief_corpus(12, seed=7).items() if name.endswith(".txt")})
    return files


@pytest.fixture(scope="module")
def flat_index(embedder, make_corpus) -> Path:
    from indexer.build import build_index

    corpus = make_corpus(corpus_files())
    index = corpus.parent / "index"
    build_index(corpus=corpus, index=index, embedder=embedder)
    return index


def random_filters(rng: random.Random) -> dict:
    """Each filter given or not; dates partly outside the corpus's May 2024, names in any case."""
    filters: dict = {}
    if rng.random() < 0.5:
        filters["since"] = f"2024-{rng.choice(['04-20', '05-03', '05-10', '05-15', '05-27'])}"
    if rng.random() < 0.4:
        filters["until"] = rng.choice(["2024-05-12", "2024-05-20", "2024-05-28", "2024-06"])
    if rng.random() < 0.4:
        name = rng.choice(PUBLISHERS + ["Nobody Weekly"])
        filters["publisher"] = rng.choice([name, name.upper(), name.lower()])
    if rng.random() < 0.4:
        filters["topic"] = rng.choice([rng.choice(TOPICS), rng.choice(TOPICS).lower()])
    if rng.random() < 0.4:
        filters["path"] = rng.choice(GLOBS)
    if filters.get("since", "") > filters.get("until", "9"):
        del filters["until"]
    return filters


def matches(passage, article, filters: dict) -> bool:
    """Brute force, from the stored passage and article alone."""
    published = (article.published or "")[:10]
    if "since" in filters and not (published and published >= filters["since"][:10].ljust(10, "0")):
        return False
    if "until" in filters:
        until = {"2024-06": "2024-06-30"}.get(filters["until"], filters["until"])
        if not (published and published <= until):
            return False
    if "publisher" in filters and (article.publisher or "").lower() != filters["publisher"].lower():
        return False
    if "topic" in filters and filters["topic"].lower() not in {topic.lower() for topic in article.topics}:
        return False
    if "path" in filters and not any(fnmatch.fnmatchcase(source.file, filters["path"]) for source in passage.sources):
        return False
    return True


class BruteForce:
    def __init__(self, index: Path) -> None:
        from indexer.store import StoredIndex

        self.stored = StoredIndex.open(index)
        self.passages = self.stored.passages()
        self.vectors = self.stored.vectors.reconstruct_n(0, self.stored.count)

    def matching(self, filters: dict) -> list[int]:
        articles = self.stored.articles
        return [p.id for p in self.passages if matches(p, articles[p.article], filters)]

    def distinct(self, ranked: list[int]) -> list[int]:
        """``ranked`` with each text once (copies of a shown passage are no hit of their own)."""
        shown, kept = set(), []
        for pid in ranked:
            if self.passages[pid].embed_text not in shown:
                shown.add(self.passages[pid].embed_text)
                kept.append(pid)
        return kept


def check_hits(index: Path, brute: BruteForce, rng: random.Random, *, rounds: int) -> int:
    """Random filters and questions in every mode against brute force; returns how many
    searches kept at least one passage (so a test can tell the filters were not all empty)."""
    from query.index import Index

    opened = Index.open(index)
    searcher = opened.searcher()
    nonempty = 0
    for _ in range(rounds):
        filters, question, k = random_filters(rng), rng.choice(QUESTIONS), rng.choice([1, 3, 10, 400])
        matching = set(brute.matching(filters))
        nonempty += bool(matching)
        scores = brute.vectors @ searcher.embed_question(question)
        dense = brute.distinct(sorted(matching, key=lambda pid: (-scores[pid], pid)))
        every_keyword = [pid for pid, _ in searcher.keyword_retriever.search(question, k=len(brute.passages))]
        keyword = brute.distinct([pid for pid in every_keyword if pid in matching])
        for mode in ("dense", "keyword", "hybrid"):
            hits = opened.search(question, k=k, mode=mode, **filters)
            where = f"{mode} k={k} {filters}"
            assert all(hit.passage_id in matching for hit in hits), where
            expected = keyword if mode == "keyword" else dense  # hybrid: same count as dense
            assert len(hits) == min(k, len(expected)), where
            if mode == "dense":
                assert np.allclose([hit.score for hit in hits], [scores[pid] for pid in expected[:k]], atol=1e-4), where
                assert np.allclose([hit.score for hit in hits], [scores[hit.passage_id] for hit in hits], atol=1e-4), where
            if mode == "keyword":
                assert [hit.passage_id for hit in hits] == expected[:k], where
    return nonempty


def test_random_filters_match_brute_force(flat_index: Path) -> None:
    brute = BruteForce(flat_index)
    assert brute.stored.manifest.factory == "Flat"
    assert check_hits(flat_index, brute, random.Random(1), rounds=40) >= 20


def test_faiss_selector_path_matches_brute_force(flat_index: Path, monkeypatch, tmp_path: Path) -> None:
    """Above EXACT_WITHIN kept passages FAISS searches with a bitmap: exact on Flat, and on an
    inverted file probing every list; an HNSW graph must still give min(k, kept) matching hits."""
    from indexer.build import build_index
    from query import retrievers

    monkeypatch.setattr(retrievers, "EXACT_WITHIN", 0)
    brute = BruteForce(flat_index)
    assert check_hits(flat_index, brute, random.Random(2), rounds=15) >= 5
    corpus = Path(brute.stored.manifest.corpus)
    corpus = corpus if corpus.is_absolute() else (flat_index / corpus).resolve()
    for factory in ("IVF4,Flat", "HNSW8,Flat"):
        index = tmp_path / factory.split(",")[0]
        shutil.copytree(flat_index, index)
        build_index(corpus=corpus, index=index, factory=factory)  # reuses the vectors
        other = BruteForce(index)
        assert other.stored.manifest.factory == factory
        if factory.startswith("IVF"):
            check_hits(index, other, random.Random(3), rounds=15)
        else:
            from query.index import Index

            for _ in range(15):
                filters = random_filters(random.Random(_))
                matching = set(other.matching(filters))
                hits = Index.open(index).search(QUESTIONS[_ % 4], k=5, mode="dense", **filters)
                assert all(hit.passage_id in matching for hit in hits)
                assert len(hits) == min(5, len(other.distinct(sorted(matching))))


def semindex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "query.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_and_api_give_the_same_hits(flat_index: Path) -> None:
    import query

    filters = {"since": "2024-05-05", "until": "2024-05-25", "publisher": "valley times", "path": "*/r*"}
    flags = [word for name, value in filters.items() for word in (f"--{name}", value)]
    result = semindex("search", QUESTIONS[0], "--index", str(flat_index), "-k", "4", *flags, "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["filters"] == {**filters, "topic": None}
    api = query.search(QUESTIONS[0], index=flat_index, k=4, **filters)
    assert len(api) >= 2
    assert [hit["passage_id"] for hit in printed["hits"]] == [hit.passage_id for hit in api]
    asked = semindex("ask", QUESTIONS[1], "--index", str(flat_index), *flags, "--json")
    assert asked.returncode == 0, asked.stderr
    answer = query.ask(QUESTIONS[1], index=flat_index, **filters)
    assert [hit["passage_id"] for hit in json.loads(asked.stdout)["hits"]] == [hit.passage_id for hit in answer.hits]
    assert all(hit.citation.publisher == "Valley Times" for hit in answer.hits)


def test_a_filter_matching_nothing_gives_no_hits_and_no_error(flat_index: Path) -> None:
    from query.index import Index

    opened = Index.open(flat_index)
    for mode in ("dense", "keyword", "hybrid"):
        assert opened.search(QUESTIONS[0], mode=mode, publisher="Nobody Weekly") == []
        assert opened.search(QUESTIONS[0], mode=mode, since="2030-01-01") == []
    answer = opened.ask(QUESTIONS[0], path="nowhere/*")
    assert answer.answer is None and answer.hits == []
    result = semindex("search", QUESTIONS[0], "--index", str(flat_index), "--topic", "astrology", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["hits"] == []


@pytest.mark.parametrize("flags, named", [
    (["--since", "2024-13-01"], "--since"), (["--until", "yesterday"], "--until"),
    (["--since", "2024-02-30"], "--since"), (["--since", "2024-06-01", "--until", "2024-05-01"], "since"),
])
def test_bad_dates_are_refused_in_one_line(flat_index: Path, flags: list[str], named: str) -> None:
    from indexer.errors import QueryError
    from query.index import Index

    result = semindex("search", "bridge", "--index", str(flat_index), *flags)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(QueryError, match="since|until"):
        Index.open(flat_index).search("bridge", **{flags[i].lstrip("-"): flags[i + 1] for i in range(0, len(flags), 2)})


def test_info_lists_filterable_values_with_passage_counts(flat_index: Path) -> None:
    brute = BruteForce(flat_index)
    result = semindex("info", "--index", str(flat_index), "--json")
    assert result.returncode == 0, result.stderr
    filterable = json.loads(result.stdout)["filterable"]
    dated = sorted(a.published for a in brute.stored.articles.values() if a.published)
    assert filterable["dates"]["first"] == dated[0] and filterable["dates"]["last"] == dated[-1]
    assert filterable["dates"]["undated_passages"] == len(brute.passages) - len(brute.matching({"since": "0001-01-01"}))
    assert {e["name"]: e["passages"] for e in filterable["publishers"]} == {
        name: len(brute.matching({"publisher": name})) for name in PUBLISHERS}
    assert {e["name"]: e["passages"] for e in filterable["topics"]} == {
        name: len(brute.matching({"topic": name})) for name in TOPICS if brute.matching({"topic": name})}
    text = semindex("info", "--index", str(flat_index))
    assert "--publisher" in text.stdout and "Valley Times" in text.stdout and "2024-05" in text.stdout


def test_an_index_built_before_filters_serves_unfiltered_queries_only(flat_index: Path, tmp_path: Path) -> None:
    from indexer.errors import IndexFormatError
    from indexer.manifest import MANIFEST
    from indexer.metadata import METADATA
    from indexer.store import live_generation
    from query.index import Index

    index = tmp_path / "old"
    shutil.copytree(flat_index, index)
    generation = live_generation(index)
    (generation / METADATA).unlink()
    manifest = json.loads((generation / MANIFEST).read_text(encoding="utf-8"))
    del manifest["checksums"][METADATA]
    (generation / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    opened = Index.open(index)
    assert len(opened.search(QUESTIONS[0], k=3)) == 3
    with pytest.raises(IndexFormatError, match="rebuild it with: semindex build"):
        opened.search(QUESTIONS[0], topic="Energy")
    result = semindex("search", "bridge", "--index", str(index), "--topic", "Energy")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "rebuild" in result.stderr

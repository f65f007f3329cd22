"""Index types above the exact-search size: chosen by size, searched with their parameters,
and read back exactly by incremental builds."""

from __future__ import annotations

import json

import pytest

from indexer.build import build_index
from indexer.faiss_build import choose_factory, default_search_params
from indexer.errors import SemindexError
from indexer.store import StoredIndex
from query.index import open_searcher


def test_factory_follows_the_size():
    assert choose_factory(5_000) == "Flat"
    assert choose_factory(1_000_000) == "IVF4096,Flat"
    assert choose_factory(100_000).startswith("IVF")


def test_ivf_is_probed_to_scan_about_the_same_number_of_vectors():
    assert default_search_params("IVF4096,Flat", 1_000_000) == "nprobe=68"
    assert default_search_params("IVF1024,Flat", 130_000) == "nprobe=130"
    assert default_search_params("IVF65536,Flat", 100_000_000) == "nprobe=32"
    assert default_search_params("IVF4,Flat", 80) == "nprobe=4"
    assert default_search_params("HNSW32,Flat", 10**6) == "efSearch=128"
    assert default_search_params("Flat", 10) == ""


@pytest.fixture(scope="module")
def ivf_index(tmp_path_factory, embedder, make_corpus):
    docs = {
        f"{i:03d}.txt": f"---\ntitle: Report number {i}\nexcerpt: Article {i} covers topic {i % 7} in open-source AI.\n---\n"
        for i in range(40)
    }
    corpus = make_corpus(docs)
    index = tmp_path_factory.mktemp("ivf") / "index"
    build_index(corpus=corpus, index=index, factory="IVF4,Flat", embedder=embedder)
    return corpus, index


def test_ivf_index_records_and_applies_search_params(ivf_index):
    _, index = ivf_index
    stored = StoredIndex.open(index)
    assert stored.manifest["faiss"] == {"factory": "IVF4,Flat", "search_params": "nprobe=4"}
    hits = open_searcher(index).search("Report number 12", k=3, mode="dense")
    assert any("12" in h.text for h in hits)
    narrow = open_searcher(index, faiss_params="nprobe=1").search("Report number 12", k=3, mode="dense")
    assert narrow
    with pytest.raises(SemindexError, match=r"^FAISS search parameters 'nprobe=0': cur_nprobe > 0 does not hold$"):
        open_searcher(index, faiss_params="nprobe=0").search("Report number 12", k=3, mode="dense")
    with pytest.raises(SemindexError, match=r"^FAISS search parameters 'nprobe=1.5': nprobe must be a whole number, got '1.5'$"):
        open_searcher(index, faiss_params="nprobe=1.5").search("Report number 12", k=3, mode="dense")


def test_incremental_build_reuses_ivf_vectors(ivf_index, embedder):
    corpus, index = ivf_index
    (corpus / "000.txt").write_text("---\ntitle: A changed report\nexcerpt: Something else entirely.\n---\n", encoding="utf-8")
    report = build_index(corpus=corpus, index=index, factory="IVF4,Flat", embedder=embedder)
    assert not report.full and report.reused > 0 and report.embedded <= 3
    assert json.loads((StoredIndex.open(index).generation / "manifest.json").read_text())["counts"]["passages"] > 0


def test_a_factory_asked_for_is_kept_by_plain_rebuilds(make_corpus, tmp_path, embedder):
    corpus = make_corpus({"a.txt": "Kites fly over the beach in Brighton.\n", "b.txt": "Parrots live in the Amazon.\n"})
    index = tmp_path / "index"
    build_index(corpus=corpus, index=index, factory="HNSW32,Flat", embedder=embedder)
    assert build_index(corpus=corpus, index=index, embedder=embedder).unchanged
    (corpus / "c.txt").write_text("Gulls steal chips on the pier.\n", encoding="utf-8")
    build_index(corpus=corpus, index=index, embedder=embedder)
    assert StoredIndex.open(index).manifest["faiss"]["factory"] == "HNSW32,Flat"

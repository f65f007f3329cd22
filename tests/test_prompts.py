"""Model prompts (config_sentence_transformers.json ``prompts``): passages embed after the
passage prompt, questions after the query prompt, as sentence-transformers' encode_document
and encode_query do; the manifest records them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.embedder import Prompts, default_model_folder

PROMPTS = {"query": "query: ", "passage": "passage: ", "classification": "classify: "}


@pytest.mark.parametrize(("config", "expected"), [
    (None, Prompts()),
    ({"query": "q: "}, Prompts(query="q: ")),
    ({"corpus": "c: ", "passage": "p: "}, Prompts(document="p: ")),
    ({"document": "d: ", "passage": "p: ", "query": 3}, Prompts(document="d: ")),
    (["query: "], Prompts()),
])
def test_prompts_are_read_as_sentence_transformers_names_them(config, expected):
    assert Prompts.from_config(config) == expected
    assert Prompts(query="q: ").manifest_entry() == {"prompts": {"query": "q: "}} and Prompts().manifest_entry() == {}


def model_with_prompts(folder: Path, prompts: dict[str, str]) -> Path:
    """The default model's files, with ``prompts`` in its sentence-transformers config."""
    shutil.copytree(default_model_folder(), folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({**config, "prompts": prompts}), encoding="utf-8")
    return folder


def test_passages_and_questions_embed_after_their_prompts(tmp_path, monkeypatch, write_corpus):
    from sentence_transformers import SentenceTransformer

    from indexer.build import build_index
    from indexer.store import StoredIndex
    from query import search
    from query.index import open_searcher

    monkeypatch.setenv("SEMINDEX_CACHE", str(tmp_path / "cache"))
    model = model_with_prompts(tmp_path / "model", PROMPTS)
    corpus = write_corpus({"kites.txt": "Kites fly over the beach in Brighton every summer.\n",
                           "ferry.txt": "The harbour ferry resumed service on Monday after the storm.\n"})
    index = tmp_path / "index"
    build_index(corpus=corpus, index=index, model=str(model), precision="fp32")
    stored = StoredIndex.open(index)
    assert stored.manifest["model"]["prompts"] == {"query": "query: ", "document": "passage: "}

    reference = SentenceTransformer(str(model), device="cpu")
    texts = [p.embed_text for p in stored.passages()]
    stored_vectors = stored.vectors.reconstruct_n(0, stored.count)
    assert np.allclose(stored_vectors, reference.encode(texts, prompt_name="passage", normalize_embeddings=True), atol=1e-4)
    assert not np.allclose(stored_vectors, reference.encode(texts, normalize_embeddings=True), atol=1e-2)
    searcher = open_searcher(index)
    question = "Where do kites fly?"
    assert np.allclose(searcher.embed_question(question),
                       reference.encode(question, prompt_name="query", normalize_embeddings=True), atol=1e-4)
    assert "Kites" in search(question, k=1, index=index, mode="dense")[0].text

    warnings: list[str] = []
    (model / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}), encoding="utf-8")
    report = build_index(corpus=corpus, index=index, model=str(model), warn=warnings.append)
    assert report.embedded == len(texts) and any("every passage is embedded again" in w for w in warnings), warnings
    assert StoredIndex.open(index).manifest["model"]["prompts"] == {"query": "query: "}

"""The typed core: passages and manifests read from disk and written back unchanged, and the
one Encoder protocol every embedder follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.encoders import CachedEncoder, Encoder, LinkEncoder, VectorCache
from indexer.errors import IndexFormatError
from indexer.manifest import FORMAT_VERSION, KeptSettings, Manifest
from indexer.store import StoredIndex, live_generation
from indexer.types import Passage, PassageKind

INDEX = Path(__file__).resolve().parent.parent / "index"


def test_every_stored_passage_is_written_back_byte_for_byte():
    path = live_generation(INDEX) / "passages.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    kinds = set()
    for line in lines:
        passage = Passage.from_json(json.loads(line))
        kinds.add(passage.kind)
        assert json.dumps(passage.to_json(), ensure_ascii=False, separators=(",", ":")) == line
    assert {PassageKind.TITLE, PassageKind.BODY, PassageKind.DATE, PassageKind.PUBLISHER} <= kinds
    stored = StoredIndex.open(INDEX)
    assert [p.to_json() for p in stored.passages()] == [json.loads(line) for line in lines]
    assert stored.passage(3) == stored.passages()[3]


def test_the_manifest_is_typed_and_kept_as_read():
    stored = StoredIndex.open(INDEX)
    manifest = stored.manifest
    raw = json.loads((stored.generation / "manifest.json").read_text(encoding="utf-8"))
    assert manifest.to_json() == raw and dict(manifest) == raw
    assert manifest.count == raw["counts"]["passages"] == stored.count
    assert manifest.model_id == raw["model"]["id"] and manifest.dimension == raw["model"]["dimension"]
    assert manifest.chunking.to_dict() == raw["chunking"] and manifest.keyword.to_dict() == raw["keyword"]
    assert manifest.precision == raw["model"].get("precision", "fp32")
    kept = KeptSettings.of(INDEX)
    assert kept.chunking == manifest.chunking and kept.precision() == manifest.precision
    assert kept.factory is None  # chosen by size, so chosen again as the index grows


def test_a_manifest_that_is_not_one_is_refused_in_one_line(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": "semindex-index", "format_version": FORMAT_VERSION, "model": {}}), encoding="utf-8")
    with pytest.raises(IndexFormatError, match=r"manifest.json: field 'model.id' is missing or not a string; rebuild"):
        Manifest.load(path, index=tmp_path)
    assert KeptSettings.of(tmp_path / "nothing-here").chunking is None


def test_every_encoder_follows_one_protocol(embedder):
    import numpy as np

    from indexer.build_model import BuildModel

    model = BuildModel(embedder=embedder, precision="fp32")
    cached = CachedEncoder(model, VectorCache.empty(model.dimension))
    for encoder in (embedder, model, cached, LinkEncoder(cached)):
        assert isinstance(encoder, Encoder), type(encoder).__name__
    texts = ["Kites fly over Brighton.", "Parrots live in the Amazon."]
    expected = embedder.encode(texts)
    assert np.allclose(cached.encode(texts), expected, atol=1e-5) and cached.last_missing == 2
    assert not cached.remembered  # only link encoding remembers its vectors
    LinkEncoder(cached).encode(texts)
    reused = CachedEncoder(model, VectorCache(rows={key: row for row, key in enumerate(cached.remembered)},
                                             matrix=np.stack(list(cached.remembered.values()))))
    assert np.allclose(reused.encode(texts), expected, atol=1e-5) and reused.last_reused == 2 and reused.last_missing == 0

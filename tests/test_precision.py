"""Embedding precision: int8 is the default for new indexes, its vectors stay near fp32's,
a rebuild keeps the index's precision, and questions always embed at fp32."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.incremental import BuildModel
from indexer.onnx_embedder import OnnxEmbedder
from indexer.onnx_export import PRECISIONS
from indexer.store import StoredIndex
from query.cli import Precision
from query.searcher import Searcher

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fp32_index(embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("fp32") / "index"
    build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, precision="fp32")
    return index


def test_cli_choices_are_the_precisions() -> None:
    assert tuple(p.value for p in Precision) == PRECISIONS


def test_default_precision_is_int8_for_a_new_index_and_the_live_one_otherwise(embedder, monkeypatch) -> None:
    monkeypatch.delenv("SEMINDEX_NO_ONNX", raising=False)
    assert BuildModel(embedder=embedder).precision == "int8"
    fp32_manifest = {"model": {"id": embedder.ref.id}}
    assert BuildModel(embedder=embedder, recorded=fp32_manifest).precision == "fp32"
    other_model = {"model": {"id": "some/other-model"}}
    assert BuildModel(embedder=embedder, recorded=other_model).precision == "int8"
    assert BuildModel(embedder=embedder, recorded=fp32_manifest, precision="int8").precision == "int8"
    monkeypatch.setenv("SEMINDEX_NO_ONNX", "1")
    assert BuildModel(embedder=embedder).precision == "fp32"


def test_int8_vectors_stay_close_to_fp32(bundled_index: Path, fp32_index: Path) -> None:
    quantized, exact = StoredIndex.open(bundled_index), StoredIndex.open(fp32_index)
    assert quantized.manifest["model"]["precision"] == "int8"
    assert "precision" not in exact.manifest["model"]
    assert [p["text"] for p in quantized.passages()] == [p["text"] for p in exact.passages()]
    a = quantized.vectors.reconstruct_n(0, quantized.count)
    b = exact.vectors.reconstruct_n(0, exact.count)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.97 and cosine.mean() >= 0.99, (cosine.min(), cosine.mean())


def test_an_int8_vector_depends_only_on_its_text(bundled_index: Path) -> None:
    stored = StoredIndex.open(bundled_index)
    texts = [stored.passage(i).get("embedded") or stored.passage(i)["text"] for i in range(0, stored.count, 7)][:12]
    recorded = stored.manifest["model"]
    from indexer.onnx_export import export_folder

    int8 = OnnxEmbedder(export_folder(recorded["id"], recorded["fingerprint"], "int8"))
    together = int8.encode(texts)
    alone = np.vstack([int8.encode([text]) for text in texts])
    assert np.array_equal(together, alone)
    assert np.allclose(together, stored.vectors.reconstruct_n(0, stored.count)[0:stored.count:7][:12], atol=1e-6)


def test_int8_index_answers_with_fp32_questions(bundled_index: Path) -> None:
    searcher = Searcher(StoredIndex.open(bundled_index))
    assert searcher.query_embedder.config.get("precision", "fp32") == "fp32"
    hits = searcher.search("Who is the executive director of EleutherAI?", k=3)
    assert any("Stella Biderman" in hit.text for hit in hits)


def test_a_rebuild_keeps_the_precision_and_an_explicit_one_re_embeds(bundled_index: Path, embedder, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(bundled_index, index)
    assert build_index(corpus=ROOT / "corpus", index=index, embedder=embedder).unchanged
    warnings: list[str] = []
    report = build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, warn=warnings.append, precision="fp32")
    assert report.reused == 0 and report.embedded > 0
    assert any("int8" in warning for warning in warnings), warnings
    assert "precision" not in StoredIndex.open(index).manifest["model"]
    assert build_index(corpus=ROOT / "corpus", index=index, embedder=embedder).unchanged


def test_a_default_int8_that_cannot_be_exported_builds_at_fp32(embedder, tmp_path: Path, monkeypatch) -> None:
    import indexer.onnx_export as onnx_export

    made = onnx_export.ensure_export

    def no_int8(**kwargs):
        if kwargs.get("precision", "fp32") != "fp32":
            raise RuntimeError("quantization unavailable")
        return made(**kwargs)

    monkeypatch.setattr(onnx_export, "ensure_export", no_int8)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The harbour ferry resumed service on Monday after the storm.\n", encoding="utf-8")
    warnings: list[str] = []
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, warn=warnings.append)
    assert "precision" not in StoredIndex.open(tmp_path / "index").manifest["model"]
    assert any("embedding at fp32" in warning for warning in warnings), warnings
    with pytest.raises(RuntimeError, match="quantization unavailable"):
        build_index(corpus=corpus, index=tmp_path / "asked", embedder=embedder, precision="int8")


def test_an_unusable_live_generation_is_rebuilt_at_its_precision(bundled_index: Path, embedder, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(bundled_index, index)
    generation = StoredIndex.open(index).generation
    with (generation / "articles.json").open("a", encoding="utf-8") as handle:
        handle.write(" ")
    warnings: list[str] = []
    report = build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, warn=warnings.append)
    assert report.reused == 0 and any("cannot be reused" in warning for warning in warnings), warnings
    assert StoredIndex.open(index).manifest["model"]["precision"] == "int8"

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


@pytest.fixture(scope="module")
def fp32_export(embedder) -> Path:
    from indexer.incremental import BuildModel

    model = BuildModel(embedder=embedder, precision="fp32")
    return model.export.folder


def test_the_feed_forward_down_projections_are_found_in_the_graph(fp32_export: Path) -> None:
    from indexer.onnx_export import ONNX_FILE, activation_fed_matmuls

    names = activation_fed_matmuls(fp32_export / ONNX_FILE)
    assert names == [f"/model/model.0/encoder/layer.{layer}/output/dense/MatMul" for layer in range(6)]


def test_an_int8_export_is_checked_against_fp32(fp32_export: Path, tmp_path: Path, monkeypatch) -> None:
    import indexer.onnx_export as onnx_export

    plain = onnx_export.quantize_export(fp32_export, tmp_path / "plain")
    assert plain["fp32_matmuls"] == [] and plain["fidelity"]["mean_cosine"] >= onnx_export.INT8_MIN_MEAN_COSINE
    assert plain["int8_recipe"] == onnx_export.INT8_RECIPE
    # MiniLM keeps 0.994 with every MatMul quantized and 0.996 with its down-projections at fp32
    monkeypatch.setattr(onnx_export, "INT8_MIN_MEAN_COSINE", 0.995)
    kept = onnx_export.quantize_export(fp32_export, tmp_path / "kept")
    assert len(kept["fp32_matmuls"]) == 6 and kept["fidelity"]["mean_cosine"] >= 0.995
    assert OnnxEmbedder(tmp_path / "kept").encode(["a ferry"]).shape == (1, 384)
    monkeypatch.setattr(onnx_export, "INT8_MIN_MEAN_COSINE", 1.01)
    with pytest.raises(onnx_export.ModelError, match=r"with 0 MatMuls at fp32; .* with 6 MatMuls at fp32.*--precision fp32"):
        onnx_export.quantize_export(fp32_export, tmp_path / "refused")


def test_an_index_of_an_earlier_int8_recipe_is_embedded_again(bundled_index: Path, embedder, tmp_path: Path) -> None:
    import json

    index = tmp_path / "index"
    shutil.copytree(bundled_index, index)
    manifest_path = StoredIndex.open(index).generation / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for entry in (manifest["model"], manifest["model_identity"]):
        del entry["int8_recipe"]  # as written by recipe 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    warnings: list[str] = []
    report = build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, warn=warnings.append)
    assert report.reused == 0 and report.embedded > 0
    assert any("int8 recipe 1" in warning for warning in warnings), warnings
    assert StoredIndex.open(index).manifest["model"]["int8_recipe"] == 2

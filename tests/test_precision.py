"""Embedding precision: int8 is the default for new indexes, its vectors stay near fp32's,
a rebuild keeps the index's precision, and questions always embed at fp32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.build_model import BuildModel
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
    assert [p.text for p in quantized.passages()] == [p.text for p in exact.passages()]
    a = quantized.vectors.reconstruct_n(0, quantized.count)
    b = exact.vectors.reconstruct_n(0, exact.count)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.97 and cosine.mean() >= 0.99, (cosine.min(), cosine.mean())


def test_an_int8_vector_depends_only_on_its_text(bundled_index: Path) -> None:
    stored = StoredIndex.open(bundled_index)
    texts = [stored.passage(i).embed_text for i in range(0, stored.count, 7)][:12]
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


def build_a_default_index(tmp_path: Path, embedder) -> tuple[Path, list[str]]:
    """A one-file corpus built into ``tmp_path / "index"`` at the default precision: (corpus, warnings)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The harbour ferry resumed service on Monday after the storm.\n", encoding="utf-8")
    warnings: list[str] = []
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, warn=warnings.append)
    return corpus, warnings


def test_a_default_int8_that_cannot_be_exported_builds_at_fp32(embedder, tmp_path: Path, monkeypatch) -> None:
    import indexer.onnx_export as onnx_export

    made = onnx_export.ensure_export

    def no_int8(**kwargs):
        if kwargs.get("precision", "fp32") != "fp32":
            raise RuntimeError("quantization unavailable")
        return made(**kwargs)

    monkeypatch.setattr(onnx_export, "ensure_export", no_int8)
    corpus, warnings = build_a_default_index(tmp_path, embedder)
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
    from indexer.build_model import BuildModel

    model = BuildModel(embedder=embedder, precision="fp32")
    return model.export.folder


def test_the_feed_forward_down_projections_are_found_in_the_graph(fp32_export: Path) -> None:
    from indexer.onnx_export import ONNX_FILE, activation_fed_matmuls

    names = activation_fed_matmuls(fp32_export / ONNX_FILE)
    assert names == [f"/model/model.0/encoder/layer.{layer}/output/dense/MatMul" for layer in range(6)]


def test_minilm_quantized_whole_passes_the_fidelity_check(fp32_export: Path, tmp_path: Path) -> None:
    import indexer.onnx_export as onnx_export

    config = onnx_export.quantize_export(fp32_export, tmp_path / "int8")
    assert config["fp32_matmuls"] == [] and config["int8_recipe"] == onnx_export.INT8_RECIPE
    assert config["fidelity"]["mean_cosine"] >= onnx_export.INT8_MIN_MEAN_COSINE
    assert config["fidelity"]["min_cosine"] >= onnx_export.INT8_MIN_COSINE


def test_an_unfaithful_int8_export_keeps_its_down_projections_at_fp32_or_is_refused(
    fp32_export: Path, tmp_path: Path, monkeypatch
) -> None:
    import indexer.onnx_export as onnx_export

    measured: list[list[str]] = []

    def fidelity(source: Path, quantized: Path) -> tuple[float, float]:
        kept = json.loads((quantized / onnx_export.CONFIG_FILE).read_text(encoding="utf-8"))["fp32_matmuls"]
        measured.append(kept)
        return (0.90, 0.85) if not kept else outcome_with_kept

    monkeypatch.setattr(onnx_export, "fidelity", fidelity)
    outcome_with_kept = (0.99, 0.97)
    config = onnx_export.quantize_export(fp32_export, tmp_path / "kept")
    assert [len(kept) for kept in measured] == [0, 6] and len(config["fp32_matmuls"]) == 6
    assert config["fidelity"] == {"mean_cosine": 0.99, "min_cosine": 0.97}
    assert OnnxEmbedder(tmp_path / "kept").encode(["a ferry"]).shape == (1, 384)
    outcome_with_kept = (0.99, 0.90)  # one text too far off
    with pytest.raises(onnx_export.ModelError, match=r"0\.900 .* with 0 MatMuls at fp32; 0\.990 .* with 6 .*--precision fp32"):
        onnx_export.quantize_export(fp32_export, tmp_path / "refused")


def test_a_default_build_of_an_unfaithful_model_embeds_at_fp32(fp32_export: Path, embedder, tmp_path: Path, monkeypatch) -> None:
    import indexer.onnx_export as onnx_export

    cache = tmp_path / "cache"
    shutil.copytree(fp32_export, cache / "onnx" / fp32_export.name)  # the fp32 export, not remade
    monkeypatch.setenv("SEMINDEX_CACHE", str(cache))
    monkeypatch.setattr(onnx_export, "INT8_MIN_MEAN_COSINE", 1.01)
    corpus, warnings = build_a_default_index(tmp_path, embedder)
    assert "precision" not in StoredIndex.open(tmp_path / "index").manifest["model"]
    assert any("--precision fp32" in warning and "embedding at fp32" in warning for warning in warnings), warnings
    assert [folder.name for folder in (cache / "onnx").iterdir()] == [fp32_export.name]  # no int8 export left
    assert BuildModel(embedder=embedder).settled_precision() == "fp32"


def test_an_unchecked_int8_export_of_recipe_1_is_never_reused(fp32_export: Path, embedder, tmp_path: Path, monkeypatch) -> None:
    from indexer.onnx_export import CONFIG_FILE, ensure_export, export_folder

    monkeypatch.setenv("SEMINDEX_CACHE", str(tmp_path))
    model = BuildModel(embedder=embedder)
    shutil.copytree(fp32_export, export_folder(model.ref.id, model.fingerprint))
    recipe_1 = export_folder(model.ref.id, model.fingerprint).with_name(fp32_export.name + "-int8")
    shutil.copytree(fp32_export, recipe_1)  # what recipe 1 cached, unchecked
    folder = ensure_export(model_id=model.ref.id, model_path=model.ref.local_path, fingerprint=model.fingerprint,
                           max_seq_length=model.max_seq_length, precision="int8")
    assert folder != recipe_1 and "fidelity" in json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    assert not recipe_1.exists()  # removed once a checked export replaces it


def test_the_beir_cache_of_an_int8_index_is_keyed_by_the_recipe(monkeypatch) -> None:
    import indexer.onnx_export as onnx_export
    from indexer.chunking import ChunkSettings
    from query.evaluate import beir_index_path

    folder = ROOT.parent / "shared" / "eval" / "scifact"
    keyed = lambda: beir_index_path(folder, cache=Path("/c"), model=None, settings=ChunkSettings(), precision="int8")  # noqa: E731
    before = keyed()
    monkeypatch.setattr(onnx_export, "INT8_RECIPE", onnx_export.INT8_RECIPE + 1)
    assert keyed() != before


def test_an_index_of_an_earlier_int8_recipe_is_embedded_again(bundled_index: Path, embedder, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(bundled_index, index)
    manifest_path = StoredIndex.open(index).generation / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for entry in (manifest["model"], manifest["model_identity"]):
        entry.pop("int8_recipe")  # as written by recipe 1
        entry.pop("int8_fp32_matmuls", None)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    warnings: list[str] = []
    report = build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, warn=warnings.append)
    assert report.reused == 0 and report.embedded > 0
    assert any("int8 recipe 1 with 0 MatMuls at fp32, this build by recipe 2 with 0" in warning
               for warning in warnings), warnings
    model_entry = StoredIndex.open(index).manifest["model"]
    assert model_entry["int8_recipe"] == 2 and model_entry["int8_fp32_matmuls"] == 0


def test_quantizing_leaves_no_log_handler_behind(fp32_export: Path, tmp_path: Path) -> None:
    """onnxruntime's quantizer calls logging.warning, which sets up a stderr handler on the root
    logger when it has none; bm25s then printed its DEBUG lines on every later build. Run in a
    fresh interpreter: pytest's own log capture gives the root a handler."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from indexer.onnx_export import quantize_export\n"
        f"quantize_export(Path({str(fp32_export)!r}), Path({str(tmp_path / 'int8')!r}))\n"
        "logger = logging.getLogger('bm25s'); logger.setLevel(logging.DEBUG)\n"
        "logger.debug('Building index from IDs objects')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "DEBUG" not in result.stderr and "pre-processing" not in result.stderr, result.stderr


def test_quantizing_writes_only_into_its_own_folder(fp32_export: Path, tmp_path: Path, monkeypatch) -> None:
    """onnxruntime writes a shape-inferred copy beside the model it quantizes: beside the shared
    fp32 export, two builds quantizing at once deleted each other's copy."""
    import onnx.shape_inference

    from indexer.onnx_export import quantize_export

    written: list[Path] = []
    infer = onnx.shape_inference.infer_shapes_path
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path",
                        lambda source, target, *args, **kwargs: (written.append(Path(target)), infer(source, target, *args, **kwargs))[1])
    quantize_export(fp32_export, tmp_path / "int8")
    assert written and not [path for path in written if path.parent == fp32_export], written
    assert sorted(path.name for path in (tmp_path / "int8").iterdir()) == ["model.onnx", "onnx_config.json", "tokenizer.json"]


def test_check_at_another_precision_names_the_build_that_brings_the_index_to_it(bundled_index: Path, fp32_index: Path) -> None:
    """``build --check --precision fp32`` of an int8 index: stale, and the command it suggests
    embeds at fp32 (a plain build would keep int8)."""
    from indexer.compare import build_command, compare_indexes

    assert "passages embedded at int8, not fp32" in compare_indexes(expected=fp32_index, actual=bundled_index)
    assert build_command(corpus=Path("corpus"), index=Path("index"), precision="fp32") == \
        "semindex build corpus --index index --precision fp32"
    assert build_command(corpus=Path("my corpus"), index=Path("index"), model="m", max_tokens=96, factory="HNSW32") == \
        "semindex build 'my corpus' --index index --model m --max-tokens 96 --faiss HNSW32"
    assert build_command(corpus=Path("corpus"), index=Path("index")) == "semindex build corpus --index index"


def test_int8_asked_for_without_onnx_is_refused_in_one_line(embedder, tmp_path: Path, monkeypatch) -> None:
    from indexer.embedder import ModelError

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The harbour ferry resumed service on Monday after the storm.\n", encoding="utf-8")
    monkeypatch.setenv("SEMINDEX_NO_ONNX", "1")
    with pytest.raises(ModelError) as error:
        build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder, precision="int8")
    assert str(error.value) == ("int8 embedding needs the model's ONNX export, which SEMINDEX_NO_ONNX turns off; "
                                "unset it, or pass --precision fp32")
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_an_int8_index_is_embedded_again_at_fp32_without_onnx(embedder, tmp_path: Path, monkeypatch) -> None:
    """SEMINDEX_NO_ONNX keeps onnxruntime out of embedding: an int8 index stays up to date while
    nothing changed, and is embedded again at fp32 once a text must be embedded."""
    corpus, _ = build_a_default_index(tmp_path, embedder)
    index = tmp_path / "index"
    assert StoredIndex.open(index).manifest["model"]["precision"] == "int8"
    monkeypatch.setenv("SEMINDEX_NO_ONNX", "1")
    monkeypatch.setattr(OnnxEmbedder, "encode", lambda self, texts: pytest.fail("onnxruntime embedded passages"))
    assert build_index(corpus=corpus, index=index, embedder=embedder).unchanged
    (corpus / "b.txt").write_text("Kites fly over the beach in Brighton every summer.\n", encoding="utf-8")
    warnings: list[str] = []
    report = build_index(corpus=corpus, index=index, embedder=embedder, warn=warnings.append)
    assert report.reused == 0 and report.embedded == 2
    assert "precision" not in StoredIndex.open(index).manifest["model"]
    assert "int8 embedding needs the model's ONNX export, which SEMINDEX_NO_ONNX turns off; embedding at fp32" \
        in warnings, warnings
    assert any("embedded at int8, this build asks for fp32" in warning for warning in warnings), warnings

"""int8 builds: vectors near fp32's, recorded in the manifest, queried at the same precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.onnx_export import PRECISIONS
from indexer.store import StoredIndex
from query.cli import Precision
from query.searcher import Searcher

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def int8_index(embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("int8") / "index"
    build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, precision="int8")
    return index


def test_cli_choices_are_the_precisions() -> None:
    assert tuple(p.value for p in Precision) == PRECISIONS


def test_int8_vectors_stay_close_to_fp32(int8_index: Path, bundled_index: Path) -> None:
    quantized, exact = StoredIndex.open(int8_index), StoredIndex.open(bundled_index)
    assert quantized.manifest["model"]["precision"] == "int8"
    assert "precision" not in exact.manifest["model"]
    assert [p["text"] for p in quantized.passages()] == [p["text"] for p in exact.passages()]
    a = quantized.vectors.reconstruct_n(0, quantized.count)
    b = exact.vectors.reconstruct_n(0, exact.count)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.97 and cosine.mean() >= 0.99, (cosine.min(), cosine.mean())


def test_int8_index_answers_with_int8_queries(int8_index: Path) -> None:
    searcher = Searcher(StoredIndex.open(int8_index))
    assert searcher.query_embedder.config["precision"] == "int8"
    hits = searcher.search("Who is the executive director of EleutherAI?", k=3)
    assert any("Stella Biderman" in hit.text for hit in hits)


def test_unchanged_int8_build_is_a_no_op_and_fp32_re_embeds(int8_index: Path, embedder, tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(int8_index, index)
    assert build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, precision="int8").unchanged
    warnings: list[str] = []
    report = build_index(corpus=ROOT / "corpus", index=index, embedder=embedder, warn=warnings.append)
    assert report.reused == 0 and report.embedded > 0
    assert any("int8" in warning for warning in warnings), warnings
    assert "precision" not in StoredIndex.open(index).manifest["model"]

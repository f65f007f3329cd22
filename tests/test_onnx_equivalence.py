"""The ONNX export of the default model embeds like sentence-transformers, without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.embedder import Embedder
from indexer.onnx_export import export_onnx
from indexer.onnx_embedder import OnnxEmbedder

ROOT = Path(__file__).resolve().parents[1]

_LONG = (
    "The central bank raised interest rates by a quarter point on Wednesday, citing persistent "
    "inflation in services and a labour market that has cooled less than expected. "
)
TEXTS = [
    "who runs EleutherAI?",
    "a",
    "",
    " ",
    "?",
    "OK",
    "interest rates",
    "When did the strike at the port end?",
    "COVID-19 vaccine rollout in rural districts",
    "Élections municipales : les résultats du second tour",
    "Der Bundestag hat das Gesetz mit großer Mehrheit verabschiedet.",
    "東京で新しい美術館が開館した",
    "Москва объявила о новых санкциях",
    "الأمم المتحدة تدعو إلى وقف إطلاق النار",
    "emoji test 🚀🔥 launch day",
    "naïve café résumé — “quoted” text… with ellipsis",
    "tabs\tand\nnewlines\r\nmixed   spacing",
    "URL https://example.com/news/2024/05/article?id=42&ref=rss",
    "numbers 3.14159 and 1,000,000 and 2024-05-17T10:00:00Z",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "The quick brown fox jumps over the lazy dog.",
    "Shares of the chipmaker fell 8% after it warned of weaker demand from data centres.",
    "Floods displaced thousands of residents along the river after three days of heavy rain, "
    "and officials said the water would not recede before the weekend.",
    _LONG * 3,
    _LONG * 12,
    ("word " * 600).strip(),
    "é" * 400,
    "🚀" * 300,
    "x" * 3000,
    " ".join(str(n) for n in range(400)),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The sentence-transformers reference, loaded once for the module."""
    return Embedder()


@pytest.fixture(scope="module")
def folder(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model exported once for the module."""
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(
        model_path=embedder.ref.local_path, out_dir=out, max_seq_length=embedder.max_seq_length
    )
    return out


def test_matches_sentence_transformers(embedder: Embedder, folder: Path) -> None:
    fast = OnnxEmbedder(folder)
    expected = embedder.encode(TEXTS, batch_size=8)
    got = fast.encode(TEXTS, batch_size=8)

    assert got.shape == expected.shape == (len(TEXTS), fast.dimension)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, [(t[:40], c) for t, c in zip(TEXTS, cosine) if c < 0.9999]


def test_truncates_like_sentence_transformers(embedder: Embedder, folder: Path) -> None:
    ids = embedder.model.preprocess(TEXTS)["input_ids"].tolist()
    encodings = OnnxEmbedder(folder).tokenizer.encode_batch(TEXTS)
    assert [encoding.ids for encoding in encodings] == ids
    assert max(len(row) for row in ids) == embedder.max_seq_length


def test_batching_does_not_change_rows(folder: Path) -> None:
    fast = OnnxEmbedder(folder)
    texts = [*TEXTS[:8], _LONG * 12]
    together = fast.encode(texts, batch_size=32)
    alone = np.concatenate([fast.encode([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert fast.encode([]).shape == (0, fast.dimension)


def test_query_path_does_not_import_torch(folder: Path) -> None:
    code = (
        "import sys\n"
        "from indexer.onnx_embedder import OnnxEmbedder\n"
        f"vectors = OnnxEmbedder({str(folder)!r}).encode(['who runs EleutherAI?'])\n"
        "assert vectors.shape == (1, 384), vectors.shape\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_the_query_session_sleeps_when_idle_and_embeds_the_same(folder: Path) -> None:
    """The query path's session differs only in that its threads do not spin between runs."""
    from query.encoder import QueryOnnxEmbedder

    query = QueryOnnxEmbedder(folder)
    options = query.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert np.array_equal(query.encode(TEXTS, batch_size=8), OnnxEmbedder(folder).encode(TEXTS, batch_size=8))

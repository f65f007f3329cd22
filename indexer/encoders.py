"""Stage 5 of a build: texts to unit vectors, through one :class:`Encoder` protocol.

Encoders: :class:`~indexer.embedder.Embedder` (sentence-transformers),
:class:`~indexer.onnx_embedder.OnnxEmbedder` (the ONNX export at fp32 or int8), and
:class:`~indexer.build_model.BuildModel` (whichever of those the build embeds with); the
vector cache wraps any of them. :class:`CachedEncoder` answers a text from the previous
generation's vectors when that exact embedded text was embedded before (keyed by its
sha256), and embeds only the rest: an incremental build cuts passages exactly as a full
build does, and a vector is a function of the model and the embedded text alone, so a
reused vector is the one a full build would compute (up to the last float32 bits).
Vectors are reused only when the model's identity is unchanged (see ``reusable_vectors``).
Old vectors are read back with FAISS ``reconstruct_n``, exact for flat storage (``Flat``,
``HNSW…,Flat``, ``IVF…,Flat``); any other factory is embedded again in full. The vectors
body linking embeds are kept beside the passages (``linkvectors.npy``, rows keyed by the
sha256 in ``linkvectors.json``), so an unchanged corpus never loads the model for linking.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from indexer.discover import Warn
from indexer.errors import IndexFormatError
from indexer.store import StoredIndex, rebuild_hint

if TYPE_CHECKING:
    import numpy as np

    from indexer.build_model import BuildModel

LINK_VECTORS = "linkvectors.npy"
LINK_KEYS = "linkvectors.json"


@runtime_checkable
class Encoder(Protocol):
    """Embeds texts into unit rows (float32, one per text): inner product is cosine."""

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: list[str], *, batch_size: int = ...) -> np.ndarray: ...


def text_key(text: str) -> str:
    """The key a vector is cached under: sha256 of the exact text that was embedded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_passages(embedder: Encoder, texts: list[str], *, progress: bool, batch_size: int = 64):
    """Embed in length-sorted batches (less padding), with a progress bar if asked."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
        task = bar.add_task("embedding", total=len(texts))
        bar.start()
    try:
        for first in range(0, len(order), batch_size):
            chunk = order[first : first + batch_size]
            vectors[chunk] = embedder.encode([texts[i] for i in chunk], batch_size=batch_size)
            if bar is not None:
                bar.advance(task, len(chunk))
    finally:
        if bar is not None:
            bar.stop()
    return vectors


def reusable_vectors(
    index: Path, previous: StoredIndex | None, model_view: BuildModel, *, model_name: str | None, warn: Warn
) -> VectorCache | None:
    """The previous generation's vectors when they were made by this very model, else None.

    An index built with another model is refused (a silent switch would re-embed
    everything, which only ``--full`` should do).
    """
    if previous is None:
        return None
    recorded = previous.manifest.get("model") or {}
    if recorded.get("id") != model_view.ref.id:
        extra = f" --model {model_name}" if model_name else ""
        raise IndexFormatError(
            f"{index}: built with model {recorded.get('id')!r}, not {model_view.ref.id!r}; pass --model "
            f"{recorded.get('id')} to update it, or to re-embed everything {rebuild_hint(index)}{extra}"
        )
    if (recorded_precision := model_view.recorded_precision()) != model_view.settled_precision():
        warn(f"{previous.generation.name} was embedded at {recorded_precision}, this build asks for "
             f"{model_view.precision}; every passage is embedded again")
        return None
    recorded_quantization = (recorded.get("int8_recipe", 1), recorded.get("int8_fp32_matmuls", 0))
    if recorded_quantization != (quantization := model_view.quantization()):
        warn(f"{previous.generation.name} was quantized by int8 recipe {recorded_quantization[0]} with "
             f"{recorded_quantization[1]} MatMuls at fp32, this build by recipe {quantization[0]} with "
             f"{quantization[1]}; every passage is embedded again")
        return None
    if recorded.get("fingerprint") != model_view.fingerprint:
        warn(f"the weights of model {model_view.ref.id!r} changed since {previous.generation.name}; "
             "every passage is embedded again")
        return None
    if recorded != model_view.describe():
        warn(f"model {model_view.ref.id!r} now loads differently from {previous.generation.name} "
             f"({recorded} vs {model_view.describe()}); every passage is embedded again")
        return None
    try:
        cache = VectorCache.from_generation(previous)
    except (IndexFormatError, ValueError, KeyError, OSError) as error:
        warn(f"the vectors of {previous.generation.name} cannot be read back ({error}); every passage is embedded again")
        return None
    if cache is None:
        warn(f"FAISS index {previous.manifest.get('faiss', {}).get('factory')!r} of {previous.generation.name} "
             "does not keep exact vectors; every passage is embedded again")
    return cache


@dataclass
class VectorCache:
    """Vectors of texts embedded by an earlier build, by ``text_key``."""

    rows: dict[str, int]
    matrix: Any  # float32 [n, dimension]

    @classmethod
    def empty(cls, dimension: int) -> VectorCache:
        import numpy as np

        return cls(rows={}, matrix=np.zeros((0, dimension), dtype=np.float32))

    @classmethod
    def from_generation(cls, stored: StoredIndex) -> VectorCache | None:
        """Passage and link vectors of a verified generation, or None when its FAISS storage
        cannot give the vectors back exactly."""
        import faiss
        import numpy as np

        index = stored.vectors
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat):
            ivf.make_direct_map()  # IVF-Flat keeps exact vectors; the map lets reconstruct_n find them
        else:
            flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
            if not isinstance(flat, faiss.IndexFlat):
                return None
        matrix = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), dtype=np.float32)
        rows: dict[str, int] = {}
        for number, passage in enumerate(stored.passages()):
            rows.setdefault(text_key(passage.embed_text), number)
        keys_path, vectors_path = stored.generation / LINK_KEYS, stored.generation / LINK_VECTORS
        if keys_path.is_file() and vectors_path.is_file():
            keys = json.loads(keys_path.read_text(encoding="utf-8"))["sha256"]
            extra = np.load(vectors_path, allow_pickle=False)
            if extra.shape == (len(keys), matrix.shape[1]):
                for offset, key in enumerate(keys):
                    rows.setdefault(key, len(matrix) + offset)
                matrix = np.concatenate([matrix, extra.astype(np.float32, copy=False)])
        return cls(rows=rows, matrix=np.ascontiguousarray(matrix, dtype=np.float32))

    def get(self, key: str):
        row = self.rows.get(key)
        return None if row is None else self.matrix[row]


class CachedEncoder:
    """An :class:`Encoder` wrapper that answers from a :class:`VectorCache` first and has
    ``model`` embed only the texts the cache lacks (each distinct text once).

    ``last_missing`` and ``last_reused`` count the texts of the last call that were embedded
    and reused; link vectors (see :class:`LinkEncoder`) are remembered, to be saved with the
    generation.
    """

    def __init__(self, model: Encoder, cache: VectorCache) -> None:
        self.model = model
        self.cache = cache
        self.last_reused = 0
        self.last_missing = 0
        self.remembered: dict[str, Any] = {}

    @property
    def dimension(self) -> int:
        return self.model.dimension

    def encode(self, texts: list[str], *, batch_size: int = 64,
               embed: Callable[[list[str]], Any] | None = None) -> np.ndarray:
        """Vectors of ``texts``: cached rows, and for the rest ``embed`` (default: the
        model's ``encode``)."""
        import numpy as np

        vectors = np.zeros((len(texts), self.model.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for number, key in enumerate(text_key(text) for text in texts):
            row = self.cache.get(key)
            if row is None:
                missing.setdefault(key, []).append(number)
            else:
                vectors[number] = row
        self.last_missing = sum(len(numbers) for numbers in missing.values())
        self.last_reused = len(texts) - self.last_missing
        if missing:
            unique = [numbers[0] for numbers in missing.values()]
            fresh = (embed or (lambda items: self.model.encode(items, batch_size=batch_size)))([texts[i] for i in unique])
            for numbers, vector in zip(missing.values(), fresh):
                vectors[numbers] = vector
        return vectors

    def write_link_vectors(self, folder: Path) -> None:
        """Save the remembered link vectors (row i has the text whose sha256 is key i)."""
        import numpy as np

        if not self.remembered:
            return
        keys = list(self.remembered)
        matrix = np.stack([self.remembered[key] for key in keys]).astype(np.float32)
        np.save(folder / LINK_VECTORS, matrix, allow_pickle=False)
        (folder / LINK_KEYS).write_text(json.dumps({"sha256": keys}) + "\n", encoding="utf-8")


class LinkEncoder:
    """The encoder body linking uses: a :class:`CachedEncoder` whose vectors are also
    remembered, so the next build links without the model."""

    def __init__(self, encoder: CachedEncoder) -> None:
        self.encoder = encoder

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        vectors = self.encoder.encode(texts, batch_size=batch_size)
        for text, vector in zip(texts, vectors):
            self.encoder.remembered.setdefault(text_key(text), vector)
        return vectors

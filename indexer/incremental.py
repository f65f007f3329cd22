"""Incremental builds: reuse the live generation's vectors for every text that did not change.

Why an incremental build equals a full build
--------------------------------------------
Every build, incremental or not, parses the whole corpus and cuts passages exactly as a
full build does (same order, same ids, same embedded text); only the embedding step
differs. A passage's vector is looked up in the live generation by the sha256 of its
*embedded* text, and only texts not found there are embedded. A vector is a function of
the model and the embedded text alone, so a hit is the vector a full build would compute
(up to the last float32 bits that batching changes; see ``compare.VECTOR_TOLERANCE``).
Chunk settings need no key of their own: they act through the passages' embedded text
(``max_tokens`` moves the cuts, a new title changes a metadata passage's rendering); the model does, and
vectors are reused only when the model's identity (:class:`BuildModel`) is unchanged.

Then a whole new generation is written (vectors, passages, keyword index, articles,
manifest), so:

- the FAISS index and the passage store are written together from one list and can never
  drift apart in count or order (Haystack's FAISS/document-store drift cannot happen);
- a passage of a deleted file is simply not in the new list, and a text that occurs twice is
  stored once with both sources, however often a file is re-ingested (PrivateGPT's
  duplicates);
- ``articles.json`` and every passage's sources are rebuilt from the parsed corpus on each
  build, so a changed URL, date, category or topic is picked up even when no text changed
  (simonw/llm's skipped metadata updates). A new title changes the embedded text of the
  title, excerpt and publisher passages of that article (they embed the title), so exactly
  those few are re-embedded.

Old vectors are read back with FAISS ``reconstruct_n``, which is exact for flat storage
(``Flat``, ``HNSW…,Flat``, ``IVF…,Flat``: the vectors are stored as given); any other factory is re-embedded
in full. The vectors that body linking embeds (paragraphs and article summaries, see
``build.link_bodies``) are kept beside the passages in ``linkvectors.npy`` (float32 rows)
and ``linkvectors.json`` (the sha256 of each row's text), so an unchanged corpus never loads
the model for linking either.

Without loading the model
-------------------------
Passages are sized with the model folder's ``tokenizer.json`` through ``tokenizers`` (the
same ids and offsets as the model's own tokenizer), and the model's dimension and sequence
limit are taken from the previous manifest when the model's identity (:class:`BuildModel`)
is unchanged, so a build whose texts all have vectors never imports torch. The few texts an
incremental build must embed go through the model's ONNX export when this machine has it
(``indexer.onnx_export``; at fp32 equal to sentence-transformers within ~2e-7), else through
sentence-transformers. ``SEMINDEX_NO_ONNX=1`` keeps onnxruntime out of embedding: builds embed
with sentence-transformers at fp32, so new indexes default to fp32, an int8 index is embedded
again at fp32 (with a warning) once it has texts to embed, and ``--precision int8`` is refused.

Nothing changed
---------------
``build._unchanged_report`` compares the sha256 of every corpus file (indexed and skipped),
the corpus location, the build settings, the model's identity, the sources of the indexing
code and the versions of the libraries that shape the index with what the live manifest
records. When all agree the build stops there: no parsing, no model, no new generation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from indexer.embedder import Embedder, ModelError, Prompts

if TYPE_CHECKING:
    import numpy as np

    from indexer.store import StoredIndex

LINK_VECTORS = "linkvectors.npy"
LINK_KEYS = "linkvectors.json"
PIPELINE_MODULES = ("build.py", "chrome.py", "chunking.py", "documents.py", "incremental.py", "keyword.py", "store.py")
"""The indexer's modules whose code decides what an index holds (hashed into the manifest)."""
PACKAGES = ("semindex", "faiss-cpu", "sentence-transformers", "torch", "numpy", "bm25s", "PyStemmer", "PyYAML",
            "tokenizers")
"""Installed packages whose version is recorded; a change of any of them means a rebuild (vectors are still reused)."""
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""Weight files, in the order ``embedder.weights_fingerprint`` looks for them."""
_SKIPPED_MODEL_DIRS = frozenset({"onnx", "openvino", ".git", ".cache"})
_MODEL_FILE_LIMIT = 16 << 20


def text_key(text: str) -> str:
    """The key a vector is cached under: sha256 of the exact text that was embedded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pipeline_fingerprint() -> str:
    """sha256 of the source of the modules that decide what goes into an index.

    A changed parser or chunker must not be answered with "up to date"; vectors are still
    reused by text, so a code change costs a re-parse, not a re-embedding.
    """
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    for name in PIPELINE_MODULES:
        path = folder / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"")
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    """Versions of the packages in PACKAGES, read from the installed ``*.dist-info`` folder names
    (as ``importlib.metadata`` finds them: first on ``sys.path`` wins), and Python's."""
    import platform

    wanted = {_normalise(name): name for name in PACKAGES}
    found: dict[str, str | None] = dict.fromkeys(PACKAGES)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if not folder.endswith(".dist-info") or "-" not in folder:
                continue
            name, _, version = folder[: -len(".dist-info")].rpartition("-")
            package = wanted.get(_normalise(name))
            if package is not None and found[package] is None:
                found[package] = version
    found["python"] = platform.python_version()
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def model_files_fingerprint(folder: Path) -> str:
    """sha256 of a model folder's files other than its weights: tokenizer, configs, pooling.

    With the weights' fingerprint this pins everything that shapes passages and vectors,
    which is what lets a build take the tokenizer and limits without loading the model.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (not path.is_file() or path.name in _WEIGHT_FILES or path.name.startswith(".")
                or _SKIPPED_MODEL_DIRS.intersection(relative.parts[:-1])
                or path.stat().st_size > _MODEL_FILE_LIMIT):
            continue
        digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def no_onnx() -> bool:
    """Is ``SEMINDEX_NO_ONNX`` set (passages never embed with onnxruntime)?"""
    from indexer.safety import flag_setting

    return flag_setting(os.environ.get("SEMINDEX_NO_ONNX"))


def no_onnx_problem(precision: str) -> str:
    return f"{precision} embedding needs the model's ONNX export, which SEMINDEX_NO_ONNX turns off"


def same_identity(recorded: Any, identity: dict[str, Any]) -> bool:
    """Does a manifest's ``model_identity`` name this model (its stat cache aside)?"""
    if not isinstance(recorded, dict):
        return False
    return {key: value for key, value in recorded.items() if key != "weights_stat"} == identity


class Tokens:
    """Token counts and offsets for chunking, from a ``tokenizers.Tokenizer`` (no truncation,
    no padding, no special tokens): the same ids and offsets as the model's own tokenizer
    called with ``add_special_tokens=False``, without importing torch or transformers."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        import tokenizers

        tokenizer = tokenizers.Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(tokenizer)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.encode(text, add_special_tokens=False).offsets


class HFTokens:
    """Token counts and offsets from a loaded model's own (transformers) tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


class BuildModel:
    """The embedding model as a build sees it: identity, limits and tokenizer come without
    loading the weights whenever the previous manifest vouches for them; the weights load
    (torch and all) only when a text must actually be embedded.

    ``recorded`` is the previous manifest. Its ``model`` entry (dimension, max_seq_length)
    is trusted only when the model id, the weights' sha256, the sha256 of the model's other
    files and the sentence-transformers version all equal what it records.
    """

    def __init__(self, *, model: str | None = None, embedder: Embedder | None = None,
                 recorded: dict[str, Any] | None = None, precision: str | None = None) -> None:
        self.embedder = embedder or Embedder(model=model)
        self.ref = self.embedder.ref
        self.recorded = recorded
        if precision not in (None, "fp32") and no_onnx():
            raise ModelError(f"{no_onnx_problem(precision)}; unset it, or pass --precision fp32")
        self.precision = precision or self.default_precision()
        # int8 chosen by default for a new index, or kept under SEMINDEX_NO_ONNX: fp32 instead
        # if its export cannot be made (or used)
        self.precision_fallback = precision is None and (self.precision != self.recorded_precision() or no_onnx())
        self.warnings: list[str] = []

    def default_precision(self) -> str:
        """The precision a build uses when none is asked for: the previous generation's (so a
        plain rebuild never re-embeds everything), else int8 for a model folder (the export
        can be quantized; 2.3x the passages/s of fp32 at equal SciFact nDCG@10, see
        ``bench/speed.py``), else fp32."""
        recorded = self.recorded_precision()
        if recorded is not None:
            return recorded
        return "int8" if self.ref.local_path is not None and not no_onnx() else "fp32"

    def recorded_precision(self) -> str | None:
        """The previous generation's precision when it was built with this model, else None."""
        recorded = (self.recorded or {}).get("model") or {}
        return str(recorded.get("precision", "fp32")) if recorded.get("id") == self.ref.id else None

    @property
    def loaded(self) -> bool:
        return "model" in self.embedder.__dict__

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the weights; taken from the previous manifest when the weights file is
        provably the one it hashed (same inode, size, mtime and ctime: ctime cannot be set
        back), which saves hashing ~90 MB on every build."""
        if "fingerprint" not in self.embedder.__dict__ and self.recorded:
            identity = self.recorded.get("model_identity") or {}
            stat = self.weights_stat
            if stat is not None and identity.get("id") == self.ref.id and identity.get("weights_stat") == stat:
                return str(identity["fingerprint"])
        return self.embedder.fingerprint

    @cached_property
    def weights_stat(self) -> dict[str, int] | None:
        path = self.ref.local_path
        for name in _WEIGHT_FILES:
            if path is not None and (path / name).is_file():
                info = (path / name).stat()
                return {"inode": info.st_ino, "size": info.st_size, "mtime_ns": info.st_mtime_ns,
                        "ctime_ns": info.st_ctime_ns}
        return None

    @cached_property
    def files_fingerprint(self) -> str | None:
        path = self.ref.local_path
        return model_files_fingerprint(path) if path is not None else None

    @cached_property
    def tokenizer_file(self) -> Path | None:
        path = self.ref.local_path
        if path is not None and (path / "tokenizer.json").is_file():
            return path / "tokenizer.json"
        return None

    def identity(self) -> dict[str, Any]:
        """What must be unchanged for recorded limits and stored vectors to be trusted."""
        return {
            "id": self.ref.id,
            "fingerprint": self.fingerprint,
            "files": self.files_fingerprint,
            "tokenizer": "tokenizer.json" if self.tokenizer_file is not None else "model",
            "sentence_transformers": package_versions().get("sentence-transformers"),
            **self.precision_entry(),
        }

    def precision_entry(self) -> dict[str, Any]:
        """``{"precision": "int8", "int8_recipe": 2}`` for a quantized build (the recipe:
        ``indexer.onnx_export.INT8_RECIPE``); nothing for fp32 (the default, and what manifests
        written before precision existed mean)."""
        if self.precision == "fp32":
            return {}
        from indexer.onnx_export import INT8_RECIPE

        return {"precision": self.precision, "int8_recipe": INT8_RECIPE}

    @cached_property
    def vouched(self) -> bool:
        """Does the previous manifest describe this very model (so its limits can be used)?"""
        recorded = self.recorded or {}
        return (
            self.ref.local_path is not None
            and same_identity(recorded.get("model_identity"), self.identity())
            and isinstance(recorded.get("model"), dict)
        )

    def record(self) -> dict[str, Any] | None:
        """The manifest's ``model_identity``: the identity, and the weights file's stat that
        lets the next build skip hashing the weights."""
        if self.ref.local_path is None:
            return None
        return {**self.identity(), "weights_stat": self.weights_stat}

    @cached_property
    def export_config(self) -> dict[str, Any] | None:
        """The config of this model's ONNX export if one is already cached, without making it."""
        if no_onnx() or self.ref.local_path is None:
            return None
        from indexer.onnx_export import CONFIG_FILE, export_folder

        try:
            config = json.loads((export_folder(self.ref.id, self.fingerprint) / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return config if config.get("fingerprint") == self.fingerprint else None

    def _recorded_limit(self, key: str) -> int | None:
        """``key`` of the model entry (``max_seq_length``, ``dimension``) from the previous
        manifest when it vouches for this model, else from the cached export; None when only
        loading the model can tell."""
        if self.loaded:
            return None
        if self.vouched:
            return int(self.recorded["model"][key])  # type: ignore[index]
        if self.export_config:
            return int(self.export_config[key])
        return None

    @cached_property
    def max_seq_length(self) -> int:
        return self._recorded_limit("max_seq_length") or self.embedder.max_seq_length

    @cached_property
    def dimension(self) -> int:
        return self._recorded_limit("dimension") or self.embedder.dimension

    @cached_property
    def tokens(self) -> Tokens | HFTokens:
        """The tokenizer that sizes passages: the model folder's ``tokenizer.json`` when it has
        one (every build, full or not, so they cut alike), else the loaded model's."""
        if self.tokenizer_file is not None:
            return Tokens.from_file(self.tokenizer_file)
        return HFTokens(self.embedder.tokenizer)

    def describe(self) -> dict[str, Any]:
        """The manifest's ``model`` entry. An int8 one also names how many MatMuls its export
        keeps at fp32, which the export's fidelity check decides (so the export is made here)."""
        fp32_matmuls = self.quantization()[1]
        kept = {"int8_fp32_matmuls": fp32_matmuls} if self.precision != "fp32" else {}
        return {"id": self.ref.id, "fingerprint": self.fingerprint, "dimension": self.dimension,
                "max_seq_length": self.max_seq_length, **self.prompts.manifest_entry(), **self.precision_entry(), **kept}

    @property
    def prompts(self) -> Prompts:
        """The model's question and passage prompts: passages embed after the latter."""
        return self.embedder.prompts

    def quantization(self) -> tuple[int, int]:
        """(int8 recipe, MatMuls kept at fp32) of the export passages are embedded with; (1, 0)
        at fp32, as manifests written before recipes existed read."""
        from indexer.onnx_export import INT8_RECIPE

        if self.settled_precision() == "fp32":
            return 1, 0
        return INT8_RECIPE, len(self.export.config.get("fp32_matmuls", []))

    def settled_precision(self) -> str:
        """The precision this build will embed at: a default int8 whose export cannot be made,
        or is not faithful, settles to fp32 here (so a cache can be keyed by it)."""
        if self.precision != "fp32":
            self.export
        return self.precision

    @cached_property
    def export(self) -> Any:
        """The ONNX export of exactly this model at ``precision`` (``indexer.onnx_export``), made
        once per machine and cached, or None for fp32 when there is none (the model is not a
        local folder, ``SEMINDEX_NO_ONNX`` is set, or the export fails): then
        sentence-transformers embeds. A default int8 that cannot be made falls back to fp32 (with
        a warning in ``warnings``), as does one kept from the live index under ``SEMINDEX_NO_ONNX``;
        an int8 asked for, or otherwise kept from the live index, fails.

        Every build embeds with it: onnxruntime runs MiniLM ~1.2x faster than torch on these
        short passages (int8 2.3x more), starts in a fraction of the time torch takes to import,
        and holds a third of the memory. fp32 vectors equal sentence-transformers' to ~2e-7 (as
        close as two torch batchings are to each other; ``tests/test_onnx_equivalence.py``).
        """
        try:
            return self._export_at(self.precision)
        except Exception as error:  # noqa: BLE001 - no usable export
            if self.precision == "fp32":
                return None  # sentence-transformers embeds
            if not self.precision_fallback:
                raise
            self.warnings.append(f"{error}; embedding at fp32" if no_onnx() else
                                 f"no {self.precision} ONNX export of {self.ref.id!r} ({error}); embedding at fp32")
            self.precision, self.precision_fallback = "fp32", False
            try:
                return self._export_at("fp32")
            except Exception:  # noqa: BLE001
                return None

    def _export_at(self, precision: str) -> Any:
        if precision != "fp32" and no_onnx():
            raise ModelError(no_onnx_problem(precision))
        if self.ref.local_path is None or no_onnx():
            if precision != "fp32":
                raise ModelError(f"{precision} embedding needs a model folder to export to ONNX, not {self.ref.id!r}")
            return None
        from indexer.onnx_embedder import OnnxEmbedder
        from indexer.onnx_export import ensure_export

        embedder = OnnxEmbedder(ensure_export(
            model_id=self.ref.id, model_path=self.ref.local_path, fingerprint=self.fingerprint,
            max_seq_length=self.max_seq_length, precision=precision,
        ))
        config = embedder.config
        if (config.get("fingerprint") != self.fingerprint or config.get("max_seq_length") != self.max_seq_length
                or config.get("dimension") != self.dimension or not config.get("normalize", True)):
            raise ModelError(f"the ONNX export of {self.ref.id!r} does not match the model")
        return embedder

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Passage vectors of ``texts`` (after the model's passage prompt)."""
        texts = self.prompts.documents(texts)
        export = self.export  # first: a default int8 may fall back to fp32 here
        if self.precision != "fp32":
            return export.encode(texts)
        if self.export is not None:
            try:
                vectors = self.export.encode(texts)
            except Exception:  # noqa: BLE001 - a broken export: fall back to the model itself
                self.__dict__["export"] = None
            else:
                if vectors.shape == (len(texts), self.dimension):
                    return vectors
                self.__dict__["export"] = None
        vectors = self.embedder.encode(texts, batch_size=batch_size)
        if self.embedder.max_seq_length != self.max_seq_length or self.embedder.dimension != self.dimension:
            raise ModelError(
                f"model {self.ref.id!r} loads with max_seq_length {self.embedder.max_seq_length} and "
                f"{self.embedder.dimension} dimensions, but its files say {self.max_seq_length} and {self.dimension}"
            )
        return vectors


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
            rows.setdefault(text_key(passage.get("embedded", passage["text"])), number)
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
    """``encode`` as :class:`Embedder` offers it, answering from a ``VectorCache`` first.

    Counts what it embeds and what it reuses; remembers every text it was asked for (the
    link vectors saved with the generation).
    """

    def __init__(self, model: BuildModel, cache: VectorCache) -> None:
        self.model = model
        self.cache = cache
        self.embedded = 0
        self.reused = 0
        self.last_reused = 0
        self.last_missing = 0
        self.remembered: dict[str, Any] = {}

    def encode(self, texts: list[str], *, batch_size: int = 64,
               embed: Callable[[list[str]], Any] | None = None) -> np.ndarray:
        import numpy as np

        vectors = np.zeros((len(texts), self.model.dimension), dtype=np.float32)
        keys = [text_key(text) for text in texts]
        missing: dict[str, list[int]] = {}
        for number, key in enumerate(keys):
            row = self.cache.get(key)
            if row is None:
                missing.setdefault(key, []).append(number)
            else:
                vectors[number] = row
        self.last_missing = sum(len(numbers) for numbers in missing.values())
        self.last_reused = len(texts) - self.last_missing
        self.reused += self.last_reused
        if missing:
            unique = [numbers[0] for numbers in missing.values()]
            fresh = (embed or (lambda items: self.model.encode(items, batch_size=batch_size)))([texts[i] for i in unique])
            for numbers, vector in zip(missing.values(), fresh):
                vectors[numbers] = vector
            self.embedded += len(unique)
        return vectors

    def remember(self, texts: list[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors):
            self.remembered.setdefault(text_key(text), vector)

    def link_encode(self, texts: list[str]) -> np.ndarray:
        """``encode`` for body linking: the vectors are also kept for the next build."""
        vectors = self.encode(texts)
        self.remember(texts, vectors)
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
    """What ``link_bodies`` calls: an object with ``encode(texts)``."""

    def __init__(self, encoder: CachedEncoder) -> None:
        self.encoder = encoder

    def encode(self, texts: list[str], **_: Any):
        return self.encoder.link_encode(texts)

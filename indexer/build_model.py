"""The embedding model as a build sees it, known without loading it whenever possible.

Passages are sized with the model folder's ``tokenizer.json`` through ``tokenizers`` (the
same ids and offsets as the model's own tokenizer), and the model's dimension and sequence
limit are taken from the previous manifest when the model's identity is unchanged, so a
build whose texts all have vectors never imports torch. The texts a build must embed go
through the model's ONNX export (fp32 or int8, ``indexer.onnx_export``) when this machine
has it, else through sentence-transformers. ``SEMINDEX_NO_ONNX=1`` keeps onnxruntime out of
embedding: builds embed with sentence-transformers at fp32, and ``--precision int8`` is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.embedder import Embedder, ModelError, Prompts
from indexer.fingerprints import package_versions

if TYPE_CHECKING:
    import numpy as np

    from indexer.manifest import Manifest

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""Weight files, in the order ``embedder.weights_fingerprint`` looks for them."""
_SKIPPED_MODEL_DIRS = frozenset({"onnx", "openvino", ".git", ".cache"})
_MODEL_FILE_LIMIT = 16 << 20


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
                 recorded: Manifest | None = None, precision: str | None = None) -> None:
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
        can be quantized: faster at equal retrieval quality, see ``bench/speed.py``), else fp32."""
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

        Every build embeds with it: onnxruntime runs MiniLM faster than torch on these short
        passages, starts in a fraction of the time torch takes to import, and holds less
        memory. fp32 vectors equal sentence-transformers' as closely as two torch batchings
        are to each other (``tests/test_onnx_equivalence.py``).
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

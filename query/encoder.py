"""Questions and passage-like texts as vectors, with the model an index was built with."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from indexer.embedder import Embedder, ModelError, Prompts, resolve_model
from indexer.errors import IndexFormatError
from indexer.manifest import MANIFEST, rebuild_hint
from indexer.build_model import no_onnx
from indexer.onnx_embedder import OnnxEmbedder
from indexer.store import StoredIndex


QUESTIONS_KEPT = 4096
"""Question vectors a :class:`QueryEncoder` keeps (6 MiB at 384 dimensions): a question asked
again (a shared link, a reloaded page, an assistant asking once more, ``ask`` after ``search``)
skips the model, the largest cost of a search."""


class KeptVectors:
    """Text -> unit vector, kept for later calls (at most ``limit``, the least recently used
    dropped first; each under a 16-byte digest of its text, so a long text costs no more to
    keep than a short one). Safe to share between threads.

    Each text is embedded on its own: a batch runs the model at another shape (padded to its
    longest text, more rows per product), which moves an fp32 vector in its last bits, so a
    vector computed beside other texts would make a question's scores depend on which
    questions came before it. On its own, a text's vector is a function of the text, and a
    kept one is exactly what embedding it again would give."""

    def __init__(self, embed: Callable[[list[str]], Any], *, limit: int) -> None:
        self.embed = embed
        self.limit = limit
        self._kept: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def __call__(self, texts: Sequence[str]):
        """The unit vectors of ``texts``, one row each, embedding only those not kept."""
        import numpy as np

        keys = {text: digest(text) for text in texts}
        rows: dict[str, Any] = {}
        with self._lock:
            for text, key in keys.items():
                if (row := self._kept.get(key)) is not None:
                    self._kept.move_to_end(key)
                    rows[text] = row
        missing = [text for text in keys if text not in rows]
        for text in missing:  # outside the lock: other requests are not held up
            row = np.array(self.embed([text])[0], dtype=np.float32)
            row.setflags(write=False)  # shared by every caller that asks for it
            rows[text] = row
        if missing:
            with self._lock:
                for text in missing:
                    self._kept[keys[text]] = rows[text]
                while len(self._kept) > self.limit:
                    self._kept.popitem(last=False)
        return np.stack([rows[text] for text in texts])


def digest(text: str) -> bytes:
    """A 16-byte BLAKE2b digest of ``text`` (surrogates and all: a key, never decoded)."""
    import hashlib

    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class QueryOnnxEmbedder(OnnxEmbedder):
    """The fp32 export as the query path runs it: a session whose threads sleep when they run
    out of work instead of spinning for more. One question is a few milliseconds of work
    split over the cores; a spinning thread then holds its core for a while after, which a
    server answering several questions at once (or a machine doing anything else) needs
    for the next one: the same vectors, about twice the searches a second on a busy
    two-core machine (docs/experiments/serve.md)."""

    @cached_property
    def session(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1  # the query path's export is fp32
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return onnxruntime.InferenceSession(str(self.folder / self.config["onnx_file"]), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own errors (not exported by name), as OnnxEmbedder
            raise self._broken(error) from None


class QueryEncoder:
    """The index's own model on the query path: its fp32 ONNX export when this machine has it
    (no torch import), else sentence-transformers. Refused when the model cannot be loaded
    here or its weights differ from those the index was built with."""

    def __init__(self, stored: StoredIndex, *, model: str | None = None) -> None:
        self.stored = stored
        self.recorded = stored.manifest.model
        self._questions = KeptVectors(lambda texts: self.model.encode([self.prompts.question(texts[0])]),
                                      limit=QUESTIONS_KEPT)
        if model is not None and resolve_model(model).id != self.recorded["id"]:
            raise IndexFormatError(
                f"{stored.index}: built with model {self.recorded['id']!r}, not {resolve_model(model).id!r}; "
                f"{rebuild_hint(stored.index)} --model {model}"
            )

    @cached_property
    def embedder(self) -> Embedder:
        """The sentence-transformers model, refused if its weights differ from the index's."""
        recorded = self.recorded
        embedder = Embedder(model=recorded["id"], local_only=True)
        try:
            embedder.model
        except ModelError as error:
            raise IndexFormatError(
                f"{self.stored.generation / MANIFEST}: built with model {recorded['id']!r}, "
                f"which cannot be loaded here ({error}); {rebuild_hint(self.stored.index)}"
            ) from None
        if embedder.fingerprint != recorded["fingerprint"]:
            raise IndexFormatError(
                f"{self.stored.index}: built with other weights for {recorded['id']!r} "
                f"({recorded['fingerprint'][:19]}…, installed {embedder.fingerprint[:19]}…); {rebuild_hint(self.stored.index)}"
            )
        return embedder

    @cached_property
    def model(self):
        """What embeds on the query path: the fp32 ONNX export (made from the model folder for
        the next process when missing), else the sentence-transformers model.

        Questions embed at fp32 whatever precision the passages were embedded at: the export
        gives sentence-transformers' own vectors (``tests/test_onnx_equivalence.py``).
        """
        from indexer.onnx_export import CONFIG_FILE, ensure_export, export_folder

        recorded = self.recorded
        folder = export_folder(recorded["id"], recorded["fingerprint"])
        if not (folder / CONFIG_FILE).is_file():
            embedder = self.embedder
            if embedder.ref.local_path is None or no_onnx():
                return embedder
            folder = ensure_export(
                model_id=recorded["id"], model_path=embedder.ref.local_path, fingerprint=recorded["fingerprint"],
                max_seq_length=recorded["max_seq_length"],
            )
        return QueryOnnxEmbedder(folder)

    @cached_property
    def prompts(self) -> Prompts:
        """The question and passage prompts the index's model was built with (its manifest)."""
        return Prompts.from_config(self.recorded.get("prompts"))

    def passages(self, texts: list[str]):
        """Unit vectors for passage-like ``texts`` (clauses, sentences), after the model's
        passage prompt, as the passages were embedded."""
        return self.model.encode(self.prompts.documents(texts))

    def question(self, question: str):
        """The unit vector of ``question``, after the model's query prompt (kept for the next
        time it is asked: :data:`QUESTIONS_KEPT`)."""
        return self._questions([question])[0]

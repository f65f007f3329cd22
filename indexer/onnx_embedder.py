"""Embedder that runs an ONNX export with onnxruntime, never importing torch.

The folder comes from :func:`indexer.onnx_export.export_onnx`; its graph already pools and
normalises, so embedding a text is: tokenize, run one session, return the rows. Importing this
module is cheap; numpy, tokenizers and onnxruntime load on first use.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from indexer import integrity, safety
from indexer.onnx_export import CONFIG_FILE

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    import tokenizers


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxEmbedder:
    """Embeds text into L2-normalised float32 rows, like ``Embedder.encode``, without torch."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            self.config = integrity.onnx_config(safety.json_loads((self.folder / CONFIG_FILE).read_text(encoding="utf-8")))
        except (ValueError, OSError) as error:
            raise self._broken(error) from None

    def _broken(self, error: BaseException):
        """The one-line error for an export that cannot be used: the cache folder is deleted
        by hand and made again (a damaged cache is never trusted, nor silently replaced)."""
        from indexer.embedder import ModelError

        reason = " ".join(str(error).split())[:200]
        return ModelError(f"{self.folder}: the cached ONNX export cannot be loaded ({reason}); "
                          "delete that folder and it is made again")

    @property
    def dimension(self) -> int:
        return int(self.config["dimension"])

    @property
    def max_seq_length(self) -> int:
        return int(self.config["max_seq_length"])

    @cached_property
    def tokenizer(self) -> tokenizers.Tokenizer:
        """The exported tokenizer; it truncates to ``max_seq_length`` and pads each batch."""
        import tokenizers

        try:
            return tokenizers.Tokenizer.from_file(str(self.folder / self.config["tokenizer_file"]))
        except Exception as error:  # tokenizers raises its own Exception for a damaged file
            raise self._broken(error) from None

    @property
    def quantized(self) -> bool:
        return self.config.get("precision", "fp32") != "fp32"

    @cached_property
    def session(self) -> onnxruntime.InferenceSession:
        """A CPU session: fp32 spreads each operator over every core; int8 runs each text on
        one core and texts side by side (see ``encode``)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1 if self.quantized else os.cpu_count() or 1
        try:
            return onnxruntime.InferenceSession(
                str(self.folder / self.config["onnx_file"]),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime's InvalidProtobuf, NoSuchFile, ... (not exported by name)
            raise self._broken(error) from None

    def encode(self, texts: list[str], *, batch_size: int = 16) -> np.ndarray:
        """Embed ``texts``; rows are unit length so inner product equals cosine.

        An int8 export runs one text at a time: dynamic quantization scales activations by
        the range of the whole batch tensor, so batching would make a vector depend on its
        neighbours; unbatched, a vector is a function of its text, as incremental builds
        need. Single texts are too small to split over cores, so one thread per core runs its
        own texts (the session is thread-safe and releases the GIL).
        """
        import numpy as np

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if self.quantized:
            cores = usable_cores()
            if len(texts) > 1 and cores > 1:
                from concurrent.futures import ThreadPoolExecutor

                self.session, self.tokenizer  # made once here, not by racing threads
                with ThreadPoolExecutor(max_workers=cores) as pool:
                    for row, vector in enumerate(pool.map(lambda text: self._run([text])[0], texts)):
                        vectors[row] = vector
            else:
                for row, text in enumerate(texts):
                    vectors[row] = self._run([text])[0]
            return vectors
        # Batching texts of similar length keeps padding, and so wasted work, small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self._run([texts[i] for i in rows])
        return vectors

    def _run(self, texts: list[str]) -> np.ndarray:
        """One session run over ``texts`` (padded to the longest)."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            name: np.array([getattr(e, attribute) for e in encodings], dtype=np.int64)
            for name, attribute in self.config["inputs"].items()
        }
        try:
            rows = self.session.run([self.config["output"]], feeds)[0]
        except Exception as error:  # onnxruntime's own errors: an output or input name the graph lacks
            raise self._broken(error) from None
        if rows.ndim != 2 or rows.shape != (len(texts), self.dimension):
            raise self._broken(ValueError(f"the graph gives rows of shape {rows.shape}, not ({len(texts)}, {self.dimension})"))
        return rows

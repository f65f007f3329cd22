"""What built an index: the indexer's own code and the libraries that shape what it holds.

Recorded in the manifest, so an unchanged corpus is answered "up to date" only when the code
and libraries are unchanged too (a changed parser must not be answered so); vectors are
still reused by text, so a code change costs a re-parse, not a re-embedding.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from functools import lru_cache
from pathlib import Path

PIPELINE_MODULES = ("build.py", "build_model.py", "chrome.py", "chunking.py", "discover.py", "documents.py",
                    "encoders.py", "generation.py", "keyword.py", "linking.py", "manifest.py", "metadata.py", "passages.py",
                    "store.py", "types.py", "wordlists.py")
"""The indexer's modules whose code decides what an index holds (hashed into the manifest)."""
PACKAGES = ("semindex", "faiss-cpu", "sentence-transformers", "torch", "numpy", "bm25s", "PyStemmer", "PyYAML",
            "tokenizers")
"""Installed packages whose version is recorded; a change of any of them means a rebuild (vectors are still reused)."""


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

"""Compare two indexes: does a fresh build of the corpus match the one on disk?"""

from __future__ import annotations

from pathlib import Path

from indexer.store import ARTICLES, PASSAGES, StoredIndex

VECTOR_TOLERANCE = 1e-4
"""Largest absolute difference allowed between two builds' vectors (BLAS and thread
counts change the last bits of a float32 embedding, never the fourth decimal)."""
COMPARED_MANIFEST_KEYS = ("format_version", "model", "metric", "faiss", "chunking", "keyword", "counts", "files", "links")


def compare_indexes(*, expected: Path, actual: Path) -> list[str]:
    """What differs between two indexes' live generations; empty when they match."""
    import numpy as np

    fresh, stored = StoredIndex.open(expected), StoredIndex.open(actual)
    problems = [
        f"manifest field '{key}' differs"
        for key in COMPARED_MANIFEST_KEYS
        if fresh.manifest.get(key) != stored.manifest.get(key)
    ]
    for name in (PASSAGES, ARTICLES):
        if (fresh.generation / name).read_bytes() != (stored.generation / name).read_bytes():
            problems.append(f"{name} differs")
    if fresh.count == stored.count and fresh.dimension == stored.dimension:
        difference = np.abs(
            fresh.vectors.reconstruct_n(0, fresh.count) - stored.vectors.reconstruct_n(0, stored.count)
        ).max(initial=0.0)
        if difference > VECTOR_TOLERANCE:
            problems.append(f"vectors differ by up to {difference:.2e} (tolerance {VECTOR_TOLERANCE:g})")
    return problems

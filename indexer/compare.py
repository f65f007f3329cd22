"""Compare two indexes: does a fresh build of the corpus match the one on disk?"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from indexer.metadata import METADATA, MetadataStore
from indexer.store import ARTICLES, COPIES, PASSAGES, StoredIndex

VECTOR_TOLERANCE = 1e-4
"""Largest absolute difference allowed between two builds' vectors (BLAS and thread
counts change the last bits of a float32 embedding, never the fourth decimal)."""
LINK_SCORE_TOLERANCE = 2e-4
"""Largest difference allowed between two builds' link scores: they are rounded to four
decimals from vectors that may differ in their last bits (see ``VECTOR_TOLERANCE``), so a
score on a rounding boundary may come out one unit of the fourth decimal apart."""
COMPARED_MANIFEST_KEYS = ("format_version", "model", "metric", "faiss", "chunking", "keyword", "counts", "files")


def compare_indexes(*, expected: Path, actual: Path) -> list[str]:
    """What differs between two indexes' live generations; empty when they match."""
    import numpy as np

    fresh, stored = StoredIndex.open(expected), StoredIndex.open(actual)
    problems = [
        f"manifest field '{key}' differs"
        for key in COMPARED_MANIFEST_KEYS
        if fresh.manifest.get(key) != stored.manifest.get(key)
    ]
    asked, held = fresh.manifest.precision, stored.manifest.precision
    if asked != held:
        problems.append(f"passages embedded at {held}, not {asked}")
    if not same_links(fresh.manifest.get("links"), stored.manifest.get("links")):
        problems.append("manifest field 'links' differs")
    for name in (PASSAGES, COPIES, ARTICLES):
        if (fresh.generation / name).read_bytes() != (stored.generation / name).read_bytes():
            problems.append(f"{name} differs")
    if not (stored.generation / METADATA).is_file():
        problems.append(f"{METADATA} is missing (built before filters)")
    elif MetadataStore(fresh.generation / METADATA).rows() != MetadataStore(stored.generation / METADATA).rows():
        problems.append(f"{METADATA} differs")
    if fresh.count == stored.count and fresh.dimension == stored.dimension:
        difference = np.abs(
            fresh.vectors.reconstruct_n(0, fresh.count) - stored.vectors.reconstruct_n(0, stored.count)
        ).max(initial=0.0)
        if difference > VECTOR_TOLERANCE:
            problems.append(f"vectors differ by up to {difference:.2e} (tolerance {VECTOR_TOLERANCE:g})")
    return problems


def same_links(first: Any, second: Any) -> bool:
    """Equal lists of body links: same files and articles, scores within LINK_SCORE_TOLERANCE."""
    if not isinstance(first, list) or not isinstance(second, list) or len(first) != len(second):
        return first == second
    for one, other in zip(first, second):
        if not isinstance(one, dict) or not isinstance(other, dict) or one.keys() != other.keys():
            return False
        for key, value in one.items():
            if isinstance(value, float) and isinstance(other[key], (int, float)):
                if not math.isclose(value, other[key], rel_tol=0.0, abs_tol=LINK_SCORE_TOLERANCE):
                    return False
            elif value != other[key]:
                return False
    return True


def build_command(
    *, corpus: Path, index: Path, model: str | None = None, max_tokens: int | None = None,
    factory: str | None = None, precision: str | None = None,
) -> str:
    """The ``semindex build`` that brings ``index`` to what ``--check`` with these options compared
    it with: the same command without ``--check`` (an option left out keeps the index's own)."""
    import shlex

    options = {"--model": model, "--max-tokens": max_tokens, "--faiss": factory, "--precision": precision}
    given = [word for option, value in options.items() if value is not None for word in (option, str(value))]
    return shlex.join(["semindex", "build", str(corpus), "--index", str(index), *given])

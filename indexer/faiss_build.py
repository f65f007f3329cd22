"""A FAISS index built from vectors streamed in blocks, with inverted lists allocated once.

``index.add`` on an inverted-file index appends to each list's ``std::vector``, which grows
by doubling: at 1M MiniLM vectors (1.46 GiB of float32) IVF4096,Flat peaked at 2.1 GiB.
Counting each list's vectors first and sizing the lists exactly keeps the peak at the
index's own size plus one block (bench/scale.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from indexer.errors import SemindexError

if TYPE_CHECKING:
    import faiss
    import numpy as np

TRAINING_POINTS_PER_LIST = 64
"""k-means for an inverted file trains on at most this many vectors per list (evenly spaced
over the collection). FAISS warns below 39 and subsamples above 256; a sample spread over
the whole collection keeps training cheap at a million vectors (measured by bench/scale.py)."""
MAX_TRAINING_POINTS = 1 << 18
"""Other trained indexes (scalar or product quantizers) train on at most this many."""

Blocks = Callable[[], Iterable["np.ndarray"]]
"""Called once per pass; yields consecutive float32 row blocks of all the vectors."""


def build_faiss_index(factory: str, *, dimension: int, count: int, blocks: Blocks) -> faiss.Index:
    """An inner-product index of the ``count`` vectors ``blocks()`` yields, holding one block
    at a time (passes: a training sample if the index needs training, list assignment for
    an IVF*,Flat index, then adding)."""
    import faiss

    index = new_faiss_index(factory, dimension=dimension)
    if not index.is_trained:
        try:
            index.train(_training_sample(index, count=count, blocks=blocks))
        except RuntimeError as error:
            raise SemindexError(f"FAISS factory {factory!r} cannot be trained on {count} passages: "
                                f"{faiss_problem(error)}") from None
    top = faiss.downcast_index(index)
    try:
        if type(top) is faiss.IndexIVFFlat:  # not wrapped in a transform or refinement, which add() applies
            _add_presized(top, count=count, blocks=blocks)
        else:
            for block in blocks():
                index.add(block)
    except (RuntimeError, ValueError) as error:  # e.g. IDMap (wants ids), IVF0, NSG under 100 vectors
        reason = faiss_problem(error) if isinstance(error, RuntimeError) else str(error)
        raise SemindexError(f"FAISS factory {factory!r} cannot index {count} passages: {reason}") from None
    if index.ntotal != count:  # pragma: no cover - a bug, never a user error
        raise RuntimeError(f"FAISS index holds {index.ntotal} vectors, expected {count}")
    return index


def new_faiss_index(factory: str, *, dimension: int) -> faiss.Index:
    """An empty inner-product index from a factory string, or a one-line error saying why not
    (a build checks this before embedding anything)."""
    import faiss

    try:
        return faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise SemindexError(f"FAISS factory {factory!r} for {dimension}-dimensional vectors: {faiss_problem(error)}") from None


def faiss_problem(error: RuntimeError) -> str:
    """FAISS's reason for one of its C++ exceptions, without the source location."""
    text = (str(error).strip().splitlines() or [""])[0]
    match = re.search(r"\.(?:cpp|h):\d+: (.*)", text)
    reason = match.group(1) if match else text
    if failed := re.fullmatch(r"Error: '(.*?)' failed(?:: (.*))?", reason):  # a FAISS_THROW_IF_NOT
        return failed.group(2) or f"{failed.group(1)} does not hold"
    return reason


def _training_sample(index: faiss.Index, *, count: int, blocks: Blocks) -> np.ndarray:
    import faiss
    import numpy as np

    ivf = faiss.try_extract_index_ivf(index)
    wanted = TRAINING_POINTS_PER_LIST * ivf.nlist if ivf is not None else MAX_TRAINING_POINTS
    step = max(1, -(-count // wanted))
    sample, start = [], 0
    for block in blocks():
        sample.append(block[(-start) % step :: step].copy())
        start += len(block)
    return np.ascontiguousarray(np.concatenate(sample), dtype=np.float32)


def _add_presized(ivf: faiss.IndexIVF, *, count: int, blocks: Blocks) -> None:
    """Assign every vector to its list, size each list exactly, then copy the vectors in."""
    import faiss
    import numpy as np

    assignment = np.empty(count, dtype=np.int64)
    start = 0
    for block in blocks():
        assignment[start : start + len(block)] = ivf.quantizer.search(block, 1)[1][:, 0]
        start += len(block)
    sizes = np.bincount(assignment, minlength=ivf.nlist)
    lists = ivf.invlists
    for list_no in np.flatnonzero(sizes):
        lists.resize(int(list_no), int(sizes[list_no]))
    filled = np.zeros(ivf.nlist, dtype=np.int64)
    start = 0
    for block in blocks():
        block = np.ascontiguousarray(block, dtype=np.float32)
        ids = np.arange(start, start + len(block), dtype=np.int64)
        block_lists = assignment[start : start + len(block)]
        order = np.argsort(block_lists, kind="stable")
        present, first, sizes_here = np.unique(block_lists[order], return_index=True, return_counts=True)
        for list_no, at, size in zip(present.tolist(), first.tolist(), sizes_here.tolist()):
            rows = order[at : at + size]
            list_ids = np.ascontiguousarray(ids[rows])
            codes = np.ascontiguousarray(block[rows]).view(np.uint8)
            lists.update_entries(list_no, int(filled[list_no]), size, faiss.swig_ptr(list_ids), faiss.swig_ptr(codes))
            filled[list_no] += size
        start += len(block)
    ivf.ntotal = count


def in_blocks(vectors: np.ndarray, rows: int = 100_000) -> Blocks:
    """``blocks`` over an in-memory array (views, no copies)."""
    return lambda: (vectors[start : start + rows] for start in range(0, len(vectors), rows))


EXACT_SEARCH_LIMIT = 100_000
"""Below this many passages the index is exact (Flat); above it, IVF (see ``choose_factory``)."""


def choose_factory(count: int) -> str:
    """FAISS factory string for ``count`` passages: exact search while it is cheap.

    Flat is exact and needs no training. Beyond EXACT_SEARCH_LIMIT passages an inverted file
    with about 4·√n lists (a power of two), searched as ``default_search_params`` says: it
    kept recall close to exact search where HNSW lost more (bench/scale.py). The vectors
    stay uncompressed, so incremental builds can read them back exactly.
    """
    if count < EXACT_SEARCH_LIMIT:
        return "Flat"
    lists = 1 << max(10, min(16, round(math.log2(4 * math.sqrt(count)))))
    return f"IVF{lists},Flat"


IVF_SCANNED_VECTORS = 16_384
"""An inverted file is probed deep enough to scan about this many vectors per query."""


def default_search_params(factory: str, count: int) -> str:
    """FAISS search parameters recorded with an index of ``count`` vectors (see ``choose_factory``).

    For an inverted file, ``nprobe`` covers ~IVF_SCANNED_VECTORS vectors (at least 32 lists,
    at most all): recall depends on how many vectors are scanned, not on the share of lists
    (bench/scale.py). More lists probed is more recall for proportionally more time.
    """
    if match := re.match(r"IVF(\d+)", factory):
        lists = int(match.group(1))
        return f"nprobe={min(lists, max(32, math.ceil(IVF_SCANNED_VECTORS * lists / max(1, count))))}"
    if factory.startswith("HNSW"):
        return "efSearch=128"
    return ""

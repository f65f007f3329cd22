"""Streamed FAISS builds: the pre-sized inverted-file path equals FAISS's own add."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.faiss_build import build_faiss_index, in_blocks


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rows = np.random.default_rng(7).standard_normal((20_000, 24)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def reference(factory: str, vectors: np.ndarray) -> faiss.Index:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors[:: max(1, -(-len(vectors) // (64 * faiss.extract_index_ivf(index).nlist)))])
    index.add(vectors)
    return index


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF32,SQ8", "PCA16,IVF32,Flat", "RR24,IVF32,Flat", "IVF32,Flat,RFlat"])
def test_blocks_build_the_same_index_as_one_add(factory: str, vectors: np.ndarray) -> None:
    built = build_faiss_index(factory, dimension=24, count=len(vectors), blocks=in_blocks(vectors, rows=6_000))
    expected = reference(factory, vectors)
    assert built.ntotal == expected.ntotal == len(vectors)
    queries = vectors[:40] + 0.05
    for index in (built, expected):
        faiss.extract_index_ivf(index).nprobe = 4
    scores, ids = built.search(queries, 10)
    expected_scores, expected_ids = expected.search(queries, 10)
    assert np.array_equal(ids, expected_ids)
    assert np.array_equal(scores, expected_scores)


def test_presized_lists_hold_exactly_their_vectors(vectors: np.ndarray) -> None:
    index = build_faiss_index("IVF32,Flat", dimension=24, count=len(vectors), blocks=in_blocks(vectors, rows=6_000))
    built = faiss.extract_index_ivf(index)  # a view into ``index``, which must stay alive
    _, assigned = built.quantizer.search(vectors, 1)
    sizes = np.bincount(assigned[:, 0], minlength=built.nlist)
    assert [built.invlists.list_size(i) for i in range(built.nlist)] == sizes.tolist()
    built.make_direct_map()
    assert np.array_equal(built.reconstruct_n(0, len(vectors)), vectors)

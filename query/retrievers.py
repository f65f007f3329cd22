"""The two retrievers: dense (FAISS over passage vectors) and keyword (BM25 over passages,
paragraphs and whole articles). Each returns a run, (item, score) best first; given a filter's
:class:`~query.filters.Selection`, one of the passages it keeps only."""

from __future__ import annotations

import math
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from indexer import integrity
from indexer.errors import IndexFormatError, SemindexError
from indexer.faiss_build import IVF_SCANNED_VECTORS, faiss_problem
from indexer.keyword import ARTICLE_KEYWORD_DIR, KEYWORD_DIR, PARAGRAPH_KEYWORD_DIR, KeywordIndex
from indexer.manifest import rebuild_hint
from indexer.store import VECTORS, StoredIndex

if TYPE_CHECKING:
    from query.filters import Selection

COUNT_PARAMETERS = frozenset({"nprobe", "efSearch", "max_codes", "ht"})
"""FAISS search parameters that are counts: ``ParameterSpace`` would silently truncate 1.5 to 1."""


def fractional_count(faiss_params: str) -> str | None:
    """Why ``faiss_params`` ("name=value,...") gives a count parameter a non-integer value, or None."""
    for item in faiss_params.split(","):
        name, _, value = item.partition("=")
        if name.strip() in COUNT_PARAMETERS:
            try:
                float(value)
            except ValueError:
                continue  # not a number at all: FAISS's own message says so
            if not value.strip().lstrip("+-").isdigit():
                return f"{name.strip()} must be a whole number, got {value.strip()!r}"
    return None


EXACT_WITHIN = IVF_SCANNED_VECTORS
"""A filter keeping at most this many passages of a flat index is searched exactly, vector by
vector in place: no more vectors than an unfiltered inverted-file search scans."""
EXACT_COPIED_WITHIN = 2048
"""The same for other indexes, whose vectors must be copied out first: 10,070 random rows of
a 1M-vector inverted file took 21 ms to copy (docs/experiments/filters.md)."""


class DenseRetriever:
    """Nearest passages to a question vector in a generation's FAISS index. ``faiss_params``
    overrides the search parameters recorded with the index (``nprobe=64``, ``efSearch=256``)."""

    def __init__(self, stored: StoredIndex, *, faiss_params: str | None = None) -> None:
        self.stored = stored
        self.faiss_params = faiss_params
        self._params_set = False
        self._lock = threading.Lock()
        self._buffers = threading.local()

    def search(self, vector, *, k: int, selection: Selection | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest passages to ``vector`` as (passage id, cosine); with ``selection``
        the ``k`` nearest of the passages it keeps (see :meth:`search_within`)."""
        k = min(k, self.stored.count if selection is None else selection.count)
        if k <= 0:
            return []
        if selection is not None:
            return self.search_within(vector, k=k, selection=selection)
        vectors = self._vectors()
        try:
            scores, ids = vectors.search(vector.reshape(1, -1), k)
        except RuntimeError as exc:  # a parameter FAISS accepts but cannot search with (nprobe=0)
            raise self._params_error(exc) from None
        return self._checked(vectors, scores[0], ids[0])

    def _checked(self, vectors, scores, ids) -> list[tuple[int, float]]:
        """The hits of a FAISS search as (passage id, score), or IndexFormatError when they
        show the stored vectors are not what a build wrote (``integrity.hits_problem``)."""
        import numpy as np

        scores, ids = np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        if problem := integrity.hits_problem(vectors, scores, ids):
            raise IndexFormatError(f"{self.stored.generation / VECTORS}: corrupt ({problem}); "
                                   f"{rebuild_hint(self.stored.index)}")
        return [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0]

    def _vectors(self):
        """The FAISS index, with ``faiss_params`` applied on first use."""
        vectors = self.stored.vectors
        if self.faiss_params and not self._params_set:
            import faiss

            if problem := fractional_count(self.faiss_params):
                raise SemindexError(f"FAISS search parameters {self.faiss_params!r}: {problem}")
            try:
                faiss.ParameterSpace().set_index_parameters(vectors, self.faiss_params)
            except RuntimeError as exc:
                raise SemindexError(f"FAISS search parameters {self.faiss_params!r}: {faiss_problem(exc)}") from None
            self._params_set = True
        return vectors

    def _params_error(self, exc: RuntimeError) -> SemindexError:
        params = self.faiss_params or self.stored.manifest.search_params
        return SemindexError(f"FAISS search parameters {params!r}: {faiss_problem(exc)}")

    def search_within(self, vector, *, k: int, selection: Selection) -> list[tuple[int, float]]:
        """The ``k`` nearest of the passages ``selection`` keeps. Up to :data:`EXACT_WITHIN`
        of them (:data:`EXACT_COPIED_WITHIN` outside a flat index) are compared with ``vector``
        one by one (exact, and no more work than an unfiltered search); more are searched by FAISS with a bitmap of them, an inverted
        file probing more lists (an HNSW graph a wider beam) by the square root of how much
        smaller the selection is than the index: the kept top k lie within the unfiltered
        top k / share, which a probe covers long before it has scanned as many kept vectors
        as an unfiltered search scans (docs/experiments/filters.md)."""
        import faiss

        vectors = self._vectors()
        top = faiss.downcast_index(vectors)
        flat = type(top) in (faiss.IndexFlat, faiss.IndexFlatIP)
        if selection.count <= (EXACT_WITHIN if flat else min(EXACT_WITHIN, EXACT_COPIED_WITHIN)):
            return self._exact_within(vector, k=k, ids=selection.ids)
        bitmap = selection.bitmap
        chosen = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        widen = math.sqrt(1 / max(selection.fraction, 1e-9))
        if isinstance(top, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=chosen, nprobe=min(top.nlist, math.ceil(top.nprobe * widen)))
        elif isinstance(top, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=chosen, efSearch=min(selection.count, math.ceil(top.hnsw.efSearch * widen)))
        else:
            params = faiss.SearchParameters(sel=chosen)
        try:
            scores, ids = vectors.search(vector.reshape(1, -1), k, params=params)
        except RuntimeError:  # an index type that takes no selector
            scores, ids = [[]], [[]]
        found = self._checked(vectors, scores[0], ids[0])
        # fewer than k: the probed lists or the graph walk held too few kept vectors (or the
        # index took no selector); comparing them one by one keeps the count min(k, kept)
        return found if len(found) == k else self._exact_within(vector, k=k, ids=selection.ids)

    def _exact_within(self, vector, *, k: int, ids) -> list[tuple[int, float]]:
        """The ``k`` best of ``ids`` by inner product with ``vector`` (ties by id), by FAISS's
        single-threaded kernels: straight from a flat index's vectors, else from the vectors
        copied into this thread's buffer (a fresh array per query costs a page fault per 4 KiB,
        and a BLAS product may wake every core for a few thousand rows: each 10x slower on a
        busy machine)."""
        import faiss
        import numpy as np

        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        scores = np.empty(len(ids), dtype=np.float32)
        top = faiss.downcast_index(self._vectors())
        if type(top) in (faiss.IndexFlat, faiss.IndexFlatIP):
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(query), top.get_xb(),
                                             faiss.swig_ptr(ids), len(query), 1, len(ids))
        else:
            rows = self._reconstruct(ids)
            faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(query), faiss.swig_ptr(rows),
                                         len(query), len(ids))
        if k < len(ids):
            kth = np.partition(scores, len(ids) - k)[len(ids) - k]
            keep = np.flatnonzero(scores >= kth)
            ids, scores = ids[keep], scores[keep]
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def _reconstruct(self, ids):
        """The stored vectors of ``ids``, in this thread's reused buffer (an inverted file
        gets its id map on first use)."""
        import faiss
        import numpy as np

        vectors = self._vectors()
        buffer = getattr(self._buffers, "rows", None)
        if buffer is None or len(buffer) < len(ids):
            buffer = self._buffers.rows = np.empty((max(len(ids), EXACT_WITHIN), self.stored.dimension), dtype=np.float32)
        rows = buffer[:len(ids)]
        try:
            return vectors.reconstruct_batch(ids, rows)
        except RuntimeError:
            ivf = faiss.try_extract_index_ivf(vectors)
            if ivf is None:
                raise SemindexError(f"FAISS index {self.stored.manifest.factory!r} cannot be searched with filters; "
                                    "rebuild it with another --faiss factory") from None
        with self._lock:
            if ivf.direct_map.type == faiss.DirectMap.NoMap:
                ivf.make_direct_map()
        return vectors.reconstruct_batch(ids, rows)


class KeywordRetriever:
    """BM25 over a generation's passages, and over whole articles where the generation has
    that index (row i is the i-th key of ``articles.json``)."""

    def __init__(self, stored: StoredIndex) -> None:
        self.stored = stored

    @cached_property
    def passages(self) -> KeywordIndex:
        return KeywordIndex(self.stored.generation / KEYWORD_DIR, self.stored.manifest.keyword, rows=self.stored.count)

    @cached_property
    def paragraphs(self) -> KeywordIndex:
        return KeywordIndex(self.stored.generation / PARAGRAPH_KEYWORD_DIR, self.stored.manifest.keyword,
                            rows=self.stored.paragraph_count)

    @cached_property
    def articles(self) -> KeywordIndex | None:
        folder = self.stored.generation / ARTICLE_KEYWORD_DIR
        if not folder.is_dir():
            return None
        return KeywordIndex(folder, self.stored.manifest.keyword, rows=len(self.stored.articles))

    @cached_property
    def article_keys(self) -> list[str]:
        return list(self.stored.articles)

    def search(self, question: str, *, k: int, selection: Selection | None = None) -> list[tuple[int, float]]:
        """(passage id, BM25 score) best first, at most ``k``; with ``selection`` only the
        passages it keeps are scored."""
        return self.passages.search(question, k=k, mask=None if selection is None else selection.mask)

    def search_paragraphs(self, question: str, *, k: int, selection: Selection | None = None) -> list[tuple[int, float]]:
        """(paragraph id, BM25 score over its whole text) best first, at most ``k``; with
        ``selection`` only paragraphs holding a passage it keeps are scored."""
        return self.paragraphs.search(question, k=k, mask=None if selection is None else selection.paragraph_mask)

    def search_articles(self, question: str, *, k: int) -> list[tuple[str, float]]:
        """(article key, BM25 score over its whole text) best first, at most ``k``; empty
        without an article index."""
        if self.articles is None:
            return []
        keys = self.article_keys
        return [(keys[row], score) for row, score in self.articles.search(question, k=k)]

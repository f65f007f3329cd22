"""The two retrievers: dense (FAISS over passage vectors) and keyword (BM25 over passages and
over whole articles). Each returns a run, (item, score) best first."""

from __future__ import annotations

from functools import cached_property

from indexer.errors import SemindexError
from indexer.faiss_build import faiss_problem
from indexer.keyword import ARTICLE_KEYWORD_DIR, KEYWORD_DIR, KeywordIndex
from indexer.store import StoredIndex

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


class DenseRetriever:
    """Nearest passages to a question vector in a generation's FAISS index. ``faiss_params``
    overrides the search parameters recorded with the index (``nprobe=64``, ``efSearch=256``)."""

    def __init__(self, stored: StoredIndex, *, faiss_params: str | None = None) -> None:
        self.stored = stored
        self.faiss_params = faiss_params
        self._params_set = False

    def search(self, vector, *, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest passages to ``vector`` as (passage id, cosine)."""
        k = min(k, self.stored.count)
        if k <= 0:
            return []
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
        try:
            scores, ids = vectors.search(vector.reshape(1, -1), k)
        except RuntimeError as exc:  # a parameter FAISS accepts but cannot search with (nprobe=0)
            params = self.faiss_params or self.stored.manifest.search_params
            raise SemindexError(f"FAISS search parameters {params!r}: {faiss_problem(exc)}") from None
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


class KeywordRetriever:
    """BM25 over a generation's passages, and over whole articles where the generation has
    that index (row i is the i-th key of ``articles.json``)."""

    def __init__(self, stored: StoredIndex) -> None:
        self.stored = stored

    @cached_property
    def passages(self) -> KeywordIndex:
        return KeywordIndex(self.stored.generation / KEYWORD_DIR, self.stored.manifest.keyword)

    @cached_property
    def articles(self) -> KeywordIndex | None:
        folder = self.stored.generation / ARTICLE_KEYWORD_DIR
        return KeywordIndex(folder, self.stored.manifest.keyword) if folder.is_dir() else None

    @cached_property
    def article_keys(self) -> list[str]:
        return list(self.stored.articles)

    def search(self, question: str, *, k: int) -> list[tuple[int, float]]:
        """(passage id, BM25 score) best first, at most ``k``."""
        return self.passages.search(question, k=k)

    def search_articles(self, question: str, *, k: int) -> list[tuple[str, float]]:
        """(article key, BM25 score over its whole text) best first, at most ``k``; empty
        without an article index."""
        if self.articles is None:
            return []
        keys = self.article_keys
        return [(keys[row], score) for row, score in self.articles.search(question, k=k)]

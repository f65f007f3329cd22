"""Search and ask a semindex index: ``from query import search, ask``.

Both load the index once per process (keyed by its live generation) and embed the
question with the index's own model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from query.results import Answer, Citation, Hit

__all__ = ["Answer", "Citation", "Hit", "ask", "search"]


def search(
    question: str, *, k: int = 5, index: Path | str | None = None, mode: str = "hybrid", faiss_params: str | None = None
) -> list[Hit]:
    """The ``k`` passages that best match ``question``, best first, each with its citation.

    ``mode`` is ``hybrid`` (dense + BM25 fused; the default, best measured), ``dense`` or
    ``keyword``. ``index`` defaults to ``$SEMINDEX_INDEX``, ``./index``, or the bundled index.
    ``faiss_params`` overrides the index's FAISS search parameters (``nprobe=64``).
    """
    from query.searcher import open_searcher

    return open_searcher(index, faiss_params=faiss_params).search(question, k=k, mode=mode)


def ask(
    question: str, *, index: Path | str | None = None, k: int = 5, mode: str = "hybrid", faiss_params: str | None = None
) -> Answer:
    """A short answer with its citation when the corpus holds one; otherwise ``answer`` is
    None and ``confident`` False, and the nearest passages are still in ``hits``."""
    from query.answer import answer_from_hits
    from query.searcher import open_searcher

    searcher = open_searcher(index, faiss_params=faiss_params)
    answer = answer_from_hits(question, searcher.search(question, k=k, mode=mode), embed=searcher.embed,
                              embed_question=searcher.embed_question, keyword=searcher.keyword)
    if warning := searcher.stale_warning():
        answer.warnings.append(warning)
    return answer


def __getattr__(name: str):
    if name in ("Answer", "Citation", "Hit"):
        from query import results

        return getattr(results, name)
    raise AttributeError(f"module 'query' has no attribute {name!r}")

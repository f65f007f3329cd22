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
    None and ``confident`` False, and the nearest passages are still in ``hits``.

    The answer is drawn from the best ``ANSWER_PASSAGES`` (3) passages whatever ``k`` is, so
    ``k`` only sets how many ``hits`` come back: the ``k`` best, or down to the answering
    passage when it ranks below them (``hits[answer_hit - 1]`` is always it)."""
    import dataclasses

    from query.answer import ANSWER_PASSAGES, answer_from_hits
    from query.searcher import check_query, open_searcher

    check_query(question, k=k, mode=mode)
    searcher = open_searcher(index, faiss_params=faiss_params)
    hits = searcher.search(question, k=max(k, ANSWER_PASSAGES), mode=mode)
    answer = answer_from_hits(question, hits, embed=searcher.embed,
                              embed_question=searcher.embed_question, keyword=searcher.keyword)
    answer = dataclasses.replace(answer, hits=hits[:max(k, answer.answer_hit or 0)])
    if warning := searcher.stale_warning():
        answer.warnings.append(warning)
    return answer


def __getattr__(name: str):
    if name in ("Answer", "Citation", "Hit"):
        from query import results

        return getattr(results, name)
    raise AttributeError(f"module 'query' has no attribute {name!r}")

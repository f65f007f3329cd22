"""Search and ask a semindex index: ``from query import search, ask, Index``.

:class:`Index` is the one façade (``Index.open(path)``, then ``search``, ``ask``, ``info``);
``search`` and ``ask`` here are shorthands for it. Each index is opened once per process
(per live generation) and questions are embedded with the index's own model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from query.index import Index
    from query.readers import Reader
    from query.results import Answer, Citation, Hit

__all__ = ["Answer", "Citation", "Hit", "Index", "ask", "search"]


def search(
    question: str, *, k: int = 5, index: Path | str | None = None, mode: str = "hybrid", faiss_params: str | None = None,
    since: Any = None, until: Any = None, publisher: str | None = None, topic: str | None = None, path: str | None = None,
) -> list[Hit]:
    """The ``k`` passages that best match ``question``, best first, each with its citation.

    ``mode`` is ``hybrid`` (dense + BM25 fused; the default), ``dense`` or ``keyword``.
    ``index`` defaults to ``$SEMINDEX_INDEX``, ``./index``, or the bundled index.
    ``faiss_params`` overrides the index's FAISS search parameters (``nprobe=64``).
    ``since``/``until`` (inclusive dates: ``datetime.date`` or ``"YYYY-MM-DD"``), ``publisher``,
    ``topic`` and ``path`` (a glob over corpus files) search only passages matching them all.
    """
    from query.index import Index

    return Index.open(index).search(question, k=k, mode=mode, faiss_params=faiss_params, since=since, until=until,
                                    publisher=publisher, topic=topic, path=path)


def ask(
    question: str, *, index: Path | str | None = None, k: int = 5, mode: str = "hybrid", faiss_params: str | None = None,
    reader: Reader | None = None, since: Any = None, until: Any = None, publisher: str | None = None,
    topic: str | None = None, path: str | None = None,
) -> Answer:
    """A short answer with its citation when the corpus holds one; otherwise ``answer`` is
    None and ``confident`` False, and the nearest passages are still in ``hits``.

    The answer is drawn from the best ``reader.passages`` hits whatever ``k`` is (3 for the
    default sentence reader), so ``k`` only sets how many ``hits`` come back: the ``k`` best,
    or down to the answering passage when it ranks below them (``hits[answer_hit - 1]`` is
    always it). The filters are :func:`search`'s: the answer comes from the passages they keep."""
    from query.index import Index

    return Index.open(index).ask(question, k=k, mode=mode, reader=reader, faiss_params=faiss_params, since=since,
                                 until=until, publisher=publisher, topic=topic, path=path)


def __getattr__(name: str):
    if name in ("Answer", "Citation", "Hit"):
        from query import results

        return getattr(results, name)
    if name == "Index":
        from query.index import Index

        return Index
    raise AttributeError(f"module 'query' has no attribute {name!r}")

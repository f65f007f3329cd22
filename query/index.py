"""The query façade: one :class:`Index` per index folder, behind the CLI, ``query.search`` /
``query.ask`` and any server.

An Index resolves the live generation on every call (reading ``CURRENT`` is cheap) and
keeps the opened generation (manifest checked, model and vectors loaded) until another
generation is live, then drops it: a rebuild is picked up by the next call, and a long
running process holds at most the generation it serves.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from pathlib import Path
from typing import Any

from indexer.metadata import METADATA, MetadataStore
from indexer.store import StoredIndex, live_generation
from query.filters import Filters
from query.readers import Reader, ReaderTools, SentenceReader
from query.results import Answer, Hit
from query.searcher import DEFAULT_MODE, Searcher, check_query

MAX_SEARCHERS = 8
"""Searchers (one per FAISS parameters asked for) an Index keeps for its live generation."""
_OPEN: dict[Path, Index] = {}
_OPEN_LOCK = threading.Lock()


def default_index() -> Path:
    """``$SEMINDEX_INDEX``, else ``./index`` if it exists, else the repository's ``index/``."""
    if env := os.environ.get("SEMINDEX_INDEX"):
        return Path(env)
    local = Path("index")
    if (local / "CURRENT").exists():
        return local
    return Path(__file__).resolve().parent.parent / "index"


class Index:
    """A semindex index folder, opened for queries. Use :meth:`open` (one object per path)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._generations: dict[tuple[str, str], Generation] = {}

    @classmethod
    def open(cls, path: Path | str | None = None) -> Index:
        """The Index of ``path`` (default: :func:`default_index`), the same object for the same
        folder within a process. Nothing is read until the first call."""
        # absolute, so it keeps reading this index after the process changes directory
        resolved = Path(os.path.abspath(path if path is not None else default_index()))
        with _OPEN_LOCK:
            if resolved not in _OPEN:
                _OPEN[resolved] = cls(resolved)
            return _OPEN[resolved]

    def live(self, *, faiss_params: str | None = None, model: str | None = None) -> Generation:
        """The live :class:`Generation` (opened and checked on first use; ``faiss_params``
        overrides its FAISS search parameters). Opening a newer generation drops the ones
        before; a caller holding one keeps answering from it."""
        generation = live_generation(self.path).resolve().name
        key = (model or "", faiss_params or "")
        with self._lock:
            if generation != self._generation:
                self._generations.clear()
                self._generation = generation
            opened = self._generations.get(key)
        if opened is None:
            opened = Generation(Searcher(StoredIndex.open(self.path), model=model, faiss_params=faiss_params))
            with self._lock:
                if self._generation == opened.name:
                    if key not in self._generations and len(self._generations) >= MAX_SEARCHERS:
                        del self._generations[next(iter(self._generations))]  # the oldest FAISS parameters
                    opened = self._generations.setdefault(key, opened)
        return opened

    def searcher(self, *, faiss_params: str | None = None, model: str | None = None) -> Searcher:
        """The live generation's :class:`~query.searcher.Searcher` (see :meth:`live`)."""
        return self.live(faiss_params=faiss_params, model=model).searcher

    @property
    def generation(self) -> str:
        """The name of the live generation (``gen-000031``)."""
        return live_generation(self.path).resolve().name

    def search(self, query: str, *, k: int = 5, mode: str = DEFAULT_MODE, faiss_params: str | None = None,
               since: Any = None, until: Any = None, publisher: str | None = None, topic: str | None = None,
               path: str | None = None) -> list[Hit]:
        """The ``k`` best distinct passages for ``query``, best first, each with its citation.

        ``mode`` is ``hybrid`` (dense + BM25 fused, then clause rescoring), ``dense`` or
        ``keyword``; ``faiss_params`` overrides the index's FAISS search parameters.
        ``since``/``until`` (dates, or ``YYYY-MM-DD`` text; inclusive), ``publisher``,
        ``topic`` (without case) and ``path`` (a glob over corpus files) search only the
        passages that match all of them (see :mod:`query.filters`)."""
        filters = Filters.from_args(since=since, until=until, publisher=publisher, topic=topic, path=path)
        return self.live(faiss_params=faiss_params).search(query, k=k, mode=mode, filters=filters)

    def ask(self, question: str, *, k: int = 5, mode: str = DEFAULT_MODE, reader: Reader | None = None,
            faiss_params: str | None = None, since: Any = None, until: Any = None, publisher: str | None = None,
            topic: str | None = None, path: str | None = None) -> Answer:
        """An answer to ``question`` quoted from the corpus with its citation, or none
        (``answer`` None, ``confident`` False) with the nearest passages still in ``hits``.

        ``reader`` (default :class:`~query.readers.SentenceReader`) reads the best
        ``reader.passages`` hits whatever ``k`` is; ``k`` sets how many ``hits`` come back:
        the ``k`` best, or down to the answering hit when it ranks below them
        (``hits[answer_hit - 1]`` is always it). A stale index adds a warning. The filters
        are :meth:`search`'s: the answer comes from the passages they keep."""
        check_query(question, k=k, mode=mode)
        filters = Filters.from_args(since=since, until=until, publisher=publisher, topic=topic, path=path)
        return self.live(faiss_params=faiss_params).ask(question, k=k, mode=mode, reader=reader, filters=filters)

    def info(self, *, verify: bool = False) -> dict[str, Any]:
        """The live generation's manifest (checksums of every file verified with ``verify``;
        otherwise as on every open)."""
        return StoredIndex.open(self.path, verify=verify or None).manifest.to_json()

    def filterable(self) -> dict[str, Any] | None:
        """What searches of the live generation can be filtered by: the range of published
        dates and the publishers and topics, each with its passage count; None for
        a generation built before filters."""
        return filterable(live_generation(self.path))

    def stale_warning(self) -> str | None:
        """One line saying the corpus changed since the live generation was built, or None
        (the corpus is hashed once per generation)."""
        return self.live().stale_warning


class Generation:
    """One opened generation of an index. A caller that takes it once (a server request)
    answers wholly from it, even when a rebuild makes another generation live meanwhile."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    @property
    def name(self) -> str:
        """The generation folder's name (``gen-000031``)."""
        return self.searcher.stored.generation.resolve().name

    @functools.cached_property
    def stale_warning(self) -> str | None:
        """One line saying the corpus changed since this generation was built, or None
        (the corpus is hashed once)."""
        return _stale_line(self.searcher.stored)

    def search(self, query: str, *, k: int = 5, mode: str = DEFAULT_MODE, filters: Filters | None = None) -> list[Hit]:
        """:meth:`Index.search` on this generation."""
        return self.searcher.search(query, k=k, mode=mode, filters=filters)

    def ask(self, question: str, *, k: int = 5, mode: str = DEFAULT_MODE, reader: Reader | None = None,
            filters: Filters | None = None) -> Answer:
        """:meth:`Index.ask` on this generation."""
        check_query(question, k=k, mode=mode)
        reader = reader if reader is not None else SentenceReader()
        searcher = self.searcher
        hits = searcher.search(question, k=max(k, reader.passages), mode=mode, filters=filters)
        tools = ReaderTools.of(searcher)
        answer = reader.read(question, hits, tools=tools)
        answer = dataclasses.replace(answer, hits=hits[:max(k, answer.answer_hit or 0)], warnings=list(answer.warnings))
        if self.stale_warning:
            answer.warnings.append(self.stale_warning)
        return answer

    def info(self) -> dict[str, Any]:
        """``semindex info --json``: the manifest, with what searches can be filtered by."""
        return {**self.searcher.stored.manifest.to_json(), "filterable": filterable(self.searcher.stored.generation)}


def filterable(generation: Path) -> dict[str, Any] | None:
    """The date range, publishers and topics (with passage counts) of a generation's
    metadata, or None for a generation built before filters."""
    store = MetadataStore(generation / METADATA)
    return store.facets() if store.exists() else None


def _stale_line(stored: StoredIndex) -> str | None:
    from indexer.errors import SemindexError

    try:
        changes = stored.corpus_changes()
    except (OSError, SemindexError):
        return None
    if not changes:
        return None
    stale = [f"{kind} {name}" for kind in ("added", "changed", "removed") for name in changes[kind]]
    if not stale:
        return None
    shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
    return f"{stored.index}: corpus changed since this index was built ({shown}); run semindex build to update it"


def open_searcher(index: Path | str | None = None, *, model: str | None = None,
                  faiss_params: str | None = None) -> Searcher:
    """The live generation's Searcher of ``index`` (see :meth:`Index.searcher`)."""
    return Index.open(index).searcher(faiss_params=faiss_params, model=model)

"""Search filters: which passages a search may return, by their article's date, publisher and
topics and by the files they are cited from.

:class:`Filters` is the value every surface builds from its arguments (``since``, ``until``,
``publisher``, ``topic``, ``path``), checked once. :class:`PassageFilter` turns one into a
:class:`Selection` of a generation's passages, which the retrievers search within (the
filter is applied inside retrieval, never by trimming a ranking).

A passage matches when all the filters given do: ``since``/``until`` by its article's
published date, both ends inclusive (an article without a date matches no date filter);
``publisher`` and ``topic`` compared without case (``topic``: one of the article's topics);
``path`` a glob (``*`` also crosses ``/``) over the corpus-relative files it is cited from.
"""

from __future__ import annotations

import calendar
import datetime
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from indexer.errors import IndexFormatError, QueryError
from indexer.manifest import rebuild_hint
from indexer.metadata import METADATA, Columns, MetadataStore, fold

if TYPE_CHECKING:
    import numpy as np

    from indexer.store import StoredIndex

DATE = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?")
CACHED_SELECTIONS = 32
"""Selections kept per generation: a filter asked again (the same "since last week" on every
question of a session) costs nothing after the first time."""


def parse_day(value: Any, *, name: str, last: bool = False) -> datetime.date:
    """``value`` (a date, or text ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``) as a date; a month or
    year stands for its first day, or with ``last`` its last. QueryError naming ``name`` else."""
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    match = DATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise QueryError(f"{name}: {value!r} is not a date; give YYYY-MM-DD (or YYYY-MM, YYYY)")
    year = int(match["year"])
    month = int(match["month"] or (12 if last else 1))
    try:
        day = int(match["day"]) if match["day"] else (calendar.monthrange(year, month)[1] if last else 1)
        return datetime.date(year, month, day)
    except ValueError:
        raise QueryError(f"{name}: {value!r} is not a date of the calendar; give YYYY-MM-DD") from None


def _text(value: Any, *, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise QueryError(f"{name}: {value!r} is not a non-empty text")
    return value


@dataclass(frozen=True)
class Filters:
    """What a search is narrowed to (None: not filtered by that). Build it with :meth:`from_args`."""

    since: datetime.date | None = None
    until: datetime.date | None = None
    publisher: str | None = None
    topic: str | None = None
    path: str | None = None

    @classmethod
    def from_args(cls, *, since: Any = None, until: Any = None, publisher: Any = None, topic: Any = None,
                  path: Any = None) -> Filters:
        """Checked filters; QueryError (one line naming the value) for a date that is none, an
        empty name or glob, or ``since`` after ``until``."""
        filters = cls(
            since=None if since is None else parse_day(since, name="since"),
            until=None if until is None else parse_day(until, name="until", last=True),
            publisher=_text(publisher, name="publisher"), topic=_text(topic, name="topic"), path=_text(path, name="path"),
        )
        if filters.since and filters.until and filters.since > filters.until:
            raise QueryError(f"since: {filters.since.isoformat()} is after until {filters.until.isoformat()}")
        return filters

    @property
    def active(self) -> bool:
        return any(value is not None for value in (self.since, self.until, self.publisher, self.topic, self.path))

    def to_dict(self) -> dict[str, str | None]:
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "publisher": self.publisher, "topic": self.topic, "path": self.path}


class Selection:
    """The passages a filter keeps, as a mask over passage ids (ids, count, a FAISS bitmap and
    the paragraphs holding a kept passage are derived once)."""

    def __init__(self, mask: np.ndarray, *, paragraph_of: np.ndarray, paragraphs: int) -> None:
        self.mask = mask
        self.paragraph_of = paragraph_of
        self.paragraphs = paragraphs

    @cached_property
    def paragraph_mask(self) -> np.ndarray:
        """True for each paragraph holding a passage this selection keeps."""
        import numpy as np

        kept = np.zeros(self.paragraphs, dtype=bool)
        kept[self.paragraph_of[self.ids]] = True
        return kept

    @cached_property
    def ids(self) -> np.ndarray:
        import numpy as np

        return np.flatnonzero(self.mask)

    @cached_property
    def count(self) -> int:
        return int(self.mask.sum())

    @property
    def fraction(self) -> float:
        return self.count / max(1, len(self.mask))

    @cached_property
    def bitmap(self) -> np.ndarray:
        """Bit i (little-endian within each byte) set when passage i matches: FAISS's IDSelectorBitmap."""
        import numpy as np

        return np.packbits(self.mask, bitorder="little")


class PassageFilter:
    """A generation's filters: its metadata read once, as arrays, and recent selections kept."""

    def __init__(self, stored: StoredIndex) -> None:
        self.stored = stored
        self.store = MetadataStore(stored.generation / METADATA)
        self._lock = threading.Lock()
        self._selections: OrderedDict[Filters, Selection] = OrderedDict()

    @cached_property
    def columns(self) -> Columns:
        if not self.store.exists():
            raise IndexFormatError(f"{self.stored.generation}: has no {METADATA} to filter by (built before filters); "
                                   f"{rebuild_hint(self.stored.index)}")
        columns = self.store.columns()
        if len(columns.passage_article) != self.stored.count:
            raise IndexFormatError(f"{self.store.path}: holds {len(columns.passage_article)} passages but the manifest "
                                   f"counts {self.stored.count}; {rebuild_hint(self.stored.index)}")
        return columns

    def select(self, filters: Filters) -> Selection:
        """The passages ``filters`` keep (kept for the next time the same filters come)."""
        with self._lock:
            if filters in self._selections:
                self._selections.move_to_end(filters)
                return self._selections[filters]
        selection = Selection(passage_mask(self.columns, filters), paragraph_of=self.stored.paragraph_of,
                              paragraphs=self.stored.paragraph_count)
        with self._lock:
            self._selections[filters] = selection
            while len(self._selections) > CACHED_SELECTIONS:
                self._selections.popitem(last=False)
        return selection


def passage_mask(columns: Columns, filters: Filters) -> np.ndarray:
    """True for each passage that every filter given keeps (see the module's docstring)."""
    import fnmatch

    import numpy as np

    articles = np.ones(len(columns.published), dtype=bool)
    if filters.since is not None or filters.until is not None:
        articles &= columns.published >= 0
        if filters.since is not None:
            articles &= columns.published >= filters.since.toordinal()
        if filters.until is not None:
            articles &= columns.published <= filters.until.toordinal()
    if filters.publisher is not None:
        code = columns.publishers.get(fold(filters.publisher))
        articles &= columns.publisher == (code if code is not None else -2)
    if filters.topic is not None:
        code = columns.topics.get(fold(filters.topic))
        tagged = np.zeros(len(articles), dtype=bool)
        tagged[columns.topic_article[columns.topic_code == (code if code is not None else -2)]] = True
        articles &= tagged
    mask = articles[columns.passage_article]
    if filters.path is not None:
        rows = [row for row, name in enumerate(columns.files) if fnmatch.fnmatchcase(name, filters.path)]
        cited = np.zeros(len(mask), dtype=bool)
        cited[columns.file_passage[np.isin(columns.file_row, rows)]] = True
        mask &= cited
    return mask

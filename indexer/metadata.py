"""Passage and article metadata in an SQLite file inside each generation, for filters.

``metadata.sqlite`` holds what a search can be narrowed by: each article's published date,
publisher, category and topics, each passage's article, and the files each passage is
cited from. It is written once with the generation (and checksummed with it) and opened by
queries read-only (``mode=ro``, ``immutable=1``: a generation never changes). Values are
also stored case-folded, so publisher and topic compare without case.

The query side reads it twice: ``facets`` for ``semindex info``, and ``columns`` once per
generation, as numpy arrays that a filter turns into a passage mask without a round trip
per passage (docs/experiments/filters.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from indexer import integrity
from indexer.errors import IndexFormatError
from indexer.manifest import rebuild_hint
from indexer.safety import brief
from indexer.types import Article, Passage

T = TypeVar("T")

if TYPE_CHECKING:
    import numpy as np

METADATA = "metadata.sqlite"
SCHEMA = """
CREATE TABLE articles (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, published TEXT, publisher TEXT, publisher_folded TEXT,
    category TEXT, category_folded TEXT);
CREATE TABLE topics (article INTEGER NOT NULL REFERENCES articles(id), topic TEXT NOT NULL, topic_folded TEXT NOT NULL);
CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE passages (id INTEGER PRIMARY KEY, article INTEGER NOT NULL REFERENCES articles(id));
CREATE TABLE passage_files (passage INTEGER NOT NULL REFERENCES passages(id), file INTEGER NOT NULL REFERENCES files(id));
CREATE INDEX articles_published ON articles(published);
CREATE INDEX articles_publisher ON articles(publisher_folded);
CREATE INDEX topics_folded ON topics(topic_folded, article);
CREATE INDEX passage_files_file ON passage_files(file, passage);
"""


def fold(value: str) -> str:
    """How publisher, topic and category are compared: without case (Unicode case folding)."""
    return " ".join(value.split()).casefold()


def write_metadata(path: Path, *, passages: list[Passage], articles: dict[str, Article]) -> None:
    """Write the metadata database of ``passages`` (in vector order) and their ``articles``
    (key -> Article) to ``path``, which must not exist. Rows go in a fixed order, so the
    same generation gives the same bytes."""
    keys = sorted(articles)
    article_row = {key: number for number, key in enumerate(keys)}
    files = sorted({source.file for passage in passages for source in passage.sources})
    file_row = {name: number for number, name in enumerate(files)}
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.executescript(SCHEMA)
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((article_row[key], key, articles[key].published, articles[key].publisher,
              fold(articles[key].publisher) if articles[key].publisher else None, articles[key].category,
              fold(articles[key].category) if articles[key].category else None) for key in keys),
        )
        connection.executemany(
            "INSERT INTO topics VALUES (?, ?, ?)",
            ((article_row[key], topic, fold(topic)) for key in keys for topic in dict.fromkeys(articles[key].topics)),
        )
        connection.executemany("INSERT INTO files VALUES (?, ?)", enumerate(files))
        connection.executemany("INSERT INTO passages VALUES (?, ?)",
                               ((passage.id, article_row[passage.article]) for passage in passages))
        connection.executemany(
            "INSERT INTO passage_files VALUES (?, ?)",
            ((passage.id, file_row[name]) for passage in passages for name in sorted(passage.files)),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


@dataclass(frozen=True)
class Columns:
    """The metadata as arrays, for filtering: per article (row = ``articles.id``) its date as
    a day number (-1: none), its publisher's code (-1: none) into the folded names,
    topics as (article, topic code) pairs; per passage its article row; (passage, file row)
    pairs; and the file paths."""

    published: np.ndarray
    publisher: np.ndarray
    publishers: dict[str, int]
    topic_article: np.ndarray
    topic_code: np.ndarray
    topics: dict[str, int]
    passage_article: np.ndarray
    file_passage: np.ndarray
    file_row: np.ndarray
    files: list[str]


class MetadataStore:
    """A generation's ``metadata.sqlite``, opened read-only (one connection per call, so
    threads may share the store)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.is_file()

    def _connect(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        return self._guarded(lambda connection: connection.execute(sql, parameters).fetchall())

    def _guarded(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """``read(connection)``; a file that is no such database (a table or column missing,
        values of another kind) is IndexFormatError in one line, not a traceback."""
        connection = None
        try:
            connection = self._connect()
            return read(connection)
        except (sqlite3.Error, ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
            raise IndexFormatError(f"{self.path}: corrupt ({brief(str(error))}); "
                                   f"{rebuild_hint(self.path.parent.parent)}") from None
        finally:
            if connection is not None:
                connection.close()

    def rows(self) -> list[str]:
        """The whole database as SQL statements (compares two builds whatever SQLite wrote them)."""
        connection = self._connect()
        try:
            return list(connection.iterdump())
        finally:
            connection.close()

    def facets(self) -> dict[str, Any]:
        """What a search can be filtered by: the range of published dates, and each publisher
        and topic with the number of passages of its articles (most first)."""
        low, high, undated = self.query(
            "SELECT MIN(a.published), MAX(a.published), SUM(a.published IS NULL) "
            "FROM passages p JOIN articles a ON a.id = p.article")[0]

        def counted(sql: str) -> list[dict[str, Any]]:
            return [{"name": name, "passages": count} for name, count in self.query(sql)]

        per_article = "SELECT article, COUNT(*) AS n FROM passages GROUP BY article"
        facets = {
            "dates": {"first": low, "last": high, "undated_passages": int(undated or 0)},
            "publishers": counted(
                f"SELECT MIN(a.publisher), SUM(c.n) FROM ({per_article}) c JOIN articles a ON a.id = c.article "
                "WHERE a.publisher IS NOT NULL GROUP BY a.publisher_folded ORDER BY 2 DESC, 1"),
            "topics": counted(
                f"SELECT MIN(t.topic), SUM(c.n) FROM ({per_article}) c JOIN topics t ON t.article = c.article "
                "GROUP BY t.topic_folded ORDER BY 2 DESC, 1"),
        }
        if problem := integrity.facets_problem(facets):
            raise IndexFormatError(f"{self.path}: corrupt ({problem}); {rebuild_hint(self.path.parent.parent)}")
        return facets

    def columns(self) -> Columns:
        """Every row as arrays (read once per generation by the query side)."""
        import numpy as np

        def read(connection: sqlite3.Connection) -> Columns:
            def column(sql: str, dtype=np.int64) -> np.ndarray:
                return np.fromiter((row[0] for row in connection.execute(sql)), dtype=dtype)

            def codes(name: str) -> tuple[np.ndarray, dict[str, int]]:
                values = [row[0] for row in connection.execute(f"SELECT {name} FROM articles ORDER BY id")]
                names = {value: number for number, value in enumerate(sorted({v for v in values if v is not None}))}
                return np.asarray([names.get(value, -1) for value in values], dtype=np.int32), names

            dates = [row[0] for row in connection.execute("SELECT published FROM articles ORDER BY id")]
            publisher, publishers = codes("publisher_folded")
            topic_rows = connection.execute("SELECT article, topic_folded FROM topics ORDER BY article").fetchall()
            topics = {value: number for number, value in enumerate(sorted({topic for _, topic in topic_rows}))}
            pairs = connection.execute("SELECT passage, file FROM passage_files ORDER BY passage, file").fetchall()
            return Columns(
                published=np.asarray([day_number(value) for value in dates], dtype=np.int32),
                publisher=publisher, publishers=publishers,
                topic_article=np.asarray([article for article, _ in topic_rows], dtype=np.int32),
                topic_code=np.asarray([topics[topic] for _, topic in topic_rows], dtype=np.int32), topics=topics,
                passage_article=column("SELECT article FROM passages ORDER BY id", np.int32),
                file_passage=np.asarray([passage for passage, _ in pairs], dtype=np.int64),
                file_row=np.asarray([file for _, file in pairs], dtype=np.int32),
                files=[row[0] for row in connection.execute("SELECT path FROM files ORDER BY id")],
            )

        columns = self._guarded(read)
        if problem := integrity.columns_problem(columns):
            raise IndexFormatError(f"{self.path}: corrupt ({problem}); {rebuild_hint(self.path.parent.parent)}")
        return columns


def day_number(iso: str | None) -> int:
    """An ISO date (``2024-05-01``, or a longer timestamp starting with one) as a proleptic
    Gregorian day number; -1 when there is none or it is not a date."""
    import datetime

    if not iso:
        return -1
    try:
        return datetime.date.fromisoformat(iso[:10]).toordinal()
    except ValueError:
        return -1

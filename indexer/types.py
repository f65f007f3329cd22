"""The domain's named types: passage kinds, passages and paragraphs with their sources, articles.

A passage is stored once per distinct embedded text of an article; every place its text
appears in the corpus is one :class:`Source` (file, character and line span), so a
citation is always built from stored fields and ``file_text[start:end]`` is the passage.
``Passage.to_json``/``from_json`` are the one mapping to the lines of ``passages.jsonl``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class PassageKind(str, enum.Enum):
    """What part of an article a passage is (str-valued: written to disk as its value)."""

    TITLE = "title"
    EXCERPT = "excerpt"
    PUBLISHER = "publisher"
    DATE = "date"
    RELATED = "related"
    META = "meta"
    BODY = "body"

    def __str__(self) -> str:
        return self.value

    @property
    def is_metadata(self) -> bool:
        """One fact about an article (answered whole, judged by its embedded rendering)."""
        return self in METADATA_KINDS


METADATA_KINDS = frozenset({PassageKind.TITLE, PassageKind.PUBLISHER, PassageKind.DATE, PassageKind.META})


@dataclass(frozen=True)
class Source:
    """One place a passage's text appears: ``chars`` is [start, end) into the file's text,
    ``lines`` [first, last] (1-based, inclusive); ``listed_by`` names the file that lists
    the article (a related entry) when it is not the article's own record."""

    file: str
    chars: tuple[int, int]
    lines: tuple[int, int]
    kind: PassageKind
    listed_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "chars": list(self.chars), "lines": list(self.lines), "kind": self.kind.value,
                "listed_by": self.listed_by}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(file=data["file"], chars=(data["chars"][0], data["chars"][1]),
                   lines=(data["lines"][0], data["lines"][1]), kind=PassageKind(data.get("kind", "body")),
                   listed_by=data.get("listed_by"))


@dataclass
class Passage:
    """A passage of one article: ``text`` is shown and cited, ``embedded`` (when it differs)
    is what was embedded (a date rendered as a sentence with its article's title);
    ``copy_group`` numbers the group of passages embedded from the same text (an article
    syndicated by two outlets), shown as one hit: the groups are stored once, in
    ``copies.json`` (``StoredIndex.copies`` gives a passage's copies), so copies cost linear
    space however many there are."""

    id: int
    text: str
    kind: PassageKind
    article: str
    sources: list[Source]
    embedded: str | None = None
    copy_group: int | None = None
    paragraph: int | None = None
    """The :class:`Paragraph` it was cut from (stored in ``paragraph_of.npy``, not in its line)."""

    @property
    def embed_text(self) -> str:
        """The exact text its vector was made from."""
        return self.embedded if self.embedded is not None else self.text

    @property
    def files(self) -> set[str]:
        return {source.file for source in self.sources}

    def to_json(self) -> dict[str, Any]:
        """The line of ``passages.jsonl`` (key order is part of the format: files stay byte-identical)."""
        data: dict[str, Any] = {"id": self.id, "text": self.text, "kind": self.kind.value, "article": self.article,
                                "sources": [source.to_json() for source in self.sources]}
        if self.embedded is not None:
            data["embedded"] = self.embedded
        if self.copy_group is not None:
            data["copy_group"] = self.copy_group
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Passage:
        return cls(id=data["id"], text=data["text"], kind=PassageKind(data["kind"]), article=data["article"],
                   sources=[Source.from_json(source) for source in data["sources"]], embedded=data.get("embedded"),
                   copy_group=data.get("copy_group"))


@dataclass
class Paragraph:
    """A unit search ranks and shows: a paragraph of a file (text between blank lines), or a
    piece of one too long to show whole; ``passages`` are the ids of the passages cut from it
    (a passage whose text recurs in another paragraph of its article belongs to the first).
    Stored once per distinct text of an article, every place it appears one :class:`Source`."""

    id: int
    text: str
    kind: PassageKind
    article: str
    sources: list[Source]
    passages: list[int] = field(default_factory=list)
    indexed: str | None = None
    """What its BM25 row was made from when it differs from ``text`` (a metadata paragraph
    with its article as context, as its passage is embedded)."""

    @property
    def index_text(self) -> str:
        return self.indexed if self.indexed is not None else self.text

    def to_json(self) -> dict[str, Any]:
        """The line of ``paragraphs.jsonl``."""
        data: dict[str, Any] = {"id": self.id, "text": self.text, "kind": self.kind.value, "article": self.article,
                                "sources": [source.to_json() for source in self.sources], "passages": self.passages}
        if self.indexed is not None:
            data["indexed"] = self.indexed
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Paragraph:
        return cls(id=data["id"], text=data["text"], kind=PassageKind(data["kind"]), article=data["article"],
                   sources=[Source.from_json(source) for source in data["sources"]],
                   passages=[int(pid) for pid in data["passages"]], indexed=data.get("indexed"))


@dataclass
class Article:
    """What a citation says about an article; ``key`` is its URL, or ``file:NAME`` if it has none."""

    key: str
    title: str | None = None
    publisher: str | None = None
    url: str | None = None
    published: str | None = None
    topics: list[str] = field(default_factory=list)
    category: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Article) -> None:
        """Fill fields this article lacks from ``other`` (a record's own fields win)."""
        for name in ("title", "publisher", "url", "published", "category"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        self.topics = self.topics or other.topics
        self.details = {**other.details, **self.details}

    def copy(self) -> Article:
        return Article(**{**self.__dict__, "topics": list(self.topics), "details": dict(self.details)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "publisher": self.publisher,
            "url": self.url,
            "published": self.published,
            "topics": self.topics,
            "category": self.category,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Article:
        """An entry of ``articles.json`` (tolerant: fields it lacks are None)."""
        return cls(key=data.get("key", ""), title=data.get("title"), publisher=data.get("publisher"),
                   url=data.get("url"), published=data.get("published"), topics=list(data.get("topics") or []),
                   category=data.get("category"), details=dict(data.get("details") or {}))

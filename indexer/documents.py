"""Read one corpus file into articles (metadata) and segments (spans of the file to index).

Formats handled in general, not by file name:
- a record with YAML front matter: its title, excerpt, publisher and date become segments
  of its article; each ``related`` entry becomes segments of THAT article, noting which
  file listed it; opaque fields (``secured``, image, amp and cdn URLs, scores) are
  neither indexed nor shown;
- a bare body: a leading ``date YYYY-MM-DD`` is read as its date, a first short line as
  its headline, and site chrome is recognised by :mod:`indexer.chrome` and left out.

Every segment is a span of the file's text, so a citation is always ``text[start:end]``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from indexer import safety
from indexer.chrome import Block, classify_blocks, split_blocks
from indexer.errors import CorpusError, InputError
from indexer.types import Article

FRONT_MATTER = re.compile(r"\A(?:\ufeff)?---[ \t]*\r?\n(?P<yaml>.*?)(?:\r?\n)?^---[ \t]*$(?:\r?\n)?", re.S | re.M)
NODE_PROPERTIES = re.compile(r"(?:[&!]\S*\s+)*")
"""YAML node properties before a scalar: an anchor (``&name``) and a tag (``!!str``, ``!x``)."""
OPENING_FENCE = re.compile(r"\A\ufeff?---[ \t]*\r?\n")
LEADING_DATE = re.compile(r"\A\s*(?:date|published|dated)\s*:?\s*(?P<date>\d{4}-\d{2}-\d{2})\b\s*", re.I)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_FIELDS = ("publishedDateTime", "publishedDate", "published_at", "date")
URL_FIELDS = ("webUrl", "originalUrl", "url")
TEXT_FIELDS = ("title", "excerpt", "category", "type", *URL_FIELDS)
MAX_HEADLINE_WORDS = 20


@dataclass
class Segment:
    """A span of a file to index, cited to ``article``.

    ``kind`` is one of ``title``, ``excerpt``, ``publisher``, ``date``, ``related``, ``meta``, ``body``.
    """

    file: str
    start: int
    end: int
    kind: str
    article: str
    listed_by: str | None = None


@dataclass
class ParsedFile:
    """One corpus file: its text, the articles it describes, and what to index of it."""

    name: str
    text: str
    sha256: str
    articles: dict[str, Article]
    segments: list[Segment]
    chrome: list[Block]
    has_metadata: bool
    body_article: str | None = None
    body_date: str | None = None


MAX_FILE_BYTES = 10 * 2**20
"""Larger files are skipped: a news article is kilobytes; 10 MB of text is a dump or a
mistake, and would take hours to embed on a laptop (``SEMINDEX_MAX_FILE_MB`` raises it)."""


def max_file_bytes() -> int:
    """The size limit: ``SEMINDEX_MAX_FILE_MB`` (a positive number of MB) or :data:`MAX_FILE_BYTES`."""
    return safety.megabytes_setting("SEMINDEX_MAX_FILE_MB", os.environ.get("SEMINDEX_MAX_FILE_MB"), default=MAX_FILE_BYTES)


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` is refused before a byte of it is read: not a regular file (a FIFO would
    block, a device never end), or over the size limit; None when it may be read."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe, device or socket)"
    limit = max_file_bytes()
    if info.st_size > limit:
        return f"is too large ({safety.size_comparison(info.st_size, limit)}, set SEMINDEX_MAX_FILE_MB to raise it)"
    return None


def input_fingerprint(path: Path) -> str:
    """What a build records of a corpus file to see whether it changed: the sha256 of its
    bytes, or the reason it is not read (so raising the size limit counts as a change)."""
    if reason := unreadable_reason(path):
        return f"{reason} [{path.stat().st_size} bytes]"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_text(path: Path, name: str) -> tuple[str, str]:
    """Return (text, sha256) of a UTF-8 file, or raise InputError naming the problem."""
    try:
        if reason := unreadable_reason(path):
            raise InputError(name, reason)
        data = path.read_bytes()
    except FileNotFoundError:
        reason = "is a broken symbolic link" if path.is_symlink() else "disappeared while the corpus was read"
        raise InputError(name, reason) from None
    except PermissionError:
        raise InputError(name, "cannot be read (permission denied)") from None
    except OSError as exc:
        raise InputError(name, f"cannot be read ({exc.strerror or exc})") from None
    if not data.strip():
        raise InputError(name, "is empty")
    if (nul := data.find(b"\x00")) >= 0:  # the whole file: text never holds NUL, and find() is a memchr
        raise InputError(name, f"is a binary file, not text (a NUL byte at byte {nul})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if "\r" in text:  # CRLF (Windows) and a lone CR (classic Mac OS) both end a line
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, hashlib.sha256(data).hexdigest()


def iso_date(value: Any) -> str | None:
    """A YAML date, datetime or ISO-like string → 'YYYY-MM-DD', else None."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and (match := re.match(r"\s*(\d{4}-\d{2}-\d{2})", value)):
        try:
            return date.fromisoformat(match.group(1)).isoformat()
        except ValueError:
            return None
    return None


def parse_file(path: Path, name: str) -> ParsedFile:
    """Parse one corpus file; raises InputError for anything that cannot be indexed."""
    text, digest = read_text(path, name)
    match = FRONT_MATTER.match(text)
    if match is None and OPENING_FENCE.match(text):
        raise InputError(name, "front matter starts with '---' but has no closing '---' line")
    articles: dict[str, Article] = {}
    segments: list[Segment] = []
    body_start = 0
    if match:
        _parse_front_matter(name, text, match.start("yaml"), match.group("yaml"), articles, segments)
        body_start = match.end()
    parsed = ParsedFile(
        name=name, text=text, sha256=digest, articles=articles, segments=segments,
        chrome=[], has_metadata=bool(articles),
    )
    _parse_body(parsed, body_start)
    if not parsed.segments:
        raise InputError(name, "has nothing to index (no title, excerpt or body text)")
    return parsed


# --- front matter -------------------------------------------------------------------

def read_files(
    corpus: Path, found: list[tuple[Path, str]], *, warn: Callable[[str], None]
) -> tuple[list[ParsedFile], list[str], list[str]]:
    """Read discovered files (stage 2 of a build): (parsed files, skip messages, names of the
    skipped files); a file that cannot be read is warned about and skipped."""
    parsed, skipped, skipped_names = parse_files(found, warn=warn)
    require_parsed(corpus, parsed)
    return parsed, skipped, skipped_names


def parse_files(
    found: list[tuple[Path, str]], *, warn: Callable[[str], None]
) -> tuple[list[ParsedFile], list[str], list[str]]:
    """:func:`read_files` of some of a corpus's files (a Ray task's share): none may be readable."""
    parsed: list[ParsedFile] = []
    skipped: list[str] = []
    skipped_names: list[str] = []
    for path, name in found:
        try:
            parsed.append(parse_file(path, name))
        except InputError as error:
            warn(f"{error} (skipped)")
            skipped.append(str(error))
            skipped_names.append(name)
    return parsed, skipped, skipped_names


def require_parsed(corpus: Path, parsed: list[ParsedFile]) -> None:
    """A build needs at least one readable file."""
    if not parsed:
        raise CorpusError(f"{corpus}: no indexable .txt or .md files")


def yaml_problem(error: Exception) -> tuple[int | None, str]:
    """(0-based line or None, reason) of a PyYAML error, whose own text spans several lines
    (context, a caret under the column)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (mark.line if mark is not None else None), problem


def _parse_front_matter(
    name: str, text: str, offset: int, source: str, articles: dict[str, Article], segments: list[Segment]
) -> None:
    import yaml

    try:
        data, node = safety.bounded_yaml(source)
    except yaml.YAMLError as exc:
        line, problem = yaml_problem(exc)
        where = f" at line {line + 2}" if line is not None else ""  # + the opening '---' line
        raise InputError(name, f"malformed front matter{where}: {problem}") from None
    except (ValueError, TypeError) as exc:  # e.g. an impossible unquoted timestamp
        raise InputError(name, f"malformed front matter: {exc}") from None
    if data is None or data == {}:  # empty front matter: the file is a bare body
        return
    if not isinstance(data, dict):
        raise InputError(name, f"front matter must be a mapping of fields, got {_type_name(data)}")
    nodes = _mapping_nodes(node)
    record = _article_from_fields(name, data, field_path="")
    articles[record.key] = record
    segments.extend(_article_segments(name, text, offset, data, nodes, record, excerpt_kind="excerpt"))
    related = data.get("related") or []
    if not isinstance(related, list):
        raise InputError(name, f"field 'related' must be a list, got {_type_name(related)}")
    for position, (entry, entry_node) in enumerate(zip(related, nodes["related"].value if related else [])):
        if not isinstance(entry, dict):
            raise InputError(name, f"field 'related[{position}]' must be a mapping, got {_type_name(entry)}")
        other = _article_from_fields(name, entry, field_path=f"related[{position}].")
        if other.key.startswith("file:"):
            other.key = f"file:{name}#related{position}"
        articles.setdefault(other.key, other).merge(other)
        segments.extend(_article_segments(name, text, offset, entry, _mapping_nodes(entry_node), other,
                                          excerpt_kind="related", listed_by=name))


def _article_segments(
    name: str, text: str, offset: int, data: dict, nodes: dict[str, Any], article: Article, *, excerpt_kind: str,
    listed_by: str | None = None,
) -> list[Segment]:
    """The title, excerpt, publisher and date passages of ``article`` from its fields ``data``
    (a record's own, or a ``related`` entry's, listed by the record ``listed_by``)."""
    segments = []
    for field_name, kind in (("title", "title"), ("excerpt", excerpt_kind)):
        if (data.get(field_name) or "").strip():
            segments.append(_scalar_segment(name, text, offset, nodes[field_name], kind, article.key, listed_by=listed_by))
    if article.publisher and (provider_node := _publisher_node(nodes)) is not None:
        segments.append(_scalar_segment(name, text, offset, provider_node, "publisher", article.key, listed_by=listed_by))
    if (article.title or article.publisher) and (
            date_segment := _date_segment(name, text, offset, data, nodes, article.key, listed_by=listed_by)):
        segments.append(date_segment)  # a date with neither says nothing a question could find
    return segments


def _type_name(value: Any) -> str:
    return {list: "a list", str: "a string", dict: "a mapping", int: "a number", float: "a number",
            bool: "true/false"}.get(type(value), type(value).__name__)


def _article_from_fields(name: str, data: dict, *, field_path: str) -> Article:
    for key in TEXT_FIELDS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(name, f"field '{field_path}{key}' must be text, got {_type_name(value)}")
    provider = data.get("provider")
    if isinstance(provider, dict):
        publisher = provider.get("name")
    elif provider is None or isinstance(provider, str):
        publisher = provider
    else:
        raise InputError(name, f"field '{field_path}provider' must be a mapping or text, got {_type_name(provider)}")
    if publisher is not None and not isinstance(publisher, str):
        raise InputError(name, f"field '{field_path}provider.name' must be text, got {_type_name(publisher)}")
    topics = data.get("topics") or []
    if not isinstance(topics, list) or not all(isinstance(topic, str) for topic in topics):
        raise InputError(name, f"field '{field_path}topics' must be a list of text")
    published = None
    for key in DATE_FIELDS:
        if data.get(key) is not None:
            published = iso_date(data[key])
            if published is None:
                raise InputError(name, f"field '{field_path}{key}' is not a date: {safety.brief(data[key])}")
            break
    url = next((data[key] for key in URL_FIELDS if data.get(key)), None)
    return Article(
        key=url or f"file:{name}",
        title=(data.get("title") or "").strip() or None,
        publisher=publisher.strip() if publisher else None,
        url=url,
        published=published,
        topics=topics,
        category=data.get("category"),
    )


def _mapping_nodes(node: Any) -> dict[str, Any]:
    """A mapping node's fields (key → value node), merge keys (``<<: *defaults``) resolved
    as ``yaml.safe_load`` resolves them, so every field it read has a node, and so a span."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        yaml.constructor.SafeConstructor().flatten_mapping(node)
    return {key.value: value for key, value in getattr(node, "value", []) if hasattr(key, "value")}


def _publisher_node(nodes: dict[str, Any]) -> Any:
    provider = nodes.get("provider")
    if provider is None:
        return None
    if provider.tag.endswith(":map"):
        return _mapping_nodes(provider).get("name")
    return provider


def _scalar_segment(
    name: str, text: str, offset: int, node: Any, kind: str, article: str, *, listed_by: str | None = None
) -> Segment:
    """The span of a YAML scalar's content in the file (after any anchor or tag, inside any
    quotes, trimmed)."""
    start, end = offset + node.start_mark.index, offset + node.end_mark.index
    start = NODE_PROPERTIES.match(text, start, end).end()
    if node.style in ("'", '"'):
        start, end = start + 1, end - 1
    elif node.style in ("|", ">"):
        start = text.index("\n", start) + 1
    raw = text[start:end]
    start += len(raw) - len(raw.lstrip())
    end = max(start, end - (len(raw) - len(raw.rstrip())))
    return Segment(file=name, start=start, end=end, kind=kind, article=article, listed_by=listed_by)


def _date_segment(
    name: str, text: str, offset: int, data: dict, nodes: dict[str, Any], article: str, *, listed_by: str | None = None
) -> Segment | None:
    """The ``YYYY-MM-DD`` that opens the date field :func:`_article_from_fields` read (a
    timestamp's time of day left out; the whole value when it is written otherwise), or None
    when there is none. It is a passage of its own, so "When was … published?" can be
    answered with a span of the file."""
    key = next((key for key in DATE_FIELDS if data.get(key) is not None), None)
    if key is None:
        return None
    segment = _scalar_segment(name, text, offset, nodes[key], "date", article, listed_by=listed_by)
    if match := ISO_DATE.match(text, segment.start, segment.end):  # else all of it: "2023-5-12", an escape
        segment.end = match.end()
    return segment


# --- bodies ---------------------------------------------------------------------------


def _parse_body(parsed: ParsedFile, body_start: int) -> None:
    text = parsed.text
    if text.startswith("\ufeff", body_start):  # a byte order mark is not part of the body
        body_start += 1
    body = text[body_start:]
    if not body.strip():
        return
    if (match := LEADING_DATE.match(body)) and iso_date(match["date"]):
        parsed.body_date = match["date"]
        body_start += match.end()
        body = text[body_start:]
    blocks = classify_blocks(split_blocks(body, offset=body_start))
    if parsed.has_metadata:
        record = next(iter(parsed.articles.values()))
        key = record.key
    else:
        key = f"file:{parsed.name}"
        record = Article(key=key, published=parsed.body_date)
        parsed.articles[key] = record
    parsed.body_article = key
    headline = _find_headline(blocks)
    for block in blocks:
        if block.kind in ("text", "meta"):
            kind = "title" if block is headline else ("meta" if block.kind == "meta" else "body")
            parsed.segments.append(Segment(file=parsed.name, start=block.start, end=block.end, kind=kind, article=key))
            if block.kind == "meta":
                record.details.update(block.facts)
        else:
            parsed.chrome.append(block)
    if headline is not None and record.title is None:
        record.title = headline.text
    if record.published is None:
        record.published = parsed.body_date or record.details.get("edition_date")
    if parsed.body_date is None and record.details.get("edition_date"):
        parsed.body_date = record.details["edition_date"]


def _find_headline(blocks: list[Block]) -> Block | None:
    """A bare body's headline: its first text block, if short, one line, and not a sentence."""
    texts = [block for block in blocks if block.kind == "text"]
    if len(texts) < 2:
        return None
    first = texts[0]
    words = len(first.text.split())
    if "\n" in first.text or words > MAX_HEADLINE_WORDS or re.search(r"[.!?…:;,]$", first.text):
        return None
    return first

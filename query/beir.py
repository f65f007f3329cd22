"""Load a retrieval benchmark in the BEIR folder layout.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id corpus-id score``,
tab-separated). The loader follows BEIR's ``GenericDataLoader`` where it matters for the
numbers (only queries with qrels are kept; qrels may name documents missing from the
corpus and are kept, since they still count as relevant documents that were not
found) but is stricter: duplicate ids and contradictory qrels (which BEIR silently
overwrites) and qrels for unknown queries (a bare KeyError in BEIR) raise
:class:`BeirFormatError`, a one-line message naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.errors import unencodable

__all__ = ["BeirDataset", "BeirFormatError", "Document", "choose_split", "corpus_hash", "load_beir"]

_QRELS_HEADER = ("query-id", "corpus-id", "score")
_HASH_CHUNK = 1 << 20


class BeirFormatError(ValueError):
    """A BEIR file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus entry; ``title`` is ``""`` when the corpus has none."""

    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    """A loaded benchmark split: corpus, the queries that have qrels, and the qrels.

    ``qrels`` maps query id -> {doc id: grade}; grades are kept as written (0 and
    negative grades included) so the metrics decide what counts as relevant.
    """

    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str = "train"


def choose_split(folder: Path) -> str:
    """The qrels split to evaluate when none is named: ``test`` where the folder has one
    (BEIR's evaluation split), else its only split. Several splits and no ``test``, or
    none at all, raise :class:`BeirFormatError` listing what there is."""
    qrels_folder = Path(folder) / "qrels"
    splits = sorted(path.stem for path in qrels_folder.glob("*.tsv")
                    if path.is_file() and not path.name.startswith(".")) if qrels_folder.is_dir() else []  # not "._train.tsv"
    if "test" in splits:
        return "test"
    if len(splits) == 1:
        return splits[0]
    if not splits:
        raise BeirFormatError(f"{qrels_folder}: no qrels files (<split>.tsv)")
    raise BeirFormatError(f"{qrels_folder}: several splits ({', '.join(splits)}) and no test.tsv; name one with --split")


def load_beir(folder: Path, *, split: str | None = None) -> BeirDataset:
    """Read a BEIR folder's corpus, queries and ``qrels/<split>.tsv`` into memory
    (``split`` None: :func:`choose_split`).

    Everything is loaded eagerly (a 5k-document corpus is a few MB; BEIR's largest
    would need a streaming reader instead). Queries keep qrels order. Raises
    :class:`BeirFormatError` for a missing file, the first malformed line, a corpus
    without text or qrels that judge no query.
    """
    folder = Path(folder)
    corpus_path = folder / "corpus.jsonl"
    queries_path = folder / "queries.jsonl"
    for path in (corpus_path, queries_path):
        if not path.is_file():
            raise BeirFormatError(f"{path}: file not found")
    split = choose_split(folder) if split is None else split
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise BeirFormatError(f"{qrels_path}: file not found")

    corpus: dict[str, Document] = {}
    for lineno, record in _read_jsonl(corpus_path):
        doc_id = _read_id(record, corpus_path, lineno)
        title = record.get("title")
        title = "" if title is None else title
        text = record.get("text")
        if not isinstance(title, str) or not isinstance(text, str):
            raise BeirFormatError(
                f"{corpus_path}:{lineno}: 'text' must be a string and 'title' a string or absent"
            )
        if (bad := unencodable(title + text)) is not None:
            raise BeirFormatError(f"{corpus_path}:{lineno}: not valid Unicode ({bad})")
        if doc_id in corpus:
            raise BeirFormatError(f"{corpus_path}:{lineno}: duplicate _id {doc_id!r}")
        corpus[doc_id] = Document(title=title, text=text)
    if not any(document.title.strip() or document.text.strip() for document in corpus.values()):
        raise BeirFormatError(f"{corpus_path}: no documents with text")

    all_queries: dict[str, str] = {}
    query_lines: dict[str, int] = {}
    for lineno, record in _read_jsonl(queries_path):
        query_id = _read_id(record, queries_path, lineno)
        text = record.get("text")
        if not isinstance(text, str):
            raise BeirFormatError(f"{queries_path}:{lineno}: 'text' must be a string")
        if (bad := unencodable(text)) is not None:
            raise BeirFormatError(f"{queries_path}:{lineno}: not valid Unicode ({bad})")
        if query_id in all_queries:
            raise BeirFormatError(f"{queries_path}:{lineno}: duplicate _id {query_id!r}")
        all_queries[query_id], query_lines[query_id] = text, lineno

    qrels = _read_qrels(qrels_path, all_queries)
    if not qrels:
        raise BeirFormatError(f"{qrels_path}: no judged queries")
    for query_id in qrels:
        if not all_queries[query_id].strip():
            raise BeirFormatError(f"{queries_path}:{query_lines[query_id]}: query {query_id!r} is judged but has no text")
    queries = {query_id: all_queries[query_id] for query_id in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, split=split)


def corpus_hash(folder: Path) -> str:
    """Hex sha256 of ``corpus.jsonl``'s bytes, read in 1 MiB chunks, for cache keys.

    Byte-level, so re-serialising the same documents (key order, whitespace) changes
    the hash; that errs on the side of rebuilding a cache rather than reusing a stale one.
    """
    path = Path(folder) / "corpus.jsonl"
    if not path.is_file():
        raise BeirFormatError(f"{path}: file not found")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) per non-blank line; bytes go straight to json."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
                raise BeirFormatError(f"{path}:{lineno}: invalid JSON ({error})") from None
            if not isinstance(record, dict):
                raise BeirFormatError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, record


def _read_id(record: dict[str, Any], path: Path, lineno: int) -> str:
    """The record's ``_id`` as a string; integer ids are accepted and converted."""
    value = record.get("_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise BeirFormatError(f"{path}:{lineno}: missing or invalid '_id'")
    return str(value)


def _read_qrels(path: Path, known_queries: dict[str, str]) -> dict[str, dict[str, int]]:
    """Parse a qrels TSV; identical repeated rows are tolerated, conflicting ones are not.

    Ids are taken verbatim (no whitespace stripping, like BEIR's csv reader), so they
    match the corpus ids byte for byte.
    """
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as error:
        raise BeirFormatError(f"{path}: not UTF-8 ({error})") from None
    if tuple(field.strip() for field in lines[0].split("\t")) != _QRELS_HEADER:
        raise BeirFormatError(f"{path}:1: expected header 'query-id<TAB>corpus-id<TAB>score'")
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise BeirFormatError(
                f"{path}:{lineno}: expected 3 tab-separated fields, got {line!r}"
            )
        query_id, doc_id, raw_score = fields
        try:
            score = int(raw_score)
        except ValueError:
            raise BeirFormatError(
                f"{path}:{lineno}: score {raw_score!r} is not an integer"
            ) from None
        if query_id not in known_queries:
            raise BeirFormatError(f"{path}:{lineno}: query {query_id!r} not in queries.jsonl")
        judged = qrels.setdefault(query_id, {})
        if judged.get(doc_id, score) != score:
            raise BeirFormatError(
                f"{path}:{lineno}: conflicting grades for ({query_id!r}, {doc_id!r})"
            )
        judged[doc_id] = score
    return qrels

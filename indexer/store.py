"""The index on disk: generations of (FAISS vectors, passage store, manifest).

Layout of an index folder::

    index/
      CURRENT                 name of the live generation (replaced atomically)
      gen-000001/
        manifest.json         format version, model, counts, file hashes, checksums
        vectors.faiss         FAISS index over L2-normalised vectors (inner product)
        passages.jsonl        one JSON object per passage, in vector order
        passages.offsets.npy  byte offset of each line of passages.jsonl (n + 1 int64)
        passages.digests.npy  a digest of each line of passages.jsonl (n int64)
        copies.json           groups of passages embedded from the same text (lists of ids)
        articles.json         article key -> citation metadata
        bm25/                 bm25s keyword index over the same passages (numpy + JSON)
        linkvectors.npy       vectors body linking embedded, kept for the next build
        linkvectors.json      sha256 of the text of each of those rows
      .lock                   flock-ed by the one build allowed at a time (readers never take it)

A build writes a whole new generation into ``.building-<generation>-<pid>/``, renames it
to ``gen-NNNNNN/``, flushes it to disk and then atomically replaces ``CURRENT``
(written as ``.CURRENT.<pid>`` and renamed over it); a reader resolves ``CURRENT`` once
and reads only that generation, so it never sees a half-written index. A build killed at
any moment leaves the live generation untouched; its leftovers (scratch folder, pointer
file, a generation renamed but never published) are removed by the next build, which keeps
the live generation and the one before it (a reader may still be on it).

The manifest records the sha256 and size of every other file of its generation; a file
that differs is reported as corrupt with the command that rebuilds it. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from indexer import integrity, safety
from indexer.errors import IndexFormatError
from indexer.faiss_build import faiss_problem

FORMAT = "semindex-index"
FORMAT_VERSION = 2
"""2: copies of a text are one group in copies.json (1 listed every copy in every passage)."""
POINTER = "CURRENT"
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"
ARTICLES = "articles.json"
COPIES = "copies.json"
"""Groups of passages embedded from one text, each a list of passage ids; a passage of a
group names it by number as ``copy_group``."""
DIGESTS = "passages.digests.npy"
"""A 64-bit digest of each line of passages.jsonl (``integrity.row_digest``), checked when a
passage is read: generations too large to checksum on load still never show a changed row."""
FULL_CHECKSUM_LIMIT = 256 << 20
"""Index files up to this total size are checksummed on every load; larger ones by size only
(``semindex info --verify`` checks everything)."""


def _of(*types: type) -> Callable[[Any], bool]:
    """A check that a value is one of ``types`` (JSON true and false are no numbers)."""
    return lambda value: isinstance(value, types) and not isinstance(value, bool)


FIELD_KINDS: dict[str, Callable[[Any], bool]] = {
    "an object": _of(dict),
    "a list": _of(list),
    "a string": _of(str),
    "a string or null": _of(str, type(None)),
    "a string if present": lambda value: value is ... or _of(str)(value),
    "an integer": _of(int),
    "a number": _of(int, float),
    "a line range": lambda value: _of(list)(value) and len(value) == 2 and all(map(_of(int), value)),
}
MANIFEST_FIELDS: dict[str, str] = {
    "model": "an object",
    "model.id": "a string",
    "model.fingerprint": "a string",
    "model.dimension": "an integer",
    "model.max_seq_length": "an integer",
    "faiss": "an object",
    "faiss.factory": "a string",
    "faiss.search_params": "a string if present",
    "chunking": "an object",
    "chunking.max_tokens": "an integer",
    "chunking.overlap": "an integer",
    "keyword": "an object",
    "keyword.k1": "a number",
    "keyword.b": "a number",
    "keyword.stemmer": "a string or null",
    "keyword.stopwords": "a string",
    "counts": "an object",
    "counts.passages": "an integer",
    "built_at": "a string",
    "files": "an object",
    "files.*": "an object",
    "files.*.sha256": "a string",
    "files.*.passages": "an integer",
    "skipped": "a list",
    "links": "a list",
    "links.*": "an object",
    "links.*.file": "a string",
    "links.*.article": "a string",
    "links.*.score": "a number",
    "links.*.runner_up": "a number",
    "chrome": "a list",
    "chrome.*": "an object",
    "chrome.*.file": "a string",
    "chrome.*.kind": "a string",
    "chrome.*.lines": "a line range",
    "chrome.*.text": "a string",
    "checksums": "an object",
    "checksums.*": "an object",
    "checksums.*.sha256": "a string",
    "checksums.*.size": "an integer",
}
"""Every manifest field semindex reads (``*``: each key or item), with the kind it must be;
a field comes after its parent, so the parent is known to be an object or a list."""


def rebuild_hint(index: Path) -> str:
    return f"rebuild it with: semindex build CORPUS --index {index} --full"


def recorded_precision(model: dict[str, Any], *, manifest: Path, index: Path) -> str:
    """The precision a manifest's ``model`` entry records passages were embedded at (fp32 when
    it names none), or IndexFormatError naming ``manifest`` when semindex has no such precision."""
    from indexer.onnx_export import PRECISIONS

    precision = model.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise IndexFormatError(
            f"{manifest}: field 'model.precision' is {precision!r}, not one of {', '.join(PRECISIONS)}; "
            f"{rebuild_hint(index)} --precision int8 (or fp32)"
        )
    return str(precision)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _values(data: Any, parts: list[str]) -> list[Any]:
    """Every value the dotted ``parts`` name in ``data``, level by level (``*``: each key or
    item; a missing field is ``...``, which no JSON value is, so it fits no kind). Parents
    come first in :data:`MANIFEST_FIELDS`, so each level is known to be an object or a list."""
    values = [data]
    for part in parts:
        if part == "*":
            values = [item for value in values for item in (value.values() if isinstance(value, dict) else value)]
        else:
            values = [value.get(part, ...) for value in values]
    return values


def _first_misfit(data: Any, parts: list[str], fits: Callable[[Any], bool], name: str = "") -> str | None:
    """The dotted name of the first value ``parts`` names that does not fit (the slow walk,
    run only once a field is known to be wrong, to say which)."""
    if not parts:
        return None if fits(data) else name
    head, *rest = parts
    items = (data.items() if isinstance(data, dict) else enumerate(data)) if head == "*" else [(head, data.get(head, ...))]
    for key, value in items:
        if (found := _first_misfit(value, rest, fits, f"{name}.{key}" if name else str(key))) is not None:
            return found
    return None


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """The first field of :data:`MANIFEST_FIELDS` missing from ``manifest`` or of another kind.
    It runs on every open, and a manifest lists every corpus file, so the common case (all
    fields fit) is checked a level at a time, without naming each field."""
    for pattern, kind in MANIFEST_FIELDS.items():
        parts, fits = pattern.split("."), FIELD_KINDS[kind]
        if not all(map(fits, _values(manifest, parts))):
            return f"field {_first_misfit(manifest, parts, fits)!r} is missing or not {kind}"
    return None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_passages(folder: Path, passages: list[dict[str, Any]]) -> None:
    """Write passages.jsonl and the offsets that let a reader seek to any passage."""
    import numpy as np

    offsets, digests = [0], []
    with (folder / PASSAGES).open("wb") as handle:
        for passage in passages:
            line = (json.dumps(passage, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            handle.write(line)
            offsets.append(offsets[-1] + len(line))
            digests.append(integrity.row_digest(line))
    np.save(folder / OFFSETS, np.asarray(offsets, dtype=np.int64))
    np.save(folder / DIGESTS, np.asarray(digests, dtype=np.int64))


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, and the folders themselves, to disk."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [*(p for p in folder.rglob("*") if p.is_dir()), folder]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every data file of a generation (all but the manifest)."""
    return {
        path.relative_to(folder).as_posix(): {"sha256": sha256_file(path), "size": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def live_generation(index: Path) -> Path:
    """The generation folder ``CURRENT`` points to, or IndexFormatError."""
    pointer = index / POINTER
    if not index.is_dir():
        raise IndexFormatError(f"{index}: no index here; build one with: semindex build CORPUS --index {index}")
    try:
        name = safety.read_regular(pointer, limit=4096).decode("utf-8").strip()
    except FileNotFoundError:
        raise IndexFormatError(f"{pointer}: missing, so {index} is not a semindex index; {rebuild_hint(index)}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, unreadable, or not text
        raise IndexFormatError(f"{pointer}: unreadable ({getattr(exc, 'strerror', None) or exc}); {rebuild_hint(index)}") from None
    generation = index / name
    if not name.startswith("gen-") or "/" in name or not generation.is_dir() or generation.is_symlink():
        raise IndexFormatError(f"{pointer}: points to {name!r}, which is not a generation folder; {rebuild_hint(index)}")
    return generation


def publish_generation(index: Path, generation: Path) -> None:
    """Make ``generation`` live: write CURRENT beside itself and rename it over the old one."""
    fsync_tree(generation)
    temporary = index / f".{POINTER}.{os.getpid()}"
    temporary.write_text(generation.name + "\n", encoding="utf-8")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, index / POINTER)
    descriptor = os.open(index, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def next_generation_name(index: Path) -> str:
    numbers = [int(p.name[4:]) for p in index.glob("gen-*") if p.name[4:].isdigit()]
    return f"gen-{max(numbers, default=0) + 1:06d}"


@dataclass
class StoredIndex:
    """A loaded generation: manifest checked, vectors and passages opened lazily."""

    index: Path
    generation: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, index: Path, *, verify: bool | None = None) -> StoredIndex:
        """Open the live generation and check its manifest and file checksums.

        ``verify`` forces (True) or skips (False) the full sha256 of each file; by
        default files are hashed when the generation is small, sized otherwise.
        """
        generation = live_generation(index)
        path = generation / MANIFEST
        try:
            manifest = safety.json_loads(safety.read_regular(path).decode("utf-8"))
        except FileNotFoundError:
            raise IndexFormatError(f"{path}: missing; {rebuild_hint(index)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise IndexFormatError(f"{path}: corrupt manifest ({exc}); {rebuild_hint(index)}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexFormatError(f"{path}: not a semindex manifest; {rebuild_hint(index)}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path}: index format version {manifest.get('format_version')} but this semindex reads "
                f"version {FORMAT_VERSION}; {rebuild_hint(index)}"
            )
        if problem := manifest_problem(manifest):
            raise IndexFormatError(f"{path}: {problem}; {rebuild_hint(index)}")
        recorded_precision(manifest["model"], manifest=path, index=index)
        stored = cls(index=index, generation=generation, manifest=manifest)
        stored.check_files(verify=verify)
        return stored

    def check_files(self, *, verify: bool | None) -> None:
        """Every file of the generation is listed in the manifest's checksums at its size, and
        (small generations, or ``verify``) its sha256; ``verify`` also checks the vector and
        offset counts, which the query path checks when it first reads them."""
        expected: dict[str, dict[str, Any]] = self.manifest["checksums"]
        for path in sorted(self.generation.rglob("*")):
            name = path.relative_to(self.generation).as_posix()
            if name != MANIFEST and name not in expected and not path.is_dir():
                raise IndexFormatError(f"{path}: not listed in the manifest's checksums; {rebuild_hint(self.index)}")
        total = sum(entry["size"] for entry in expected.values())
        full = verify if verify is not None else total <= FULL_CHECKSUM_LIMIT
        for name, entry in expected.items():
            if problem := safety.generation_file_problem(self.generation, name):
                raise IndexFormatError(f"{self.generation / MANIFEST}: {problem}; {rebuild_hint(self.index)}")
            path = self.generation / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise IndexFormatError(f"{path}: missing; {rebuild_hint(self.index)}") from None
            if size != entry["size"]:
                raise IndexFormatError(
                    f"{path}: corrupt (size {size} bytes, manifest says {entry['size']}); {rebuild_hint(self.index)}"
                )
            if (full or name == DIGESTS) and sha256_file(path) != entry["sha256"]:
                raise IndexFormatError(f"{path}: corrupt (checksum differs from the manifest); {rebuild_hint(self.index)}")
        if verify:
            self.vectors, self.offsets  # each compares its count with the manifest's

    @property
    def dimension(self) -> int:
        return self.manifest["model"]["dimension"]

    @property
    def count(self) -> int:
        return self.manifest["counts"]["passages"]

    @cached_property
    def vectors(self):
        """The FAISS index, memory-mapped where FAISS allows it."""
        import faiss

        path = self.generation / VECTORS
        try:
            flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
            index = faiss.read_index(str(path), flags)
        except RuntimeError:
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise IndexFormatError(f"{path}: corrupt FAISS index ({faiss_problem(exc)}); {rebuild_hint(self.index)}") from None
        if problem := integrity.faiss_kind_problem(self.manifest["faiss"]["factory"], index):
            raise IndexFormatError(f"{path}: corrupt ({problem}); {rebuild_hint(self.index)}")
        if index.ntotal != self.count:
            raise IndexFormatError(
                f"{path}: holds {index.ntotal} vectors but the manifest counts {self.count} passages; {rebuild_hint(self.index)}"
            )
        if params := self.manifest["faiss"].get("search_params"):  # absent from older manifests
            try:
                faiss.ParameterSpace().set_index_parameters(index, params)
            except RuntimeError as exc:
                raise IndexFormatError(
                    f"{self.generation / MANIFEST}: FAISS search parameters {params!r} cannot be set on "
                    f"{path.name} ({type(index).__name__}: {faiss_problem(exc)}); {rebuild_hint(self.index)}"
                ) from None
        if index.d != self.dimension:
            raise IndexFormatError(
                f"{path}: vectors have {index.d} dimensions but the manifest says {self.dimension}; {rebuild_hint(self.index)}"
            )
        return index

    @cached_property
    def offsets(self):
        path = self.generation / OFFSETS
        try:
            offsets = integrity.load_array(path, kind="i")
        except (ValueError, OSError) as exc:
            raise IndexFormatError(f"{path}: corrupt ({exc}); {rebuild_hint(self.index)}") from None
        if len(offsets) != self.count + 1:
            raise IndexFormatError(
                f"{path}: {len(offsets) - 1} passages but the manifest counts {self.count}; {rebuild_hint(self.index)}"
            )
        return offsets

    def passage(self, number: int) -> dict[str, Any]:
        """Passage ``number`` (its vector id), read by seeking into passages.jsonl."""
        start, end = int(self.offsets[number]), int(self.offsets[number + 1])
        with (self.generation / PASSAGES).open("rb") as handle:
            line = integrity.read_row(handle, start, end)
        try:
            passage = safety.json_loads(line) if line is not None else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            passage = None
        if problem := integrity.row_problem(line, passage, number=number, digests=self.digests):
            raise IndexFormatError(
                f"{self.generation / PASSAGES}: corrupt at passage {number} ({problem}); {rebuild_hint(self.index)}"
            )
        return passage

    def copies(self, passage: dict[str, Any]) -> list[int]:
        """The other passages embedded from the same text as ``passage`` (none when unique)."""
        group = passage.get("copy_group")
        if group is None:
            return []
        if problem := integrity.group_problem(self.copy_groups, group, passage["id"]):
            raise IndexFormatError(f"{self.generation / COPIES}: corrupt ({problem}); {rebuild_hint(self.index)}")
        return [other for other in self.copy_groups[group] if other != passage["id"]]

    @cached_property
    def copy_groups(self) -> list[list[int]]:
        path = self.generation / COPIES
        try:
            groups = safety.json_loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise IndexFormatError(f"{path}: corrupt ({exc}); {rebuild_hint(self.index)}") from None
        if problem := integrity.groups_problem(groups, count=self.count):
            raise IndexFormatError(f"{path}: corrupt ({problem}); {rebuild_hint(self.index)}")
        return groups

    @cached_property
    def digests(self):
        """Each passage line's digest (None for generations written before they were kept)."""
        return integrity.load_digests(self.generation / DIGESTS, count=self.count)

    def passages(self) -> list[dict[str, Any]]:
        """All passages in vector order (for evaluation and checks, not the query path)."""
        with (self.generation / PASSAGES).open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    @cached_property
    def articles(self) -> dict[str, dict[str, Any]]:
        path = self.generation / ARTICLES
        try:
            articles = safety.json_loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError) as exc:
            raise IndexFormatError(f"{path}: corrupt ({exc}); {rebuild_hint(self.index)}") from None
        if problem := integrity.articles_problem(articles):
            raise IndexFormatError(f"{path}: corrupt ({problem}); {rebuild_hint(self.index)}")
        return articles

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
        paragraphs.jsonl      one JSON object per paragraph (what search ranks and shows),
                              with .offsets.npy and .digests.npy as for passages
        paragraph_of.npy      the paragraph of each passage (n int64)
        copies.json           groups of passages embedded from the same text (lists of ids)
        articles.json         article key -> citation metadata
        bm25/                 bm25s keyword index over the same passages (numpy + JSON)
        bm25_paragraphs/      the same over paragraphs (bm25_articles/: over whole articles)
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
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from indexer import integrity, safety
from indexer.errors import IndexFormatError
from indexer.faiss_build import faiss_problem
from indexer.manifest import MANIFEST, POINTER, Manifest, rebuild_hint
from indexer.types import Article, Paragraph, Passage

VECTORS = "vectors.faiss"
PASSAGES = "passages.jsonl"
OFFSETS = "passages.offsets.npy"
ARTICLES = "articles.json"
COPIES = "copies.json"
"""Groups of passages embedded from one text, each a list of passage ids; a passage of a
group names it by number as ``copy_group``."""
PARAGRAPHS = "paragraphs.jsonl"
PARAGRAPH_OFFSETS = "paragraphs.offsets.npy"
PARAGRAPH_DIGESTS = "paragraphs.digests.npy"
PARAGRAPH_OF = "paragraph_of.npy"
DIGESTS = "passages.digests.npy"
"""A 64-bit digest of each line of passages.jsonl (``integrity.row_digest``), checked when a
passage is read: generations too large to checksum on load still never show a changed row."""
FULL_CHECKSUM_LIMIT = 256 << 20
"""Index files up to this total size are checksummed on every load; larger ones by size only
(``semindex info --verify`` checks everything)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_passages(folder: Path, passages: list[Passage], paragraphs: list[Paragraph]) -> None:
    """Write passages.jsonl and paragraphs.jsonl with the offsets that let a reader seek to any
    row and the digests that check it, and each passage's paragraph."""
    import numpy as np

    write_rows(folder, passages, rows=PASSAGES, offsets=OFFSETS, digests=DIGESTS)
    write_rows(folder, paragraphs, rows=PARAGRAPHS, offsets=PARAGRAPH_OFFSETS, digests=PARAGRAPH_DIGESTS)
    np.save(folder / PARAGRAPH_OF, np.asarray([passage.paragraph for passage in passages], dtype=np.int64))


def write_rows(folder: Path, items: list[Passage] | list[Paragraph], *, rows: str, offsets: str, digests: str) -> None:
    """One JSON line per item, with each line's byte offset (n + 1) and digest (n)."""
    import numpy as np

    starts, sums = [0], []
    with (folder / rows).open("wb") as handle:
        for item in items:
            line = (json.dumps(item.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            handle.write(line)
            starts.append(starts[-1] + len(line))
            sums.append(integrity.row_digest(line))
    np.save(folder / offsets, np.asarray(starts, dtype=np.int64))
    np.save(folder / digests, np.asarray(sums, dtype=np.int64))


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
    manifest: Manifest

    @classmethod
    def open(cls, index: Path, *, verify: bool | None = None) -> StoredIndex:
        """Open the live generation and check its manifest and file checksums.

        ``verify`` forces (True) or skips (False) the full sha256 of each file; by
        default files are hashed when the generation is small, sized otherwise.
        """
        generation = live_generation(index)
        manifest = Manifest.load(generation / MANIFEST, index=index)
        stored = cls(index=index, generation=generation, manifest=manifest)
        stored.check_files(verify=verify)
        return stored

    def check_files(self, *, verify: bool | None) -> None:
        """Every file of the generation is listed in the manifest's checksums at its size, and
        (small generations, or ``verify``) its sha256; ``verify`` also checks the vector and
        offset counts, which the query path checks when it first reads them."""
        expected = self.manifest.checksums
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
            if (full or name in (DIGESTS, PARAGRAPH_DIGESTS)) and sha256_file(path) != entry["sha256"]:
                raise IndexFormatError(f"{path}: corrupt (checksum differs from the manifest); {rebuild_hint(self.index)}")
        if verify:
            self.vectors, self.offsets, self.paragraph_offsets, self.paragraph_of  # each checks its count

    @property
    def dimension(self) -> int:
        return self.manifest.dimension

    @property
    def count(self) -> int:
        return self.manifest.count

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
        if problem := integrity.faiss_kind_problem(self.manifest.factory, index):
            raise IndexFormatError(f"{path}: corrupt ({problem}); {rebuild_hint(self.index)}")
        if index.ntotal != self.count:
            raise IndexFormatError(
                f"{path}: holds {index.ntotal} vectors but the manifest counts {self.count} passages; {rebuild_hint(self.index)}"
            )
        if params := self.manifest.search_params:
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
        return self._offsets(OFFSETS, count=self.count, what="passages")

    def _offsets(self, name: str, *, count: int, what: str):
        path = self.generation / name
        try:
            offsets = integrity.load_array(path, kind="i")
        except (ValueError, OSError) as exc:
            raise IndexFormatError(f"{path}: corrupt ({exc}); {rebuild_hint(self.index)}") from None
        if len(offsets) != count + 1:
            raise IndexFormatError(
                f"{path}: {len(offsets) - 1} {what} but the manifest counts {count}; {rebuild_hint(self.index)}"
            )
        return offsets

    def passage(self, number: int) -> Passage:
        """Passage ``number`` (its vector id), read by seeking into passages.jsonl."""
        data = self._row(number, rows=PASSAGES, offsets=self.offsets, digests=self.digests, what="passage")
        return self._parsed(Passage.from_json, data, rows=PASSAGES, number=number, what="passage")

    def paragraph(self, number: int) -> Paragraph:
        """Paragraph ``number``, read by seeking into paragraphs.jsonl."""
        data = self._row(number, rows=PARAGRAPHS, offsets=self.paragraph_offsets, digests=self.paragraph_digests,
                         what="paragraph")
        if problem := integrity.paragraph_passages_problem(data, count=self.count):
            raise IndexFormatError(
                f"{self.generation / PARAGRAPHS}: corrupt at paragraph {number} ({problem}); {rebuild_hint(self.index)}"
            )
        return self._parsed(Paragraph.from_json, data, rows=PARAGRAPHS, number=number, what="paragraph")

    def _row(self, number: int, *, rows: str, offsets, digests, what: str) -> Any:
        start, end = int(offsets[number]), int(offsets[number + 1])
        with (self.generation / rows).open("rb") as handle:
            line = integrity.read_row(handle, start, end)
        try:
            data = safety.json_loads(line) if line is not None else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if problem := integrity.row_problem(line, data, number=number, digests=digests, what=what):
            raise IndexFormatError(
                f"{self.generation / rows}: corrupt at {what} {number} ({problem}); {rebuild_hint(self.index)}"
            )
        return data

    def _parsed(self, parse, data: Any, *, rows: str, number: int, what: str) -> Any:
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError) as exc:  # a kind that is no PassageKind
            raise IndexFormatError(
                f"{self.generation / rows}: corrupt at {what} {number} ({safety.brief(str(exc))}); "
                f"{rebuild_hint(self.index)}"
            ) from None

    def passages(self) -> list[Passage]:
        """All passages in vector order (for evaluation and checks, not the query path)."""
        with (self.generation / PASSAGES).open(encoding="utf-8") as handle:
            return [Passage.from_json(json.loads(line)) for line in handle]

    def paragraphs(self) -> list[Paragraph]:
        """All paragraphs in order (for evaluation and checks, not the query path)."""
        with (self.generation / PARAGRAPHS).open(encoding="utf-8") as handle:
            return [Paragraph.from_json(json.loads(line)) for line in handle]

    @property
    def paragraph_count(self) -> int:
        return int(self.manifest.counts["paragraphs"])

    @cached_property
    def paragraph_offsets(self):
        return self._offsets(PARAGRAPH_OFFSETS, count=self.paragraph_count, what="paragraphs")

    @cached_property
    def paragraph_digests(self):
        return self._digests(PARAGRAPH_DIGESTS, count=self.paragraph_count)

    @cached_property
    def paragraph_of(self):
        """The paragraph of each passage (int64, one per vector), checked in range."""
        path = self.generation / PARAGRAPH_OF
        try:
            array = integrity.load_array(path, kind="i")
        except (ValueError, OSError) as exc:
            raise IndexFormatError(f"{path}: corrupt ({exc}); {rebuild_hint(self.index)}") from None
        if len(array) != self.count or (len(array) and (int(array.min()) < 0 or int(array.max()) >= self.paragraph_count)):
            raise IndexFormatError(f"{path}: not one paragraph number per passage; {rebuild_hint(self.index)}")
        return array

    def copies(self, passage: Passage) -> list[int]:
        """The other passages embedded from the same text as ``passage`` (none when unique)."""
        group = passage.copy_group
        if group is None:
            return []
        if problem := integrity.group_problem(self.copy_groups, group, passage.id):
            raise IndexFormatError(f"{self.generation / COPIES}: corrupt ({problem}); {rebuild_hint(self.index)}")
        return [other for other in self.copy_groups[group] if other != passage.id]

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
        """Each passage line's digest, checked when the line is read."""
        return self._digests(DIGESTS, count=self.count)

    def _digests(self, name: str, *, count: int):
        try:
            return integrity.load_digests(self.generation / name, count=count)
        except IndexFormatError as error:
            raise IndexFormatError(f"{error}; {rebuild_hint(self.index)}") from None

    @cached_property
    def articles(self) -> dict[str, Article]:
        path = self.generation / ARTICLES
        try:
            data = safety.json_loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError) as exc:
            raise IndexFormatError(f"{path}: corrupt ({exc}); {rebuild_hint(self.index)}") from None
        if problem := integrity.articles_problem(data):
            raise IndexFormatError(f"{path}: corrupt ({problem}); {rebuild_hint(self.index)}")
        return {key: Article.from_dict(entry) for key, entry in data.items()}

    def corpus_changes(self, corpus: Path | None = None) -> dict[str, list[str]] | None:
        """Corpus files added, changed and removed since this generation was built, or None
        when that cannot be told (the manifest predates the record, or the corpus folder is
        gone). ``corpus`` defaults to the folder the manifest records (relative to the index
        folder). Hashes every corpus file; for a stale-index warning."""
        from indexer.discover import discover, hash_inputs

        recorded, where = self.manifest.inputs, self.manifest.corpus
        if recorded is None or (corpus is None and where is None):
            return None
        folder = corpus if corpus is not None else safety.recorded_corpus(self.index, where)
        if folder is None or not folder.is_dir():
            return None
        current = hash_inputs(discover(folder, warn=lambda message: None))
        return {
            "added": sorted(name for name in current if name not in recorded),
            "changed": sorted(name for name, sha in current.items() if name in recorded and recorded[name] != sha),
            "removed": sorted(name for name in recorded if name not in current),
        }

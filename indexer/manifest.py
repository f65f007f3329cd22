"""A generation's manifest: what a reader checks before trusting the generation.

:class:`Manifest` is the parsed ``manifest.json``: :meth:`Manifest.load` refuses, in one line
naming the file and field, a manifest semindex cannot read, and typed properties give the
fields the indexer and the query side use. :class:`KeptSettings` is what a rebuild keeps
from the live manifest when not told otherwise. The JSON object itself is kept as read
(the manifest is also a read-only mapping of it), so ``semindex info --json`` prints the
file exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer import safety
from indexer.errors import IndexFormatError

if TYPE_CHECKING:
    from indexer.build_model import BuildModel
    from indexer.chunking import ChunkSettings
    from indexer.documents import ParsedFile
    from indexer.keyword import KeywordSettings
    from indexer.types import Passage

FORMAT = "semindex-index"
FORMAT_VERSION = 3
"""2: copies of a text are one group in copies.json (1 listed every copy in every passage)."""
POINTER = "CURRENT"
MANIFEST = "manifest.json"


def rebuild_hint(index: Path) -> str:
    return f"rebuild it with: semindex build CORPUS --index {index} --full"


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
SCHEMA: dict[str, str] = {
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
    "counts.paragraphs": "an integer",
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


def _values(data: Any, parts: list[str]) -> list[Any]:
    """Every value the dotted ``parts`` name in ``data``, level by level (``*``: each key or
    item; a missing field is ``...``, which no JSON value is, so it fits no kind)."""
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


def schema_problem(data: dict[str, Any]) -> str | None:
    """The first field of :data:`SCHEMA` missing from ``data`` or of another kind. It runs on
    every open, and a manifest lists every corpus file, so the common case (all fields fit)
    is checked a level at a time, without naming each field."""
    for pattern, kind in SCHEMA.items():
        parts, fits = pattern.split("."), FIELD_KINDS[kind]
        if not all(map(fits, _values(data, parts))):
            return f"field {_first_misfit(data, parts, fits)!r} is missing or not {kind}"
    return None


def check_precision(model: Mapping[str, Any], *, path: Path, index: Path) -> str:
    """The precision a manifest's ``model`` entry records passages were embedded at (fp32 when
    it names none), or IndexFormatError naming ``path`` when semindex has no such precision."""
    from indexer.onnx_export import PRECISIONS

    precision = model.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise IndexFormatError(
            f"{path}: field 'model.precision' is {precision!r}, not one of {', '.join(PRECISIONS)}; "
            f"{rebuild_hint(index)} --precision int8 (or fp32)"
        )
    return str(precision)


def new_manifest(
    *,
    model: BuildModel,
    settings: ChunkSettings,
    keyword: KeywordSettings,
    factory: str,
    parsed: list[ParsedFile],
    passages: list[Passage],
    paragraphs: int,
    articles: dict[str, Any],
    skipped: list[str],
    links: list[dict[str, Any]],
    inputs: dict[str, str | None],
    corpus: str | None,
    previous: str | None,
    build: dict[str, Any],
    checksums: dict[str, dict[str, Any]],
) -> Manifest:
    """The manifest of a new generation: everything a reader checks before trusting it."""
    from collections import Counter
    from datetime import datetime, timezone

    from indexer.faiss_build import default_search_params
    from indexer.fingerprints import package_versions, pipeline_fingerprint
    from indexer.passages import LineIndex

    counts = Counter(source.file for passage in passages for source in passage.sources)
    per_file = {
        file.name: {"sha256": file.sha256, "size": len(file.text.encode("utf-8")), "passages": counts[file.name]}
        for file in parsed
    }
    return Manifest({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.describe(),
        "metric": "inner_product",
        "normalized": True,
        "faiss": {"factory": factory, "search_params": default_search_params(factory, len(passages))},
        "chunking": settings.to_dict(),
        "keyword": keyword.to_dict(),
        "counts": {
            "files": len(parsed),
            "passages": len(passages),
            "paragraphs": paragraphs,
            "articles": len(articles),
            "skipped_files": len(skipped),
            "linked_bodies": len(links),
            "chrome_blocks": sum(len(f.chrome) for f in parsed),
        },
        "files": per_file,
        "skipped": skipped,
        "links": links,
        "chrome": [
            {"file": f.name, "kind": b.kind, "lines": list(lines.span(b.start, b.end)), "text": b.text[:80]}
            for f in parsed
            if f.chrome
            for lines in [LineIndex(f.text)]
            for b in f.chrome
        ],
        "versions": package_versions(),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "corpus": corpus,
        "model_identity": model.record(),
        "pipeline": pipeline_fingerprint(),
        "previous": previous,
        "build": build,
        "checksums": checksums,
    })


class Manifest(Mapping[str, Any]):
    """A parsed manifest: typed fields, and the JSON object as read (read-only mapping)."""

    def __init__(self, data: dict[str, Any], *, path: Path | None = None) -> None:
        self._data = data
        self.path = path

    @classmethod
    def load(cls, path: Path, *, index: Path) -> Manifest:
        """Read and validate ``path``: IndexFormatError (one line, with the rebuild command)
        when it is missing, not JSON, another format or version, or a field is amiss."""
        try:
            data = safety.json_loads(safety.read_regular(path).decode("utf-8"))
        except FileNotFoundError:
            raise IndexFormatError(f"{path}: missing; {rebuild_hint(index)}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise IndexFormatError(f"{path}: corrupt manifest ({exc}); {rebuild_hint(index)}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IndexFormatError(f"{path}: not a semindex manifest; {rebuild_hint(index)}")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path}: index format version {data.get('format_version')} but this semindex reads "
                f"version {FORMAT_VERSION}; {rebuild_hint(index)}"
            )
        if problem := schema_problem(data):
            raise IndexFormatError(f"{path}: {problem}; {rebuild_hint(index)}")
        check_precision(data["model"], path=path, index=index)
        return cls(data, path=path)

    @classmethod
    def peek(cls, index: Path) -> Manifest | None:
        """The live manifest as it is (not validated: a damaged generation still says what the
        index was), or None when there is none or it is no JSON object."""
        from indexer.store import live_generation

        try:
            path = live_generation(index) / MANIFEST
            data = safety.json_loads(safety.read_regular(path))
        except (OSError, ValueError, IndexFormatError):
            return None
        return cls(data, path=path) if isinstance(data, dict) else None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, as written to ``manifest.json``."""
        return self._data

    @property
    def model(self) -> dict[str, Any]:
        """The ``model`` entry: id, fingerprint, dimension, max_seq_length, prompts, precision."""
        return self._data["model"]

    @property
    def model_id(self) -> str:
        return self._data["model"]["id"]

    @property
    def dimension(self) -> int:
        return self._data["model"]["dimension"]

    @property
    def count(self) -> int:
        return self._data["counts"]["passages"]

    @property
    def counts(self) -> dict[str, int]:
        return self._data.get("counts", {})

    @property
    def factory(self) -> str:
        return self._data["faiss"]["factory"]

    @property
    def search_params(self) -> str | None:
        return self._data["faiss"].get("search_params")  # absent from older manifests

    @property
    def precision(self) -> str:
        return str(self._data["model"].get("precision", "fp32"))

    @cached_property
    def chunking(self):
        from indexer.chunking import ChunkSettings

        entry = self._data["chunking"]
        return ChunkSettings(max_tokens=int(entry["max_tokens"]), overlap=int(entry["overlap"]))

    @cached_property
    def keyword(self):
        from indexer.keyword import KeywordSettings

        return KeywordSettings.from_dict(self._data["keyword"])

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self._data["files"]

    @property
    def checksums(self) -> dict[str, dict[str, Any]]:
        return self._data["checksums"]

    @property
    def inputs(self) -> dict[str, str | None] | None:
        """sha256 of every corpus file the build saw (indexed or skipped), or None in a manifest
        that predates the record."""
        inputs = self._data.get("inputs")
        return inputs if isinstance(inputs, dict) else None

    @property
    def corpus(self) -> str | None:
        """Where the corpus was, relative to the index folder."""
        corpus = self._data.get("corpus")
        return corpus if isinstance(corpus, str) else None

    @property
    def previous(self) -> str | None:
        previous = self._data.get("previous")
        return previous if isinstance(previous, str) else None

    @property
    def skipped(self) -> list[str]:
        return list(self._data.get("skipped", []))

    @property
    def links(self) -> list[dict[str, Any]]:
        return list(self._data.get("links", []))

    def file_hashes(self) -> dict[str, str | None]:
        """``inputs``, or for an older manifest the sha256 of each indexed file."""
        return self.inputs or {name: entry.get("sha256") for name, entry in (self._data.get("files") or {}).items()}


@dataclass(frozen=True)
class KeptSettings:
    """What a rebuild keeps from the live manifest unless told otherwise: the passage size,
    a FAISS factory that was asked for, and the embedding precision (so a plain rebuild
    never re-embeds everything). Read leniently: a damaged manifest keeps nothing."""

    manifest: Manifest | None

    @classmethod
    def of(cls, index: Path) -> KeptSettings:
        return cls(Manifest.peek(index))

    def _read(self, read: Callable[[Manifest], Any]) -> Any:
        if self.manifest is None:
            return None
        try:
            return read(self.manifest)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    @property
    def chunking(self):
        """The recorded ChunkSettings, or None."""
        return self._read(lambda manifest: manifest.chunking)

    @property
    def factory(self) -> str | None:
        """The recorded FAISS factory when it differs from what ``choose_factory`` picks for its
        passage count (so it was asked for and a rebuild keeps it), else None."""
        from indexer.faiss_build import choose_factory

        recorded = self._read(lambda manifest: (str(manifest["faiss"]["factory"]), int(manifest["counts"]["passages"])))
        return None if recorded is None or recorded[0] == choose_factory(recorded[1]) else recorded[0]

    def precision(self) -> str | None:
        """The recorded precision, or None when there is none (IndexFormatError when it is
        one semindex has not: there is no keeping it)."""
        model = self._read(lambda manifest: dict(manifest["model"]))
        if model is None or self.manifest is None:
            return None
        index = self.manifest.path.parent.parent if self.manifest.path else Path(".")
        return check_precision(model, path=self.manifest.path or Path(MANIFEST), index=index)

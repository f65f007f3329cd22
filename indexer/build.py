"""Corpus folder → passages → embeddings → a new index generation, published atomically.

Builds are incremental: passages are always cut from the whole corpus as a full build
cuts them, but only texts the live generation has no vector for are embedded, and an
unchanged corpus is answered "up to date" without parsing or loading a model (see
:mod:`indexer.incremental`). One build at a time holds ``index/.lock``.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import fcntl
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from indexer import safety, store
from indexer.chunking import ChunkSettings, pack_passages, sentence_spans
from indexer.documents import Article, ParsedFile, Segment, input_fingerprint, iso_date, parse_file
from indexer.embedder import Embedder
from indexer.errors import CorpusError, IndexFormatError, InputError, SemindexError, unencodable
from indexer.faiss_build import new_faiss_index
from indexer.incremental import (
    BuildModel, CachedEncoder, HFTokens, LinkEncoder, VectorCache, no_onnx, package_versions, pipeline_fingerprint,
    same_identity,
)
from indexer.keyword import ARTICLE_KEYWORD_DIR, KEYWORD_DIR, KeywordIndex, KeywordSettings
from indexer.onnx_export import ensure_export

TEXT_SUFFIXES = (".txt", ".md")
EXACT_SEARCH_LIMIT = 100_000
"""Below this many passages the index is exact (Flat); above it, IVF (see ``choose_factory``)."""
LINK_MIN_SCORE = 0.5
LINK_MIN_MARGIN = 0.1
"""A bare body is linked to a same-day article when the link score (see ``link_bodies``)
reaches this value and beats the runner-up by this margin. On the bundled corpus the
true pair scores 0.68 and the other same-day article 0.53."""
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could for from had has have how if in is it its may "
    "no not now of on or so than that the their them then there these they this those to was "
    "were what which who will with would".split()
)

Warn = Callable[[str], None]


class Encoder(Protocol):
    """Anything that embeds texts into unit rows: an Embedder, or the build's cached encoder."""

    def encode(self, texts: list[str]) -> Any: ...


@dataclass
class BuildReport:
    """What a build did, for the CLI to print.

    ``unchanged``: the corpus, settings and model equal the live generation's, so nothing
    was written (``generation`` is the live one). ``embedded`` passages were embedded by
    this build, ``reused`` took their vector from the previous generation; ``full`` is
    true when nothing could be reused (first build, ``--full``, or no usable previous
    generation). ``changes`` counts corpus files ``added``, ``changed`` and ``removed``
    since the previous generation.
    """

    index: Path
    generation: str
    files: int
    passages: int
    articles: int
    skipped: list[str] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    chrome_blocks: int = 0
    seconds: float = 0.0
    unchanged: bool = False
    full: bool = True
    embedded: int = 0
    reused: int = 0
    previous: str | None = None
    changes: dict[str, int] = field(default_factory=lambda: {"added": 0, "changed": 0, "removed": 0})


def discover(corpus: Path, *, warn: Warn, follow_links: bool = False) -> list[tuple[Path, str]]:
    """Every .txt/.md file under ``corpus`` (sorted, symlink loops broken, links leaving it
    skipped unless ``follow_links``), others noted."""
    if not corpus.exists():
        raise CorpusError(f"{corpus}: corpus folder not found")
    if not corpus.is_dir():
        raise CorpusError(f"{corpus}: not a folder")
    found: list[tuple[Path, str]] = []
    seen_dirs: dict[str, str] = {}  # real path -> the corpus-relative path it was first read under
    links = safety.LinkPolicy(corpus, follow=follow_links)
    for root, dirs, files in os.walk(corpus, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            loop = real in {os.path.realpath(parent) for parent in Path(root).parents}
            why = "symlink loop" if loop else f"a symlink to {seen_dirs[real]}, already read"
            warn(f"{os.path.relpath(root, corpus)}: skipped ({why})")
            dirs.clear()
            continue
        seen_dirs[real] = Path(os.path.relpath(root, corpus)).as_posix()
        dirs[:] = links.keep(root, sorted(d for d in dirs if not d.startswith(".")), warn=warn)
        for name in links.keep(root, sorted(files), warn=warn):
            if name.startswith("."):
                continue
            path = Path(root) / name
            relative = path.relative_to(corpus).as_posix()
            if unencodable(relative) is not None:  # bytes that are not UTF-8 in the file or folder name
                shown = os.fsencode(relative).decode("utf-8", "backslashreplace")
                warn(f"{shown}: skipped (its name is not valid UTF-8, so it cannot be cited)")
            elif path.suffix.lower() in TEXT_SUFFIXES:
                found.append((path, relative))
            else:
                warn(f"{relative}: skipped (only .txt and .md files are indexed)")
    return sorted(found, key=lambda item: item[1])


def choose_factory(count: int) -> str:
    """FAISS factory string for ``count`` passages: exact search while it is cheap.

    Flat is exact and needs no training. Beyond ~100k passages an inverted file with about
    4·√n lists (a power of two), searched as ``default_search_params`` says: at 1M passages
    under 2 ms p50 and recall@10 above 0.97 against exact search, where HNSW32 at efSearch
    128 reached 0.887 (bench/scale.py). The vectors stay uncompressed, so incremental
    builds can read them back exactly.
    """
    if count < EXACT_SEARCH_LIMIT:
        return "Flat"
    lists = 1 << max(10, min(16, round(math.log2(4 * math.sqrt(count)))))
    return f"IVF{lists},Flat"


IVF_SCANNED_VECTORS = 16_384
"""An inverted file is probed deep enough to scan about this many vectors per query."""


def default_search_params(factory: str, count: int) -> str:
    """FAISS search parameters recorded with an index of ``count`` vectors (see ``choose_factory``).

    For an inverted file, ``nprobe`` covers ~IVF_SCANNED_VECTORS vectors (at least 32 lists,
    at most all): recall depends on how many vectors are scanned, not on the share of lists.
    On real passage vectors with noise (bench/scale.py) nprobe 32 gave recall@10 0.923 at
    130k (IVF1024) but 0.973 at 1M (IVF4096); scanning ~16k vectors gave 0.974 at 130k for
    1.3 ms. More lists probed is more recall for proportionally more time.
    """
    if match := re.match(r"IVF(\d+)", factory):
        lists = int(match.group(1))
        return f"nprobe={min(lists, max(32, math.ceil(IVF_SCANNED_VECTORS * lists / max(1, count))))}"
    if factory.startswith("HNSW"):
        return "efSearch=128"
    return ""


@contextmanager
def exclusive_lock(path: Path, *, busy: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing). When another process
    holds it, ``busy`` is raised as a :class:`SemindexError`, or with ``wait`` said on stderr
    while waiting for the lock."""
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise SemindexError(busy) from None
            print(busy, file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def build_lock(index: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``index`` for the length of a build (fails if taken). A
    folder made here is removed again when the build fails and it holds only the lock."""
    if problem := safety.index_folder_problem(index):
        raise IndexFormatError(problem)
    made = not index.exists()
    index.mkdir(parents=True, exist_ok=True)
    lock = index / ".lock"
    with exclusive_lock(lock, busy=f"{index}: another build is running on this index; wait for it to finish"):
        try:
            yield
        except BaseException:
            if made:
                with suppress(OSError):  # the build's own error is the one to report
                    if [path.name for path in index.iterdir()] == [lock.name]:
                        lock.unlink()
                        index.rmdir()  # fails when something appeared meanwhile: then it stays
            raise


class LineIndex:
    """Maps character offsets of one text to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]

    def span(self, start: int, end: int) -> list[int]:
        return [bisect.bisect_right(self.starts, start), bisect.bisect_right(self.starts, max(start, end - 1))]


def parse_corpus(corpus: Path, *, warn: Warn) -> tuple[list[ParsedFile], list[str]]:
    """Parse every text file of ``corpus``; bad files are warned about and listed as skipped."""
    parsed, skipped, _ = parse_found(corpus, discover(corpus, warn=warn), warn=warn)
    return parsed, skipped


def parse_found(
    corpus: Path, found: list[tuple[Path, str]], *, warn: Warn
) -> tuple[list[ParsedFile], list[str], list[str]]:
    """Parse discovered files: (parsed files, skip messages, names of skipped files)."""
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
    if not parsed:
        raise CorpusError(f"{corpus}: no indexable .txt or .md files")
    return parsed, skipped, skipped_names


def hash_inputs(found: list[tuple[Path, str]]) -> dict[str, str | None]:
    """What changes when a discovered corpus file does (:func:`input_fingerprint`; None when
    it cannot be read)."""
    hashes: dict[str, str | None] = {}
    for path, name in found:
        try:
            hashes[name] = input_fingerprint(path)
        except OSError:
            hashes[name] = None
    return hashes


def build_index(
    *,
    corpus: Path,
    index: Path,
    model: str | None = None,
    settings: ChunkSettings | None = None,
    factory: str | None = None,
    keyword: KeywordSettings | None = None,
    warn: Warn = lambda message: None,
    progress: bool = False,
    embedder: Embedder | None = None,
    full: bool = False,
    precision: str | None = None,
    follow_links: bool = False,
) -> BuildReport:
    """Index every text file of ``corpus`` into a new generation of ``index``.

    Bad files are skipped with a warning; if nothing can be indexed, CorpusError.
    The live generation is replaced only once the new one is complete on disk.

    Incremental unless ``full``: when the corpus files, settings and model equal the live
    generation's, nothing is written (``report.unchanged``); otherwise only passages whose
    embedded text is new are embedded (see :mod:`indexer.incremental`). An index built
    with another model is refused unless ``full``. ``precision`` is the ONNX export the
    passages are embedded with (``indexer.onnx_export.PRECISIONS``; by default the live
    generation's, else int8: ``BuildModel.default_precision``). Queries always embed at fp32.
    ``settings`` default to the live generation's too, else :class:`ChunkSettings`' defaults,
    and ``factory`` to the live generation's when it is not the one :func:`choose_factory`
    picks for its size (a ``--faiss`` given before), else to that choice. ``follow_links``
    indexes files that symbolic links lead to outside ``corpus`` (see :func:`discover`).
    """
    began = time.perf_counter()
    settings = settings or live_chunking(index) or ChunkSettings()
    factory = factory or live_factory(index)
    keyword = keyword or KeywordSettings()
    found = discover(corpus, warn=warn, follow_links=follow_links)
    inputs = hash_inputs(found)
    if not full:
        report = _unchanged_report(
            index=index, corpus=corpus, inputs=inputs, model=model, embedder=embedder, settings=settings, keyword=keyword,
            factory=factory, warn=warn, began=began, precision=precision,
        )
        if report is not None:
            return report
    parsed, skipped, skipped_names = parse_found(corpus, found, warn=warn)
    recorded_inputs = {name: inputs.get(name) for name in skipped_names}
    recorded_inputs.update({file.name: file.sha256 for file in parsed})
    return build_from_parsed(
        parsed, index=index, model=model, settings=settings, factory=factory, keyword=keyword,
        skipped=skipped, progress=progress, embedder=embedder, full=full, warn=warn,
        inputs=dict(sorted(recorded_inputs.items())), began=began, corpus=corpus, precision=precision,
    )


def corpus_changes(stored: store.StoredIndex, corpus: Path | None = None) -> dict[str, list[str]] | None:
    """Corpus files added, changed and removed since ``stored`` was built, or None when that
    cannot be told (the manifest predates this record, or the corpus folder is gone).

    ``corpus`` defaults to the folder the manifest records (relative to the index folder).
    Hashes every corpus file (about 50 ms for 2,000 articles); for a stale-index warning.
    """
    manifest = stored.manifest
    recorded = manifest.get("inputs")
    where = manifest.get("corpus")
    if not isinstance(recorded, dict) or (corpus is None and not isinstance(where, str)):
        return None
    folder = corpus if corpus is not None else safety.recorded_corpus(stored.index, where)
    if folder is None or not folder.is_dir():
        return None
    current = hash_inputs(discover(folder, warn=lambda message: None))
    return {
        "added": sorted(name for name in current if name not in recorded),
        "changed": sorted(name for name, sha in current.items() if name in recorded and recorded[name] != sha),
        "removed": sorted(name for name in recorded if name not in current),
    }


def build_from_parsed(
    parsed: list[ParsedFile],
    *,
    index: Path,
    model: str | None = None,
    settings: ChunkSettings | None = None,
    factory: str | None = None,
    keyword: KeywordSettings | None = None,
    skipped: list[str] | None = None,
    progress: bool = False,
    embedder: Embedder | None = None,
    full: bool = False,
    warn: Warn = lambda message: None,
    inputs: dict[str, str | None] | None = None,
    began: float | None = None,
    corpus: Path | None = None,
    precision: str | None = None,
) -> BuildReport:
    """Passages, vectors and keyword index of already parsed files, written as a new generation.

    Holds the index's build lock from reading the live generation to publishing the new one.
    """
    began = time.perf_counter() if began is None else began
    settings = settings or live_chunking(index) or ChunkSettings()
    keyword = keyword or KeywordSettings()
    skipped = skipped or []
    inputs = inputs if inputs is not None else {file.name: file.sha256 for file in parsed}
    with build_lock(index):
        live_name = _live_name(index)
        # read first: a precision semindex does not know is an error, not an index to rebuild
        kept_precision = live_precision(index) if live_name and precision is None else None
        previous = _usable_previous(index, warn=warn) if live_name else None
        remove_stale_generations(index, keep=_generations_in_use(index, live_name, previous))
        if previous is None and precision is None and not no_onnx():
            precision = kept_precision  # unusable, but its precision is still the one to keep
        model_view = BuildModel(model=model, embedder=embedder, recorded=previous.manifest if previous else None,
                                precision=precision)
        if factory:  # a factory FAISS cannot make fails before anything is embedded
            new_faiss_index(factory, dimension=model_view.dimension)
        cache = None if full else _reusable_vectors(index, previous, model_view, model=model, warn=warn)
        encoder = CachedEncoder(model_view, cache or VectorCache.empty(model_view.dimension))
        articles = merge_articles(parsed)
        links = link_bodies(parsed, articles, LinkEncoder(encoder))
        passages = make_passages(parsed, articles, model_view, settings)
        factory = factory or choose_factory(len(passages))
        texts = [p.pop("_embed") for p in passages]
        for passage, embedded in zip(passages, texts):
            if embedded != passage["text"]:
                passage["embedded"] = embedded
        copy_groups = mark_copies(passages, texts)
        vectors = encoder.encode(texts, embed=lambda missing: embed_passages(model_view, missing, progress=progress))
        embedded_count, reused_count = encoder.last_missing, encoder.last_reused
        for message in model_view.warnings:
            warn(message)
        used_articles = {p["article"] for p in passages}
        kept_articles = {key: articles[key].to_dict() for key in sorted(used_articles)}
        if len(vectors) != len(passages):  # pragma: no cover - a bug, never a user error
            raise SemindexError(f"internal error: {len(vectors)} vectors for {len(passages)} passages")
        generation = index / store.next_generation_name(index)
        scratch = index / f".building-{generation.name}-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        safety.mark_generation(scratch)
        try:
            write_vectors(scratch / store.VECTORS, vectors, factory)
            try:
                KeywordIndex(scratch / KEYWORD_DIR, keyword).build(texts)
                KeywordIndex(scratch / ARTICLE_KEYWORD_DIR, keyword).build(article_texts(parsed, list(kept_articles)))
            except CorpusError as error:
                raise CorpusError(f"{corpus or index}: {error}") from None
            store.write_passages(scratch, passages)
            store.write_json(scratch / store.COPIES, copy_groups)
            store.write_json(scratch / store.ARTICLES, kept_articles)
            encoder.write_link_vectors(scratch)
            manifest = make_manifest(
                embedder=model_view, settings=settings, keyword=keyword, factory=factory, parsed=parsed, passages=passages,
                articles=kept_articles, skipped=skipped, links=links,
            )
            manifest.update({
                "inputs": inputs,
                "corpus": _relative_corpus(corpus, index),
                "model_identity": model_view.record(),
                "pipeline": pipeline_fingerprint(),
                "previous": live_name,
                "build": {"full": cache is None, "embedded": embedded_count, "reused": reused_count},
            })
            manifest["checksums"] = store.checksums(scratch)
            store.write_json(scratch / store.MANIFEST, manifest)
            os.rename(scratch, generation)
        except BaseException as error:
            shutil.rmtree(scratch, ignore_errors=True)
            if problem := safety.write_failure(error, folder=scratch):
                raise SemindexError(problem) from None
            raise
        store.publish_generation(index, generation)
        if live_name is None:  # no pointer before: keep the newest generation found (as a reader may use
            # a folder copied in without its pointer), delete older ones
            others = sorted(p.name for p in index.glob("gen-*") if p.is_dir() and p.name != generation.name)
            keep = {generation.name, *others[-1:]}
        else:
            keep = {generation.name, live_name}
        remove_stale_generations(index, keep=keep)
    if model_view.ref.local_path is not None and not no_onnx():
        # Queries embed with this export, without torch; made once per machine and model.
        ensure_export(model_id=model_view.ref.id, model_path=model_view.ref.local_path,
                      fingerprint=model_view.fingerprint, max_seq_length=model_view.max_seq_length)
    return BuildReport(
        index=index, generation=generation.name, files=len(parsed), passages=len(passages),
        articles=len(kept_articles), skipped=skipped, links=links,
        chrome_blocks=sum(len(p.chrome) for p in parsed), seconds=time.perf_counter() - began,
        unchanged=False, full=cache is None, embedded=embedded_count, reused=reused_count,
        previous=live_name,
        changes=_changes(previous.manifest if previous else None, inputs),
    )


def article_texts(parsed: list[ParsedFile], keys: list[str]) -> list[str]:
    """The whole indexed text of each article (row i for ``keys[i]``): every segment citing it,
    in corpus order, each span once. Whole-article BM25 ranks documents better than the
    best of their passages (SciFact train nDCG@10 0.696 against 0.639)."""
    pieces: dict[str, list[str]] = {key: [] for key in keys}
    seen: set[tuple[str, str, int, int]] = set()
    for file in parsed:
        for segment in file.segments:
            span = (segment.article, file.name, segment.start, segment.end)
            if segment.article in pieces and span not in seen:
                seen.add(span)
                pieces[segment.article].append(file.text[segment.start : segment.end])
    return ["\n\n".join(texts) for texts in pieces.values()]


def _relative_corpus(corpus: Path | None, index: Path) -> str | None:
    """Where the corpus is, relative to the index folder (so a moved checkout still finds it)."""
    if corpus is None:
        return None
    try:
        return Path(os.path.relpath(corpus.resolve(), index.resolve())).as_posix()
    except ValueError:  # another drive
        return corpus.resolve().as_posix()


def _changes(manifest: dict[str, Any] | None, inputs: dict[str, str | None]) -> dict[str, int]:
    old = (manifest or {}).get("inputs") or {
        name: entry.get("sha256") for name, entry in ((manifest or {}).get("files") or {}).items()
    }
    return {
        "added": sum(name not in old for name in inputs),
        "changed": sum(name in old and old[name] != sha for name, sha in inputs.items()),
        "removed": sum(name not in inputs for name in old),
    }


def _usable_previous(index: Path, *, warn: Warn) -> store.StoredIndex | None:
    """The live generation, checksums verified, or None (first build, or unusable: warned)."""
    if not (index / store.POINTER).exists():
        return None
    try:
        return store.StoredIndex.open(index, verify=True)
    except IndexFormatError as error:
        warn(f"the live index cannot be reused ({error}); it is rebuilt in full")
        return None


def _reusable_vectors(
    index: Path, previous: store.StoredIndex | None, model_view: BuildModel, *, model: str | None, warn: Warn
) -> VectorCache | None:
    """The previous generation's vectors when they were made by this very model, else None.

    An index built with another model is refused (a silent switch would re-embed
    everything, which only ``--full`` should do).
    """
    if previous is None:
        return None
    recorded = previous.manifest.get("model") or {}
    if recorded.get("id") != model_view.ref.id:
        extra = f" --model {model}" if model else ""
        raise IndexFormatError(
            f"{index}: built with model {recorded.get('id')!r}, not {model_view.ref.id!r}; pass --model "
            f"{recorded.get('id')} to update it, or to re-embed everything {store.rebuild_hint(index)}{extra}"
        )
    if (recorded_precision := model_view.recorded_precision()) != model_view.settled_precision():
        warn(f"{previous.generation.name} was embedded at {recorded_precision}, this build asks for "
             f"{model_view.precision}; every passage is embedded again")
        return None
    recorded_quantization = (recorded.get("int8_recipe", 1), recorded.get("int8_fp32_matmuls", 0))
    if recorded_quantization != (quantization := model_view.quantization()):
        warn(f"{previous.generation.name} was quantized by int8 recipe {recorded_quantization[0]} with "
             f"{recorded_quantization[1]} MatMuls at fp32, this build by recipe {quantization[0]} with "
             f"{quantization[1]}; every passage is embedded again")
        return None
    if recorded.get("fingerprint") != model_view.fingerprint:
        warn(f"the weights of model {model_view.ref.id!r} changed since {previous.generation.name}; "
             "every passage is embedded again")
        return None
    if recorded != model_view.describe():
        warn(f"model {model_view.ref.id!r} now loads differently from {previous.generation.name} "
             f"({recorded} vs {model_view.describe()}); every passage is embedded again")
        return None
    try:
        cache = VectorCache.from_generation(previous)
    except (IndexFormatError, ValueError, KeyError, OSError) as error:
        warn(f"the vectors of {previous.generation.name} cannot be read back ({error}); every passage is embedded again")
        return None
    if cache is None:
        warn(f"FAISS index {previous.manifest.get('faiss', {}).get('factory')!r} of {previous.generation.name} "
             "does not keep exact vectors; every passage is embedded again")
    return cache


def _live_name(index: Path) -> str | None:
    """The generation ``CURRENT`` names, if it names an existing generation folder."""
    try:
        name = safety.read_regular(index / store.POINTER, limit=4096).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name.startswith("gen-") and "/" not in name and (index / name).is_dir() else None


def _generations_in_use(index: Path, live_name: str | None, live: store.StoredIndex | None) -> set[str]:
    """Generations a reader may be using: the live one and the one before it. With no live
    generation, every generation folder found (nothing is known about them)."""
    if live_name is None:
        return {p.name for p in index.glob("gen-*") if p.is_dir()}
    keep = {live_name}
    before = live.manifest.get("previous") if live is not None else None
    if isinstance(before, str):
        keep.add(before)
    else:  # built before manifests named their predecessor, or unreadable: the newest older generation
        older = sorted(p.name for p in index.glob("gen-*") if p.is_dir() and p.name < live_name)
        keep.update(older[-1:])
    return keep


def from_live_manifest(index: Path, read: Callable[[dict[str, Any]], Any]) -> Any:
    """``read(manifest)`` of the live manifest as it is (not verified: a damaged generation
    still says what the index was), or None when there is none or it lacks what ``read`` needs."""
    try:
        return read(safety.json_loads(safety.read_regular(store.live_generation(index) / store.MANIFEST)))
    except (OSError, ValueError, IndexFormatError, KeyError, TypeError, AttributeError):
        return None


def live_precision(index: Path) -> str | None:
    """The embedding precision the live manifest records, or None when there is none
    (IndexFormatError when it records one semindex has not: there is no keeping it)."""
    model = from_live_manifest(index, lambda manifest: dict(manifest["model"]))
    if model is None:
        return None
    return store.recorded_precision(model, manifest=store.live_generation(index) / store.MANIFEST, index=index)


def live_chunking(index: Path) -> ChunkSettings | None:
    """The chunk settings the live manifest records, or None when there are none, so that a
    rebuild without ``--max-tokens`` keeps the passage size an index was built with."""
    return from_live_manifest(index, lambda manifest: ChunkSettings(
        max_tokens=int(manifest["chunking"]["max_tokens"]), overlap=int(manifest["chunking"]["overlap"])))


def live_factory(index: Path) -> str | None:
    """The FAISS factory the live manifest records when it differs from what
    :func:`choose_factory` picks for its passage count (so it was asked for and a rebuild
    keeps it), else None (chosen by size, and chosen again as the index grows)."""
    recorded = from_live_manifest(index, lambda manifest: (str(manifest["faiss"]["factory"]),
                                                            int(manifest["counts"]["passages"])))
    return None if recorded is None or recorded[0] == choose_factory(recorded[1]) else recorded[0]


def _unchanged_report(
    *,
    index: Path,
    corpus: Path,
    inputs: dict[str, str | None],
    model: str | None,
    embedder: Embedder | None,
    settings: ChunkSettings,
    keyword: KeywordSettings,
    factory: str | None,
    warn: Warn,
    began: float,
    precision: str | None,
) -> BuildReport | None:
    """A report for an index that is up to date with the corpus, settings and model; else None.

    Reads only the live manifest, hashes the corpus files and the model's files: no parsing,
    no model loading. Leftovers of killed builds are removed under the build lock.
    """
    if not (index / store.POINTER).exists():
        return None
    try:
        live = store.StoredIndex.open(index)
    except IndexFormatError:
        return None
    manifest = live.manifest
    model_view = BuildModel(model=model, embedder=embedder, recorded=manifest, precision=precision)
    if (
        manifest.get("inputs") != inputs
        or manifest.get("corpus") != _relative_corpus(corpus, index)
        or manifest.get("chunking") != settings.to_dict()
        or manifest.get("keyword") != keyword.to_dict()
        or (manifest.get("faiss") or {}).get("factory") != (factory or choose_factory(live.count))
        or manifest.get("pipeline") != pipeline_fingerprint()
        or manifest.get("versions") != package_versions()
        or (manifest.get("model") or {}).get("id") != model_view.ref.id
        or model_view.ref.local_path is None
        or not same_identity(manifest.get("model_identity"), model_view.identity())
    ):
        return None
    with build_lock(index):
        if store.live_generation(index) != live.generation:
            return None  # another build switched generations meanwhile: build as usual
        remove_stale_generations(index, keep=_generations_in_use(index, live.generation.name, live))
    for problem in manifest.get("skipped", []):
        warn(f"{problem} (skipped)")
    counts = manifest.get("counts", {})
    return BuildReport(
        index=index, generation=live.generation.name, files=int(counts.get("files", 0)), passages=live.count,
        articles=int(counts.get("articles", 0)), skipped=list(manifest.get("skipped", [])),
        links=list(manifest.get("links", [])), chrome_blocks=int(counts.get("chrome_blocks", 0)),
        seconds=time.perf_counter() - began, unchanged=True, full=False, embedded=0, reused=0,
        previous=manifest.get("previous"), changes={"added": 0, "changed": 0, "removed": 0},
    )


def remove_stale_generations(index: Path, *, keep: set[str]) -> None:
    """Delete every generation not in ``keep`` (older ones, and any a killed build renamed
    into place but never published) and the leftovers of killed builds (scratch folders,
    half-written pointer files). Called under the build lock."""
    for path in sorted(p for p in index.glob("gen-*") if safety.is_generation(p)):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in filter(safety.removable_scratch, index.glob(".building-*")):
        shutil.rmtree(path, ignore_errors=True)
    for path in index.glob(f".{store.POINTER}.*"):
        path.unlink(missing_ok=True)


def merge_articles(parsed: list[ParsedFile]) -> dict[str, Article]:
    """One Article per key; an article's own record wins over mentions in others' ``related``."""
    merged: dict[str, Article] = {}
    own = [next(iter(f.articles.values())) for f in parsed if f.articles]
    mentions = [a for f in parsed for a in list(f.articles.values())[1:]]
    for article in own + mentions:
        if article.key in merged:
            merged[article.key].merge(article)
        else:
            merged[article.key] = Article(**{**article.__dict__, "topics": list(article.topics), "details": dict(article.details)})
    return merged


def link_bodies(parsed: list[ParsedFile], articles: dict[str, Article], embedder: Encoder) -> list[dict[str, Any]]:
    """Link each bare body to the same-day article whose title + excerpt its text matches.

    Candidates are articles with a URL published on the body's date. The score is the
    mean of two kinds of evidence: the best cosine between a paragraph of the body and
    the article's title + excerpt (meaning), and the share of the summary's content
    words that occur in the body (wording). Either alone confuses two articles about
    one story; together they separate them.
    """
    links = []
    summaries = _article_summaries(parsed)
    for file in parsed:
        if file.has_metadata or file.body_date is None:
            continue
        candidates = [a for a in articles.values() if a.url and a.published == file.body_date and a.key in summaries]
        paragraphs = [file.text[s.start : s.end] for s in file.segments if s.kind == "body"]
        if not candidates or not paragraphs:
            continue
        summary_vectors = embedder.encode([summaries[a.key] for a in candidates])
        body_vectors = embedder.encode(paragraphs)
        body_words = set(_content_words(file.text))
        overlap = [
            sum(word in body_words for word in words) / max(1, len(words))
            for words in (_content_words(summaries[a.key]) for a in candidates)
        ]
        scores = ((body_vectors @ summary_vectors.T).max(axis=0) + overlap) / 2
        order = scores.argsort()[::-1]
        best = float(scores[order[0]])
        runner_up = float(scores[order[1]]) if len(order) > 1 else 0.0
        if best < LINK_MIN_SCORE or best - runner_up < LINK_MIN_MARGIN:
            continue
        target = candidates[int(order[0])]
        old_key = file.body_article
        for segment in file.segments:
            if segment.article == old_key:
                segment.article = target.key
        if old_key in articles:
            target.merge(articles.pop(old_key))
        target.details.setdefault("body_file", file.name)
        file.body_article = target.key
        links.append({"file": file.name, "article": target.key, "score": round(best, 4), "runner_up": round(runner_up, 4)})
    return links


def _content_words(text: str) -> list[str]:
    return [word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in _STOPWORDS]


def _article_summaries(parsed: list[ParsedFile]) -> dict[str, str]:
    """Title + excerpt of every article that has an excerpt somewhere in the corpus, and the
    title alone of one that another page lists without an excerpt."""
    summaries: dict[str, str] = {}
    listed: dict[str, str] = {}
    for file in parsed:
        for segment in file.segments:
            if segment.kind in ("excerpt", "related") and segment.article not in summaries:
                title = file.articles[segment.article].title or ""
                summaries[segment.article] = f"{title}\n{file.text[segment.start:segment.end]}".strip()
            elif segment.kind == "title" and segment.listed_by:
                listed.setdefault(segment.article, file.text[segment.start:segment.end])
    return listed | summaries


def embed_text(kind: str, text: str, article: Article) -> str:
    """What is embedded for a passage: short metadata passages get their article as context
    (a date as "Government Technology published “…” on May 12, 2023 (2023-05-12).")."""
    title = article.title or ""
    if kind == "publisher":
        return f"“{title}” was published by {text}." if title else f"Published by {text}."
    if kind == "date":
        by = f"{article.publisher} published" if article.publisher else "Published"
        day = iso_date(text) or article.published  # the field as written may be "2023-5-12T10:00:00Z"
        when = f"{spelled_date(day)} ({text})" if text and day else text  # "": the context alone, measured for its length
        return f"{by} “{title}” on {when}." if title else f"{by} on {when}."
    if kind in ("excerpt", "related") and title:
        return f"{title}\n{text}"
    return text


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def spelled_date(iso: str) -> str:
    """'2023-05-12' as 'May 12, 2023', the way articles and questions write a date (in English
    whatever the locale: it is embedded, and vectors must not depend on LC_TIME)."""
    day = date.fromisoformat(iso)
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def make_passages(
    parsed: list[ParsedFile], articles: dict[str, Article], embedder: BuildModel | Embedder, settings: ChunkSettings
) -> list[dict[str, Any]]:
    """Cut segments into passages; the same text of one article from two places is stored once.

    Token counts come from ``embedder.tokens`` (see ``BuildModel.tokens``: the model folder's
    ``tokenizer.json``, so that a build that does not load the model cuts like one that does),
    or from a loaded Embedder's own tokenizer.
    """
    tokens = embedder.tokens if isinstance(embedder, BuildModel) else HFTokens(embedder.tokenizer)
    count_tokens, token_offsets = tokens.count, tokens.offsets
    limit = embedder.max_seq_length - 2 - count_tokens(embedder.prompts.document)  # [CLS], [SEP] and the prompt
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    ordered: list[dict[str, Any]] = []
    for file in parsed:
        lines = LineIndex(file.text)
        for group in _segment_groups(file.segments):
            first = group[0]
            article = articles[first.article]
            context_tokens = count_tokens(embed_text(first.kind, "", article))
            if context_tokens > limit // 2:  # a title too long to be context would crowd out the text
                article = dataclasses.replace(article, title=None)
                context_tokens = count_tokens(embed_text(first.kind, "", article))
            budget = ChunkSettings(
                max_tokens=max(16, min(settings.max_tokens if first.kind == "body" else limit, limit - context_tokens)),
                overlap=settings.overlap,
            )
            spans = [span for segment in group for span in sentence_spans(file.text, segment.start, segment.end)]
            for start, end in pack_passages(file.text, spans, count_tokens=count_tokens, token_offsets=token_offsets, settings=budget):
                text = file.text[start:end]
                embedded = embed_text(first.kind, text, article)
                source = {"file": file.name, "chars": [start, end], "lines": lines.span(start, end),
                          "kind": first.kind, "listed_by": first.listed_by}
                key = (first.article, embedded)
                if key in by_key:
                    by_key[key]["sources"].append(source)
                    continue
                passage = {"id": len(ordered), "text": text, "kind": first.kind, "article": first.article,
                           "sources": [source], "_embed": embedded}
                by_key[key] = passage
                ordered.append(passage)
    for passage in ordered:
        passage["sources"].sort(key=lambda source: source["listed_by"] is not None)
        passage["kind"] = passage["sources"][0]["kind"]
    return ordered


def mark_copies(passages: list[dict[str, Any]], texts: list[str]) -> list[list[int]]:
    """The groups of passages embedded from one text (an article syndicated by two outlets,
    a file copied into two folders), each passage of a group given its number as
    ``copy_group``, so a search shows the text once and cites every place it appears. One
    list per text, not one per passage: 8,000 copies of a page cost 8,000 ids, not 64 million."""
    ids_by_text: dict[str, list[int]] = {}
    for passage, text in zip(passages, texts):
        ids_by_text.setdefault(text, []).append(passage["id"])
    groups = [ids for ids in ids_by_text.values() if len(ids) > 1]
    for number, ids in enumerate(groups):
        for pid in ids:
            passages[pid]["copy_group"] = number
    return groups


def _segment_groups(segments: list[Segment]) -> Iterator[list[Segment]]:
    """Consecutive body segments of one article form a group (passages may span paragraphs);
    every other segment stands alone."""
    group: list[Segment] = []
    for segment in segments:
        if group and segment.kind == "body" and group[-1].kind == "body" and group[-1].article == segment.article:
            group.append(segment)
            continue
        if group:
            yield group
        group = [segment]
    if group:
        yield group


def embed_passages(embedder: BuildModel | Embedder, texts: list[str], *, progress: bool, batch_size: int = 64):
    """Embed in length-sorted batches (less padding), with a progress bar if asked."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
        task = bar.add_task("embedding", total=len(texts))
        bar.start()
    try:
        for first in range(0, len(order), batch_size):
            chunk = order[first : first + batch_size]
            vectors[chunk] = embedder.encode([texts[i] for i in chunk], batch_size=batch_size)
            if bar is not None:
                bar.advance(task, len(chunk))
    finally:
        if bar is not None:
            bar.stop()
    return vectors


def write_vectors(path: Path, vectors, factory: str) -> None:
    """Write a FAISS inner-product index built from ``factory`` over ``vectors``."""
    import faiss

    from indexer.faiss_build import build_faiss_index, in_blocks

    index = build_faiss_index(factory, dimension=vectors.shape[1], count=len(vectors), blocks=in_blocks(vectors))
    faiss.write_index(index, str(path))


def make_manifest(
    *,
    embedder: BuildModel | Embedder,
    settings: ChunkSettings,
    keyword: KeywordSettings,
    factory: str,
    parsed: list[ParsedFile],
    passages: list[dict[str, Any]],
    articles: dict[str, Any],
    skipped: list[str],
    links: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest: everything a reader checks before trusting the generation."""
    counts = Counter(source["file"] for passage in passages for source in passage["sources"])
    per_file = {
        file.name: {"sha256": file.sha256, "size": len(file.text.encode("utf-8")), "passages": counts[file.name]}
        for file in parsed
    }
    return {
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "model": embedder.describe(),
        "metric": "inner_product",
        "normalized": True,
        "faiss": {"factory": factory, "search_params": default_search_params(factory, len(passages))},
        "chunking": settings.to_dict(),
        "keyword": keyword.to_dict(),
        "counts": {
            "files": len(parsed),
            "passages": len(passages),
            "articles": len(articles),
            "skipped_files": len(skipped),
            "linked_bodies": len(links),
            "chrome_blocks": sum(len(f.chrome) for f in parsed),
        },
        "files": per_file,
        "skipped": skipped,
        "links": links,
        "chrome": [
            {"file": f.name, "kind": b.kind, "lines": lines.span(b.start, b.end), "text": b.text[:80]}
            for f in parsed
            if f.chrome
            for lines in [LineIndex(f.text)]
            for b in f.chrome
        ],
        "versions": package_versions(),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

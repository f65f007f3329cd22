"""A build: corpus folder → a new index generation, published atomically.

The stages, a module each: :mod:`~indexer.discover` (find and fingerprint the files) →
:mod:`~indexer.documents` (read front matter, bodies, chrome) → :mod:`~indexer.linking`
(merge articles, link bare bodies) → :mod:`~indexer.passages` (cut passages) →
:mod:`~indexer.encoders` (embed, reusing the previous generation's vectors) →
:mod:`~indexer.generation` (write, publish, clean up). This module runs them over one
:class:`BuildConfig`.

Builds are incremental: passages are always cut from the whole corpus as a full build cuts
them, but only texts the live generation has no vector for are embedded, and an unchanged
corpus (same files, settings, model, indexer code and libraries as the live manifest
records) is answered "up to date" without parsing or loading a model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer import store
from indexer.build_model import BuildModel, no_onnx, same_identity
from indexer.chunking import ChunkSettings
from indexer.discover import Warn, discover, hash_inputs
from indexer.documents import ParsedFile, read_files
from indexer.embedder import Embedder
from indexer.encoders import CachedEncoder, LinkEncoder, VectorCache, embed_passages, reusable_vectors
from indexer.errors import CorpusError, IndexFormatError, SemindexError
from indexer.faiss_build import choose_factory, new_faiss_index
from indexer.fingerprints import package_versions, pipeline_fingerprint
from indexer.generation import build_lock, generations_in_use, live_name, remove_stale_generations, write_generation, \
    write_vectors
from indexer.keyword import ARTICLE_KEYWORD_DIR, KEYWORD_DIR, PARAGRAPH_KEYWORD_DIR, KeywordIndex, KeywordSettings
from indexer.linking import link_bodies, merge_articles
from indexer.manifest import MANIFEST, KeptSettings, Manifest, new_manifest
from indexer.metadata import METADATA, write_metadata
from indexer.onnx_export import ensure_export
from indexer.passages import article_texts, make_passages, mark_copies


@dataclass(frozen=True)
class BuildConfig:
    """What a build is asked to do.

    ``settings`` (passage size) default to the live generation's, else
    :class:`ChunkSettings`' defaults; ``factory`` to the live generation's when it is not
    the one :func:`~indexer.faiss_build.choose_factory` picks for its size (a ``--faiss``
    given before), else to that choice; ``precision`` (``indexer.onnx_export.PRECISIONS``)
    to the live generation's, else int8 (``BuildModel.default_precision``). ``full``
    embeds every passage again. ``embedder``: an already loaded model to embed with. ``ray``:
    the Ray cluster to embed on (``local``, ``auto`` or ``host:port``; see :mod:`indexer.ray_build`).
    """

    index: Path
    corpus: Path | None = None
    model: str | None = None
    settings: ChunkSettings | None = None
    factory: str | None = None
    keyword: KeywordSettings | None = None
    full: bool = False
    precision: str | None = None
    progress: bool = False
    embedder: Embedder | None = None
    ray: str | None = None
    warn: Warn = lambda message: None
    follow_links: bool = False

    def settled(self, *, keep_factory: bool = True) -> BuildConfig:
        """The config with its defaults filled in, the live generation's where it sets them
        (its FAISS factory only with ``keep_factory``)."""
        kept = KeptSettings.of(self.index)
        return dataclasses.replace(self, settings=self.settings or kept.chunking or ChunkSettings(),
                                   factory=self.factory or (kept.factory if keep_factory else None),
                                   keyword=self.keyword or KeywordSettings())


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
    cluster: dict[str, Any] | None = None


def build_index(*, corpus: Path, index: Path, **options: Any) -> BuildReport:
    """Index every text file of ``corpus`` into a new generation of ``index`` (``options``:
    the other fields of :class:`BuildConfig`).

    Bad files are skipped with a warning; if nothing can be indexed, CorpusError. The live
    generation is replaced only once the new one is complete on disk. Unless ``full``, an
    index whose corpus files, settings and model equal the live generation's is left as it
    is (``report.unchanged``), and an index built with another model is refused.
    """
    began = time.perf_counter()
    config = BuildConfig(corpus=corpus, index=index, **options).settled()
    if config.ray:  # before any work: join the cluster (or fail in one line)
        from indexer.ray_build import connect

        connect(config.ray)
    found = discover(corpus, warn=config.warn, follow_links=config.follow_links)
    on_ray = None
    if config.ray:  # every node must read the corpus; the nodes fingerprint and read it
        from indexer.ray_corpus import RayCorpus

        on_ray = RayCorpus(config.ray, corpus, found)
        on_ray.check_readable()
    inputs = on_ray.hash_inputs() if on_ray else hash_inputs(found)
    if not config.full and (report := _unchanged_report(config, inputs=inputs, began=began)) is not None:
        return report
    if on_ray:
        parsed, skipped, skipped_names = on_ray.read_files(warn=config.warn)
    else:
        parsed, skipped, skipped_names = read_files(corpus, found, warn=config.warn)
    recorded_inputs = {name: inputs.get(name) for name in skipped_names}
    recorded_inputs.update({file.name: file.sha256 for file in parsed})
    return _build(parsed, config, skipped=skipped, inputs=dict(sorted(recorded_inputs.items())), began=began,
                  on_ray=on_ray)


def build_from_parsed(parsed: list[ParsedFile], *, index: Path, skipped: list[str] | None = None,
                      **options: Any) -> BuildReport:
    """Index already read files (a benchmark's documents) into a new generation of ``index``."""
    config = BuildConfig(index=index, **options).settled(keep_factory=False)
    inputs = {file.name: file.sha256 for file in parsed}
    return _build(parsed, config, skipped=skipped or [], inputs=inputs, began=time.perf_counter())


def _build(parsed: list[ParsedFile], config: BuildConfig, *, skipped: list[str], inputs: dict[str, str | None],
           began: float, on_ray: Any = None) -> BuildReport:
    """Link, cut, embed and write: the build lock is held from reading the live generation to
    publishing the new one. ``on_ray``: the build's :class:`~indexer.ray_corpus.RayCorpus`."""
    index, warn, precision = config.index, config.warn, config.precision
    if config.ray and on_ray is None:  # before any work: join the cluster (or fail in one line)
        from indexer.ray_corpus import RayCorpus

        on_ray = RayCorpus(config.ray)
    with build_lock(index):
        live = live_name(index)
        # read first: a precision semindex does not know is an error, not an index to rebuild
        kept_precision = KeptSettings.of(index).precision() if live and precision is None else None
        previous = _usable_previous(index, warn=warn) if live else None
        remove_stale_generations(index, keep=generations_in_use(index, live, previous))
        if previous is None and precision is None and not no_onnx():
            precision = kept_precision  # unusable, but its precision is still the one to keep
        model = BuildModel(model=config.model, embedder=config.embedder,
                           recorded=previous.manifest if previous else None, precision=precision)
        if config.factory:  # a factory FAISS cannot make fails before anything is embedded
            new_faiss_index(config.factory, dimension=model.dimension)
        cache = None if config.full else reusable_vectors(index, previous, model, model_name=config.model, warn=warn)
        encoder = CachedEncoder(model, cache or VectorCache.empty(model.dimension))
        articles = merge_articles(parsed)
        links = link_bodies(parsed, articles, LinkEncoder(encoder))
        if on_ray:
            cut = on_ray.cut(parsed, articles, model, config.settings, model_name=config.model)
        else:
            cut = make_passages(parsed, articles, model, config.settings)
        passages = cut.passages
        factory = config.factory or choose_factory(len(passages))
        texts = [passage.embed_text for passage in passages]
        copy_groups = mark_copies(passages)
        cluster: dict[str, Any] = {}
        if on_ray:
            from indexer.ray_build import ClusterRun, embed_on_ray

            cluster["ray"] = {**ClusterRun(config.ray).to_dict(), **on_ray.to_dict()}

            def embed(missing: list[str]) -> Any:
                vectors, run = embed_on_ray(model, missing, address=config.ray, model_name=config.model)
                cluster["ray"] = {**run.to_dict(), **on_ray.to_dict()}
                return vectors
        else:
            def embed(missing: list[str]) -> Any:
                return embed_passages(model, missing, progress=config.progress)
        vectors = encoder.encode(texts, embed=embed)
        embedded, reused = encoder.last_missing, encoder.last_reused
        for message in model.warnings:
            warn(message)
        kept_articles = {key: articles[key].to_dict() for key in sorted({passage.article for passage in passages})}
        if len(vectors) != len(passages):  # pragma: no cover - a bug, never a user error
            raise SemindexError(f"internal error: {len(vectors)} vectors for {len(passages)} passages")

        def fill(folder: Path) -> None:
            write_vectors(folder / store.VECTORS, vectors, factory)
            try:
                KeywordIndex(folder / KEYWORD_DIR, config.keyword).build(texts)
                KeywordIndex(folder / PARAGRAPH_KEYWORD_DIR, config.keyword).build([p.index_text for p in cut.paragraphs])
                KeywordIndex(folder / ARTICLE_KEYWORD_DIR, config.keyword).build(article_texts(parsed, list(kept_articles)))
            except CorpusError as error:
                raise CorpusError(f"{config.corpus or index}: {error}") from None
            store.write_passages(folder, passages, cut.paragraphs)
            store.write_json(folder / store.COPIES, copy_groups)
            store.write_json(folder / store.ARTICLES, kept_articles)
            write_metadata(folder / METADATA, passages=passages, articles={key: articles[key] for key in kept_articles})
            encoder.write_link_vectors(folder)
            manifest = new_manifest(
                model=model, settings=config.settings, keyword=config.keyword, factory=factory, parsed=parsed,
                passages=passages, paragraphs=len(cut.paragraphs), articles=kept_articles, skipped=skipped, links=links, inputs=inputs,
                corpus=_relative_corpus(config.corpus, index), previous=live,
                build={"full": cache is None, "embedded": embedded, "reused": reused, **cluster},
                checksums=store.checksums(folder),
            )
            store.write_json(folder / MANIFEST, manifest.to_json())

        generation = write_generation(index, live=live, fill=fill)
    if model.ref.local_path is not None and not no_onnx():
        # Queries embed with this export, without torch; made once per machine and model.
        ensure_export(model_id=model.ref.id, model_path=model.ref.local_path, fingerprint=model.fingerprint,
                      max_seq_length=model.max_seq_length)
    return BuildReport(
        index=index, generation=generation.name, files=len(parsed), passages=len(passages),
        articles=len(kept_articles), skipped=skipped, links=links,
        chrome_blocks=sum(len(p.chrome) for p in parsed), seconds=time.perf_counter() - began,
        unchanged=False, full=cache is None, embedded=embedded, reused=reused,
        previous=live, changes=_changes(previous.manifest if previous else None, inputs),
        cluster=cluster.get("ray"),
    )


def _relative_corpus(corpus: Path | None, index: Path) -> str | None:
    """Where the corpus is, relative to the index folder (so a moved checkout still finds it)."""
    if corpus is None:
        return None
    try:
        return Path(os.path.relpath(corpus.resolve(), index.resolve())).as_posix()
    except ValueError:  # another drive
        return corpus.resolve().as_posix()


def _changes(manifest: Manifest | None, inputs: dict[str, str | None]) -> dict[str, int]:
    old = manifest.file_hashes() if manifest is not None else {}
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


def _unchanged_report(config: BuildConfig, *, inputs: dict[str, str | None], began: float) -> BuildReport | None:
    """A report for an index that is up to date with the corpus, settings and model; else None.

    Reads only the live manifest, hashes the corpus files and the model's files: no parsing,
    no model loading. Leftovers of killed builds are removed under the build lock.
    """
    index = config.index
    if not (index / store.POINTER).exists():
        return None
    try:
        live = store.StoredIndex.open(index)
    except IndexFormatError:
        return None
    manifest = live.manifest
    model = BuildModel(model=config.model, embedder=config.embedder, recorded=manifest, precision=config.precision)
    if (
        manifest.get("inputs") != inputs
        or manifest.get("corpus") != _relative_corpus(config.corpus, index)
        or manifest.get("chunking") != config.settings.to_dict()
        or manifest.get("keyword") != config.keyword.to_dict()
        or manifest.factory != (config.factory or choose_factory(live.count))
        or manifest.get("pipeline") != pipeline_fingerprint()
        or manifest.get("versions") != package_versions()
        or manifest.model_id != model.ref.id
        or model.ref.local_path is None
        or not same_identity(manifest.get("model_identity"), model.identity())
    ):
        return None
    with build_lock(index):
        if store.live_generation(index) != live.generation:
            return None  # another build switched generations meanwhile: build as usual
        remove_stale_generations(index, keep=generations_in_use(index, live.generation.name, live))
    for problem in manifest.skipped:
        config.warn(f"{problem} (skipped)")
    counts = manifest.counts
    return BuildReport(
        index=index, generation=live.generation.name, files=int(counts.get("files", 0)), passages=live.count,
        articles=int(counts.get("articles", 0)), skipped=manifest.skipped, links=manifest.links,
        chrome_blocks=int(counts.get("chrome_blocks", 0)), seconds=time.perf_counter() - began, unchanged=True,
        full=False, embedded=0, reused=0, previous=manifest.previous, changes={"added": 0, "changed": 0, "removed": 0},
    )

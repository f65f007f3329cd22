"""Reading, parsing and cutting a build's corpus as Ray tasks (``semindex build --ray``).

A Ray build runs the stages of :mod:`indexer.build` where they can run: the driver walks the
corpus (:func:`~indexer.discover.discover`: one listing, whose order is the build's order),
then one task per node checks that the node reads every discovered path (the corpus must be
on a filesystem every node shares, at the same path), tasks over consecutive shards of the
files fingerprint them (:func:`~indexer.discover.hash_inputs`) and read them
(:func:`~indexer.documents.parse_files`). Linking (:mod:`indexer.linking`) stays on the
driver: it merges each article's records from every file and matches bare bodies against
every same-day article, so it needs the whole corpus at once, and it is cheap (only bare
bodies are embedded, through the build's vector cache). Tasks then cut the linked files into
passages (:func:`~indexer.passages.make_passages`, each shard with the articles its segments
cite), and the driver joins the shards: a text of one article cut in two shards is one
passage, as one ``make_passages`` over the whole corpus makes it. Embedding is
:mod:`indexer.ray_build`'s actor pool; the driver writes the generation.

Every task is retried by Ray when its worker dies (:data:`~indexer.ray_build.RETRIES` times);
one that still fails fails the build in one line, before anything is written.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.discover import Warn, hash_inputs
from indexer.documents import ParsedFile, parse_files, require_parsed
from indexer.errors import CorpusError, SemindexError
from indexer.passages import Cut, make_passages
from indexer.ray_build import RETRIES, connect

if TYPE_CHECKING:
    from indexer.build_model import BuildModel
    from indexer.chunking import ChunkSettings
    from indexer.types import Article, Paragraph, Passage

SHARDS_PER_CPU = 4
"""Tasks per cluster CPU and stage: enough that a slow node does not hold the others up."""
MAX_SHARD_FILES = 1000
"""At most this many files to a task, so one task's results stay small next to a node's memory."""
SHARED_FS = "every node must see the corpus at the same path (a shared filesystem)"


@dataclass
class StageRun:
    """What the cluster did in one stage: tasks, items (files, passages) per worker process
    (node, pid), seconds from the first task sent to the last result back."""

    tasks: int = 0
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self, unit: str) -> dict[str, Any]:
        workers = [{"node": node, "pid": pid, unit: count} for (node, pid), count in sorted(self.counts.items())]
        return {"tasks": self.tasks, unit: sum(self.counts.values()), "workers": workers,
                "seconds": round(self.seconds, 3)}


class RayCorpus:
    """The corpus stages of one build on the cluster at ``address`` (joined here)."""

    def __init__(self, address: str, corpus: Path | None = None, found: list[tuple[Path, str]] | None = None) -> None:
        connect(address)
        import ray

        self.address = address
        self.corpus = corpus
        # absolute paths: a task runs in a folder of Ray's, not in the driver's
        self.found = [(str(path.absolute()), name) for path, name in found or []]
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.addresses = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
        self.stages: dict[str, StageRun] = {}
        self.checked: list[str] = []

    def check_readable(self) -> None:
        """One task on each node with CPUs stats every discovered path there; fail in one line
        naming the first path (in corpus order) that a node cannot read while the driver or
        another node can. A file no one can read is skipped with a warning, as a local build does."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        assert self.corpus is not None
        nodes = [node for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0]
        corpus = str(self.corpus.absolute())
        began = time.perf_counter()
        names = ray.put([name for _, name in self.found])
        task = _remote(_unreadable_here)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                .remote(corpus, names) for node in nodes]
        results = self._gather(refs, "checking the corpus")
        self._record("check", [(node, pid, 1) for node, pid, _ in results], began)
        self.checked = sorted({self.addresses.get(node, node) for node, _, _ in results})
        flagged: dict[str, tuple[str, str]] = {}  # name ("" for the corpus folder) -> (node, reason)
        for node, _, problems in results:
            for name, reason in problems:
                flagged.setdefault(name, (self.addresses.get(node, node), reason))
        if "" in flagged:
            node, reason = flagged[""]
            raise CorpusError(f"{self.corpus}: not readable on Ray node {node} ({reason}); {SHARED_FS}")
        for name in (name for _, name in self.found if name in flagged):
            everywhere = sum(any(n == name for n, _ in problems) for _, _, problems in results) == len(results)
            if everywhere and _unreadable(str(self.corpus / name)) is not None:
                continue  # no one reads it: the read task skips it, as a local build does
            node, reason = flagged[name]
            raise CorpusError(f"{self.corpus / name}: not readable on Ray node {node} ({reason}); {SHARED_FS}")

    def hash_inputs(self) -> dict[str, str | None]:
        """:func:`~indexer.discover.hash_inputs` of the discovered files, by tasks."""
        shards = _shards([1] * len(self.found), self.cpus)
        task = _remote(_hash_shard)
        began = time.perf_counter()
        results = self._gather([task.remote(self.found[start:end]) for start, end in shards], "fingerprinting the corpus")
        self._record("fingerprint", [(node, pid, len(hashes)) for node, pid, hashes in results], began)
        return {name: digest for _, _, hashes in results for name, digest in hashes.items()}

    def read_files(self, *, warn: Warn) -> tuple[list[ParsedFile], list[str], list[str]]:
        """:func:`~indexer.documents.read_files` of the discovered files, by tasks: the same
        files, warnings and skips, in corpus order."""
        assert self.corpus is not None
        shards = _shards([1] * len(self.found), self.cpus)
        task = _remote(_read_shard)
        began = time.perf_counter()
        results = self._gather([task.remote(self.found[start:end]) for start, end in shards], "reading the corpus")
        self._record("read", [(node, pid, len(parsed)) for node, pid, parsed, *_ in results], began)
        parsed: list[ParsedFile] = []
        skipped: list[str] = []
        skipped_names: list[str] = []
        for _, _, files, problems, names, warnings in results:
            parsed += files
            skipped += problems
            skipped_names += names
            for message in warnings:
                warn(message)
        require_parsed(self.corpus, parsed)
        return parsed, skipped, skipped_names

    def cut(self, parsed: list[ParsedFile], articles: dict[str, Article], model: BuildModel,
            settings: ChunkSettings, *, model_name: str | None) -> Cut:
        """:func:`~indexer.passages.make_passages` over the linked files, by tasks over shards
        of similar text length; each node sizes passages with its own copy of the model's
        tokenizer, which must be the driver's. A model without a ``tokenizer.json`` (loaded
        from a hub) is cut on the driver."""
        if model.tokenizer_file is None:
            return make_passages(parsed, articles, model, settings)
        import ray

        key = ray.put((model_name, model.max_seq_length, model.files_fingerprint))
        shared_settings = ray.put(settings)
        task = _remote(_cut_shard)
        began = time.perf_counter()
        refs = []
        for start, end in _shards([len(file.text) for file in parsed], self.cpus):
            files = parsed[start:end]
            cited = {segment.article for file in files for segment in file.segments}
            refs.append(task.remote(files, {name: articles[name] for name in cited}, shared_settings, key))
        results = self._gather(refs, "cutting passages")
        self._record("cut", [(node, pid, len(cut.passages)) for node, pid, cut in results], began)
        return join_shards([cut for _, _, cut in results])

    def to_dict(self) -> dict[str, Any]:
        """The manifest's record of the corpus stages: the nodes that passed the check, and
        per stage its tasks, worker processes and seconds."""
        units = {"check": "tasks", "fingerprint": "files", "read": "files", "cut": "passages"}
        return {"checked_nodes": self.checked,
                **{stage: run.to_dict(units[stage]) for stage, run in self.stages.items()}}

    def _record(self, stage: str, done: list[tuple[str, int, int]], began: float) -> None:
        run = self.stages[stage] = StageRun(tasks=len(done), seconds=time.perf_counter() - began)
        for node, pid, count in done:
            where = (self.addresses.get(node, node), pid)
            run.counts[where] = run.counts.get(where, 0) + count

    def _gather(self, refs: list[Any], doing: str) -> list[Any]:
        """The tasks' results in order; a failed task (after Ray's retries) in one line."""
        import ray

        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, SemindexError):
                raise SemindexError(str(cause)) from None
            reason = " ".join(str(cause or error).split())[:300]
        except ray.exceptions.RayError as error:  # a worker or node lost more often than Ray retries
            reason = " ".join(str(error).split())[:300]
        raise SemindexError(f"--ray {self.address}: {doing} failed on the cluster ({reason})")


def join_shards(shards: list[Cut]) -> Cut:
    """What :func:`~indexer.passages.make_passages` cuts from consecutive shards of a corpus,
    as it cuts the whole corpus at once: one paragraph per article and text, one passage per
    article and embedded text (the first shard's, with the sources of the later ones; sources
    where the article is only listed after its own, each group in corpus order), numbered in
    order, each passage pointing to its paragraph's new number."""
    by_key: dict[tuple[str, str], Passage] = {}
    joined: list[Passage] = []
    paragraph_by_key: dict[tuple[str, str], Paragraph] = {}
    paragraphs: list[Paragraph] = []
    for cut in shards:
        number: dict[int, int] = {}
        for paragraph in cut.paragraphs:
            kept = paragraph_by_key.get((paragraph.article, paragraph.text))
            if kept is None:
                number[paragraph.id] = len(paragraphs)
                paragraph.id, paragraph.passages = len(paragraphs), []
                paragraph_by_key[(paragraph.article, paragraph.text)] = paragraph
                paragraphs.append(paragraph)
                continue
            number[paragraph.id] = kept.id
            _add_sources(kept, paragraph.sources)
        for passage in cut.passages:
            kept = by_key.get((passage.article, passage.embed_text))
            if kept is None:
                passage.id, passage.paragraph = len(joined), number[passage.paragraph]
                by_key[(passage.article, passage.embed_text)] = passage
                joined.append(passage)
                paragraphs[passage.paragraph].passages.append(passage.id)
                continue
            _add_sources(kept, passage.sources)
    return Cut(passages=joined, paragraphs=paragraphs)


def _add_sources(kept: Passage | Paragraph, sources: list) -> None:
    kept.sources.extend(sources)
    kept.sources.sort(key=lambda source: source.listed_by is not None)  # stable: corpus order kept
    kept.kind = kept.sources[0].kind


def _shards(sizes: list[int], cpus: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges of items of about equal total size, about
    :data:`SHARDS_PER_CPU` per CPU, none over :data:`MAX_SHARD_FILES` items."""
    if not sizes:
        return []
    count = min(len(sizes), max(SHARDS_PER_CPU * cpus, math.ceil(len(sizes) / MAX_SHARD_FILES)))
    total, target = sum(sizes), sum(sizes) / count
    ranges, start, running = [], 0, 0
    for index, size in enumerate(sizes):
        running += size
        full = running >= target * (len(ranges) + 1) or index + 1 - start >= MAX_SHARD_FILES
        if full and index + 1 < len(sizes):
            ranges.append((start, index + 1))
            start = index + 1
    ranges.append((start, len(sizes)))
    assert running == total
    return ranges


@functools.cache
def _remote(function: Any) -> Any:
    """``function`` as a Ray task, retried when its worker dies."""
    import ray

    return ray.remote(max_retries=RETRIES)(function)


# --- what runs on the nodes ----------------------------------------------------------------


def _where() -> tuple[str, int]:
    import ray

    return ray.get_runtime_context().get_node_id(), os.getpid()


def _unreadable(path: str) -> str | None:
    """Why this process cannot read ``path`` (a file, or a folder to list), or None."""
    try:
        os.stat(path)
    except OSError as error:
        return error.strerror or str(error)
    return None if os.access(path, os.R_OK) else "permission denied"


def _unreadable_here(corpus: str, names: list[str]) -> tuple[str, int, list[tuple[str, str]]]:
    """On one node: the corpus folder ("") or the first 100 discovered files it cannot read here."""
    if (reason := _unreadable(corpus)) is not None or not os.access(corpus, os.X_OK):
        return (*_where(), [("", reason or "permission denied")])
    problems: list[tuple[str, str]] = []
    for name in names:
        if (reason := _unreadable(os.path.join(corpus, name))) is not None:
            problems.append((name, reason))
            if len(problems) == 100:
                break
    return (*_where(), problems)


def _hash_shard(found: list[tuple[str, str]]) -> tuple[str, int, dict[str, str | None]]:
    return (*_where(), hash_inputs([(Path(path), name) for path, name in found]))


def _read_shard(found: list[tuple[str, str]]) -> tuple[Any, ...]:
    warnings: list[str] = []
    parsed, skipped, skipped_names = parse_files([(Path(path), name) for path, name in found], warn=warnings.append)
    return (*_where(), parsed, skipped, skipped_names, warnings)


def _cut_shard(files: list[ParsedFile], articles: dict[str, Article], settings: ChunkSettings,
               key: tuple[str | None, int, str | None]) -> tuple[str, int, Cut]:
    return (*_where(), make_passages(files, articles, _node_model(*key), settings))


@functools.lru_cache(maxsize=2)
def _node_model(model: str | None, max_seq_length: int, files_fingerprint: str | None) -> BuildModel:
    """The build's model as this node cuts with it: its tokenizer and prompts from the node's
    own copy (never a hub), refused unless the model's files equal the driver's; the sequence
    limit is the driver's, settled from the model itself (so no node loads the weights)."""
    from indexer.build_model import BuildModel
    from indexer.embedder import Embedder, ModelError

    node_model = BuildModel(embedder=Embedder(model=model, local_only=True), precision="fp32")
    if node_model.tokenizer_file is None or node_model.files_fingerprint != files_fingerprint:
        raise ModelError(f"the model on Ray node {_where()[0]} is not the driver's (its tokenizer or configuration "
                         "files differ); install the same semindex and model package on every node")
    node_model.__dict__["max_seq_length"] = max_seq_length  # a cached_property, set to the driver's value
    return node_model

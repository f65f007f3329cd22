"""Measure retrieval on gold questions (YAML) or on a benchmark in BEIR layout."""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from indexer.errors import IndexFormatError, SemindexError, unencodable
from query import metrics

if TYPE_CHECKING:
    from query.searcher import Searcher

Ranker: TypeAlias = "Callable[[Searcher, str], list]"
"""``ranker(searcher, query)`` -> [(passage id or article key, score)] best first: lets a
benchmark measure a ranking the product does not ship (another fusion, a rescoring)."""

METRIC_KEYS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@3")
BEIR_PASSAGE_DEPTH = 400
"""Passages fetched per BEIR query for the dense run: several passages share a document,
so 100 distinct documents (for Recall@100) need a few hundred passages."""


@dataclass
class EvalReport:
    """Averaged metrics of one target and mode, plus query latency."""

    target: str
    mode: str
    scores: dict[str, float | None]
    queries: int
    latencies_ms: list[float] = field(default_factory=list)
    split: str | None = None  # the BEIR qrels split; None for gold questions
    warnings: list[str] = field(default_factory=list)
    """Judgements that can only score 0 (a gold question whose sources are not indexed, a
    relevant document missing from the corpus), one line each."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "split": self.split,
            "mode": self.mode,
            **self.scores,
            "queries": self.queries,
            "latency_mean_ms": round(metrics.mean(self.latencies_ms), 2) if self.latencies_ms else None,
            "latency_p95_ms": round(metrics.percentile(self.latencies_ms, 95), 2) if self.latencies_ms else None,
            "warnings": self.warnings,
        }


def headline(report: dict[str, Any]) -> str:
    """The measure that speaks for a target in a summary: SQuAD para@1 (the top hit lies in the
    question's paragraph and holds an answer), BEIR nDCG@10 over documents, gold questions
    hit@1 (the top hit is from a source and holds an answer)."""
    if "para@1" in report:
        return "para@1"
    return "ndcg@10" if report.get("split") is not None else "hit@1"


def summary_rows(results: list[tuple[Path, list[dict[str, Any]]]], *, modes: list[str]) -> list[dict[str, Any]]:
    """One row per (target, mode) with its headline measure and score, then per mode the mean
    of the scores over the targets (``semindex eval`` of several targets)."""
    rows = []
    for target, reports in results:
        for report in reports:
            measure = headline(report)
            rows.append({"target": str(target), "mode": report["mode"], "measure": measure, "score": report[measure],
                         "queries": report.get("queries", report.get("answerable"))})
    for mode in modes:
        scores = [row["score"] for row in rows if row["mode"] == mode and row["score"] is not None]
        rows.append({"target": "mean", "mode": mode, "measure": "mean of the above",
                     "score": sum(scores) / len(scores) if scores else None, "queries": None})
    return rows


def _score_rankings(rankings: list[list[str]], qrels: list[dict[str, int]]) -> dict[str, float]:
    per_query = [
        {
            "ndcg@10": metrics.ndcg_at_k(ranking, rels, k=10),
            "recall@10": metrics.recall_at_k(ranking, rels, k=10),
            "recall@100": metrics.recall_at_k(ranking, rels, k=100),
            "mrr@10": metrics.mrr_at_k(ranking, rels, k=10),
            "hit@1": metrics.hit_at_k(ranking, rels, k=1),
            "hit@3": metrics.hit_at_k(ranking, rels, k=3),
        }
        for ranking, rels in zip(rankings, qrels)
    ]
    return metrics.summarize(per_query)


def _check_gold(path: Path, questions: object) -> None:
    """Refuse gold questions that would score silently wrong, naming the file and the entry."""
    if not isinstance(questions, list) or not questions:
        raise SemindexError(f"{path}: expected a non-empty list of entries with 'question', 'answers' and 'sources'")
    for number, entry in enumerate(questions, start=1):
        where = f"{path}: entry {number}"
        if not isinstance(entry, dict):
            raise SemindexError(f"{where}: expected a mapping with 'question', 'answers' and 'sources'")
        question = entry.get("question")
        if not isinstance(question, str) or not question.strip():
            raise SemindexError(f"{where}: 'question' must be a non-empty string")
        if (bad := unencodable(question)) is not None:
            raise SemindexError(f"{where}: 'question' is not valid Unicode ({bad})")
        if entry.get("answers") is None:  # a misspelt key would otherwise make it unanswerable
            raise SemindexError(f"{where}: 'answers' is missing; give the answers, or [] for a question "
                                "the corpus does not answer")
        for name in ("answers", "sources"):
            value = entry.get(name)
            if value is not None and not (isinstance(value, list)
                                          and all(isinstance(item, str) and item.strip() for item in value)):
                raise SemindexError(f"{where}: '{name}' must be a list of non-empty strings")
        if entry.get("answers") and not entry.get("sources"):
            raise SemindexError(f"{where}: 'sources' is needed when 'answers' is given")


def evaluate_gold(path: Path, *, index: Path | None = None, mode: str = "hybrid", limit: int | None = None,
                  ranker: Ranker | None = None, label: str | None = None) -> EvalReport:
    """Gold questions (format of shared/eval/questions.yaml) against an index.

    A paragraph is relevant when one of its sources is in ``sources`` and its text contains
    one of ``answers``; questions with no answers score ``abstain`` (share where ``ask``
    gives no answer), the others ``answer`` (share where ``ask``'s short answer contains
    one of ``answers``: the gold file's answer accuracy). ``limit`` keeps the first
    questions only; ``ranker`` replaces :meth:`Searcher.rank` in ``mode``; ``label`` names
    it in the report.
    """
    import yaml

    from indexer import safety
    from indexer.documents import yaml_problem
    from query.index import open_searcher
    from query.readers import ReaderTools, SentenceReader

    try:
        questions = safety.bounded_yaml(path.read_text(encoding="utf-8"))[0]
    except safety.YamlLimitError as exc:
        raise SemindexError(f"{path}: invalid YAML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SemindexError(f"{path}: cannot read gold questions ({exc})") from None
    except yaml.YAMLError as exc:
        line, problem = yaml_problem(exc)
        raise SemindexError(f"{path}{'' if line is None else f':{line + 1}'}: invalid YAML ({problem})") from None
    _check_gold(path, questions)
    questions = questions[:limit] if limit else questions
    searcher = open_searcher(index)
    ranked_for = ranker or (lambda searcher, question: searcher.rank(question, k=100, mode=mode))
    ranked_for(searcher, "warm-up")
    reader = SentenceReader()
    tools = ReaderTools.of(searcher)
    paragraphs = searcher.stored.paragraphs()
    indexed_files = {source.file for p in paragraphs for source in p.sources}
    rankings, qrels, latencies, warnings, abstained, unanswerable, answered_right = [], [], [], [], 0, 0, 0
    for number, question in enumerate(questions, start=1):
        answers = [a.lower() for a in question.get("answers") or []]
        began = time.perf_counter()
        ranked = ranked_for(searcher, question["question"])[:100]
        latencies.append((time.perf_counter() - began) * 1000)
        short = reader.read(question["question"], searcher.hits(ranked, k=5), tools=tools).answer
        if not answers:
            unanswerable += 1
            abstained += short is None
            continue
        answered_right += short is not None and any(a in short.lower() for a in answers)
        sources = set(question.get("sources") or [])
        holding = [p for p in paragraphs if any(a in p.text.lower() for a in answers)]
        relevant = {str(p.id): 1 for p in holding if sources & {source.file for source in p.sources}}
        texts = {p.text for p in holding if str(p.id) in relevant}
        # a copy of a relevant text is shown as the same hit (also_in)
        relevant.update((str(p.id), 1) for p in holding if p.text in texts)
        if not relevant:
            unknown = sorted(sources - indexed_files)
            why = (f"source(s) {', '.join(map(repr, unknown))} not in the index" if unknown
                   else "no passage of its sources contains one of its answers")
            warnings.append(f"{path}: entry {number}: {why}; it scores 0")
        rankings.append([str(pid) for pid, _ in ranked])
        qrels.append(relevant)
    scores: dict[str, float | None] = _score_rankings(rankings, qrels) if rankings else dict.fromkeys(METRIC_KEYS)
    scores["abstain"] = abstained / unanswerable if unanswerable else None
    scores["answer"] = answered_right / len(rankings) if rankings else None
    return EvalReport(target=str(path), mode=label or mode, scores=scores, queries=len(questions), latencies_ms=latencies,
                      warnings=warnings)


def cached_beir_index(folder: Path, dataset, *, model: str | None = None, precision: str | None = None,
                      cache: Path | None = None, progress: bool = False) -> Path:
    """The cached index of a loaded BEIR ``dataset`` from ``folder``, ready to open: built on
    first use, updated (vectors reused) when other indexer code built it, embedded again when
    the model folder's weights or prompts changed, built again when it is damaged.
    ``precision`` None: what ``semindex build`` would use for ``model``."""
    from indexer.build import build_from_parsed
    from indexer.chunking import ChunkSettings
    from indexer.onnx_export import cache_root
    from indexer.store import POINTER
    from query.index import open_searcher

    settings = ChunkSettings()
    if precision is None:
        from indexer.build_model import BuildModel

        precision = BuildModel(model=model).settled_precision()  # int8, or fp32 where no faithful int8 export exists
    index = beir_index_path(folder, cache=cache or cache_root(), model=model, settings=settings, precision=precision)

    def fill(*, again: bool = False) -> None:
        with cache_fill_lock(index):
            if again or not (index / POINTER).is_file():  # not filled meanwhile by the run we waited for
                build_from_parsed(beir_documents(dataset), index=index, model=model, settings=settings,
                                  progress=progress, precision=precision)

    if not (index / POINTER).is_file():
        fill()
    elif built_by_other_code(index):
        print(f"{index}: built by another version of the indexer; updating it (vectors are reused)", file=sys.stderr)
        fill(again=True)
    elif changed := model_change(index, model=model):
        print(f"{index}: {changed} changed since it was built; updating it (passages are embedded again)",
              file=sys.stderr)
        fill(again=True)
    try:
        open_searcher(index)
    except IndexFormatError as error:  # a damaged cache: it is ours to throw away and fill again
        print(f"{error}; indexing {folder} into the cache again", file=sys.stderr)
        with cache_fill_lock(index):
            shutil.rmtree(index, ignore_errors=True)
        fill()
    return index


def beir_index_path(folder: Path, *, cache: Path, model: str | None, settings, precision: str = "fp32") -> Path:
    """Cache folder of a BEIR corpus's index, keyed by corpus hash, model, chunking and
    embedding precision with its recipe (fp32 keys are those from before precision existed)."""
    from indexer.onnx_export import INT8_RECIPE
    from query.beir import corpus_hash

    extra = "" if precision == "fp32" else f"|{precision}|recipe {INT8_RECIPE}"
    key = hashlib.sha256(f"{corpus_hash(folder)}|{model}|{settings.to_dict()}{extra}".encode()).hexdigest()[:16]
    return cache / "beir" / f"{re.sub(r'[^A-Za-z0-9_-]', '_', folder.name)}-{key}"


def built_by_other_code(index: Path) -> bool:
    """Was this cached index built by indexer code other than this (its manifest's pipeline
    fingerprint differs)? A cache key names the corpus and settings, not the code. An
    unreadable manifest is left to opening the index, which says what is wrong."""
    from indexer.fingerprints import pipeline_fingerprint
    from indexer.manifest import Manifest

    recorded = Manifest.peek(index)
    return recorded is not None and recorded.get("pipeline") != pipeline_fingerprint()


def model_change(index: Path, *, model: str | None) -> str | None:
    """Which of a model folder's weights and prompts differ from what this cached index records
    ("the weights of model 'x'"), or None. A cache key names the model, not its files. A hub
    name's fingerprint is its name, so it is not loaded to tell; nor is an unreadable manifest."""
    from indexer.build_model import BuildModel
    from indexer.manifest import Manifest

    manifest = Manifest.peek(index)
    if manifest is None or not isinstance(manifest.get("model"), dict):
        return None
    current = BuildModel(model=model, recorded=manifest)  # the weights are hashed only when their stat changed
    if current.ref.local_path is None:
        return None
    recorded = manifest["model"]
    if recorded.get("fingerprint") != current.fingerprint:
        return f"the weights of model {current.ref.id!r}"
    if recorded.get("prompts", {}) != current.prompts.manifest_entry().get("prompts", {}):
        return f"the prompts of model {current.ref.id!r}"
    return None


@contextmanager
def cache_fill_lock(index: Path) -> Iterator[None]:
    """Hold ``<index>.fill`` while one run builds a cached BEIR index: a second run on the
    same corpus waits for it (saying so on stderr) and then reuses its index, where it would
    otherwise fail on the index's build lock."""
    from indexer.generation import exclusive_lock

    index.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(index.with_name(f"{index.name}.fill"), wait=True,
                        busy=f"{index}: another run is indexing this corpus; waiting for it"):
        yield


def beir_documents(dataset) -> list:
    """Each BEIR document as a parsed file: a title passage and body passages of one article."""
    from indexer.documents import ParsedFile, Segment
    from indexer.types import Article

    parsed = []
    for doc_id, document in dataset.corpus.items():
        title = document.title.strip()
        text = f"{title}\n\n{document.text}" if title else document.text
        key = f"beir:{doc_id}"
        segments = []
        if title:
            segments.append(Segment(file=doc_id, start=0, end=len(title), kind="title", article=key))
        body_start = len(text) - len(document.text)
        if document.text.strip():
            segments.append(Segment(file=doc_id, start=body_start, end=len(text), kind="body", article=key))
        if not segments:
            continue
        parsed.append(ParsedFile(
            name=doc_id, text=text, sha256=hashlib.sha256(text.encode()).hexdigest(),
            articles={key: Article(key=key, title=title or None)}, segments=segments, chrome=[], has_metadata=True,
        ))
    return parsed


def evaluate_beir(
    folder: Path, *, split: str | None = None, mode: str = "hybrid", model: str | None = None,
    cache: Path | None = None, limit: int | None = None, progress: bool = False, precision: str | None = None,
    ranker: Ranker | None = None, label: str | None = None,
) -> EvalReport:
    """Index a BEIR corpus (once, cached) and rank its documents for each query with
    :meth:`Searcher.rank_articles` (best passage cosine fused with whole-document BM25), or
    with ``ranker`` (returning article keys), named ``label`` in the report. ``split``
    None evaluates ``test`` where the folder has it, else its only split."""
    from query.beir import BeirFormatError, load_beir
    from query.index import open_searcher

    try:
        dataset = load_beir(folder, split=split)
    except BeirFormatError as exc:
        raise SemindexError(str(exc)) from None
    searcher = open_searcher(cached_beir_index(folder, dataset, model=model, precision=precision, cache=cache,
                                               progress=progress))
    ranked_for = ranker or (lambda searcher, query: searcher.rank_articles(query, k=100, mode=mode, depth=BEIR_PASSAGE_DEPTH))
    ranked_for(searcher, "warm-up")
    query_ids = list(dataset.queries)[:limit] if limit else list(dataset.queries)
    warnings = []
    if missing := sorted({doc for query_id in query_ids for doc, grade in dataset.qrels[query_id].items()
                          if grade > 0 and doc not in dataset.corpus}):
        warnings.append(f"{Path(folder) / 'qrels' / f'{dataset.split}.tsv'}: {len(missing)} relevant document(s) not "
                        f"in corpus.jsonl (first: {missing[0]!r}); they count as relevant and cannot be found")
    rankings, qrels, latencies = [], [], []
    for query_id in query_ids:
        began = time.perf_counter()
        ranked = ranked_for(searcher, dataset.queries[query_id])[:100]
        latencies.append((time.perf_counter() - began) * 1000)
        rankings.append([key.removeprefix("beir:") for key, _ in ranked])
        qrels.append(dataset.qrels[query_id])
    scores: dict[str, float | None] = _score_rankings(rankings, qrels)
    scores["abstain"] = scores["answer"] = None
    return EvalReport(target=str(folder), mode=label or mode, scores=scores, queries=len(query_ids), latencies_ms=latencies,
                      split=dataset.split, warnings=warnings)

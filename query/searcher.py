"""Load an index once and rank its passages for a question."""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from indexer import integrity
from indexer.embedder import Embedder, ModelError, Prompts, resolve_model
from indexer.errors import IndexFormatError, QueryError, SemindexError, unencodable
from indexer.faiss_build import faiss_problem
from indexer.incremental import no_onnx
from indexer.keyword import ARTICLE_KEYWORD_DIR, KEYWORD_DIR, KeywordIndex, KeywordSettings
from indexer.store import StoredIndex, live_generation, rebuild_hint
from query.display import visible
from query.fusion import with_true_zeros, zscore_fusion
from query.rescoring import CLAUSE_MIX, CLAUSE_TOP, clauses, mix_clause_scores
from query.results import Citation, Hit

MODES = ("hybrid", "dense", "keyword")
DEFAULT_MODE = "hybrid"
CANDIDATES = 100
"""How many passages each retriever hands to fusion: deeper finds more of what only one
retriever ranks well, at a cost linear in the depth."""
DENSE_WEIGHT = 0.6
"""Weight of the dense run in z-score fusion of passages (keyword gets 1 - this). Measured
before clause rescoring (bench/quality.py, hit@1 on the 16 gold questions / 8 paraphrases):
0.6 gives 15/16 and 6/8, 0.5 15/16 and 5/8, 0.7 14/16 and 6/8."""
ARTICLE_DENSE_WEIGHT = 0.5
"""Weight of the dense run when ranking whole articles (best passage cosine per article,
fused with BM25 over the article's full text); 0.5 measured best on SciFact train, with
0.4-0.6 within 0.01 (bench/quality.py)."""

_OPEN: dict[tuple[str, str, str], Searcher] = {}


@dataclass(frozen=True)
class Runs:
    """What fusion works from: the dense and keyword runs as (item, score) best first, the
    question vector, and for article runs each article's best passage (for clause rescoring;
    passage runs leave it None, each item being its own passage)."""

    dense: list[tuple]
    keyword: list[tuple]
    vector: Any
    best_passage: dict[str, int] | None = None
    keyword_complete: bool = False
    """The keyword run holds every item BM25 scores above zero (asked for one more than it
    keeps, BM25 did not fill that place)."""

    def keyword_scores(self, fused_with: Sequence[Sequence[tuple]] | None = None) -> list[tuple]:
        """The keyword run as score fusion should see it: a complete run followed by the other
        items of the runs it is fused with (default: the dense run) at their true BM25 score,
        0 (see :func:`~query.fusion.with_true_zeros`)."""
        if not self.keyword_complete:
            return self.keyword
        return with_true_zeros(self.keyword, [self.dense] if fused_with is None else fused_with)

    def passage(self, item) -> int | None:
        """The passage that stands for ``item``: itself, or an article's best passage (None
        for an article that BM25 alone found)."""
        return item if self.best_passage is None else self.best_passage.get(item)


def default_index() -> Path:
    """``$SEMINDEX_INDEX``, else ``./index`` if it exists, else the repository's ``index/``."""
    if env := os.environ.get("SEMINDEX_INDEX"):
        return Path(env)
    local = Path("index")
    if (local / "CURRENT").exists():
        return local
    return Path(__file__).resolve().parent.parent / "index"


def open_searcher(
    index: Path | str | None = None, *, model: str | None = None, faiss_params: str | None = None
) -> Searcher:
    """A Searcher for ``index``, reused across calls while its live generation is unchanged.

    ``faiss_params`` overrides the search parameters recorded with the index (e.g.
    ``nprobe=64`` or ``efSearch=256``: higher recall for more time per query).
    """
    # absolute, so a cached searcher keeps reading this index after the process changes directory
    path = Path(os.path.abspath(index if index is not None else default_index()))
    # Reading CURRENT is cheap; opening (and checksumming) is done once per generation.
    key = (str(live_generation(path).resolve()), model or "", faiss_params or "")
    if key not in _OPEN:
        _OPEN[key] = Searcher(StoredIndex.open(path), model=model, faiss_params=faiss_params)
    return _OPEN[key]


def check_query(question: str, *, k: int, mode: str) -> None:
    """Refuse what cannot be searched: a question that is not text or is empty, ``k`` < 1,
    an unknown mode."""
    if not isinstance(question, str):
        raise QueryError(f"the question must be a string, not {type(question).__name__}")
    if not visible(question):
        raise QueryError("the question is empty")
    if (bad := unencodable(question)) is not None:
        raise QueryError(f"the question is not valid Unicode: {bad}")
    try:
        whole = operator.index(k)  # int, numpy integers; not floats, strings or bools
    except TypeError:
        whole = None
    if whole is None or isinstance(k, bool) or whole < 1:
        raise QueryError(f"k must be a whole number of at least 1, got {k!r}")
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


COUNT_PARAMETERS = frozenset({"nprobe", "efSearch", "max_codes", "ht"})
"""FAISS search parameters that are counts: ``ParameterSpace`` would silently truncate 1.5 to 1."""


def fractional_count(faiss_params: str) -> str | None:
    """Why ``faiss_params`` ("name=value,...") gives a count parameter a non-integer value, or None."""
    for item in faiss_params.split(","):
        name, _, value = item.partition("=")
        if name.strip() in COUNT_PARAMETERS:
            try:
                float(value)
            except ValueError:
                continue  # not a number at all: FAISS's own message says so
            if not value.strip().lstrip("+-").isdigit():
                return f"{name.strip()} must be a whole number, got {value.strip()!r}"
    return None


class Searcher:
    """Dense search over one index generation, with the model the index was built with."""

    def __init__(self, stored: StoredIndex, *, model: str | None = None, faiss_params: str | None = None) -> None:
        self.stored = stored
        self.faiss_params = faiss_params
        self._last_question: tuple[str, Any] | None = None
        recorded = stored.manifest["model"]
        if model is not None and resolve_model(model).id != recorded["id"]:
            raise IndexFormatError(
                f"{stored.index}: built with model {recorded['id']!r}, not {resolve_model(model).id!r}; "
                f"{rebuild_hint(stored.index)} --model {model}"
            )

    @cached_property
    def embedder(self) -> Embedder:
        """The index's own model, refused if its weights differ from those it was built with."""
        recorded = self.stored.manifest["model"]
        embedder = Embedder(model=recorded["id"], local_only=True)
        try:
            embedder.model
        except ModelError as error:
            raise IndexFormatError(
                f"{self.stored.generation / 'manifest.json'}: built with model {recorded['id']!r}, "
                f"which cannot be loaded here ({error}); {rebuild_hint(self.stored.index)}"
            ) from None
        if embedder.fingerprint != recorded["fingerprint"]:
            raise IndexFormatError(
                f"{self.stored.index}: built with other weights for {recorded['id']!r} "
                f"({recorded['fingerprint'][:19]}…, installed {embedder.fingerprint[:19]}…); {rebuild_hint(self.stored.index)}"
            )
        return embedder

    @cached_property
    def query_embedder(self):
        """The fp32 ONNX export of the index's model when this machine has it (no torch
        import), else the sentence-transformers model, exporting it for the next process.

        Questions embed at fp32 whatever precision the passages were embedded at: the export
        gives sentence-transformers' own vectors (``tests/test_onnx_equivalence.py``), and an
        int8 index answers as well with them (SciFact train nDCG@10 0.748 with fp32 questions,
        0.749 with int8 ones, before clause rescoring; gold questions identical).
        """
        from indexer.onnx_export import CONFIG_FILE, ensure_export, export_folder
        from indexer.onnx_embedder import OnnxEmbedder

        recorded = self.stored.manifest["model"]
        folder = export_folder(recorded["id"], recorded["fingerprint"])
        if not (folder / CONFIG_FILE).is_file():
            embedder = self.embedder
            if embedder.ref.local_path is None or no_onnx():
                return embedder
            folder = ensure_export(
                model_id=recorded["id"], model_path=embedder.ref.local_path, fingerprint=recorded["fingerprint"],
                max_seq_length=recorded["max_seq_length"],
            )
        return OnnxEmbedder(folder)

    @cached_property
    def prompts(self) -> Prompts:
        """The question and passage prompts the index's model was built with (its manifest)."""
        return Prompts.from_config(self.stored.manifest["model"].get("prompts"))

    def embed(self, texts: list[str]):
        """Unit vectors for passage-like ``texts`` (clauses, sentences) from the index's own
        model, after its passage prompt, as the passages were embedded."""
        return self.query_embedder.encode(self.prompts.documents(texts))

    def embed_question(self, question: str):
        """The unit vector of ``question``, after the model's query prompt (the last one is
        kept: ``ask`` needs it for the search and again for the answer)."""
        last = self._last_question
        if last is not None and last[0] == question:
            return last[1]
        vector = self.query_embedder.encode([self.prompts.question(question)])[0]
        vector.setflags(write=False)  # shared by the callers that ask for it
        self._last_question = (question, vector)
        return vector

    def dense(self, question_vector, *, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest passages to a question vector as (passage id, cosine)."""
        k = min(k, self.stored.count)
        if k <= 0:
            return []
        vectors = self.stored.vectors
        if self.faiss_params and not self.__dict__.get("_params_set"):
            import faiss

            if problem := fractional_count(self.faiss_params):
                raise SemindexError(f"FAISS search parameters {self.faiss_params!r}: {problem}")
            try:
                faiss.ParameterSpace().set_index_parameters(vectors, self.faiss_params)
            except RuntimeError as exc:
                raise SemindexError(f"FAISS search parameters {self.faiss_params!r}: {faiss_problem(exc)}") from None
            self.__dict__["_params_set"] = True
        try:
            scores, ids = vectors.search(question_vector.reshape(1, -1), k)
        except RuntimeError as exc:  # a parameter FAISS accepts but cannot search with (nprobe=0)
            params = self.faiss_params or self.stored.manifest["faiss"].get("search_params")
            raise SemindexError(f"FAISS search parameters {params!r}: {faiss_problem(exc)}") from None
        if problem := integrity.hits_problem(vectors, scores[0], ids[0]):
            raise IndexFormatError(f"{self.stored.generation / 'vectors.faiss'}: corrupt ({problem}); "
                                   f"{rebuild_hint(self.stored.index)}")
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    @cached_property
    def stale(self) -> list[str]:
        """Corpus files added, changed or removed since the index was built (hashes every file
        of the corpus the manifest records: ~50 ms per 2,000 articles, once per process)."""
        from indexer.build import corpus_changes

        try:
            changes = corpus_changes(self.stored)
        except (OSError, SemindexError):
            return []
        if not changes:
            return []
        return [f"{kind} {name}" for kind in ("added", "changed", "removed") for name in changes[kind]]

    def stale_warning(self) -> str | None:
        """One line saying the corpus changed since the build, or None."""
        if not self.stale:
            return None
        shown = ", ".join(self.stale[:3]) + (f" and {len(self.stale) - 3} more" if len(self.stale) > 3 else "")
        return f"{self.stored.index}: corpus changed since this index was built ({shown}); run semindex build to update it"

    @cached_property
    def keyword(self) -> KeywordIndex:
        settings = KeywordSettings.from_dict(self.stored.manifest["keyword"])
        return KeywordIndex(self.stored.generation / KEYWORD_DIR, settings, rows=self.stored.count)

    def rank(self, question: str, *, k: int, mode: str = DEFAULT_MODE, depth: int | None = None,
             rescore: bool = True) -> list[tuple[int, float]]:
        """(passage id, score) best first; the score is a cosine, a BM25 score or a fused score.

        Hybrid fuses the dense and keyword runs, ``depth`` deep each (default: ``k``, at least
        :data:`CANDIDATES`; z-scores depend on it, so a caller reading further down one
        ranking keeps it fixed), then (``rescore``) lifts the dense score of the
        top :data:`~query.rescoring.CLAUSE_TOP` fused passages (found by either run) by their
        best clause and fuses again.
        """
        check_query(question, k=k, mode=mode)
        if mode == "keyword":
            return self.keyword.search(question, k=k)
        if mode == "dense":
            return self.dense(self.embed_question(question), k=k)
        runs = self.passage_runs(question, depth=depth or max(k, CANDIDATES))
        return self.fuse(runs, weights=[DENSE_WEIGHT, 1 - DENSE_WEIGHT], rescore=rescore)[:k]

    def passage_runs(self, question: str, *, depth: int = CANDIDATES) -> Runs:
        """The dense and keyword runs over passages, ``depth`` deep each."""
        vector = self.embed_question(question)
        dense = self.dense(vector, k=depth)
        keyword = self.keyword.search(question, k=depth + 1)  # one more tells "all there are" from "depth"
        return Runs(dense=dense, keyword=keyword[:depth], vector=vector, keyword_complete=len(keyword) <= depth)

    def fuse(self, runs: Runs, *, weights: list[float], rescore: bool = True, top: int = CLAUSE_TOP,
             mix: float = CLAUSE_MIX) -> list[tuple]:
        """z-score fusion of ``runs``; with ``rescore``, the ``top`` fused items that have a
        passage get their dense score lifted by its best clause (``mix``) and are fused again."""
        keyword = runs.keyword_scores()
        fused = zscore_fusion([runs.dense, keyword], weights=weights)
        if not rescore:
            return fused
        targets = [(item, runs.passage(item)) for item, _ in fused[:top] if runs.passage(item) is not None]
        return zscore_fusion([self.clause_rescored(runs.dense, targets, runs.vector, mix=mix), keyword],
                             weights=weights)

    def clause_rescored(self, dense: list[tuple], targets: list[tuple], vector, *, mix: float = CLAUSE_MIX) -> list[tuple]:
        """``dense`` with each (item, passage id) in ``targets`` lifted by the best clause of
        that passage (:func:`~query.rescoring.mix_clause_scores`). Clauses shared by
        overlapping passages are embedded once, all in one batch."""
        owners: dict[str, list] = {}
        for item, pid in targets:
            passage = self.stored.passage(pid)
            for clause in clauses(passage.get("embedded") or passage["text"]):
                owners.setdefault(clause, []).append(item)
        if not owners:
            return dense
        texts = list(owners)
        best: dict = {}
        for text, cosine in zip(texts, (self.embed(texts) @ vector).tolist()):
            for item in owners[text]:
                best[item] = max(best.get(item, -1.0), cosine)
        return mix_clause_scores(dense, best, mix=mix)

    @cached_property
    def article_keys(self) -> list[str]:
        return list(self.stored.articles)

    @cached_property
    def article_keyword(self) -> KeywordIndex | None:
        folder = self.stored.generation / ARTICLE_KEYWORD_DIR
        if not folder.is_dir():
            return None
        return KeywordIndex(folder, KeywordSettings.from_dict(self.stored.manifest["keyword"]), rows=len(self.stored.articles))

    def rank_articles(self, question: str, *, k: int, mode: str = DEFAULT_MODE, depth: int = 400,
                      rescore: bool = True) -> list[tuple[str, float]]:
        """(article key, score) best first: an article's dense score is its best passage's
        cosine (a document longer than the model reads is still scored on every part), its
        keyword score is BM25 over its whole text, and hybrid fuses the two, then (``rescore``)
        lifts the top articles by the best clause of their best passage and fuses again (an
        article found by BM25 alone has no best passage and keeps its score)."""
        check_query(question, k=k, mode=mode)
        runs = self.article_runs(question, depth=depth, keyword_depth=max(k, CANDIDATES), mode=mode)
        if mode == "dense" or not runs.keyword:
            return runs.dense[:k]
        if mode == "keyword":
            return runs.keyword[:k]
        return self.fuse(runs, weights=[ARTICLE_DENSE_WEIGHT, 1 - ARTICLE_DENSE_WEIGHT], rescore=rescore)[:k]

    def article_runs(self, question: str, *, depth: int = 400, keyword_depth: int = CANDIDATES,
                     mode: str = DEFAULT_MODE) -> Runs:
        """Article runs: dense = each article's best passage among the ``depth`` nearest (and
        that passage), keyword = BM25 over whole articles, ``keyword_depth`` deep. ``mode``
        skips the run it does not need."""
        vector, dense, best_passage = None, [], {}
        if mode != "keyword":
            vector = self.embed_question(question)
            dense, best_passage = self.best_passage_per_article(vector, depth=depth)
        keyword: list[tuple[str, float]] = []
        complete = False
        if mode != "dense" and self.article_keyword is not None:
            keys = self.article_keys
            found = self.article_keyword.search(question, k=keyword_depth + 1)
            keyword, complete = [(keys[row], score) for row, score in found[:keyword_depth]], len(found) <= keyword_depth
        return Runs(dense=dense, keyword=keyword, vector=vector, best_passage=best_passage, keyword_complete=complete)

    def best_passage_per_article(self, vector, *, depth: int) -> tuple[list[tuple[str, float]], dict[str, int]]:
        """(article, best passage cosine) best first among the ``depth`` passages nearest to
        ``vector``, and each article's best passage id."""
        best: dict[str, float] = {}
        best_passage: dict[str, int] = {}
        for pid, score in self.dense(vector, k=depth):
            article = self.article_of(pid)
            if article not in best:
                best[article], best_passage[article] = score, pid
        return list(best.items()), best_passage

    def article_of(self, passage_id: int) -> str:
        """The article key of a passage (memoised: ranking articles touches many passages)."""
        cache = self.__dict__.setdefault("_article_of", {})
        if passage_id not in cache:
            cache[passage_id] = self.stored.passage(passage_id)["article"]
        return cache[passage_id]

    def hit(self, rank: int, passage_id: int, score: float, passage: dict[str, Any]) -> Hit:
        """A ranked passage (``passage``, as stored) with its citations; its copies
        (passages embedded from the same text elsewhere) add theirs to ``also_in``."""
        citations = self._citations(passage)
        for copy in self.stored.copies(passage):
            citations += self._citations(self.stored.passage(copy))
        return Hit(
            rank=rank, score=score, text=passage["text"], citation=citations[0], passage_id=passage_id,
            article=passage["article"], also_in=tuple(citations[1:]), embedded=passage.get("embedded"),
        )

    def _citations(self, passage: dict[str, Any]) -> list[Citation]:
        article = self.stored.articles.get(passage["article"], {})
        return [Citation.from_stored(source, article) for source in passage["sources"]]

    def hits(self, ranked: Sequence[tuple[int, float]], *, k: int) -> list[Hit]:
        """The first ``k`` distinct passages of ``ranked`` as hits. A passage embedded from the
        same text as a better one (its stored copies: an article syndicated by two outlets,
        a file copied into two folders) is not a hit of its own; every copy's citations are in
        that hit's ``also_in``, wherever the copies rank."""
        hits: list[Hit] = []
        shown: set[int] = set()
        for pid, score in ranked:
            if len(hits) == k:
                break
            if pid in shown:
                continue
            passage = self.stored.passage(pid)
            shown.update(self.stored.copies(passage))
            hits.append(self.hit(len(hits) + 1, pid, score, passage))
        return hits

    def search(self, question: str, *, k: int = 5, mode: str = DEFAULT_MODE) -> list[Hit]:
        """The ``k`` best distinct passages for ``question``, best first (see :meth:`hits`);
        fewer only when the ranking holds fewer."""
        check_query(question, k=k, mode=mode)
        pool, read = max(k, CANDIDATES), 2 * k  # the fused pool of rank(k), read 2k deep for copies
        while True:
            depth = max(pool, (read + 1) // 2)
            ranked = self.rank(question, k=read, mode=mode, depth=depth)
            hits = self.hits(ranked, k=k)
            # A short dense or keyword ranking holds all there is; a short fused one may only
            # mean that both runs found the same passages (copies of one text), until the
            # runs are as deep as the index.
            exhausted = len(ranked) < read and (mode != "hybrid" or depth >= self.stored.count)
            if len(hits) == k or exhausted:
                return hits
            read *= 2

"""One generation's ranking: retrievers, fusion and rescoring put together.

:class:`Searcher` is the query side's inner part, one per (generation, FAISS parameters);
:class:`query.index.Index` opens and caches them. The stages are parts of their own:
:class:`~query.encoder.QueryEncoder` (the model), :mod:`query.retrievers` (dense, keyword),
:mod:`query.fusion` (z-score fusion), :class:`~query.rescoring.ClauseRescorer`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from indexer.errors import QueryError, unencodable
from indexer.keyword import KeywordIndex
from indexer.store import StoredIndex
from indexer.types import Passage
from query.display import visible
from query.encoder import QueryEncoder
from query.filters import Filters, PassageFilter, Selection
from query.fusion import Runs, zscore_fusion
from query.rescoring import CLAUSE_MIX, CLAUSE_TOP, ClauseRescorer
from query.results import Citation, Hit
from query.retrievers import DenseRetriever, KeywordRetriever

MODES = ("hybrid", "dense", "keyword")
DEFAULT_MODE = "hybrid"
CANDIDATES = 100
"""How many passages each retriever hands to fusion: deeper finds more of what only one
retriever ranks well, at a cost linear in the depth."""
DENSE_WEIGHT = 0.6
"""Weight of the dense run in z-score fusion of passages (keyword gets 1 - this), chosen on
the gold questions and their paraphrases by bench/quality.py."""
ARTICLE_DENSE_WEIGHT = 0.5
"""Weight of the dense run when ranking whole articles (best passage cosine per article,
fused with BM25 over the article's full text), chosen on SciFact's train split by
bench/quality.py."""


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



class Searcher:
    """Ranks the passages (or articles) of one index generation for a question."""

    def __init__(self, stored: StoredIndex, *, model: str | None = None, faiss_params: str | None = None) -> None:
        self.stored = stored
        self.faiss_params = faiss_params
        self.encoder = QueryEncoder(stored, model=model)
        self.dense_retriever = DenseRetriever(stored, faiss_params=faiss_params)
        self.keyword_retriever = KeywordRetriever(stored)
        self.filter = PassageFilter(stored)
        self.rescorer = ClauseRescorer(embed=self.embed, passage_text=lambda pid: self.stored.passage(pid).embed_text)
        self._article_of: dict[int, str] = {}

    @property
    def embedder(self):
        """The index's sentence-transformers model (checked against its recorded weights)."""
        return self.encoder.embedder

    @property
    def query_embedder(self):
        return self.encoder.model

    def embed(self, texts: list[str]):
        """Unit vectors for passage-like ``texts``, as the passages were embedded."""
        return self.encoder.passages(texts)

    def embed_question(self, question: str):
        """The unit vector of ``question`` (the last one is kept)."""
        return self.encoder.question(question)

    @property
    def keyword(self) -> KeywordIndex:
        """The passages' BM25 index (its tokens and IDF also weigh an answer's wording)."""
        return self.keyword_retriever.passages

    @property
    def article_keys(self) -> list[str]:
        return self.keyword_retriever.article_keys

    def dense(self, question_vector, *, k: int, selection: Selection | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest passages to a question vector as (passage id, cosine), of those
        ``selection`` keeps if given."""
        return self.dense_retriever.search(question_vector, k=k, selection=selection)

    def select(self, filters: Filters | None) -> Selection | None:
        """The passages ``filters`` keep, or None when nothing is filtered."""
        return self.filter.select(filters) if filters is not None and filters.active else None

    def rank(self, question: str, *, k: int, mode: str = DEFAULT_MODE, depth: int | None = None,
             rescore: bool = True, selection: Selection | None = None) -> list[tuple[int, float]]:
        """(passage id, score) best first; the score is a cosine, a BM25 score or a fused score.

        Hybrid fuses the dense and keyword runs, ``depth`` deep each (default: ``k``, at least
        :data:`CANDIDATES`; z-scores depend on it, so a caller reading further down one
        ranking keeps it fixed), then (``rescore``) lifts the dense score of the
        top :data:`~query.rescoring.CLAUSE_TOP` fused passages (found by either run) by their
        best clause and fuses again. With ``selection`` both runs hold only passages it keeps.
        """
        check_query(question, k=k, mode=mode)
        if mode == "keyword":
            return self.keyword_retriever.search(question, k=k, selection=selection)
        if mode == "dense":
            return self.dense(self.embed_question(question), k=k, selection=selection)
        runs = self.passage_runs(question, depth=depth or max(k, CANDIDATES), selection=selection)
        return self.fuse(runs, weights=[DENSE_WEIGHT, 1 - DENSE_WEIGHT], rescore=rescore)[:k]

    def passage_runs(self, question: str, *, depth: int = CANDIDATES, selection: Selection | None = None) -> Runs:
        """The dense and keyword runs over passages (those ``selection`` keeps), ``depth`` deep each."""
        vector = self.embed_question(question)
        dense = self.dense(vector, k=depth, selection=selection)
        keyword = self.keyword_retriever.search(question, k=depth + 1, selection=selection)  # one more tells "all there are" from "depth"
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
        that passage (see :class:`~query.rescoring.ClauseRescorer`)."""
        return self.rescorer.rescore(dense, targets, vector, mix=mix)

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
        if mode != "dense" and self.keyword_retriever.articles is not None:
            found = self.keyword_retriever.search_articles(question, k=keyword_depth + 1)
            keyword, complete = found[:keyword_depth], len(found) <= keyword_depth
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
        if passage_id not in self._article_of:
            self._article_of[passage_id] = self.stored.passage(passage_id).article
        return self._article_of[passage_id]

    def hit(self, rank: int, passage_id: int, score: float, passage: Passage) -> Hit:
        """A ranked passage with its citations; its copies (passages embedded from the same
        text elsewhere) add theirs to ``also_in``."""
        citations = self._citations(passage)
        for copy in self.stored.copies(passage):
            citations += self._citations(self.stored.passage(copy))
        return Hit(
            rank=rank, score=score, text=passage.text, citation=citations[0], passage_id=passage_id,
            article=passage.article, also_in=tuple(citations[1:]), embedded=passage.embedded,
        )

    def _citations(self, passage: Passage) -> list[Citation]:
        article = self.stored.articles.get(passage.article)
        return [Citation.from_stored(source, article) for source in passage.sources]

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

    def search(self, question: str, *, k: int = 5, mode: str = DEFAULT_MODE, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` best distinct passages for ``question``, best first (see :meth:`hits`);
        fewer only when the ranking holds fewer. ``filters`` narrow the search to the passages
        they keep, inside retrieval (none kept: no hits)."""
        check_query(question, k=k, mode=mode)
        selection = self.select(filters)
        searchable = self.stored.count if selection is None else selection.count
        if searchable == 0:
            return []
        pool, read = max(k, CANDIDATES), 2 * k  # the fused pool of rank(k), read 2k deep for copies
        while True:
            depth = max(pool, (read + 1) // 2)
            ranked = self.rank(question, k=read, mode=mode, depth=depth, selection=selection)
            hits = self.hits(ranked, k=k)
            # A short dense or keyword ranking holds all there is; a short fused one may only
            # mean that both runs found the same passages (copies of one text), until the
            # runs are as deep as the index.
            exhausted = len(ranked) < read and (mode != "hybrid" or depth >= searchable)
            if len(hits) == k or exhausted:
                return hits
            read *= 2

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
from indexer.types import Paragraph, Passage
from query.display import visible
from query.encoder import QueryEncoder
from query.filters import Filters, PassageFilter, Selection
from query.fusion import Runs, with_true_zeros, zscore_fusion
from query.rescoring import CLAUSE_MIX, CLAUSE_TOP, ClauseRescorer
from query.results import Citation, Hit
from query.retrievers import DenseRetriever, KeywordRetriever

MODES = ("hybrid", "dense", "keyword")
DEFAULT_MODE = "hybrid"
CANDIDATES = 100
"""How many passages each retriever hands to fusion: deeper finds more of what only one
retriever ranks well, at a cost linear in the depth."""
PASSAGE_DEPTH = 400
"""How many nearest passages score paragraphs (and articles) by their best passage: deeper
reaches paragraphs whose best passage ranks low, at a cost linear in the depth."""
PARAGRAPH_DENSE_WEIGHT = 0.5
"""Weight of the dense run in z-score fusion of paragraphs (keyword gets 1 - this), chosen on
the mean over four datasets nobody tuned on (docs/experiments/retrieval-recipes.md)."""
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
        """The unit vector of ``question`` (kept for the next time it is asked)."""
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
        """(paragraph id, score) best first; the score is a cosine, a BM25 score or a fused score
        (see :meth:`ranking`)."""
        return self.ranking(question, k=k, mode=mode, depth=depth, rescore=rescore, selection=selection)[0][:k]

    def ranking(self, question: str, *, k: int, mode: str = DEFAULT_MODE, depth: int | None = None,
                rescore: bool = True, selection: Selection | None = None) -> tuple[list[tuple[int, float]], dict[int, int]]:
        """Paragraphs ranked for ``question`` as (paragraph id, score) best first, and the
        passage that matched best in each (for its hit).

        A paragraph's dense score is its best passage's cosine among the ``depth`` nearest
        passages (default :data:`PASSAGE_DEPTH`, at least 4 ``k``); its keyword score fuses
        BM25 over its whole text with its best passage's BM25 (half each: the whole paragraph
        holds the question's words spread over sentences, the best passage where they meet).
        Hybrid fuses the two, then (``rescore``) lifts the dense score of the top
        :data:`~query.rescoring.CLAUSE_TOP` paragraphs by the best clause of their best passage
        and fuses again. With ``selection`` only passages it keeps count.
        """
        check_query(question, k=k, mode=mode)
        depth = depth or max(PASSAGE_DEPTH, 4 * k)
        runs, shown = self.paragraph_runs(question, depth=depth, keyword_depth=max(CANDIDATES, k),
                                          mode=mode, selection=selection)
        if mode == "keyword" or not runs.dense:
            return runs.keyword, shown
        if mode == "dense" or not runs.keyword:
            return runs.dense, shown
        return self.fuse(runs, weights=[PARAGRAPH_DENSE_WEIGHT, 1 - PARAGRAPH_DENSE_WEIGHT], rescore=rescore), shown

    def paragraph_runs(self, question: str, *, depth: int = PASSAGE_DEPTH, keyword_depth: int = CANDIDATES,
                       mode: str = DEFAULT_MODE, selection: Selection | None = None) -> tuple[Runs, dict[int, int]]:
        """The dense and keyword runs over paragraphs (see :meth:`ranking`; ``mode`` skips the
        run it does not need), and each paragraph's best passage by either run."""
        vector, dense, best = None, [], {}
        if mode != "keyword":
            vector = self.embed_question(question)
            dense, best = self.best_per_paragraph(self.dense(vector, k=depth, selection=selection))
        keyword, keyword_best = [], {}
        if mode != "dense":
            found = self.keyword_retriever.search_paragraphs(question, k=keyword_depth + 1, selection=selection)
            whole = found[:keyword_depth]
            found_passages = self.keyword_retriever.search(question, k=depth, selection=selection)
            passages, keyword_best = self.best_per_paragraph(found_passages)
            passages = passages[:keyword_depth]
            # a run holding every item BM25 scores above zero counts the others at their true 0,
            # so a rare word found in one paragraph alone keeps the lead it earned
            if len(found) <= keyword_depth:
                whole = with_true_zeros(whole, [passages, dense])
            if len(found_passages) < depth:
                passages = with_true_zeros(passages, [whole, dense])
            keyword = zscore_fusion([whole, passages], weights=[0.5, 0.5])[:keyword_depth]
        return Runs(dense=dense, keyword=keyword, vector=vector, best_passage=best), {**keyword_best, **best}

    def best_per_paragraph(self, run: list[tuple[int, float]]) -> tuple[list[tuple[int, float]], dict[int, int]]:
        """(paragraph, its best passage's score) best first from a passage ``run`` (best first),
        and each paragraph's best passage."""
        import numpy as np

        if not run:
            return [], {}
        ids = np.fromiter((pid for pid, _ in run), dtype=np.int64, count=len(run))
        paragraphs = np.asarray(self.stored.paragraph_of[ids])
        first = np.sort(np.unique(paragraphs, return_index=True)[1])
        return ([(int(paragraphs[i]), run[i][1]) for i in first],
                {int(paragraphs[i]): int(ids[i]) for i in first})

    def fuse(self, runs: Runs, *, weights: list[float], rescore: bool = True, top: int = CLAUSE_TOP,
             mix: float = CLAUSE_MIX) -> list[tuple]:
        """z-score fusion of ``runs``; with ``rescore``, the ``top`` fused items that have a
        passage get their dense score lifted by its best clause (``mix``) and are fused again.
        A metadata passage (a title, a date) is one fact judged whole: a clause of the title it
        is embedded with would lift it for any question on the article's topic."""
        keyword = runs.keyword_scores()
        fused = zscore_fusion([runs.dense, keyword], weights=weights)
        if not rescore:
            return fused
        targets = [(item, pid) for item, _ in fused[:top]
                   if (pid := runs.passage(item)) is not None and not self.stored.passage(pid).kind.is_metadata]
        return zscore_fusion([self.clause_rescored(runs.dense, targets, runs.vector, mix=mix), keyword],
                             weights=weights)

    def clause_rescored(self, dense: list[tuple], targets: list[tuple], vector, *, mix: float = CLAUSE_MIX) -> list[tuple]:
        """``dense`` with each (item, passage id) in ``targets`` lifted by the best clause of
        that passage (see :class:`~query.rescoring.ClauseRescorer`)."""
        return self.rescorer.rescore(dense, targets, vector, mix=mix)

    def rank_articles(self, question: str, *, k: int, mode: str = DEFAULT_MODE, depth: int = PASSAGE_DEPTH,
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

    def article_runs(self, question: str, *, depth: int = PASSAGE_DEPTH, keyword_depth: int = CANDIDATES,
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

    def best_passage_per_article(self, vector, *, depth: int = PASSAGE_DEPTH) -> tuple[list[tuple[str, float]], dict[str, int]]:
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

    def hit(self, rank: int, paragraph: Paragraph, score: float, *, passage: Passage, copies: list[Paragraph]) -> Hit:
        """A ranked paragraph with its citations (``passage``: the one that matched best); the
        same text elsewhere (``copies``: a paragraph syndicated by two outlets, a file copied
        into two folders) adds its citations to ``also_in``."""
        citations = self._citations(paragraph.sources, paragraph.article)
        for copy in copies:
            citations += self._citations(copy.sources, copy.article)
        whole = passage.text == paragraph.text
        return Hit(
            rank=rank, score=score, text=paragraph.text, citation=citations[0], passage_id=passage.id,
            article=paragraph.article, also_in=tuple(citations[1:]), embedded=passage.embedded if whole else None,
            paragraph_id=paragraph.id,
        )

    def paragraph_copies(self, paragraph: Paragraph, passage: Passage) -> list[Paragraph]:
        """Other paragraphs of the same text: those of ``passage``'s copies that hold it whole."""
        copies = []
        for pid in self.stored.copies(passage):
            other = self.stored.paragraph(int(self.stored.paragraph_of[pid]))
            if other.id != paragraph.id and other.text == paragraph.text and all(o.id != other.id for o in copies):
                copies.append(other)
        return copies

    def _citations(self, sources: list, article_key: str) -> list[Citation]:
        article = self.stored.articles.get(article_key)
        return [Citation.from_stored(source, article) for source in sources]

    def hits(self, ranked: Sequence[tuple[int, float]], *, k: int, best: dict[int, int] | None = None) -> list[Hit]:
        """The first ``k`` distinct paragraphs of ``ranked`` as hits (``best``: each one's best
        passage, else its first). A paragraph of the same text as a better one is not a hit of
        its own; its citations are in that hit's ``also_in``, wherever it ranks."""
        hits: list[Hit] = []
        shown: set[int] = set()
        for number, score in ranked:
            if len(hits) == k:
                break
            if number in shown:
                continue
            paragraph = self.stored.paragraph(number)
            passage = self.stored.passage((best or {}).get(number, paragraph.passages[0]))
            copies = self.paragraph_copies(paragraph, passage)
            shown.update(copy.id for copy in copies)
            hits.append(self.hit(len(hits) + 1, paragraph, score, passage=passage, copies=copies))
        return hits

    def search(self, question: str, *, k: int = 5, mode: str = DEFAULT_MODE, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` best distinct paragraphs for ``question``, best first (see :meth:`hits`);
        fewer only when the ranking holds fewer. ``filters`` narrow the search to the passages
        they keep, inside retrieval (none kept: no hits)."""
        check_query(question, k=k, mode=mode)
        selection = self.select(filters)
        searchable = self.stored.count if selection is None else selection.count
        if searchable == 0:
            return []
        depth = max(PASSAGE_DEPTH, 4 * k)
        while True:
            ranked, best = self.ranking(question, k=k, mode=mode, depth=depth, selection=selection)
            hits = self.hits(ranked, k=k, best=best)
            if len(hits) == k or depth >= searchable:
                return hits
            depth *= 4  # copies of one text fill the ranking: read deeper

"""Retrieval quality on SciFact (train split) and the gold questions: the three modes, then
every fusion and rescoring option tried, one row each.

    python bench/quality.py [--limit N] [--modes-only] [--mpnet FOLDER]

The SciFact corpus is indexed once into the cache (~/.cache/semindex/beir) and reused; the
gold questions run against the bundled index. Options are rankers built here from the
searcher's own dense and keyword runs: the default's clause rescoring at other settings,
then other fusions and extra runs in place of it ("no rescoring, ..."), to be read against
the "hybrid without clause rescoring" row.
``--mpnet FOLDER`` (an all-mpnet-base-v2 sentence-transformers folder) adds the
stronger-bi-encoder rows: SciFact is then embedded a second time with it (about 40 minutes
on two cores, cached like the first).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.chunking import ChunkSettings  # noqa: E402
from indexer.incremental import BuildModel  # noqa: E402
from indexer.keyword import KeywordIndex, KeywordSettings  # noqa: E402
from indexer.onnx_export import cache_root  # noqa: E402
from query.evaluate import BEIR_PASSAGE_DEPTH, EvalReport, beir_index_path, evaluate_beir, evaluate_gold  # noqa: E402
from query.fusion import minmax_fusion, reciprocal_rank_fusion, zscore_fusion  # noqa: E402
from query.rescoring import CLAUSE_MIX, CLAUSE_TOP  # noqa: E402
from query.searcher import ARTICLE_DENSE_WEIGHT, CANDIDATES, DENSE_WEIGHT, MODES, Searcher, open_searcher  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"
Run = list[tuple]
Ranker = Callable[[Searcher, str], Run]


def passage_runs(searcher: Searcher, query: str) -> tuple[Run, Run, object, dict]:
    """Dense and keyword passage runs as the product's ``rank`` makes them, the question
    vector, and each item's passage (itself)."""
    vector = searcher.embed([query])[0]
    dense = searcher.dense(vector, k=CANDIDATES)
    keyword = searcher.keyword.search(query, k=CANDIDATES)
    return dense, keyword, vector, {pid: pid for pid, _ in dense + keyword}


def article_runs(searcher: Searcher, query: str) -> tuple[Run, Run, object, dict]:
    """Dense (best passage per article) and keyword (BM25 over whole articles) article runs,
    as ``rank_articles`` makes them, the question vector, and each article's best passage."""
    vector = searcher.embed([query])[0]
    best: dict[str, float] = {}
    best_passage: dict[str, int] = {}
    for pid, score in searcher.dense(vector, k=BEIR_PASSAGE_DEPTH):
        article = searcher.article_of(pid)
        if article not in best:
            best[article], best_passage[article] = score, pid
    keys = searcher.article_keys
    keyword = [(keys[row], score) for row, score in searcher.article_keyword.search(query, k=CANDIDATES)]
    return list(best.items()), keyword, vector, best_passage


def fused(runs, fusion: str, dense_weight: float) -> Ranker:
    """Dense and keyword runs fused by ``fusion`` (zscore, minmax or rrf)."""

    def rank(searcher: Searcher, query: str) -> Run:
        dense, keyword, _, _ = runs(searcher, query)
        weights = [dense_weight, 1 - dense_weight]
        if fusion == "rrf":
            return reciprocal_rank_fusion([dense, keyword], weights=weights)
        return (zscore_fusion if fusion == "zscore" else minmax_fusion)([dense, keyword], weights=weights)

    return rank


def rocchio(runs, dense_weight: float, *, top: int = 3, beta: float = 0.5) -> Ranker:
    """Dense pseudo-relevance feedback: the question vector moved towards the best passages of
    the top ``top`` fused results (q + beta * their mean, renormalised), searched again and fused."""
    import numpy as np

    def rank(searcher: Searcher, query: str) -> Run:
        dense, keyword, vector, passage_of = runs(searcher, query)
        first = zscore_fusion([dense, keyword], weights=[dense_weight, 1 - dense_weight])[:top]
        feedback = [searcher.stored.vectors.reconstruct(passage_of[key]) for key, _ in first if key in passage_of]
        moved = vector + beta * np.mean(feedback, axis=0) if feedback else vector
        moved = (moved / np.linalg.norm(moved)).astype("float32")
        again, _, _, _ = runs(_VectorOverride(searcher, moved), query)
        return zscore_fusion([again, keyword], weights=[dense_weight, 1 - dense_weight])

    return rank


class _VectorOverride:
    """A searcher whose ``embed`` returns a given vector (for searching with a moved question)."""

    def __init__(self, searcher: Searcher, vector) -> None:
        self._searcher, self._vector = searcher, vector

    def embed(self, texts):
        return self._vector.reshape(1, -1)

    def __getattr__(self, name):
        return getattr(self._searcher, name)


def title_bm25(weight: float) -> Ranker:
    """A third z-scored run: BM25 over article titles only, at ``weight`` (dense and keyword
    share the rest equally)."""
    indexes: dict[int, KeywordIndex] = {}

    def rank(searcher: Searcher, query: str) -> Run:
        titles = indexes.get(id(searcher))
        if titles is None:
            folder = Path(tempfile.mkdtemp(prefix="semindex-titles-"))
            titles = KeywordIndex(folder, KeywordSettings())
            titles.build([searcher.stored.articles[key].get("title") or "" for key in searcher.article_keys])
            indexes[id(searcher)] = titles
        dense, keyword, _, _ = article_runs(searcher, query)
        keys = searcher.article_keys
        title_run = [(keys[row], score) for row, score in titles.search(query, k=CANDIDATES)]
        rest = (1 - weight) / 2
        return zscore_fusion([dense, keyword, title_run], weights=[rest, rest, weight])

    return rank


def clause_rescoring(runs, dense_weight: float, *, top: int, mix: float) -> Ranker:
    """The default's clause rescoring (``Searcher.clause_rescored``) at another depth ``top``
    or ``mix``."""

    def rank(searcher: Searcher, query: str) -> Run:
        dense, keyword, vector, passage_of = runs(searcher, query)
        weights = [dense_weight, 1 - dense_weight]
        first = zscore_fusion([dense, keyword], weights=weights)[:top]
        targets = [(key, passage_of[key]) for key, _ in first if key in passage_of]
        return zscore_fusion([searcher.clause_rescored(dense, targets, vector, mix=mix), keyword], weights=weights)

    return rank


def with_mpnet_articles(mpnet: Searcher, weights: tuple[float, float, float]) -> Ranker:
    """A third run: all-mpnet-base-v2's best passage per article (its own index of the same
    corpus), z-scored and fused with MiniLM dense and BM25 at ``weights``."""

    def rank(searcher: Searcher, query: str) -> Run:
        dense, keyword, _, _ = article_runs(searcher, query)
        second = article_runs(mpnet, query)[0] if weights[1] else []
        return zscore_fusion([dense, second, keyword], weights=list(weights))

    return rank


def with_mpnet_passages(model: str, weights: tuple[float, float, float]) -> Ranker:
    """A third run over the same passages: their all-mpnet-base-v2 cosines (every passage of
    the small bundled index embedded once with it)."""
    from indexer.embedder import Embedder

    cache: dict[int, object] = {}
    embedder = Embedder(model=model)

    def rank(searcher: Searcher, query: str) -> Run:
        if id(searcher) not in cache:
            passages = searcher.stored.passages()
            cache[id(searcher)] = embedder.encode([p.get("embedded") or p["text"] for p in passages])
        dense, keyword, _, _ = passage_runs(searcher, query)
        cosines = cache[id(searcher)] @ embedder.encode([query])[0]
        second = sorted(((pid, float(c)) for pid, c in enumerate(cosines)), key=lambda item: -item[1])[:CANDIDATES]
        return zscore_fusion([dense, second, keyword], weights=list(weights))

    return rank


def print_table(rows: list[tuple[str, EvalReport]]) -> None:
    header = f"| {'target':<15}| {'mode or option':<58}| nDCG@10 | Recall@100 | MRR@10 | hit@1 | abstain | queries | mean ms |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for target, report in rows:
        row = report.to_dict()
        print(
            f"| {target:<15}| {row['mode']:<58}| {fmt(row['ndcg@10']):>7} | {fmt(row['recall@100']):>10} | "
            f"{fmt(row['mrr@10']):>6} | {fmt(row['hit@1']):>5} | {fmt(row['abstain']):>7} | {row['queries']:>7} | "
            f"{row['latency_mean_ms']:>7.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N SciFact queries only")
    parser.add_argument("--modes-only", action="store_true", help="the three modes, no option rows")
    parser.add_argument("--mpnet", type=str, default=None, help="all-mpnet-base-v2 folder: add its rows")
    args = parser.parse_args()
    scifact, index = SHARED / "scifact", ROOT / "index"
    question_sets = {"gold questions": SHARED / "questions.yaml", "paraphrases": ROOT / "bench" / "calibration_questions.yaml"}
    beir = lambda label, ranker: [("SciFact train", evaluate_beir(scifact, ranker=ranker, label=label, limit=args.limit))]  # noqa: E731
    questions = lambda label, ranker: [(name, evaluate_gold(path, index=index, ranker=ranker, label=label))  # noqa: E731
                                       for name, path in question_sets.items()]

    rows = [("SciFact train", evaluate_beir(scifact, mode=mode, limit=args.limit, progress=True)) for mode in MODES]
    rows += [(name, evaluate_gold(path, index=index, mode=mode)) for name, path in question_sets.items() for mode in MODES]
    print_table(rows)
    if args.modes_only:
        return
    a, p = ARTICLE_DENSE_WEIGHT, DENSE_WEIGHT
    clause_settings = ((3, CLAUSE_MIX), (10, CLAUSE_MIX), (CLAUSE_TOP, 0.5), (CLAUSE_TOP, 1.0))
    options = beir("hybrid without clause rescoring (z-score fusion only)",
                   lambda s, q: s.rank_articles(q, k=CANDIDATES, depth=BEIR_PASSAGE_DEPTH, rescore=False))
    for top, mix in clause_settings:
        options += beir(f"clause rescoring of the top {top}, mix {mix}", clause_rescoring(article_runs, a, top=top, mix=mix))
    options += [
        *beir("no rescoring, reciprocal rank fusion (k=60)", fused(article_runs, "rrf", 0.5)),
        *beir("no rescoring, min-max fusion", fused(article_runs, "minmax", a)),
        *beir("no rescoring, z-score dense weight 0.4", fused(article_runs, "zscore", 0.4)),
        *beir("no rescoring, z-score dense weight 0.6", fused(article_runs, "zscore", 0.6)),
        *beir("no rescoring + dense Rocchio PRF (top 3, beta 0.5)", rocchio(article_runs, a)),
        *beir("no rescoring + BM25 over titles, third run at 0.1", title_bm25(0.1)),
    ]
    options += questions("hybrid without clause rescoring (z-score fusion only)",
                         lambda s, q: s.rank(q, k=CANDIDATES, rescore=False))
    for top, mix in clause_settings:
        options += questions(f"clause rescoring of the top {top}, mix {mix}", clause_rescoring(passage_runs, p, top=top, mix=mix))
    options += [
        *questions("no rescoring, reciprocal rank fusion (k=60)", fused(passage_runs, "rrf", 0.5)),
        *questions("no rescoring, min-max fusion", fused(passage_runs, "minmax", p)),
        *questions("no rescoring, z-score dense weight 0.5", fused(passage_runs, "zscore", 0.5)),
        *questions("no rescoring, z-score dense weight 0.7", fused(passage_runs, "zscore", 0.7)),
        *questions("no rescoring + dense Rocchio PRF (top 3, beta 0.5)", rocchio(passage_runs, p)),
    ]
    if args.mpnet:
        options.append(("SciFact train", evaluate_beir(scifact, mode="dense", model=args.mpnet, limit=args.limit,
                                                       progress=True, label="dense, all-mpnet-base-v2 alone")))
        mpnet = open_searcher(beir_index_path(scifact, cache=cache_root(), model=args.mpnet, settings=ChunkSettings(),
                                              precision=BuildModel(model=args.mpnet).precision))
        for weights in ((0.25, 0.25, 0.5), (0.3, 0.2, 0.5), (0.0, 0.5, 0.5)):
            options += beir("no rescoring + mpnet run (MiniLM/mpnet/BM25 {}/{}/{})".format(*weights),
                            with_mpnet_articles(mpnet, weights))
        for weights in ((0.3, 0.3, 0.4), (0.0, 0.6, 0.4)):
            options += questions("no rescoring + mpnet run (MiniLM/mpnet/BM25 {}/{}/{})".format(*weights),
                                 with_mpnet_passages(args.mpnet, weights))
    print()
    print_table(options)


if __name__ == "__main__":
    main()

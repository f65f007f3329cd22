"""Retrieval quality on SciFact (train split) and the gold questions: the three modes, then
every fusion and rescoring option tried, one row each.

    python bench/quality.py [--limit N] [--modes-only] [--mpnet FOLDER] [--beir FOLDER] [--split S]

``--beir`` measures another copy of a BEIR benchmark in place of ``../shared/eval/scifact``
(its ``test`` split where it has one, unless ``--split`` names another).

The SciFact corpus is indexed once into the cache (~/.cache/semindex/beir) and reused; the
question sets (the gold questions, bench/calibration_questions.yaml's paraphrases, and the
written development, test and fresh sets bench/dev_questions.yaml, bench/test_questions.yaml,
bench/fresh_questions.yaml) run
against the bundled index. Options are rankers built here from the
searcher's own dense and keyword runs: the default's clause rescoring at other settings,
then other fusions and extra runs in place of it ("no rescoring, ..."), to be read against
the "hybrid without clause rescoring" row.
``--mpnet FOLDER`` (an all-mpnet-base-v2 sentence-transformers folder) adds the
stronger-bi-encoder rows: SciFact is then embedded a second time with it (about 20 minutes
at int8 on two cores, cached like the first).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.keyword import KeywordIndex, KeywordSettings  # noqa: E402
from query.beir import BeirFormatError, load_beir  # noqa: E402
from query.evaluate import BEIR_PASSAGE_DEPTH, EvalReport, Ranker, cached_beir_index, evaluate_beir, evaluate_gold  # noqa: E402
from bench.fusion_variants import minmax_fusion, reciprocal_rank_fusion  # noqa: E402
from query.fusion import Runs, zscore_fusion  # noqa: E402
from query.rescoring import CLAUSE_MIX, CLAUSE_TOP  # noqa: E402
from query.index import open_searcher  # noqa: E402
from query.searcher import ARTICLE_DENSE_WEIGHT, CANDIDATES, DENSE_WEIGHT, MODES, Searcher  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"


def passage_runs(searcher: Searcher, query: str) -> Runs:
    """The passage runs the product's ``rank`` fuses."""
    return searcher.passage_runs(query, depth=CANDIDATES)


def article_runs(searcher: Searcher, query: str) -> Runs:
    """The article runs the product's ``rank_articles`` fuses."""
    return searcher.article_runs(query, depth=BEIR_PASSAGE_DEPTH)


def fused(runs, fusion: str, dense_weight: float) -> Ranker:
    """Dense and keyword runs fused by ``fusion`` (zscore, minmax or rrf), no rescoring."""

    def rank(searcher: Searcher, query: str) -> list:
        found = runs(searcher, query)
        weights = [dense_weight, 1 - dense_weight]
        if fusion == "rrf":
            return reciprocal_rank_fusion([found.dense, found.keyword], weights=weights)
        return (zscore_fusion if fusion == "zscore" else minmax_fusion)([found.dense, found.keyword_scores()],
                                                                        weights=weights)

    return rank


def clause_rescoring(runs, dense_weight: float, *, top: int, mix: float) -> Ranker:
    """The default's fusion and clause rescoring (``Searcher.fuse``) at another ``top`` or ``mix``."""
    return lambda searcher, query: searcher.fuse(runs(searcher, query), weights=[dense_weight, 1 - dense_weight],
                                                 top=top, mix=mix)


def rocchio(runs, dense_weight: float, *, top: int = 3, beta: float = 0.5) -> Ranker:
    """Dense pseudo-relevance feedback: the question vector moved towards the passages of the
    top ``top`` fused results (q + beta * their mean, renormalised), searched again and fused
    with the same keyword run."""
    import numpy as np

    def rank(searcher: Searcher, query: str) -> list:
        found = runs(searcher, query)
        weights = [dense_weight, 1 - dense_weight]
        first = zscore_fusion([found.dense, found.keyword_scores()], weights=weights)[:top]
        feedback = [searcher.stored.vectors.reconstruct(found.passage(item)) for item, _ in first
                    if found.passage(item) is not None]
        moved = found.vector + beta * np.mean(feedback, axis=0) if feedback else found.vector
        moved = (moved / np.linalg.norm(moved)).astype("float32")
        if runs is article_runs:
            again, _ = searcher.best_passage_per_article(moved, depth=BEIR_PASSAGE_DEPTH)
        else:
            again = searcher.dense(moved, k=CANDIDATES)
        return zscore_fusion([again, found.keyword_scores()], weights=weights)

    return rank


def title_bm25(weight: float) -> Ranker:
    """A third z-scored run: BM25 over article titles only, at ``weight`` (dense and keyword
    share the rest equally), no rescoring."""
    folders: dict[int, tempfile.TemporaryDirectory] = {}
    indexes: dict[int, KeywordIndex] = {}

    def rank(searcher: Searcher, query: str) -> list:
        if id(searcher) not in indexes:
            folders[id(searcher)] = tempfile.TemporaryDirectory(prefix="semindex-titles-")
            titles = KeywordIndex(Path(folders[id(searcher)].name), KeywordSettings.from_dict(searcher.stored.manifest["keyword"]))
            titles.build([searcher.stored.articles[key].get("title") or "" for key in searcher.article_keys])
            indexes[id(searcher)] = titles
        found = article_runs(searcher, query)
        keys = searcher.article_keys
        title_run = [(keys[row], score) for row, score in indexes[id(searcher)].search(query, k=CANDIDATES)]
        rest = (1 - weight) / 2
        return zscore_fusion([found.dense, found.keyword_scores(), title_run], weights=[rest, rest, weight])

    return rank


def with_mpnet_articles(mpnet: Searcher, weights: tuple[float, float, float]) -> Ranker:
    """A third run: all-mpnet-base-v2's best passage per article (its own index of the same
    corpus), z-scored and fused with MiniLM dense and BM25 at ``weights`` (a zero weight
    skips that run), no rescoring."""

    def rank(searcher: Searcher, query: str) -> list:
        found = searcher.article_runs(query, depth=BEIR_PASSAGE_DEPTH, mode="hybrid" if weights[0] else "keyword")
        second = article_runs(mpnet, query).dense if weights[1] else []
        return zscore_fusion([found.dense, second, found.keyword_scores([found.dense, second])], weights=list(weights))

    return rank


def with_mpnet_passages(embedder, weights: tuple[float, float, float]) -> Ranker:
    """A third run over the same passages: their all-mpnet-base-v2 cosines (every passage of
    the small bundled index embedded once with ``embedder``); a zero weight skips a run."""
    vectors: dict[int, object] = {}

    def rank(searcher: Searcher, query: str) -> list:
        if id(searcher) not in vectors:
            passages = searcher.stored.passages()
            vectors[id(searcher)] = embedder.encode([p.embed_text for p in passages])
        found = passage_runs(searcher, query)
        cosines = vectors[id(searcher)] @ embedder.encode([query])[0]
        second = sorted(((pid, float(c)) for pid, c in enumerate(cosines)), key=lambda item: -item[1])[:CANDIDATES]
        first = found.dense if weights[0] else []
        return zscore_fusion([first, second, found.keyword_scores([first, second])], weights=list(weights))

    return rank


def print_table(rows: list[tuple[str, EvalReport]]) -> None:
    header = f"| {'target':<15}| {'mode or option':<58}| nDCG@10 | Recall@100 | MRR@10 | hit@1 | abstain | answer | queries | mean ms |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for target, report in rows:
        row = report.to_dict()
        print(
            f"| {target:<15}| {row['mode']:<58}| {fmt(row['ndcg@10']):>7} | {fmt(row['recall@100']):>10} | "
            f"{fmt(row['mrr@10']):>6} | {fmt(row['hit@1']):>5} | {fmt(row['abstain']):>7} | {fmt(row['answer']):>6} | {row['queries']:>7} | "
            f"{row['latency_mean_ms']:>7.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N SciFact queries only")
    parser.add_argument("--modes-only", action="store_true", help="the three modes, no option rows")
    parser.add_argument("--mpnet", type=str, default=None, help="all-mpnet-base-v2 folder: add its rows")
    parser.add_argument("--beir", type=Path, default=SHARED / "scifact", help="BEIR folder (default: the shared SciFact)")
    parser.add_argument("--split", type=str, default=None, help="its qrels split (default: test if present, else its only one)")
    args = parser.parse_args()
    scifact, index = args.beir, ROOT / "index"
    try:
        split = load_beir(scifact, split=args.split).split
    except BeirFormatError as error:
        sys.exit(f"error: {error}")
    name = f"{'SciFact' if args.beir == SHARED / 'scifact' else scifact.name} {split}"
    question_sets = {"gold questions": SHARED / "questions.yaml", "paraphrases": ROOT / "bench" / "calibration_questions.yaml",
                     "written, dev": ROOT / "bench" / "dev_questions.yaml",
                     "written, test": ROOT / "bench" / "test_questions.yaml",
                     "written, fresh": ROOT / "bench" / "fresh_questions.yaml"}
    beir = lambda label, ranker: [(name, evaluate_beir(scifact, split=split, ranker=ranker, label=label,  # noqa: E731
                                                      limit=args.limit))]
    questions = lambda label, ranker: [(name, evaluate_gold(path, index=index, ranker=ranker, label=label))  # noqa: E731
                                       for name, path in question_sets.items()]

    rows = [(name, evaluate_beir(scifact, split=split, mode=mode, limit=args.limit, progress=True)) for mode in MODES]
    rows += [(name, evaluate_gold(path, index=index, mode=mode)) for name, path in question_sets.items() for mode in MODES]
    print_table(rows)
    if args.modes_only:
        return
    a, p = ARTICLE_DENSE_WEIGHT, DENSE_WEIGHT
    clause_settings = ((5, CLAUSE_MIX), (10, CLAUSE_MIX), (CLAUSE_TOP, 0.5), (CLAUSE_TOP, 1.0))
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
        options.append((name, evaluate_beir(scifact, split=split, mode="dense", model=args.mpnet, limit=args.limit,
                                            progress=True, label="dense, all-mpnet-base-v2 alone")))
        mpnet = open_searcher(cached_beir_index(scifact, load_beir(scifact, split=split), model=args.mpnet))
        for weights in ((0.25, 0.25, 0.5), (0.2, 0.3, 0.5), (0.3, 0.2, 0.5), (0.0, 0.5, 0.5)):
            options += beir("no rescoring + mpnet run (MiniLM/mpnet/BM25 {}/{}/{})".format(*weights),
                            with_mpnet_articles(mpnet, weights))
        from indexer.embedder import Embedder

        embedder = Embedder(model=args.mpnet)
        for weights in ((0.3, 0.3, 0.4), (0.0, 0.6, 0.4)):
            options += questions("no rescoring + mpnet run (MiniLM/mpnet/BM25 {}/{}/{})".format(*weights),
                                 with_mpnet_passages(embedder, weights))
    print()
    print_table(options)


if __name__ == "__main__":
    main()

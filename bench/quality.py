"""Retrieval quality on four datasets, side by side with simple references: one table, one run.

    python bench/quality.py [--limit N] [--datasets scifact msmarco squad gold]

Rows (development data in ../shared/eval; none was written here except the gold questions):

- ``scifact``: SciFact's train split (BEIR layout), nDCG@10 over documents;
- ``msmarco``: TREC-DL19 queries over 5,000 MS MARCO passages (BEIR layout), nDCG@10;
- ``squad``: 24 SQuAD v1.1 dev articles, each one file, para@1: the top hit lies in the
  question's own paragraph and holds a gold answer (the questions ``semindex eval`` picks,
  the first ``--limit``);
- ``gold``: questions.yaml over the bundled index, hit@1: the top hit is from one of the
  question's sources and holds an answer.

Columns: the product's three modes (``default`` is hybrid), then two references over whole
units (documents on BEIR, paragraphs elsewhere): MiniLM embedding the unit whole (truncated
where the model stops reading) and BM25 over the unit's text. The whole-unit vectors are
embedded once and kept in the eval cache.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from query.evaluate import BEIR_PASSAGE_DEPTH, evaluate_beir, evaluate_gold  # noqa: E402
from query.searcher import MODES, Searcher  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"
DATASETS = ("scifact", "msmarco", "squad", "gold")
COLUMNS = ("default", "dense", "keyword", "MiniLM whole", "BM25 whole")
DEPTH = 100


def whole_vectors(searcher: Searcher, units: list[tuple[object, str]]):
    """Unit vectors of each (key, text) embedded whole, cached by the generation and texts."""
    import numpy as np

    from indexer.onnx_export import cache_root

    digest = hashlib.sha256(searcher.stored.generation.resolve().as_posix().encode())
    for _, text in units:
        digest.update(text.encode("utf-8") + b"\0")
    path = cache_root() / "bench-whole" / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    vectors = np.concatenate([searcher.embed([text for _, text in units[i:i + 64]]) for i in range(0, len(units), 64)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def dense_whole(units_of):
    """A ranker scoring each unit of ``units_of(searcher)`` by its own vector's cosine."""
    import numpy as np

    memo: dict[int, tuple] = {}

    def rank(searcher: Searcher, question: str) -> list:
        if id(searcher) not in memo:
            units = units_of(searcher)
            memo[id(searcher)] = ([key for key, _ in units], whole_vectors(searcher, units))
        keys, vectors = memo[id(searcher)]
        scores = vectors @ searcher.embed_question(question)
        top = np.argsort(-scores, kind="stable")[:DEPTH]
        return [(keys[i], float(scores[i])) for i in top]

    return rank


def paragraph_units(searcher: Searcher) -> list[tuple[int, str]]:
    return [(p.id, p.index_text) for p in searcher.stored.paragraphs()]


def article_units(searcher: Searcher) -> list[tuple[str, str]]:
    texts: dict[str, list[str]] = {}
    for paragraph in searcher.stored.paragraphs():
        texts.setdefault(paragraph.article, []).append(paragraph.text)
    return [(key, "\n\n".join(parts)) for key, parts in texts.items()]


def bm25_paragraphs(searcher: Searcher, question: str) -> list:
    return searcher.keyword_retriever.search_paragraphs(question, k=DEPTH)


def bm25_articles(searcher: Searcher, question: str) -> list:
    return searcher.keyword_retriever.search_articles(question, k=DEPTH)


def beir_row(folder: Path, *, split: str | None, limit: int | None) -> list[float]:
    def score(**how) -> float:
        return evaluate_beir(folder, split=split, limit=limit, progress=True, **how).scores["ndcg@10"]

    return [*(score(mode=mode) for mode in MODES), score(ranker=dense_whole(article_units), label="whole"),
            score(ranker=bm25_articles, label="bm25")]


def gold_row(limit: int | None) -> list[float]:
    def score(**how) -> float:
        return evaluate_gold(SHARED / "questions.yaml", index=ROOT / "index", limit=limit, **how).scores["hit@1"]

    return [*(score(mode=mode) for mode in MODES), score(ranker=dense_whole(paragraph_units), label="whole"),
            score(ranker=bm25_paragraphs, label="bm25")]


def squad_row(limit: int | None) -> list[float]:
    """para@1 of each column over the questions ``semindex eval`` asks of the SQuAD file."""
    from query.index import open_searcher
    from query.results import Answer
    from query.squad import cached_squad_index, load_squad, pick_questions, score_question

    path = SHARED / "squad" / "dev-v1.1-half.json"
    indexed, questions = pick_questions(load_squad(path), limit=limit)
    searcher = open_searcher(cached_squad_index(path, indexed, progress=True))
    questions = [question for question in questions if question.answers]
    rankers = [*(lambda s, q, m=mode: s.ranking(q, k=5, mode=m) for mode in MODES),
               lambda s, q, r=dense_whole(paragraph_units): (r(s, q), None),
               lambda s, q: (bm25_paragraphs(s, q), None)]
    row = []
    for rank in rankers:
        right = 0.0
        for question in questions:
            ranked, best = rank(searcher, question.question)
            hits = searcher.hits(ranked, k=1, best=best)
            none = Answer(question=question.question, answer=None, confident=False, confidence=0.0, citations=[], hits=hits)
            right += score_question(question, none, hits)["para@1"]
        row.append(right / len(questions))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="the first N questions of each dataset")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    args = parser.parse_args()
    rows = {}
    for name in args.datasets:
        if name == "scifact":
            rows[name] = beir_row(SHARED / "scifact", split="train", limit=args.limit)
        elif name == "msmarco":
            rows[name] = beir_row(SHARED / "msmarco5k", split=None, limit=args.limit)
        elif name == "squad":
            rows[name] = squad_row(args.limit)
        else:
            rows[name] = gold_row(args.limit)
    measure = {"scifact": "nDCG@10", "msmarco": "nDCG@10", "squad": "para@1", "gold": "hit@1"}
    print("| data | measure | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "--:|" * len(COLUMNS))
    for name, row in rows.items():
        print(f"| {name} | {measure[name]} | " + " | ".join(f"{value:.3f}" for value in row) + " |")
    means = [sum(row[i] for row in rows.values()) / len(rows) for i in range(len(COLUMNS))]
    print("| mean | | " + " | ".join(f"{value:.3f}" for value in means) + " |")
    print(f"(BEIR rankings read {BEIR_PASSAGE_DEPTH} passages deep; references rank {DEPTH} units)")


if __name__ == "__main__":
    main()

"""Filtered dense search at scale: latency and recall@10 of filters keeping 50%, 1% and 0.01%
of the passages, next to the unfiltered query.

    python bench/filters.py --source INDEX [--size 1000000] [--queries 200]

Vectors as in bench/scale.py: the real MiniLM passage vectors of INDEX (any built index),
repeated with Gaussian perturbation up to ``--size``, indexed by ``build_faiss_index`` with
the factory and search parameters ``semindex build`` records for that size; queries are
SciFact claims embedded by INDEX's query path. Metadata: the passages belong to articles of
ten passages each (assigned at random), with a date over 1,000 days, one of 100 publishers
and topics, written to ``metadata.sqlite`` by ``indexer.metadata.write_metadata`` and read
back by the query side's ``PassageFilter``. The filters: ``since`` the median date (50%),
``until`` the 10th percentile date (10%), one publisher (1%), one topic held by 0.01%. Each query runs the query path's
``DenseRetriever.search`` (one thread) with the filter's selection, the selection cached after
its first use as in a running server; "first use" is the time to build it from the columns.
Recall@10 is against exact search over the kept vectors. ``--sqlite`` adds the comparison
with resolving each filter by an SQL query instead (docs/experiments/filters.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ARTICLE_PASSAGES = 10
PUBLISHERS = 100
FIRST_DAY = datetime.date(2022, 1, 1)


class Row:
    """The fields of a passage ``write_metadata`` reads."""

    __slots__ = ("id", "article", "sources", "files")

    def __init__(self, number: int, article: str, file: str) -> None:
        self.id, self.article = number, article
        self.sources = [SimpleNamespace(file=file)]
        self.files = {file}


def write_synthetic_metadata(path: Path, size: int, *, seed: int = 0):
    """metadata.sqlite for ``size`` passages; returns the filters to measure and seconds taken."""
    import numpy as np

    from indexer.metadata import write_metadata
    from indexer.types import Article
    from query.filters import Filters

    rng = np.random.default_rng(seed)
    count = size // ARTICLE_PASSAGES
    article_of = rng.permutation(np.repeat(np.arange(count), ARTICLE_PASSAGES))
    days = rng.integers(0, 1000, count)
    publishers = rng.integers(0, PUBLISHERS, count)
    rare = set(rng.choice(count, max(1, size // 10_000 // ARTICLE_PASSAGES), replace=False).tolist())
    articles = {
        f"a{n:07d}": Article(key=f"a{n:07d}", publisher=f"Publisher {publishers[n]}",
                             published=(FIRST_DAY + datetime.timedelta(days=int(days[n]))).isoformat(),
                             topics=["Rare"] if n in rare else [f"Topic {n % 100}"])
        for n in range(count)
    }
    rows = [Row(number, f"a{article_of[number]:07d}", f"news/{article_of[number] % 1000:03d}/a{article_of[number]:07d}.md")
            for number in range(size)]
    began = time.perf_counter()
    write_metadata(path, passages=rows, articles=articles)
    seconds = time.perf_counter() - began
    median = FIRST_DAY + datetime.timedelta(days=int(np.median(days[article_of])))
    tenth = FIRST_DAY + datetime.timedelta(days=int(np.percentile(days[article_of], 10)))
    filters = [("since median date (~50%)", Filters.from_args(since=median)),
               ("until 10th percentile date (~10%)", Filters.from_args(until=tenth)),
               ("one publisher (~1%)", Filters.from_args(publisher="publisher 7")),
               ("one topic (0.01%)", Filters.from_args(topic="RARE"))]
    return filters, seconds


def exact_truth(vectors, queries, masks, k: int = 10):
    """For each mask, the exact top ``k`` kept ids per query (blocks of 100k rows)."""
    import numpy as np

    best = [(np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1)) for _ in masks]
    for start in range(0, len(vectors), 100_000):
        scores = vectors[start:start + 100_000] @ queries.T  # rows x queries
        for number, mask in enumerate(masks):
            kept = np.where(mask[start:start + len(scores), None], scores, -np.inf).T
            ids = np.broadcast_to(np.arange(start, start + len(scores)), kept.shape)
            merged_scores = np.concatenate([best[number][0], kept], axis=1)
            merged_ids = np.concatenate([best[number][1], ids], axis=1)
            top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
            top_scores, top_ids = np.take_along_axis(merged_scores, top, 1), np.take_along_axis(merged_ids, top, 1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            best[number] = (np.take_along_axis(top_scores, order, 1), np.take_along_axis(top_ids, order, 1))
    return [[row[np.isfinite(scores)].tolist() for row, scores in zip(ids, scores_)] for scores_, ids in best]


def measure(retriever, queries, selections, truths) -> list[dict]:
    """Per selection: p50, p99 and recall@10 over ``queries``, each query asked with every
    selection in turn (so a busy moment of a shared machine costs every row alike)."""
    import numpy as np

    latencies = [[] for _ in selections]
    recalls = [[] for _ in selections]
    for number, query in enumerate(queries):
        for row, selection in enumerate(selections):
            began = time.perf_counter()
            found = retriever.search(query, k=10, selection=selection)
            latencies[row].append((time.perf_counter() - began) * 1000)
            if expected := truths[row][number]:
                recalls[row].append(len({pid for pid, _ in found} & set(expected)) / len(expected))
    return [{"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
             "recall": float(np.mean(found))} for times, found in zip(latencies, recalls)]


def sqlite_resolution(store, filters) -> float:
    """Seconds to get the kept passage ids by one SQL query (the alternative to the arrays)."""
    conditions, parameters = [], []
    if filters.since:
        conditions.append("a.published >= ?")
        parameters.append(filters.since.isoformat())
    if filters.until:
        conditions.append("a.published <= ?")
        parameters.append(filters.until.isoformat())
    if filters.publisher:
        conditions.append("a.publisher_folded = ?")
        parameters.append(filters.publisher.casefold())
    if filters.topic:
        conditions.append("a.id IN (SELECT article FROM topics WHERE topic_folded = ?)")
        parameters.append(filters.topic.casefold())
    began = time.perf_counter()
    store.query(f"SELECT p.id FROM passages p JOIN articles a ON a.id = p.article WHERE {' AND '.join(conditions)}",
                tuple(parameters))
    return time.perf_counter() - began


def main() -> None:
    import faiss
    import numpy as np

    from indexer.faiss_build import build_faiss_index, choose_factory, default_search_params, in_blocks
    from indexer.metadata import METADATA, MetadataStore
    from query.filters import PassageFilter, passage_mask
    from query.retrievers import DenseRetriever
    from scale import claim_vectors, perturbed, source_vectors

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a built index whose vectors are repeated")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sqlite", action="store_true", help="also time resolving filters by SQL")
    args = parser.parse_args()
    base = source_vectors(args.source)
    queries = claim_vectors(args.source, args.queries)
    vectors = perturbed(base, args.size, seed=args.size)
    factory, params = choose_factory(args.size), default_search_params(choose_factory(args.size), args.size)
    began = time.perf_counter()
    index = build_faiss_index(factory, dimension=vectors.shape[1], count=len(vectors), blocks=in_blocks(vectors))
    built = time.perf_counter() - began
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)
    faiss.omp_set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="semindex-filters-") as scratch:
        generation = Path(scratch)
        filters, write_s = write_synthetic_metadata(generation / METADATA, args.size)
        stored = SimpleNamespace(generation=generation, index=generation, count=args.size, dimension=index.d, vectors=index,
                                 manifest=SimpleNamespace(factory=factory, search_params=params))
        began = time.perf_counter()
        passage_filter = PassageFilter(stored)
        passage_filter.columns
        load_s = time.perf_counter() - began
        size_mib = (generation / METADATA).stat().st_size / 2**20
        store = MetadataStore(generation / METADATA)
        retriever = DenseRetriever(stored)
        selections = [passage_filter.select(f) for _, f in filters]
        truth = exact_truth(vectors, queries, [s.mask for s in selections] + [np.ones(args.size, dtype=bool)])
        del vectors
        rows = [("none (unfiltered)", None, None, None, truth[-1])]
        for (label, chosen), selection, expected in zip(filters, selections, truth):
            began = time.perf_counter()
            passage_mask(passage_filter.columns, chosen)
            first = (time.perf_counter() - began) * 1000
            sql = sqlite_resolution(store, chosen) * 1000 if args.sqlite else None
            rows.append((label, selection, first, sql, expected))
        print(f"{args.size:,} passages, {args.size // ARTICLE_PASSAGES:,} articles; {factory} ({params or '-'}), "
              f"built in {built:.0f}s; metadata.sqlite {size_mib:.0f} MiB written in {write_s:.1f}s, "
              f"read into arrays in {load_s:.1f}s; {len(queries)} queries, 1 thread; cores: {os.cpu_count()}")
        print("| filter | kept passages | first use ms | p50 ms | p99 ms | p50 / unfiltered | recall@10 |"
              + (" SQL query ms |" if args.sqlite else ""))
        print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.sqlite else ""))
        results = measure(retriever, queries, [row[1] for row in rows], [row[4] for row in rows])
        unfiltered = results[0]["p50"]
        for (label, selection, first, sql, _), result in zip(rows, results):
            kept = args.size if selection is None else selection.count
            print(f"| {label} | {kept:,} ({kept / args.size:.2%}) | {'-' if first is None else f'{first:.1f}'} | "
                  f"{result['p50']:.2f} | {result['p99']:.2f} | {result['p50'] / unfiltered:.2f} | {result['recall']:.3f} |"
                  + (f" {'-' if sql is None else f'{sql:.0f}'} |" if args.sqlite else ""), flush=True)


if __name__ == "__main__":
    main()

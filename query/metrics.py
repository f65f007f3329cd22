"""Information-retrieval metrics with trec_eval / pytrec_eval (and so BEIR) semantics.

Conventions shared by every metric here:

* A *ranking* is an ordered sequence of document ids, best first. Ties are whatever
  order the caller put them in; to reproduce trec_eval on scored results, build the
  ranking with :func:`rank_with_ties`.
* *qrels* map document id -> integer grade. Grade ``<= 0`` (and any document absent
  from the qrels) is not relevant; ``>= 1`` is relevant. This is trec_eval's default
  ``relevance_level`` of 1.
* Duplicate ids in a ranking (several passages of one document) are collapsed by the
  metric functions themselves with :func:`dedupe_ranking`: the first occurrence keeps
  its place and later ones are dropped *before* the cutoff, so ``k`` counts distinct
  documents. (trec_eval refuses duplicates outright. In a score-sorted passage list
  the first occurrence is the best passage, so this is the "MaxP" document score, and
  it stops a document from earning gain twice.)
* A query without any relevant document scores 0.0 on every metric. Whether it should
  count in the average is the caller's decision; :func:`has_relevant` tells them apart.
  BEIR does not drop such queries itself: it averages over every query that pytrec_eval
  scores, i.e. every query present in both the qrels and the results.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "dedupe_ranking",
    "has_relevant",
    "hit_at_k",
    "mean",
    "mrr_at_k",
    "ndcg_at_k",
    "percentile",
    "rank_with_ties",
    "recall_at_k",
    "summarize",
]


def has_relevant(qrels: Mapping[str, int]) -> bool:
    """True if at least one document has grade >= 1; callers use it to skip empty queries."""
    return any(grade > 0 for grade in qrels.values())


def dedupe_ranking(ranking: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each id, preserving order (O(n), one set of seen ids)."""
    return list(dict.fromkeys(ranking))


def _to_float32(score: float) -> float:
    """Round like C's ``(float) score``: trec_eval stores run scores as 32-bit floats."""
    if math.isnan(score):
        raise ValueError("score is NaN; a NaN cannot be ranked")
    try:
        (rounded,) = struct.unpack("f", struct.pack("f", score))
    except OverflowError:
        return math.copysign(math.inf, score)
    return float(rounded)


def rank_with_ties(scores: Mapping[str, float]) -> list[str]:
    """Order doc ids exactly as trec_eval does: score descending, then doc id descending.

    trec_eval (and pytrec_eval, which hands its runs to trec_eval's ``te_form_res_rels``)
    ignores the rank column, stores each score as a C ``float`` and sorts with
    ``comp_sim_docno``: higher score first, ties broken by ``strcmp(docno2, docno1)``,
    i.e. doc id in *descending* byte order. We mirror all three: scores are rounded to
    float32 first (so float64 scores that differ only beyond float32 precision tie, as
    they do in trec_eval), and Python's code-point order on ``str`` equals ``strcmp``
    on their UTF-8 bytes. Raises ``ValueError`` on a NaN score.
    """
    keyed = [(_to_float32(score), doc_id) for doc_id, score in scores.items()]
    keyed.sort(reverse=True)
    return [doc_id for _, doc_id in keyed]


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _top_k(ranking: Sequence[str], k: int) -> list[str]:
    _check_k(k)
    return dedupe_ranking(ranking)[:k]


def ndcg_at_k(ranking: Sequence[str], qrels: Mapping[str, int], *, k: int = 10) -> float:
    """nDCG@k as trec_eval's ``ndcg_cut.k`` (the nDCG@k that BEIR reports).

    DCG = sum over the top k of ``grade / log2(rank + 1)`` with rank starting at 1.
    The gain is the raw grade (linear, Järvelin & Kekäläinen as in trec_eval), *not*
    ``2**grade - 1`` as in some learning-to-rank libraries; the two agree only for
    binary qrels. The ideal DCG uses the positive grades of *all* qrels sorted
    descending, truncated at k, so relevant documents missing from the ranking still
    count against it. No relevant document: 0.0. Duplicates are collapsed first.
    """
    top = _top_k(ranking, k)
    dcg = sum(
        grade / math.log2(rank + 1)
        for rank, doc_id in enumerate(top, start=1)
        if (grade := qrels.get(doc_id, 0)) > 0
    )
    ideal = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], qrels: Mapping[str, int], *, k: int = 10) -> float:
    """Relevant documents in the top k divided by *all* relevant documents (``recall.k``).

    The denominator is not capped at k (that would be BEIR's separate ``R_cap@k``), so a
    query with more relevant documents than k cannot reach 1.0. No relevant document:
    0.0. Duplicates are collapsed first, so one document is never counted twice.
    """
    top = _top_k(ranking, k)
    num_relevant = sum(1 for grade in qrels.values() if grade > 0)
    if num_relevant == 0:
        return 0.0
    return sum(1 for doc_id in top if qrels.get(doc_id, 0) > 0) / num_relevant


def mrr_at_k(ranking: Sequence[str], qrels: Mapping[str, int], *, k: int = 10) -> float:
    """Reciprocal rank (1/rank) of the first relevant document within the top k, else 0.0.

    Averaged over queries this is MRR@k, as BEIR's ``MRR@k``; with k at least the
    ranking's length it equals trec_eval's ``recip_rank``. Duplicates are collapsed first.
    """
    for rank, doc_id in enumerate(_top_k(ranking, k), start=1):
        if qrels.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def hit_at_k(ranking: Sequence[str], qrels: Mapping[str, int], *, k: int = 10) -> float:
    """1.0 if any relevant document is in the top k, else 0.0 (BEIR's ``Accuracy@k``)."""
    return 1.0 if any(qrels.get(doc_id, 0) > 0 for doc_id in _top_k(ranking, k)) else 0.0


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean with ``math.fsum`` (exact summation); raises ValueError when empty."""
    items = list(values)
    if not items:
        raise ValueError("mean of no values")
    return math.fsum(items) / len(items)


def summarize(per_query: list[dict[str, float]]) -> dict[str, float]:
    """Average each metric over queries: ``[{"ndcg@10": .5}, {"ndcg@10": 1.}] -> {"ndcg@10": .75}``.

    Every dict must carry the same keys: averaging a metric over a silent subset of the
    queries is a classic source of wrong numbers, so a mismatch raises ValueError, as
    does an empty list. Filter queries (e.g. with :func:`has_relevant`) beforehand.
    """
    if not per_query:
        raise ValueError("summarize needs at least one query")
    keys = list(per_query[0])
    expected = set(keys)
    for index, row in enumerate(per_query):
        if set(row) != expected:
            raise ValueError(
                f"query {index} has metrics {sorted(row)}, expected {sorted(expected)}"
            )
    return {key: mean(row[key] for row in per_query) for key in keys}


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (p in [0, 100]) by linear interpolation between closest ranks.

    Same as ``numpy.percentile(values, p)`` with its default ``method="linear"``: the
    value at fractional index ``(n - 1) * p / 100`` of the sorted values. Stable for tiny
    samples (p95 of 3 latencies is an interpolation, not the max) but not an estimator
    with any confidence attached. Raises ValueError when empty or p is out of range.
    """
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile p must be within [0, 100], got {p}")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    # Same operation order as numpy's _lerp, so results agree to the last bit.
    position = (len(ordered) - 1) * (p / 100.0)
    lower = math.floor(position)
    low, high = ordered[lower], ordered[min(lower + 1, len(ordered) - 1)]
    fraction = position - lower
    if fraction >= 0.5:
        return high - (high - low) * (1.0 - fraction)
    return low + (high - low) * fraction

"""Fusion rules the product does not ship, kept for bench/quality.py to compare with
:func:`query.fusion.zscore_fusion` (reciprocal rank and min-max fusion)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from query.fusion import Run

RRF_K = 60
"""Reciprocal rank fusion constant from Cormack, Clarke & Büttcher, "Reciprocal Rank Fusion
outperforms Condorcet and Individual Rank Learning Methods" (SIGIR 2009), where k = 60 was
fixed across all their runs; pyserini's fusion uses the same default. Larger k flattens the
difference between ranks; smaller k lets the top of each list dominate."""


def reciprocal_rank_fusion(runs: Sequence[Run], *, k: int = RRF_K, weights: Sequence[float] | None = None) -> list[tuple[Hashable, float]]:
    """score(d) = sum_i w_i / (k + rank_i(d)), rank starting at 1; documents missing from a run
    get nothing from it. Ignores score scales entirely, which is robust but throws away how
    far ahead a clear winner is."""
    weights = weights or [1.0] * len(runs)
    fused: dict[Hashable, float] = {}
    for run, weight in zip(runs, weights):
        for rank, (doc, _) in enumerate(run, start=1):
            fused[doc] = fused.get(doc, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def minmax_fusion(runs: Sequence[Run], *, weights: Sequence[float]) -> list[tuple[Hashable, float]]:
    """score(d) = sum_i w_i * (s_i(d) - min_i) / (max_i - min_i) over each run's own candidates;
    a document missing from a run gets 0 from it. Like :func:`zscore_fusion` it keeps margins,
    and it is bounded, so one run's outlier cannot swamp the other."""
    fused: dict[Hashable, float] = {}
    for run, weight in zip(runs, weights):
        if not run:
            continue
        values = [score for _, score in run]
        low, high = min(values), max(values)
        for doc, score in run:
            fused[doc] = fused.get(doc, 0.0) + weight * ((score - low) / (high - low) if high > low else 1.0)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))

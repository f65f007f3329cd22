"""Fusion of the dense and keyword runs: z-score fusion, which keeps how far ahead a clear
winner is (rank fusion throws that away), with weights measured on gold questions."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any


Run = Sequence[tuple[Hashable, float]]
"""(item, score) best first: an item is a passage id or an article key."""




def zscore_fusion(runs: Sequence[Run], *, weights: Sequence[float]) -> list[tuple[Hashable, float]]:
    """score(d) = sum_i w_i * z_i(d), with each run's scores standardised over its own
    candidates and a document missing from a run given that run's minimum z.

    Keeps the margin information RRF drops (a passage far above the rest stays there),
    at the price of needing a weight tuned on data. With one candidate (or equal scores)
    a run contributes zero.
    """
    standardised: list[dict[Hashable, float]] = []
    for run in runs:
        if not run:
            standardised.append({})
            continue
        values = [score for _, score in run]
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        standardised.append({doc: (score - mean) / spread if spread > 0 else 0.0 for doc, score in run})
    floors = [min(z.values()) if z else 0.0 for z in standardised]
    docs = {doc for run in standardised for doc in run}
    fused = {}
    for doc in docs:
        total = 0.0
        for z, weight, floor in zip(standardised, weights, floors):
            if z:
                total += weight * z.get(doc, floor)
        fused[doc] = total
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def with_true_zeros(run: Run, others: Sequence[Run]) -> list[tuple[Hashable, float]]:
    """``run`` followed by every item of ``others`` it lacks, scored 0.0.

    Only for a run known to hold every item with a nonzero score (BM25 that returned fewer
    items than asked for): the zeros are then true scores, and standardising over them
    gives a run that found one or two items the lead it earned, where without them
    :func:`zscore_fusion` sees one candidate and lets the run count for nothing.
    """
    present = {item for item, _ in run}
    missing = dict.fromkeys(item for other in others for item, _ in other if item not in present)
    return [*run, *((item, 0.0) for item in missing)]




@dataclass(frozen=True)
class Runs:
    """What fusion works from: the dense and keyword runs as (item, score) best first, the
    question vector, and for paragraph and article runs each item's best passage by the dense
    run (for clause rescoring; passage runs leave it None, each item being its own passage)."""

    dense: list[tuple]
    keyword: list[tuple]
    vector: Any
    best_passage: dict[Any, int] | None = None
    keyword_complete: bool = False
    """The keyword run holds every item BM25 scores above zero (asked for one more than it
    keeps, BM25 did not fill that place)."""

    def keyword_scores(self, fused_with: Sequence[Sequence[tuple]] | None = None) -> list[tuple]:
        """The keyword run as score fusion should see it: a complete run followed by the other
        items of the runs it is fused with (default: the dense run) at their true BM25 score,
        0 (see :func:`with_true_zeros`)."""
        if not self.keyword_complete:
            return self.keyword
        return with_true_zeros(self.keyword, [self.dense] if fused_with is None else fused_with)

    def passage(self, item) -> int | None:
        """The passage that stands for ``item``: itself, or a paragraph's or article's best
        passage (None for one that BM25 alone found)."""
        return item if self.best_passage is None else self.best_passage.get(item)

"""Clause-level rescoring: a passage is also judged by its best clause, not only as a whole.

A 64-token passage embeds as the average of what it says, so an appositive that answers the
question outright ("says Joelle Pineau, Meta AI's managing director, of opening the code")
is drowned by the quotation around it, while another passage that shares the question's
topic wins. Embedding the clauses of the few best fused passages and letting a strong clause
lift its passage is sentence-level max-similarity at a finer grain, at the cost of one
extra batch of short texts per question. Clauses come from the text the passage was
embedded as, so a metadata passage's clauses include the article title it was embedded with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from query.encoder import KeptVectors

CLAUSE_TOP = 3
"""Fused results whose clauses are embedded: deeper ranked no better on bench/quality.py, and
3 keeps the extra batch smallest (a few dozen short texts at most)."""

CLAUSE_MIX = 0.3
"""Weight of the best clause's cosine against the passage's own: a passage scores
``max(own, (1 - mix) * own + mix * clause)``. At 1.0 (the clause alone) a clause that merely
restates the question ("In a leaked internal memo from Google") lifts a passage that does
not answer it; a smaller mix keeps the passage's own evidence in charge (bench/quality.py)."""

CLAUSE_MIN_WORDS = 3
CLAUSE_BREAKS = re.compile(r"[^,;:“”\"()—]+")
"""A clause is a run of text between commas, semicolons, colons, straight and double curly
quotation marks, round brackets and em dashes. Sentence ends do not break it, so a clause may
span two short sentences (breaking there too ranked worse on bench/quality.py)."""

CLAUSE_CACHE = 16_384
"""Clause vectors a :class:`~query.encoder.KeptVectors` keeps (24 MiB at 384 dimensions): the few passages
that reach the top of many questions give the same clauses again and again."""


def clauses(text: str, *, min_words: int = CLAUSE_MIN_WORDS) -> list[str]:
    """The clauses of ``text`` with at least ``min_words`` words, stripped. Shorter pieces
    ("says Joelle Pineau" is kept, "he said" is not) carry too little to embed on their own."""
    return [part.strip() for part in CLAUSE_BREAKS.findall(text) if len(part.split()) >= min_words]


def mix_clause_scores(
    dense: Sequence[tuple[Hashable, float]], best_clause: Mapping[Hashable, float], *, mix: float = CLAUSE_MIX
) -> list[tuple[Hashable, float]]:
    """The dense run with each item in ``best_clause`` raised to ``(1 - mix) * own + mix *
    clause`` where that is higher, re-sorted best first. An item missing from ``dense`` counts
    the run's lowest score as its own (as z-score fusion does)."""
    scores = dict(dense)
    floor = min(scores.values(), default=0.0)
    for item, clause in best_clause.items():
        own = scores.get(item, floor)
        scores[item] = max(own, (1 - mix) * own + mix * clause)
    return sorted(scores.items(), key=lambda entry: -entry[1])


class ClauseRescorer:
    """The rescoring stage: each target item's dense score is lifted by the best clause of its
    passage (:func:`mix_clause_scores`). A clause shared by overlapping passages is embedded
    once, and its vector is kept for the questions after (:class:`~query.encoder.KeptVectors`: one
    rescorer serves one generation, whose passages do not change).

    ``embed`` maps passage-like texts to unit vectors; ``passage_text`` gives the text a
    passage was embedded as."""

    def __init__(self, *, embed: Callable[[list[str]], Any], passage_text: Callable[[int], str],
                 cache: int = CLAUSE_CACHE) -> None:
        self.embed = KeptVectors(embed, limit=cache)
        self.passage_text = passage_text

    def rescore(self, dense: Sequence[tuple[Hashable, float]], targets: Sequence[tuple[Hashable, int]], vector, *,
                mix: float = CLAUSE_MIX) -> list[tuple[Hashable, float]]:
        """``dense`` with each (item, passage id) of ``targets`` lifted by that passage's best
        clause's cosine to the question ``vector``."""
        owners: dict[str, list[Hashable]] = {}
        for item, pid in targets:
            for clause in clauses(self.passage_text(pid)):
                owners.setdefault(clause, []).append(item)
        if not owners:
            return list(dense)
        texts = list(owners)
        best: dict[Hashable, float] = {}
        for text, cosine in zip(texts, (self.embed(texts) @ vector).tolist()):
            for item in owners[text]:
                best[item] = max(best.get(item, -1.0), cosine)
        return mix_clause_scores(dense, best, mix=mix)

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
from collections.abc import Hashable, Mapping, Sequence

CLAUSE_TOP = 3
"""Fused results whose clauses are embedded. bench/quality.py at mix 0.3: depths 3, 5 and 10
all rank the 16 gold questions and 6 of the 8 paraphrases first, SciFact train nDCG@10 0.750
each (0.748 without rescoring); 3 keeps the extra batch smallest (about 10-20 short texts)."""

CLAUSE_MIX = 0.3
"""Weight of the best clause's cosine against the passage's own: a passage scores
``max(own, (1 - mix) * own + mix * clause)``. At 1.0 (the clause alone) a clause that merely
restates the question ("In a leaked internal memo from Google") lifts a passage that does
not answer it: paraphrases 5/8 first, SciFact 0.747. 0.3 and 0.5 keep the passage's own
evidence in charge: 6/8, SciFact 0.750 (bench/quality.py, depth 3)."""

CLAUSE_MIN_WORDS = 3
CLAUSE_BREAKS = re.compile(r"[^,;:“”\"()—]+")
"""A clause is a run of text between commas, semicolons, colons, straight and double curly
quotation marks, round brackets and em dashes. Sentence ends do not break it, so a clause may span two short sentences;
breaking there too measured 5/8 paraphrases first instead of 6/8 (SciFact equal)."""


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

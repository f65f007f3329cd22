"""The hand-made English word lists, in one place.

Each is a frozenset of lowercase words; the modules that use them say why they need it.
"""

from __future__ import annotations

LINK_STOPWORDS = frozenset(
    "a an and are as at be been but by can could for from had has have how if in is it its may "
    "no not now of on or so than that the their them then there these they this those to was "
    "were what which who will with would".split()
)
"""Words left out when body linking measures how much of an article's summary a body repeats."""

QUESTION_WORDS = frozenset({"who", "whom", "whose", "what", "when", "where", "which", "why", "how", "do", "does", "did"})
"""Words that shape a question but say nothing about its answer. Lucene's English stopword
list (bm25s's "en") keeps them, so "Who is X's director?" would favour any passage saying
"who"; they are dropped from keyword queries only (the index is unchanged)."""

FUNCTION_WORDS = frozenset(
    "a an and are as at be been being but by can could did do does doing done for from had has have having he her "
    "hers him his how i if in is it its itself may me might must my of on or our she should so some than that the "
    "their them then there these they this those to too us very was we were what when where which who whom whose "
    "why will with would you your".split()
)
"""Words that carry no answer, dropped from an answer's wording on top of the keyword index's
short stopword list (Lucene's 33 words keep "so", "have", "would": "Why is that so?" would
match any sentence saying "so")."""

NOT_NAMES = frozenset("a an and as at but by for from he her his i if in it its no not of on or she so that the "
                      "their there these they this those to we what when where which who why with you".split())
"""Capitalised inside a sentence after a colon or an opening quote, without naming anyone."""

TITLE_CASE_GLUE = frozenset("a an and as at by for from in of on or the to vs with".split())
"""The only lowercase words a Title Case heading has ("Lessons from the Open-Source Community")."""

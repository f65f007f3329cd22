"""The kind of answer a question asks for, and whether a sentence can hold one.

Meaning alone cannot tell "When was EleutherAI founded?" from "What is EleutherAI?": the
sentence nearest in meaning to both says what EleutherAI did, and answering the first with
it is a confident wrong answer. So the questions whose answer has a shape visible in plain
text are checked for it: *who* (a name), *when* (a time), *how many / how much* (a
quantity). A sentence without that shape is not an answer, and when no sentence of the top
passages has it, ``ask`` abstains. Other questions (what, which, why, how, where) accept any
sentence: their answers have no shape that text shows without a tagger.

A name is two or more capitalised words in a row ("Stella Biderman", "Meta AI"), or, less
surely, one capitalised word inside a sentence ("created by Google"): who-questions are
answered by a sentence with a full name when one of the top passages has one, and by a
one-word name only when none does, so "Who runs EleutherAI?" gets the sentence naming Stella
Biderman rather than one that mentions OpenAI.
"""

from __future__ import annotations

import re

from indexer.wordlists import NOT_NAMES, TITLE_CASE_GLUE

WHO, WHEN, QUANTITY = "who", "when", "quantity"

_ASKS = (  # "which (print) edition" asks when: a paper's edition is named by its date
    (WHO, re.compile(r"(who|whom|whose)\b")),
    (WHEN, re.compile(r"when\b|((in|on|at|by|since|until) )?(what|which) (year|date|day|month|decade|century|"
                      r"(print )?edition)\b(?![’'-])"
                      r"|(what|which)(['’]s| is| was| were| are) the (\w+ )?(date|year)\b(?![’'-])")),
    (QUANTITY, re.compile(r"how (many|much|big|large|small|long|old|tall|high|far|heavy|wide|deep|fast)\b")),
)
_QUESTION_WORD = re.compile(r"\b(who|whom|whose|when|what|which|where|why|how)\b")
_CLAUSE_QUESTION_WORD = re.compile(r"(^|[,:;]\s*)(who|whom|whose|when|what|which|where|why|how)\b")
_YES_NO = re.compile(r"(do|does|did|is|are|was|were|am|can|could|will|would|shall|should|may|might|must|has|have|had)\b")
"""An auxiliary verb opening a question makes it a yes/no question ("Did the engineer who wrote
the memo work at Google?"), whatever question word follows."""
_FULL_NAME = re.compile(r"[A-Z][\w’'.\-]*(?:\s+(?:[A-Z][\w’'.\-]*|&))*\s+[A-Z][\w’'.\-]*")
"""Two or more capitalised words in a row ("Stella Biderman", "Booz Allen Hamilton", "Meta AI")."""
_CAPITALISED = re.compile(r"[A-Z][\w’'.\-]*")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_TIME = re.compile(  # a whole ISO date before its year: "2023-05-15" is new to "When in 2023 …?"
    rf"\b\d{{4}}-\d\d-\d\d\b|\b(1[5-9]\d\d|20\d\d)s?\b|\b({_MONTHS}|Monday|Tuesday|Wednesday|Thursday|Friday|"
    r"Saturday|Sunday)\b|\b(ago|yesterday|today|tomorrow|decades?|centur(y|ies))\b|\b(last|next|this) "
    r"(week|month|year|spring|summer|autumn|fall|winter)\b",
)
_NUMBER = re.compile(r"(?<![\w-])\d[\d,.]*")
_NUMBER_WORDS = re.compile(
    r"\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundreds?|thousands?|millions?|billions?|trillions?|dozens?|half)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")


def expected_kind(question: str) -> str | None:
    """``who``, ``when`` or ``quantity`` when the question's question word asks for one, else
    None. That word is the first one opening the question or a clause after a comma or colon
    ("According to the article on how open source wins, who leaked the memo?"), failing that
    the first anywhere ("Since when …?", "Exactly how many …?"); a later one belongs to a
    clause ("What did the engineer who wrote the memo say?"). A yes/no question has none."""
    lowered = question.strip().lower()
    if _YES_NO.match(lowered):
        return None
    first = _CLAUSE_QUESTION_WORD.search(lowered) or _QUESTION_WORD.search(lowered)
    if first is None:
        return None
    opening = lowered[first.start(first.lastindex):]
    return next((kind for kind, asks in _ASKS if asks.match(opening)), None)


def kind_fit(kind: str, *, question: str, text: str, is_name: bool = False, reporter: str | None = None) -> int:
    """How well ``text`` can answer a ``kind`` question: 0 not at all, 1 it can, 2 it holds a
    full name (who-questions only). It must hold a name, time or quantity that ``question``
    does not already state (a name none of whose words is in the question, a number the
    question does not give). ``is_name``: ``text`` is one name as a whole (a publisher's,
    "VentureBeat"), full however many words it has. ``reporter``: the publisher of the
    article ``text`` is from, whose name there reports rather than answers ("Google confirmed
    to MIT Technology Review that the memo was written by one of its employees"); other names
    sharing a word with it still count ("a team at MIT")."""
    asked = {word.lower() for word in _WORD.findall(question)}
    if kind == WHO:
        if reporter and reporter.strip():
            text = as_phrase(reporter).sub(" ", text)
        new = lambda name: not {w.lower() for w in _WORD.findall(name)} & asked  # noqa: E731
        if is_name:
            return 2 if new(text) else 0
        if _is_heading(text):  # capitalised throughout: its runs of capitals are not names
            return 0
        if any(new(name) for name in _full_names(text)):
            return 2
        inside = [m.group() for m in _CAPITALISED.finditer(text) if text[:m.start()].strip(" “\"‘'(")]
        return int(any(new(word) and word.lower() not in NOT_NAMES for word in inside))
    if kind == WHEN:
        return int(any(match.group().lower() not in asked for match in _TIME.finditer(text)))
    if kind == QUANTITY:
        given = set(_NUMBER.findall(question))
        return int(any(n not in given for n in _NUMBER.findall(text)) or bool(_NUMBER_WORDS.search(text)))
    raise ValueError(f"unknown answer kind {kind!r}")


def as_phrase(name: str) -> re.Pattern:
    """``name`` as a whole phrase in any case: not inside a longer word ("AP" is not in
    "happened"), whatever its last character ("Yahoo!")."""
    return re.compile(rf"(?<!\w){re.escape(name.strip())}(?!\w)", re.IGNORECASE)


def _full_names(text: str) -> list[str]:
    """Runs of two or more capitalised words, less the capitalised function words that open
    one: "A Google engineer's memo" names Google alone, not "A Google"."""
    names = []
    for run in _FULL_NAME.finditer(text):
        words = run.group().split()
        while words and words[0].lower() in NOT_NAMES:
            words.pop(0)
        if len(words) >= 2:
            names.append(" ".join(words))
    return names


def _is_heading(text: str) -> bool:
    """Title Case: four or more capitalised words, and no lowercase word but glue ("of", "the")."""
    words = _WORD.findall(text)
    capitalised = sum(word[0].isupper() for word in words)
    return capitalised >= 4 and all(word[0].isupper() or word in TITLE_CASE_GLUE for word in words if word.isalpha())

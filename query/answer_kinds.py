"""The kind of answer a question asks for, and whether a sentence can hold one.

Meaning alone cannot tell "When was EleutherAI founded?" from "What is EleutherAI?": the
sentence nearest in meaning to both says what EleutherAI did, and answering the first with
it is a confident wrong answer. So the questions whose answer has a shape visible in plain
text are checked for it: *who* (a name), *when* (a time), *how many / how much* (a
quantity). A sentence without that shape is not an answer, and when no sentence of the top
passages has it, ``ask`` abstains. Other questions (what, which, why, how, where) accept any
sentence: their answers have no shape that text shows without a tagger.
"""

from __future__ import annotations

import re

WHO, WHEN, QUANTITY = "who", "when", "quantity"

_ASKS = (
    (WHO, re.compile(r"(who|whom|whose)\b")),
    (WHEN, re.compile(r"(when\b|((in|on|at|by) )?(what|which) (year|date|day|month|decade|century)\b)")),
    (QUANTITY, re.compile(r"how (many|much)\b")),
)
_NAME = re.compile(r"[A-Z][\w’'.\-]*(?:\s+(?:[A-Z][\w’'.\-]*|&))*\s+[A-Z][\w’'.\-]*")
"""Two or more capitalised words in a row ("Stella Biderman", "Booz Allen Hamilton",
"Meta AI"). One capitalised word is too weak a sign: every sentence starts with one."""
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_TIME = re.compile(
    rf"\b(1[5-9]\d\d|20\d\d)s?\b|\b\d{{4}}-\d\d-\d\d\b|\b({_MONTHS}|Monday|Tuesday|Wednesday|Thursday|Friday|"
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
    """``who``, ``when`` or ``quantity`` when the question's opening asks for one, else None."""
    opening = question.strip().lower()
    return next((kind for kind, asks in _ASKS if asks.match(opening)), None)


def carries_kind(kind: str, *, question: str, text: str) -> bool:
    """Can ``text`` answer a ``kind`` question? It must hold a name, time or quantity that
    ``question`` does not already state (a name none of whose words is in the question, a
    number the question does not give)."""
    asked = {word.lower() for word in _WORD.findall(question)}
    if kind == WHO:
        return any(not {w.lower() for w in _WORD.findall(name.group())} & asked for name in _NAME.finditer(text))
    if kind == WHEN:
        return any(match.group().lower() not in asked for match in _TIME.finditer(text))
    if kind == QUANTITY:
        given = set(_NUMBER.findall(question))
        return any(n not in given for n in _NUMBER.findall(text)) or bool(_NUMBER_WORDS.search(text))
    raise ValueError(f"unknown answer kind {kind!r}")

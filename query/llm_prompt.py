"""What the reader model reads: the instructions, worked examples, and excerpts of the best hits.

The instructions and worked examples come first and are the same in every prompt, so the
engine keeps them cached (:meth:`query.llm_reader.Engine.chat`) and a question pays only for
its own excerpts: examples cost nothing per question, and they teach a small model what
instructions alone do not (copy "four" as "four", give the whole noun phrase, say NONE, take
the object of the verb asked about, copy a whole list for a comparison).

Prompt reading is the reader's cost, so the excerpts fit a budget of estimated tokens: the
best hit's paragraph whole when it fits, else the sentences around the passage in it that
matched best; then the next hits' the same way while the budget lasts. The examples are
written here, about nothing in any evaluation set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from query.results import Hit

NONE_REPLY = "NONE"
CHARS_PER_TOKEN = 4
"""English prose runs about four characters to a token: budgets are estimated from lengths."""
MIN_EXCERPT_TOKENS = 40
"""A hit after the first is read only when at least this much budget is left for it."""
SYSTEM = (
    "You answer a question from numbered passages by copying the shortest exact span of one passage that "
    "answers it: usually a name, a number, a date or a short noun phrase, written exactly as the passage writes it "
    "(keep its words, spelling and number format; never reword, translate or add words). For a why or how question "
    "copy the shortest clause that answers it. Never answer yes or no and never explain. "
    f"If no passage answers the question, reply {NONE_REPLY}."
)
EXAMPLES = (
    ("[1] The Harbour Bridge opened to traffic in March 1932, after eight years of construction that employed "
     "some 1,400 workers. Its chief engineer, John Bradfield, had first proposed a crossing in 1912.\n"
     "[2] The city's ferry network carries about fifteen million passengers a year on eight routes.",
     (("Who was the chief engineer of the Harbour Bridge?", "John Bradfield"),
      ("How many routes does the ferry network have?", "eight"),
      ("When did the bridge open to traffic?", "March 1932"),
      ("What is the toll for crossing the bridge?", NONE_REPLY))),
    ("[1] Farmers in the valley switched from wheat to grapes in the 1970s because the summers had become too dry "
     "for grain. Most of the harvest is now sold to cooperative wineries in the north of the province, and the "
     "valley's largest estate belongs to the Moreau family.",
     (("Why did the farmers switch to grapes?", "because the summers had become too dry for grain"),
      ("To whom is most of the harvest sold?", "cooperative wineries in the north of the province"),
      ("Which family owns the valley's largest estate?", "the Moreau family"))),
    ("[1] Reviewers praised the new tram line for its speed but criticised its crowded carriages. Compared with "
     "the old buses, the trams are quieter, cheaper to run and more reliable in winter.",
     (("What did reviewers criticise about the tram line?", "its crowded carriages"),
      ("How do the trams compare with the old buses?", "quieter, cheaper to run and more reliable in winter"))),
)
RETRY = ("That text is not in the passages. Reply with the answer copied exactly, character for character, "
         f"from one passage, or {NONE_REPLY}.")
RESTATED = ("That only repeats words of the question. Reply with the words of one passage that answer it, "
            f"copied exactly, or {NONE_REPLY}.")


def user_turn(passages: str, question: str) -> dict[str, str]:
    return {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {' '.join(question.split())}"}


def preamble() -> list[dict[str, str]]:
    """The messages every prompt starts with: the instructions, then the worked examples as
    earlier turns of the conversation."""
    messages = [{"role": "system", "content": SYSTEM}]
    for passages, pairs in EXAMPLES:
        for question, answer in pairs:
            messages += [user_turn(passages, question), {"role": "assistant", "content": answer}]
    return messages



PREAMBLE_TURNS = len(preamble())
"""How many messages every prompt starts with: what the engine keeps cached between questions."""

@dataclass(frozen=True)
class Excerpt:
    """The part ``hit.text[start:end]`` of a hit that the model reads."""

    hit: Hit
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.hit.text[self.start:self.end]

    def for_prompt(self) -> str:
        """What the model is shown: a whole metadata hit ("Government Technology") as the
        rendering that says what it is ("Government Technology published “…”")."""
        whole = self.start == 0 and self.end == len(self.hit.text)
        return " ".join((self.hit.embedded if whole and self.hit.embedded else self.text).split())


def messages_for(question: str, excerpts: Sequence[Excerpt]) -> list[dict[str, str]]:
    passages = "\n".join(f"[{number}] {excerpt.for_prompt()}" for number, excerpt in enumerate(excerpts, start=1))
    return [*preamble(), user_turn(passages, question)]


def window(text: str, core: tuple[int, int], *, chars: int) -> tuple[int, int]:
    """The span of ``text`` holding ``core`` grown by whole sentences, one after then one
    before, while it stays within ``chars`` characters (``core`` cut to ``chars`` if it alone
    is longer)."""
    from indexer.chunking import sentence_spans

    start, end = core
    if end - start >= chars:
        return start, start + chars
    sentences = sentence_spans(text) or [(0, len(text))]
    start = min([start, *(s for s, e in sentences if s < start < e)])
    end = max([end, *(e for s, e in sentences if s < end < e)])
    if end - start > chars:
        return core
    while True:
        after = next((e for s, e in sentences if s >= end), None)
        before = next((s for s, e in reversed(sentences) if e <= start), None)
        grown = False
        if after is not None and after - start <= chars:
            end, grown = after, True
        if before is not None and end - before <= chars:
            start, grown = before, True
        if not grown:
            return start, end


def excerpts_for(hits: Sequence[Hit], *, tokens: int, best_part: Callable[[Hit], tuple[int, int]]) -> list[Excerpt]:
    """Excerpts of ``hits``, best first, within about ``tokens`` prompt tokens: each hit
    whole when it fits the budget left, else a window of whole sentences around
    ``best_part(hit)`` (the span of its best passage in ``hit.text``). The first hit is always
    read; a later one only while ``MIN_EXCERPT_TOKENS`` are left."""
    excerpts: list[Excerpt] = []
    left = tokens * CHARS_PER_TOKEN
    for hit in hits:
        if excerpts and left < MIN_EXCERPT_TOKENS * CHARS_PER_TOKEN:
            break
        start, end = (0, len(hit.text)) if len(hit.text) <= left else window(hit.text, best_part(hit), chars=left)
        excerpts.append(Excerpt(hit, start, end))
        left -= end - start
    return excerpts

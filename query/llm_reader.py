"""A reader backed by a local language model: short answers that are verified spans of a file.

The model (a GGUF run in process by xllamacpp, loaded once per process) reads the top
passages and replies with a short answer copied from one of them, or NONE. The reply is
only shown when it is found verbatim in a passage (:mod:`query.llm_span`); then that span of
the cited file is the answer, and the sentence holding it its evidence. A reply found
nowhere is asked for once more; if the second reply is not found either, the sentence
picker answers instead (a reply of NONE abstains), as it does when the question and passages
do not fit the model's context. Confidence
combines how sure the model was of its reply (token probabilities) with how much of the
question the answering passage contains; the weights and threshold were fitted on data by
``bench/reader.py``.

:class:`LlmReader` is a :class:`~query.readers.Reader` passed to ``Index.ask``; it keeps no
per-question state and the model is loaded once per process (a lock serialises the llama
context), so one reader serves the server's threads. ``search`` never loads it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from query.llm_span import clean_answer, evidence_span, find_span
from query.readers import Reader, ReaderTools, SentenceReader
from query.reader_model import INSTALL_HINT, ReaderUnavailable, model_path
from query.results import Answer, Hit

READERS = ("llm", "sentence")
READ_PASSAGES = 3
"""Passages the model reads: more finds more answers and costs prompt time on every question."""
MAX_ANSWER_TOKENS = 32
CONTEXT_TOKENS = 2048
NONE_REPLY = "NONE"
SYSTEM = (
    "You answer questions using only the numbered passages. Reply with the answer copied word for word "
    "from one passage, as short as possible: a name, a number, a date or a short phrase for who, what, "
    "when, where, which and how many questions; the shortest clause that answers a why or how question. "
    "Never answer yes or no, never explain, never add words that are not in the passage. "
    f"If the passages do not answer the question, reply {NONE_REPLY}."
)
RETRY = ("That text is not in the passages. Reply with the answer copied exactly, character for character, "
         f"from one passage, or {NONE_REPLY}.")
WEIGHTS = {"logprob": 1.443, "coverage": 0.816, "first": 1.61, "bias": -0.683}
"""Confidence is ``sigmoid(logprob * mean token log-probability of the reply + coverage *
keyword coverage of the question by the answering passage + first * (that passage ranks
first) + bias)``: fitted by bench/reader.py. The model is often sure of a wrong answer read
from the wrong passage; retrieval's evidence tells those apart."""
THRESHOLD = 0.734
"""``confident`` is ``confidence >= THRESHOLD``: the value that maximises right minus wrong
confident answers on the calibration data (bench/reader.py)."""


class PromptTooLong(Exception):
    """The question and passages do not fit the model's context: the fallback reader answers."""


@dataclass(frozen=True)
class Reply:
    """What the model said, the log-probability of each token it said, and how long it took."""

    text: str
    logprobs: tuple[float, ...]
    seconds: float

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else -10.0


class Engine:
    """One loaded GGUF model answering chat completions in process, one request at a time
    (a lock around the llama context: the server calls it from its threads)."""

    def __init__(self, path: Path, *, threads: int) -> None:
        try:
            import xllamacpp
        except ImportError:
            raise ReaderUnavailable(f"the reader needs xllamacpp; run: {INSTALL_HINT}") from None
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = CONTEXT_TOKENS
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = -1  # llama.cpp logs every request on stderr otherwise
        self.path = path
        self.server = xllamacpp.Server(params)
        self.lock = threading.Lock()

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int = MAX_ANSWER_TOKENS) -> Reply:
        """The greedy reply to ``messages`` with its tokens' log-probabilities. The prompt is
        evaluated afresh each time: reusing the previous request's cached prefix changes the
        arithmetic (batch splits), so the same question would get a slightly different
        confidence, or even reply, depending on what was asked before."""
        request = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "logprobs": True,
                   "top_logprobs": 1, "cache_prompt": False, "seed": 0}
        began = time.perf_counter()
        with self.lock:
            response = self.server.handle_chat_completions(request)
        seconds = time.perf_counter() - began
        if not isinstance(response, dict) or "choices" not in response:
            message = response.get("error", response) if isinstance(response, dict) else response
            if isinstance(message, dict) and message.get("type") == "exceed_context_size_error":
                raise PromptTooLong(str(message.get("message")))
            raise ReaderUnavailable(f"reader model {self.path}: {' '.join(str(message).split())[:200]}")
        choice = response["choices"][0]
        tokens = ((choice.get("logprobs") or {}).get("content")) or []
        return Reply(text=choice["message"].get("content") or "", seconds=seconds,
                     logprobs=tuple(float(token["logprob"]) for token in tokens))


_ENGINES: dict[Path, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(model: Path | str | None = None) -> Engine:
    """The process's engine for ``model`` (default: the shipped model), loaded on first use
    (under a lock, so concurrent first calls assemble and load it once)."""
    with _ENGINES_LOCK:
        path = model_path(model).resolve()
        if path not in _ENGINES:
            threads = int(os.environ.get("SEMINDEX_READER_THREADS") or 1)
            _ENGINES[path] = Engine(path, threads=threads)
        return _ENGINES[path]


def reader_available() -> str | None:
    """Why the default LLM reader cannot run here (one line), or None when it can, without
    loading anything: xllamacpp and the model parts must be installed."""
    from importlib.util import find_spec

    from query.reader_model import DEFAULT_MODEL, part_file

    if find_spec("xllamacpp") is None:
        return "xllamacpp is not installed"
    if not DEFAULT_MODEL.cache_path().is_file() and part_file(f"{DEFAULT_MODEL.package}1") is None:
        return "the reader model is not installed"
    return None


def passage_for_prompt(hit: Hit) -> str:
    """What the model reads of a hit: a metadata passage ("Government Technology") as its
    rendering that says what it is ("Government Technology published “…”"), else its text."""
    return " ".join((hit.embedded or hit.text).split())


def messages_for(question: str, hits: list[Hit]) -> list[dict[str, str]]:
    passages = "\n".join(f"[{number}] {passage_for_prompt(hit)}" for number, hit in enumerate(hits, start=1))
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {' '.join(question.split())}"}]


def locate(reply: str, hits: list[Hit]) -> tuple[Hit, tuple[int, int]] | None:
    """The first hit (best ranked) whose text holds the cleaned reply verbatim, with its span."""
    answer = clean_answer(reply)
    if not answer or answer.upper().startswith(NONE_REPLY):
        return None
    for hit in hits:
        if (span := find_span(answer, hit.text)) is not None:
            return hit, span
    return None


def is_none(reply: str) -> bool:
    return clean_answer(reply).upper().startswith(NONE_REPLY)


def confidence_of(reply: Reply, *, coverage: float, first: bool) -> float:
    z = (WEIGHTS["logprob"] * reply.mean_logprob + WEIGHTS["coverage"] * coverage + WEIGHTS["first"] * first
         + WEIGHTS["bias"])
    return 1 / (1 + math.exp(-z))


Chat = Callable[[list[dict[str, str]]], Reply]


@dataclass(frozen=True)
class Trace:
    """What one read saw: the model's replies, whether the fallback answered, and for a reply
    found in a passage the confidence's features and the span (text, file, chars)."""

    replies: tuple[Reply, ...]
    fallback: bool = False
    logprob: float | None = None
    coverage: float | None = None
    rank: int | None = None
    confidence: float | None = None
    span: tuple[str, str, tuple[int, int]] | None = None


class LlmReader:
    """A :class:`~query.readers.Reader`: short answers from a local model, each a verified
    span of a passage, else the ``fallback`` reader's answer (default: the sentence picker).
    It holds no per-question state, so one instance serves concurrent requests."""

    name = "llm"

    def __init__(self, *, model: Path | str | None = None, chat: Chat | None = None,
                 fallback: Reader | None = None) -> None:
        """``model``: a GGUF path or a shipped model's name (default: the shipped 1.5B);
        ``chat`` replaces the model (tests script it, a bench replays cached replies)."""
        self.model = model
        self._chat = chat
        self.fallback = fallback if fallback is not None else SentenceReader()

    @property
    def passages(self) -> int:
        return max(READ_PASSAGES, self.fallback.passages)

    def chat(self, messages: list[dict[str, str]]) -> Reply:
        return (self._chat or engine(self.model).chat)(messages)

    def read(self, question: str, hits: Sequence[Hit], *, tools: ReaderTools) -> Answer:
        """Read the top ``READ_PASSAGES`` of ``hits`` and answer ``question`` from them."""
        return self.read_traced(question, hits, tools=tools)[0]

    def read_traced(self, question: str, hits: Sequence[Hit], *, tools: ReaderTools) -> tuple[Answer, Trace]:
        """:meth:`read`, with what the read saw (for benches and calibration)."""
        from query.answer import Wording

        hits = list(hits)
        shown = hits[:READ_PASSAGES]
        messages = messages_for(question, shown)
        replies: list[Reply] = []
        found = None
        try:
            if shown:  # no passages (filters kept none): nothing for the model to read
                replies.append(self.chat(messages))
                found = locate(replies[0].text, shown)
            if found is None and replies and not is_none(replies[0].text):
                replies.append(self.chat([*messages, {"role": "assistant", "content": replies[0].text},
                                          {"role": "user", "content": RETRY}]))
                found = locate(replies[1].text, shown)
        except PromptTooLong:
            replies = []
        if found is None and len(replies) != 1:  # a reply the passages do not hold, twice, or none: the fallback's turn
            answer = self.fallback.read(question, hits, tools=tools)
            return dataclasses.replace(answer, reader=self.fallback.name), Trace(tuple(replies), fallback=True)
        reply = replies[-1]
        if found is None:
            return (Answer(question=question, answer=None, confident=False, confidence=1 - math.exp(reply.mean_logprob),
                           citations=[], hits=hits, reader=self.name), Trace(tuple(replies)))
        hit, (start, end) = found
        coverage = Wording(question, keyword=tools.keyword).coverage(hit.embedded or hit.text)
        confidence = confidence_of(reply, coverage=coverage, first=hit is shown[0])
        base = hit.citation.chars[0]
        trace = Trace(tuple(replies), logprob=reply.mean_logprob, coverage=coverage, rank=hit.rank,
                      confidence=confidence, span=(hit.text[start:end], hit.citation.file, (base + start, base + end)))
        if confidence < THRESHOLD:
            return Answer(question=question, answer=None, confident=False, confidence=confidence, citations=[],
                          hits=hits, reader=self.name), trace
        e_start, e_end = evidence_span(hit.text, (start, end))
        return Answer(question=question, answer=hit.text[start:end], confident=True, confidence=confidence,
                      citations=[hit.citation], hits=hits, answer_chars=(base + start, base + end), answer_hit=hit.rank,
                      evidence=hit.text[e_start:e_end], reader=self.name), trace


def reader_for(name: str | None, *, model: Path | str | None = None, chat: Chat | None = None) -> Reader:
    """The reader called ``name``: "llm", "sentence", or None for the default (llm where it is
    installed or a model is named, else sentence). Nothing is loaded until it reads."""
    from indexer.errors import QueryError

    if name not in (None, *READERS):
        raise QueryError(f"--reader: {name!r} is not one of {', '.join(READERS)}")
    if name == "sentence" and model is not None:
        raise QueryError("--reader-model applies to --reader llm, not --reader sentence")
    if name == "sentence" or (name is None and model is None and chat is None and reader_available()):
        return SentenceReader()
    if chat is None and model is None and (why := reader_available()):
        raise ReaderUnavailable(f"--reader llm: {why}; run: {INSTALL_HINT}")
    return LlmReader(model=model, chat=chat)


def default_reader_note() -> str | None:
    """The one line ``ask`` adds when the default reader is the sentence picker because the
    LLM reader is not installed, or None."""
    why = reader_available()
    return f"short answers need the reader ({why}): {INSTALL_HINT}" if why else None

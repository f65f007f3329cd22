"""A reader backed by a local language model: short answers that are verified spans of a file.

The model (a GGUF run in process by xllamacpp, loaded once per process) reads the top
passages and replies with a short answer copied from one of them, or NONE. The reply is
only shown when it is found verbatim in a passage (:mod:`query.llm_span`) and says more than
the question did; then that span of the cited file is the answer, and the sentence holding it
its evidence. A reply found nowhere, or one that only restates the question, is asked for once
more; if the second reply fails too (or, after a restatement, is NONE), the sentence picker
answers instead (NONE otherwise abstains), as it does when the question and passages do not
fit the model's context. Confidence
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

from indexer.types import PassageKind
from query.llm_prompt import NONE_REPLY, PREAMBLE_TURNS, RESTATED, RETRY, Excerpt, excerpts_for, messages_for
from query.llm_span import clean_answer, evidence_span, find_span
from query.readers import Reader, ReaderTools, SentenceReader
from query.reader_model import INSTALL_HINT, ReaderUnavailable, model_path
from query.results import Answer, Hit

READERS = ("llm", "sentence")
READ_TOKENS = (110, 400)
"""Prompt budgets, in estimated tokens, of what the model reads (:func:`query.llm_prompt.excerpts_for`):
a first read of the best hits' best parts; when that read is unsure (NONE, a reply found
nowhere, or a confidence under ``THRESHOLD``), one more read of the best hits at length. Prompt
reading is most of the reader's time, so most questions pay only for the first."""
READ_HITS = 3
"""Hits the budgets are filled from: the best three hold the answer almost always."""
MAX_ANSWER_TOKENS = 32
CONTEXT_TOKENS = 4096
MAX_THREADS = 8
PREFIX_STUB = "#"
"""The user turn of the stub prompt that leaves only the fixed messages cached (:meth:`Engine.chat`)."""
WEIGHTS = {"logprob": 1.947, "coverage": 1.331, "first": 0.635, "bias": -0.574}
"""Confidence is ``sigmoid(logprob * mean token log-probability of the reply + coverage *
keyword coverage of the question by the answering passage + first * (that passage ranks
first) + bias)``: fitted by bench/reader.py. The model is often sure of a wrong answer read
from the wrong passage; retrieval's evidence tells those apart."""
THRESHOLD = 0.589
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

    def chat(self, messages: list[dict[str, str]], *, keep: int = 1,
             max_tokens: int = MAX_ANSWER_TOKENS) -> Reply:
        """The greedy reply to ``messages`` with its tokens' log-probabilities; the first
        ``keep`` messages are the same in every request (instructions, worked examples).

        llama.cpp reuses the longest prefix a prompt shares with the previous one. Reusing
        more than the fixed messages would make a reply depend, in its last digits and
        sometimes its words, on what was asked before; evaluating everything afresh would
        cost the fixed messages' tokens on every question. So each request first sends a
        stub prompt that shares only the fixed messages: the request then reuses exactly
        their cache, whose values never change, and a question gets the same reply whatever
        came before it."""
        request = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "logprobs": True,
                   "top_logprobs": 1, "cache_prompt": True, "seed": 0}
        stub = {"messages": [*messages[:keep], {"role": "user", "content": PREFIX_STUB}], "max_tokens": 1,
                "temperature": 0, "cache_prompt": True, "seed": 0}
        began = time.perf_counter()
        with self.lock:
            self.server.handle_chat_completions(stub)
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


def default_threads() -> int:
    """The cores this process may use, at most ``MAX_THREADS``: prompt reading, the reader's
    cost, scales with them on an otherwise idle machine."""
    from indexer.onnx_embedder import usable_cores

    return max(1, min(MAX_THREADS, usable_cores()))


_ENGINES: dict[Path, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(model: Path | str | None = None) -> Engine:
    """The process's engine for ``model`` (default: the shipped model), loaded on first use
    (under a lock, so concurrent first calls assemble and load it once)."""
    with _ENGINES_LOCK:
        path = model_path(model).resolve()
        if path not in _ENGINES:
            threads = int(os.environ.get("SEMINDEX_READER_THREADS") or default_threads())
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


def locate(reply: str, excerpts: Sequence[Excerpt]) -> tuple[Excerpt, tuple[int, int]] | None:
    """The first excerpt (best ranked) holding the cleaned reply verbatim, with the reply's
    span in its hit's text (a NONE reply is :func:`verified`'s to tell apart)."""
    answer = clean_answer(reply)
    if not answer:
        return None
    for excerpt in excerpts:
        if (span := find_span(answer, excerpt.text)) is not None:
            return excerpt, (excerpt.start + span[0], excerpt.start + span[1])
    return None


def verified(reply: str, excerpts: Sequence[Excerpt], wording) -> tuple[tuple[Excerpt, tuple[int, int]] | None, str | None]:
    """Where ``reply`` answers from (:func:`locate`), or None with what to tell the model: the
    reply is in no excerpt (:data:`~query.llm_prompt.RETRY`), or it is but only restates the
    question, no word of it new (:data:`~query.llm_prompt.RESTATED`: "top companies get
    spooked" for "What could happen if top companies get spooked?"). NONE is neither."""
    if is_none(reply):
        return None, None
    if (found := locate(reply, excerpts)) is None:
        return None, RETRY
    excerpt, (start, end) = found
    answer = excerpt.hit.text[start:end]
    if wording.terms(answer) and not wording.adds_to_question(answer):
        return None, RESTATED
    return found, None


def best_part(hit: Hit, tools: ReaderTools) -> tuple[int, int]:
    """The span in ``hit.text`` of the passage that matched best (the whole hit when that
    passage's text is not found in it)."""
    text = tools.passage(hit.passage_id).text
    at = hit.text.find(text)
    return (at, at + len(text)) if at >= 0 and text else (0, len(hit.text))


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
    at: tuple[int, int] | None = None
    """The answer's span in the text of the hit ranked ``rank``."""


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
        return max(READ_HITS, self.fallback.passages)

    def chat(self, messages: list[dict[str, str]]) -> Reply:
        if self._chat is not None:
            return self._chat(messages)
        return engine(self.model).chat(messages, keep=PREAMBLE_TURNS)

    def read(self, question: str, hits: Sequence[Hit], *, tools: ReaderTools) -> Answer:
        """Read the best of ``hits`` within the ``READ_TOKENS`` budgets and answer ``question``."""
        return self.read_traced(question, hits, tools=tools)[0]

    def read_traced(self, question: str, hits: Sequence[Hit], *, tools: ReaderTools) -> tuple[Answer, Trace]:
        """:meth:`read`, with what the read saw (for benches and calibration).

        Each budget of ``READ_TOKENS`` is one read, the next only when the last was unsure;
        the most confident reply found in a passage answers. A reply found nowhere or only
        restating the question is objected to once on the last read; then the fallback
        answers. NONE abstains, unless it follows a restatement."""
        from query.answer import Wording

        hits = list(hits)
        wording = Wording(question, keyword=tools.keyword)
        replies: list[Reply] = []
        best: Trace | None = None
        lost = restated = False
        reads = self.reads(hits, tools=tools, question=question)
        for number, excerpts in enumerate(reads, start=1):
            messages = messages_for(question, excerpts)
            try:
                said = [self.chat(messages)]
                found, objection = verified(said[0].text, excerpts, wording)
                restated = restated or objection == RESTATED
                if objection and number == len(reads):
                    said.append(self.chat([*messages, {"role": "assistant", "content": said[0].text},
                                           {"role": "user", "content": objection}]))
                    found, objection = verified(said[1].text, excerpts, wording)
            except PromptTooLong:
                break
            replies += said
            # a reply restating the question (on this read or an earlier one) found the place
            # but not the answer: NONE after it leaves the question to the sentence picker, as a
            # reply found nowhere does
            lost = objection is not None or (restated and found is None)
            if found is not None:
                trace = self._trace(said[-1], found, excerpts=excerpts, wording=wording)
                best = trace if best is None or trace.confidence > best.confidence else best
                if best.confidence >= THRESHOLD:
                    break
        if best is None and (lost or not replies):  # replies the passages do not hold, or none: the fallback's turn
            answer = self.fallback.read(question, hits, tools=tools)
            return dataclasses.replace(answer, reader=self.fallback.name), Trace(tuple(replies), fallback=True)
        if best is None or best.confidence < THRESHOLD:
            confidence = best.confidence if best else 1 - math.exp(replies[-1].mean_logprob)
            return (Answer(question=question, answer=None, confident=False, confidence=confidence, citations=[],
                           hits=hits, reader=self.name), dataclasses.replace(best or Trace(()), replies=tuple(replies)))
        hit = next(hit for hit in hits if hit.rank == best.rank)
        start, end = best.at
        e_start, e_end = evidence_span(hit.text, (start, end))
        base = hit.citation.chars[0]
        return Answer(question=question, answer=hit.text[start:end], confident=True, confidence=best.confidence,
                      citations=[hit.citation], hits=hits, answer_chars=(base + start, base + end), answer_hit=hit.rank,
                      evidence=hit.text[e_start:e_end], reader=self.name), dataclasses.replace(best, replies=tuple(replies))

    @staticmethod
    def reads(hits: Sequence[Hit], *, tools: ReaderTools, question: str = "") -> list[list[Excerpt]]:
        """What each read of ``READ_TOKENS`` shows the model, leaving out a read that would show
        no more than the one before (short hits fit the first budget whole). A question about
        where something appeared ("Which outlet reported …?") is answered by a publisher
        passage, which ranks below the passages on the subject it names: each read also shows
        the publisher passages among the hits after the first ``READ_HITS``, a line each."""
        from query.answer import PUBLICATION_WORDS

        reads: list[list[Excerpt]] = []
        publishers = ([hit for hit in hits[READ_HITS:] if hit.citation.kind == PassageKind.PUBLISHER]
                      if PUBLICATION_WORDS.search(question.lower()) else [])
        for budget in READ_TOKENS:
            excerpts = excerpts_for(hits[:READ_HITS], tokens=budget, best_part=lambda hit: best_part(hit, tools))
            excerpts += [Excerpt(hit, 0, len(hit.text)) for hit in publishers]
            if excerpts and (not reads or excerpts != reads[-1]):
                reads.append(excerpts)
        return reads

    @staticmethod
    def _trace(reply: Reply, found: tuple[Excerpt, tuple[int, int]], *, excerpts: Sequence[Excerpt], wording) -> Trace:
        """The trace of a reply found in ``excerpts``. The evidence of a publisher passage is
        its article's: how much of the question the best excerpt of that article holds, and
        whether it is read first (the publisher's own line holds little of the question)."""
        excerpt, (start, end) = found
        hit = excerpt.hit
        evidence = [excerpt]
        if hit.citation.kind == PassageKind.PUBLISHER:
            evidence += [other for other in excerpts if other.hit.article == hit.article and other is not excerpt]
        coverage = max(wording.coverage(other.for_prompt()) for other in evidence)
        first = any(other.hit is excerpts[0].hit for other in evidence)
        base = hit.citation.chars[0]
        return Trace((reply,), logprob=reply.mean_logprob, coverage=coverage, rank=hit.rank, at=(start, end),
                     confidence=confidence_of(reply, coverage=coverage, first=first),
                     span=(hit.text[start:end], hit.citation.file, (base + start, base + end)))


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

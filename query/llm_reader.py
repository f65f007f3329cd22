"""A reader backed by a local language model: short answers that are verified spans of a file.

The model (a GGUF run in process by xllamacpp, loaded once per process) reads the top
passages and replies with a short answer copied from one of them, or NONE. The reply is
only shown when it is found verbatim in a passage (:mod:`query.llm_span`); then that span of
the cited file is the answer, and the sentence holding it its evidence. A reply found
nowhere is asked for once more; if the second reply is not found either, the sentence
picker answers instead (a reply of NONE abstains). Confidence
combines how sure the model was of its reply (token probabilities) with how much of the
question the answering passage contains; the weights and threshold were fitted on data by
``bench/reader.py``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from query.llm_span import clean_answer, evidence_span, find_span
from query.reader_model import INSTALL_HINT, ReaderUnavailable, model_path
from query.results import Answer, Hit

if TYPE_CHECKING:
    from query.searcher import Searcher

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
    """One loaded GGUF model answering chat completions in process, one request at a time."""

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
        """The greedy reply to ``messages`` with its tokens' log-probabilities."""
        request = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "logprobs": True,
                   "top_logprobs": 1, "cache_prompt": True, "seed": 0}
        began = time.perf_counter()
        with self.lock:
            response = self.server.handle_chat_completions(request)
        seconds = time.perf_counter() - began
        if not isinstance(response, dict) or "choices" not in response:
            message = response.get("error", response) if isinstance(response, dict) else response
            raise ReaderUnavailable(f"reader model {self.path}: {' '.join(str(message).split())[:200]}")
        choice = response["choices"][0]
        tokens = ((choice.get("logprobs") or {}).get("content")) or []
        return Reply(text=choice["message"].get("content") or "", seconds=seconds,
                     logprobs=tuple(float(token["logprob"]) for token in tokens))


_ENGINES: dict[Path, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(model: Path | str | None = None) -> Engine:
    """The process's engine for ``model`` (default: the shipped model), loaded on first use."""
    path = model_path(model)
    with _ENGINES_LOCK:
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


def with_fields(answer: Answer, **extra) -> Answer:
    """``answer`` with those of ``extra``'s fields that :class:`Answer` has (``evidence``,
    ``reader``: added by the Reader protocol's refactor)."""
    known = {f.name for f in dataclasses.fields(Answer)}
    return dataclasses.replace(answer, **{name: value for name, value in extra.items() if name in known})


Chat = Callable[[list[dict[str, str]]], Reply]


class LlmReader:
    """Short answers from a local model, each a verified span of a passage, else the fallback's."""

    name = "llm"

    def __init__(self, *, fallback: Callable[[str, list[Hit]], Answer], coverage: Callable[[str, str], float],
                 model: Path | str | None = None, chat: Chat | None = None) -> None:
        """``fallback(question, hits)`` answers when the model's reply is in no passage;
        ``coverage(question, text)`` is the question's keyword coverage by a passage;
        ``chat`` replaces the model (a bench replays cached replies through it)."""
        self.fallback = fallback
        self.coverage = coverage
        self.model = model
        self._chat = chat
        self.last: dict = {}
        """What the last read saw (replies, features): for benches and calibration."""

    def chat(self, messages: list[dict[str, str]]) -> Reply:
        if self._chat is None:
            self._chat = engine(self.model).chat
        return self._chat(messages)

    def read(self, question: str, hits: list[Hit]) -> Answer:
        """Read the top ``READ_PASSAGES`` of ``hits`` and answer ``question`` from them."""
        shown = hits[:READ_PASSAGES]
        messages = messages_for(question, shown)
        reply = self.chat(messages)
        found = locate(reply.text, shown)
        self.last = {"replies": [reply], "found": found is not None}
        if found is None and not is_none(reply.text):
            retry = self.chat([*messages, {"role": "assistant", "content": reply.text}, {"role": "user", "content": RETRY}])
            self.last["replies"].append(retry)
            found, reply = locate(retry.text, shown), retry
            if found is None:  # an answer the passages do not hold, twice: the sentence picker's turn
                self.last["fallback"] = True
                return with_fields(self.fallback(question, hits), reader="sentence")
        if found is None:
            return with_fields(Answer(question=question, answer=None, confident=False,
                                      confidence=1 - math.exp(reply.mean_logprob), citations=[], hits=hits),
                               reader=self.name, evidence=None)
        hit, (start, end) = found
        coverage = self.coverage(question, hit.embedded or hit.text)
        confidence = confidence_of(reply, coverage=coverage, first=hit is shown[0])
        base = hit.citation.chars[0]
        self.last.update(logprob=reply.mean_logprob, coverage=coverage, rank=hit.rank, confidence=confidence,
                         span=(hit.text[start:end], hit.citation.file, (base + start, base + end)))
        confident = confidence >= THRESHOLD
        e_start, e_end = evidence_span(hit.text, (start, end))
        return with_fields(
            Answer(question=question, answer=hit.text[start:end] if confident else None, confident=confident,
                   confidence=confidence, citations=[hit.citation] if confident else [], hits=hits,
                   answer_chars=(base + start, base + end) if confident else None,
                   answer_hit=hit.rank if confident else None),
            reader=self.name, evidence=hit.text[e_start:e_end] if confident else None)


def sentence_reader(searcher: Searcher) -> Callable[[str, list[Hit]], Answer]:
    """Today's sentence picker (:func:`query.answer.answer_from_hits`) over ``searcher``'s index."""
    from query.answer import answer_from_hits

    def read(question: str, hits: list[Hit]) -> Answer:
        return with_fields(answer_from_hits(question, hits, embed=searcher.embed, embed_question=searcher.embed_question,
                                            keyword=searcher.keyword), reader="sentence")

    return read


def reader_for(name: str | None, *, searcher: Searcher, model: Path | str | None = None,
               chat: Chat | None = None) -> Callable[[str, list[Hit]], Answer]:
    """``read(question, hits) -> Answer`` for reader ``name`` ("llm", "sentence", or None:
    llm where it is installed or a model is named, else sentence)."""
    if name not in (None, *READERS):
        from indexer.errors import QueryError

        raise QueryError(f"--reader: {name!r} is not one of {', '.join(READERS)}")
    if name == "sentence" and model is not None:
        from indexer.errors import QueryError

        raise QueryError("--reader-model applies to --reader llm, not --reader sentence")
    sentence = sentence_reader(searcher)
    if name == "sentence" or (name is None and model is None and chat is None and reader_available()):
        return sentence
    if chat is None and model is None and (why := reader_available()):
        raise ReaderUnavailable(f"--reader llm: {why}; run: {INSTALL_HINT}")
    from query.answer import Wording

    def coverage(question: str, text: str) -> float:
        return Wording(question, keyword=searcher.keyword).coverage(text)

    return LlmReader(fallback=sentence, coverage=coverage, model=model, chat=chat).read


def ask_with_reader(question: str, *, reader: str | None = None, reader_model: Path | str | None = None,
                    index: Path | str | None = None, k: int = 5, mode: str = "hybrid",
                    faiss_params: str | None = None) -> Answer:
    """:func:`query.ask` with a chosen reader (see :func:`reader_for`); the warning list says
    when the sentence picker answered because the reader is not installed."""
    from query.answer import ANSWER_PASSAGES
    from query.searcher import check_query, open_searcher

    check_query(question, k=k, mode=mode)
    searcher = open_searcher(index, faiss_params=faiss_params)
    read = reader_for(reader, searcher=searcher, model=reader_model)
    hits = searcher.search(question, k=max(k, ANSWER_PASSAGES, READ_PASSAGES), mode=mode)
    answer = read(question, hits)
    answer = dataclasses.replace(answer, hits=hits[:max(k, answer.answer_hit or 0)])
    if reader is None and reader_model is None and (why := reader_available()):
        answer.warnings.append(f"short answers need the reader ({why}): {INSTALL_HINT}")
    if warning := searcher.stale_warning():
        answer.warnings.append(warning)
    return answer

"""The LLM reader: short answers that are the cited file's own text, or the sentence picker, or none.

The model tests need the reader extra (``make test`` installs it); without it they are skipped."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from query.index import Index
from query.llm_reader import LlmReader, PromptTooLong, Reply, reader_available, reader_for
from query.readers import Reader, ReaderTools, SentenceReader
from query.results import Answer

ROOT = Path(__file__).resolve().parents[1]
INDEX, CORPUS = ROOT / "index", ROOT / "corpus"
GOLD = ROOT.parent / "shared" / "eval" / "questions.yaml"
needs_model = pytest.mark.skipif(reader_available() is not None, reason=f"reader not installed: {reader_available()}")


def semindex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "query.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def index():
    return Index.open(INDEX)


@pytest.fixture(scope="module")
def tools(index):
    searcher = index.searcher()
    return ReaderTools.of(searcher)


def scripted(*replies: str):
    """A chat that says ``replies`` in turn (the model's side of a conversation, for the
    verification logic; the real model is tested below)."""
    said = iter(replies)
    return lambda messages: Reply(text=next(said), logprobs=(-0.01,), seconds=0.0)


def file_text(answer: Answer) -> str:
    text = (CORPUS / answer.citations[0].file).read_text(encoding="utf-8")
    return text[answer.answer_chars[0]:answer.answer_chars[1]]


def test_a_reply_found_in_a_passage_is_that_span_of_the_file(index):
    question = "Who is the executive director of EleutherAI?"
    answer = index.ask(question, reader=LlmReader(chat=scripted('"stella biderman."')))
    assert answer.answer == "Stella Biderman" and file_text(answer) == answer.answer  # the file's case, not the model's
    hit = answer.hits[answer.answer_hit - 1]
    assert hit.citation == answer.citations[0] and answer.reader == "llm"
    assert "Stella Biderman" in answer.evidence and answer.evidence in hit.text and answer.evidence != answer.answer


def test_a_reply_in_no_passage_is_asked_again_then_left_to_the_sentence_picker(index, tools):
    question = "Who is the executive director of EleutherAI?"
    hits = index.search(question, k=5)
    reads = len(LlmReader.reads(hits, tools=tools))
    answer, trace = LlmReader(chat=scripted(*["Dr. Jane Roe"] * reads, "Jane Roe, PhD")).read_traced(
        question, hits, tools=tools)
    sentence = SentenceReader().read(question, hits, tools=tools)
    assert answer.answer == sentence.answer and answer.answer_chars == sentence.answer_chars
    assert "Jane Roe" not in (answer.answer or "") and answer.reader == "sentence"
    assert trace.fallback and len(trace.replies) == reads + 1  # each read, then once more on the last


def test_a_reply_restating_the_question_is_objected_to_then_left_to_the_sentence_picker(index, tools):
    """A reply found in a passage but holding no word the question lacks answers nothing."""
    question = "What could happen if top companies get spooked about open-source AI?"
    hits = index.search(question, k=5)
    reads = len(LlmReader.reads(hits, tools=tools))
    shown = []

    def chat(messages):
        shown.append(messages[-1]["content"])
        return Reply(text="top companies get spooked", logprobs=(-0.01,), seconds=0.0)

    answer, trace = LlmReader(chat=chat).read_traced(question, hits, tools=tools)
    assert trace.fallback and len(trace.replies) == reads + 1 and "repeats words of the question" in shown[-1]
    assert answer == dataclasses.replace(SentenceReader().read(question, hits, tools=tools), reader="sentence")
    declined = LlmReader(chat=scripted(*["top companies get spooked"] * reads, "NONE")).read(question, hits, tools=tools)
    assert declined == answer
    assert reads > 1  # a restatement on the first read: NONE on the last still leaves it to the picker
    assert LlmReader(chat=scripted("top companies get spooked", *["NONE"] * (reads - 1))).read(
        question, hits, tools=tools) == answer
    later, trace = LlmReader(chat=scripted("top companies get spooked", *["close up shop"] * (reads - 1))).read_traced(
        question, hits, tools=tools)
    assert later.answer == "close up shop" and len(trace.replies) == reads
    again = LlmReader(chat=scripted(*["top companies get spooked"] * reads, "close up shop")).read(question, hits, tools=tools)
    assert again.answer == "close up shop" and again.reader == "llm" and file_text(again) == again.answer


def test_only_a_reply_of_the_questions_own_keywords_is_a_restatement(index, tools):
    from query.answer import Wording
    from query.llm_prompt import RESTATED, RETRY
    from query.llm_reader import verified

    question = "Who is the executive director of EleutherAI?"
    excerpts = LlmReader.reads(index.search(question, k=5), tools=tools)[0]
    wording = Wording(question, keyword=tools.keyword)
    assert verified("EleutherAI", excerpts, wording) == (None, RESTATED)
    assert verified("Jane Roe", excerpts, wording) == (None, RETRY)
    assert verified("NONE", excerpts, wording) == (None, None)
    for reply in ("Stella Biderman", "the"):  # a new word, or no keyword at all ("8", "the"): an answer
        found, objection = verified(reply, excerpts, wording)
        assert objection is None and found[0].text[found[1][0] - found[0].start:found[1][1] - found[0].start].lower() == reply.lower()


def test_an_unsure_read_is_followed_by_a_longer_one(index, tools):
    """The first read is a window of the best paragraphs; NONE there reads more of them."""
    question = "Who is the executive director of EleutherAI?"
    hits = index.search(question, k=5)
    reads = LlmReader.reads(hits, tools=tools)
    assert len(reads) >= 1 and all(excerpt.text in excerpt.hit.text for read in reads for excerpt in read)
    assert all(sum(map(len, (e.text for e in a))) < sum(map(len, (e.text for e in b))) for a, b in zip(reads, reads[1:]))
    shown = []

    def chat(messages):
        shown.append(messages[-1]["content"])
        return Reply(text="NONE" if len(shown) < len(reads) else "Stella Biderman", logprobs=(-0.01,), seconds=0.0)

    answer, trace = LlmReader(chat=chat).read_traced(question, hits, tools=tools)
    assert answer.answer == "Stella Biderman" and len(trace.replies) == len(reads)
    assert file_text(answer) == answer.answer and all(len(a) < len(b) for a, b in zip(shown, shown[1:]))


def test_a_question_about_an_outlet_also_reads_the_publisher_passages(index, tools):
    """The publisher passage ranks below the passages on the subject the question names; a
    question about where something appeared reads it too, and its article's evidence counts."""
    question = "Which outlet reported that a leaked memo signals Big Tech worries?"
    hits = index.search(question, k=5)
    publisher = next(hit for hit in hits[3:] if hit.citation.kind == "publisher")
    assert all(any(excerpt.hit is publisher for excerpt in read) for read in LlmReader.reads(hits, tools=tools, question=question))
    assert not any(excerpt.hit is publisher for read in LlmReader.reads(hits, tools=tools, question="Who wrote the memo?")
                   for excerpt in read)
    answer = LlmReader(chat=scripted(publisher.text)).read(question, hits, tools=tools)
    assert answer.confident and answer.answer_hit == publisher.rank and file_text(answer) == publisher.text
    assert any(hit.article == publisher.article for hit in hits[:3])


def test_a_prompt_over_the_models_context_is_left_to_the_sentence_picker(index, tools):
    def too_long(messages):
        raise PromptTooLong("request (6029 tokens) exceeds the available context size (2048 tokens)")

    question = "Who is the executive director of EleutherAI?"
    hits = index.search(question, k=5)
    answer, trace = LlmReader(chat=too_long).read_traced(question, hits, tools=tools)
    assert answer == SentenceReader().read(question, hits, tools=tools) and trace.fallback and not trace.replies


def test_readers_by_name():
    assert isinstance(reader_for("sentence"), SentenceReader)
    assert isinstance(LlmReader(), Reader) and LlmReader().passages >= SentenceReader().passages
    with pytest.raises(Exception, match="applies to --reader llm"):
        reader_for("sentence", model="model.gguf")


def test_none_abstains_without_asking_again(index, tools):
    question = "Who won the 2022 FIFA World Cup?"
    hits = index.search(question, k=5)
    reads = len(LlmReader.reads(hits, tools=tools))
    answer, trace = LlmReader(chat=scripted(*["NONE"] * reads)).read_traced(question, hits, tools=tools)
    assert answer.answer is None and not answer.confident and answer.answer_chars is None
    assert answer.reader == "llm" and answer.evidence is None and len(trace.replies) == reads  # no retry of NONE


def test_one_reader_answers_concurrent_questions_each_from_its_own_passages(index):
    """The server shares one reader between its threads: no answer may carry another's."""
    names = {"Who is the executive director of EleutherAI?": "Stella Biderman",
             "Who won the 2022 FIFA World Cup?": "NONE"}

    def chat(messages):  # the reply depends only on the question asked
        return Reply(text=next(reply for q, reply in names.items() if q in messages[-1]["content"]),
                     logprobs=(-0.01,), seconds=0.0)

    reader, answers, lock = LlmReader(chat=chat), [], threading.Lock()

    def ask(question: str) -> None:
        answer = index.ask(question, reader=reader)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=ask, args=(question,)) for question in list(names) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8
    for answer in answers:
        assert answer.answer == (None if names[answer.question] == "NONE" else names[answer.question])


def test_search_never_loads_the_reader():
    code = ("import sys\nfrom query.cli import main\nsys.argv = ['semindex', 'search', 'EleutherAI', '--index', "
            f"{str(INDEX)!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'xllamacpp' not in sys.modules and 'query.llm_reader' not in sys.modules, 'loaded'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_bad_reader_model_is_one_line_exit_2(tmp_path):
    result = semindex("ask", "Who?", "--index", str(INDEX), "--reader", "llm", "--reader-model", str(tmp_path / "no.gguf"))
    assert result.returncode == 2 and result.stderr == f"error: {tmp_path / 'no.gguf'}: no such model file (--reader-model takes a .gguf file)\n"


@pytest.fixture(scope="module")
def gold_answers(index):
    """Every gold question asked once with the real model."""
    reader = reader_for("llm")
    entries = yaml.safe_load(GOLD.read_text(encoding="utf-8"))
    return [(entry, index.ask(entry["question"], reader=reader)) for entry in entries]


@needs_model
def test_every_confident_gold_answer_is_the_files_text_at_answer_chars(gold_answers):
    confident = [answer for _, answer in gold_answers if answer.confident]
    assert confident
    for answer in confident:
        assert file_text(answer) == answer.answer
        hit = answer.hits[answer.answer_hit - 1]
        assert hit.citation.chars[0] <= answer.answer_chars[0] < answer.answer_chars[1] <= hit.citation.chars[1]


@needs_model
def test_gold_unanswerable_questions_are_abstained(gold_answers):
    assert [answer.answer for entry, answer in gold_answers if not entry["answers"]] == [None, None]


@needs_model
def test_a_reply_does_not_depend_on_what_was_asked_before(gold_answers, index, tools):
    """The engine keeps only the fixed preamble cached between questions: the same prompt
    gets the same reply, to the last digit of its log-probabilities, after any other."""
    from query.llm_prompt import PREAMBLE_TURNS, messages_for
    from query.llm_reader import engine

    first, second = ("Who is the executive director of EleutherAI?", "Who is Meta AI's managing director?")
    prompts = {q: messages_for(q, LlmReader.reads(index.search(q, k=5), tools=tools)[0]) for q in (first, second)}
    chat = engine().chat
    before = chat(prompts[first], keep=PREAMBLE_TURNS)
    chat(prompts[second], keep=PREAMBLE_TURNS)
    again = chat(prompts[first], keep=PREAMBLE_TURNS)
    assert (again.text, again.logprobs) == (before.text, before.logprobs) and before.logprobs


@needs_model
def test_ask_llm_json_gives_a_short_answer_with_its_span():
    result = semindex("ask", "Who is the executive director of EleutherAI?", "--index", str(INDEX), "--reader", "llm",
                      "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "Stella Biderman" and data["confident"] and data["reader"] == "llm"
    assert "Stella Biderman" in data["evidence"]
    text = (CORPUS / data["citations"][0]["file"]).read_text(encoding="utf-8")
    assert text[data["answer_chars"][0]:data["answer_chars"][1]] == "Stella Biderman"


def test_unknown_reader_is_a_usage_error():
    result = semindex("ask", "Who?", "--index", str(INDEX), "--reader", "magic")
    assert result.returncode == 2 and "--reader" in result.stderr and result.stderr.count("\n") == 1


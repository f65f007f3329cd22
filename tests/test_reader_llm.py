"""The LLM reader: short answers that are the cited file's own text, or the sentence picker, or none.

The model tests need the reader extra (``make test`` installs it); without it they are skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from query.llm_reader import Reply, reader_available, reader_for
from query.results import Answer

ROOT = Path(__file__).resolve().parents[1]
INDEX, CORPUS = ROOT / "index", ROOT / "corpus"
GOLD = ROOT.parent / "shared" / "eval" / "questions.yaml"
needs_model = pytest.mark.skipif(reader_available() is not None, reason=f"reader not installed: {reader_available()}")


def semindex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "query.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def searcher():
    from query.searcher import open_searcher

    return open_searcher(INDEX)


def scripted(*replies: str):
    """A chat that says ``replies`` in turn (the model's side of a conversation, for the
    verification logic; the real model is tested below)."""
    said = iter(replies)
    return lambda messages: Reply(text=next(said), logprobs=(-0.01,), seconds=0.0)


def question_hits(searcher, question: str):
    return searcher.search(question, k=5)


def file_text(answer: Answer) -> str:
    text = (CORPUS / answer.citations[0].file).read_text(encoding="utf-8")
    return text[answer.answer_chars[0]:answer.answer_chars[1]]


def test_a_reply_found_in_a_passage_is_that_span_of_the_file(searcher):
    question = "Who is the executive director of EleutherAI?"
    read = reader_for("llm", searcher=searcher, chat=scripted('"stella biderman."'))
    answer = read(question, question_hits(searcher, question))
    assert answer.answer == "Stella Biderman" and file_text(answer) == answer.answer  # the file's case, not the model's
    assert answer.hits[answer.answer_hit - 1].citation == answer.citations[0]


def test_a_reply_in_no_passage_is_asked_again_then_left_to_the_sentence_picker(searcher):
    question = "Who is the executive director of EleutherAI?"
    hits = question_hits(searcher, question)
    read = reader_for("llm", searcher=searcher, chat=scripted("Dr. Jane Roe", "Jane Roe, PhD"))
    answer = read(question, hits)
    sentence = reader_for("sentence", searcher=searcher)(question, hits)
    assert answer.answer == sentence.answer and answer.answer_chars == sentence.answer_chars
    assert "Jane Roe" not in (answer.answer or "")
    assert read.__self__.last["fallback"] and len(read.__self__.last["replies"]) == 2


def test_none_abstains_without_asking_again(searcher):
    question = "Who won the 2022 FIFA World Cup?"
    read = reader_for("llm", searcher=searcher, chat=scripted("NONE"))
    answer = read(question, question_hits(searcher, question))
    assert answer.answer is None and not answer.confident and answer.answer_chars is None
    assert len(read.__self__.last["replies"]) == 1


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
def gold_answers(searcher):
    """Every gold question asked once with the real model."""
    read = reader_for("llm", searcher=searcher)
    entries = yaml.safe_load(GOLD.read_text(encoding="utf-8"))
    return [(entry, read(entry["question"], question_hits(searcher, entry["question"]))) for entry in entries]


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
def test_ask_llm_json_gives_a_short_answer_with_its_span():
    result = semindex("ask", "Who is the executive director of EleutherAI?", "--index", str(INDEX), "--reader", "llm",
                      "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "Stella Biderman" and data["confident"]
    text = (CORPUS / data["citations"][0]["file"]).read_text(encoding="utf-8")
    assert text[data["answer_chars"][0]:data["answer_chars"][1]] == "Stella Biderman"


def test_unknown_reader_is_a_usage_error():
    result = semindex("ask", "Who?", "--index", str(INDEX), "--reader", "magic")
    assert result.returncode == 2 and "--reader" in result.stderr and result.stderr.count("\n") == 1


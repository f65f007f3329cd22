"""SQuAD JSON as an eval target: layout of the indexed files, official scoring, end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from indexer.errors import SemindexError
from query.squad import evaluate_squad, exact_match, f1_score, holds_gold, load_squad, normalize_answer, pick_questions


def qa(question, *answers, impossible=False):
    entry = {"id": question[:20], "question": question, "answers": [{"text": a, "answer_start": 0} for a in answers]}
    if impossible:
        entry["is_impossible"] = True
    return entry


SQUAD = {"version": "v2.0", "data": [
    {"title": "Super_Bowl_50", "paragraphs": [
        {"context": "Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina Panthers 24-10.",
         "qas": [qa("Which team won Super Bowl 50?", "Denver Broncos", "The Denver Broncos"),
                 qa("Who lost to the Broncos?", "Carolina Panthers")]},
        {"context": "The game was played at Levi's Stadium in Santa Clara, California, on February 7, 2016.",
         "qas": [qa("Where was Super Bowl 50 played?", "Levi's Stadium"),
                 qa("Which team won Super Bowl 49?", impossible=True)]}]},
    {"title": "Oxygen", "paragraphs": [
        {"context": "Oxygen is a chemical element with symbol O and atomic number 8.",
         "qas": [qa("What is the atomic number of oxygen?", "8")]}]},
    {"title": "Amazon rainforest", "paragraphs": [
        {"context": "The Amazon rainforest covers much of the Amazon basin of South America.",
         "qas": [qa("What does the Amazon rainforest cover?", "much of the Amazon basin")]}]},
]}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    return path


def test_each_article_is_a_file_of_title_and_paragraphs(squad_file):
    articles = load_squad(squad_file)
    first = articles[0]
    assert first.file == "000_Super_Bowl_50.txt"
    assert first.text.startswith("Super Bowl 50\n\nSuper Bowl 50 was an American football game.")
    assert [first.text[s:e] for s, e in first.paragraphs] == [p["context"] for p in SQUAD["data"][0]["paragraphs"]]
    assert first.text.split("\n\n")[1] == SQUAD["data"][0]["paragraphs"][0]["context"]
    questions = first.questions
    assert questions[0].answers == ("Denver Broncos", "The Denver Broncos")
    assert questions[3].answers == ()  # is_impossible
    assert first.text[slice(*questions[2].paragraph)].startswith("The game was played")


@pytest.mark.parametrize(("data", "problem"), [
    ({"data": []}, "non-empty 'data' list"),
    ({"data": [{"title": "T"}]}, "data[0]: expected 'title' (string) and 'paragraphs' (list)"),
    ({"data": [{"title": "T", "paragraphs": [{"context": 3, "qas": []}]}]}, "data[0].paragraphs[0]: expected 'context'"),
    ({"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"question": "q?"}]}]}]},
     "data[0].paragraphs[0].qas[0]: no 'answers' and not 'is_impossible'"),
])
def test_malformed_squad_is_one_line_naming_the_field(tmp_path, data, problem):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SemindexError) as error:
        load_squad(path)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value) and "\n" not in str(error.value)


def test_official_normalisation_em_and_f1():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    assert f1_score("Denver Broncos defeated", "Denver Broncos") == pytest.approx(0.8)
    assert f1_score("Panthers", "Denver Broncos") == 0.0
    assert holds_gold("They beat the Carolina Panthers 24-10", ("Carolina Panthers",))
    assert not holds_gold("Carolina Panthersville", ("Carolina Panthers",))


def test_left_out_articles_make_unanswerable_questions_and_limit_spreads(squad_file):
    articles = load_squad(squad_file)
    indexed, questions = pick_questions(articles, limit=None, leave_out_every=3)
    assert [a.file for a in indexed] == [articles[0].file, articles[1].file]
    assert [q.answers for q in questions if q.file == articles[2].file] == [()]
    _, some = pick_questions(articles, limit=3, leave_out_every=3)
    assert len(some) == 3 and len({q.file for q in some}) >= 2


def test_evaluate_squad_end_to_end_with_the_sentence_reader(squad_file, tmp_path):
    report = evaluate_squad(squad_file, reader="sentence", leave_out_every=3, cache=tmp_path / "cache")
    row = report.to_dict()
    assert row["reader"] == "sentence" and row["queries"] == 6
    assert row["answerable"] == 4 and row["unanswerable"] == 2
    assert row["para@5"] == 1.0  # four questions, four paragraphs, a tiny index
    for key in ("em", "f1", "answered", "wrong", "abstain", "para@1"):
        assert 0.0 <= row[key] <= 1.0
    assert row["latency_p50_ms"] > 0 and row["latency_p95_ms"] >= row["latency_p50_ms"]
    again = evaluate_squad(squad_file, reader="sentence", leave_out_every=3, cache=tmp_path / "cache")
    assert {k: v for k, v in again.to_dict().items() if "latency" not in k} == {k: v for k, v in row.items() if "latency" not in k}


def test_cli_eval_takes_a_squad_file(squad_file):
    # its index goes to the user's eval cache, like a BEIR folder's
    done = subprocess.run([sys.executable, "-m", "query.cli", "eval", str(squad_file), "--reader", "sentence", "--json",
                           "--limit", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["reader"] == "sentence" and row["queries"] == 4
    bad = subprocess.run([sys.executable, "-m", "query.cli", "eval", str(squad_file), "--reader", "magic"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--reader" in bad.stderr

"""The semindex command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

INDEX = Path(__file__).resolve().parent.parent / "index"


def semindex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "query.cli", *args], capture_output=True, text=True, timeout=300)


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "sys.argv = ['semindex', '--help']\n"
        "from query.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'faiss') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "search" in result.stdout and "ask" in result.stdout


def test_search_json_has_the_contract_keys():
    result = semindex("search", "Who is the executive director of EleutherAI?", "-k", "3", "--index", str(INDEX), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["query"] == "Who is the executive director of EleutherAI?"
    assert len(data["hits"]) == 3
    for hit in data["hits"]:
        assert {"rank", "score", "text", "citation"} <= hit.keys()
        assert {"file", "title", "publisher", "url", "published", "lines", "chars"} <= hit["citation"].keys()
    assert "Stella Biderman" in data["hits"][0]["text"]


def test_ask_json_abstains_on_an_unanswerable_question():
    result = semindex("ask", "Who won the 2022 FIFA World Cup?", "--index", str(INDEX), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"question", "answer", "confident", "citations", "hits"} <= data.keys()
    assert data["answer"] is None and data["confident"] is False
    assert data["hits"]


def test_ask_prints_answer_and_citation():
    result = semindex("ask", "Who is the executive director of EleutherAI?", "--index", str(INDEX))
    assert result.returncode == 0, result.stderr
    assert "Stella Biderman" in result.stdout
    assert "MIT Technology Review" in result.stdout
    assert "002_d47237756c0cdcf3.txt" in result.stdout


def test_info_reports_links_and_chrome():
    result = semindex("info", "--index", str(INDEX), "--json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["counts"]["linked_bodies"] == 1
    assert manifest["links"][0]["file"] == "002_d47237756c0cdcf3.txt"
    assert any(block["kind"] == "tail" for block in manifest["chrome"])


def test_bad_mode_is_a_usage_error():
    result = semindex("search", "x", "--index", str(INDEX), "--mode", "magic")
    assert result.returncode == 2
    assert "magic" in result.stderr


def test_search_warns_when_the_corpus_changed_since_the_build(tmp_path):
    import shutil

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "corpus", tmp_path / "corpus")
    shutil.copytree(root / "index", tmp_path / "index", ignore=shutil.ignore_patterns(".lock"))
    fresh = semindex("search", "EleutherAI", "--index", str(tmp_path / "index"), "--json")
    assert fresh.returncode == 0 and "corpus changed" not in fresh.stderr
    assert json.loads(fresh.stdout)["warnings"] == []
    (tmp_path / "corpus" / "005_new.md").write_text("A new article about open models.\n", encoding="utf-8")
    result = semindex("search", "EleutherAI", "--index", str(tmp_path / "index"), "--json")
    assert result.returncode == 0, result.stderr
    assert "corpus changed since this index was built (added 005_new.md)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(result.stdout)["warnings"]


def test_check_rebuilds_at_the_precision_of_the_checked_index(bundled_index: Path):
    for index in (bundled_index, INDEX):  # int8 (the default for new indexes), and the committed fp32 one
        result = semindex("build", str(INDEX.parent / "corpus"), "--index", str(index), "--check")
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout


def test_eval_json_has_the_contract_keys():
    gold = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "questions.yaml"
    result = semindex("eval", str(gold), "--index", str(INDEX), "--mode", "keyword", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@1", "hit@3", "abstain", "queries"} <= data.keys()
    assert data["mode"] == "keyword" and data["queries"] == 18 and data["abstain"] == 1.0


@pytest.mark.parametrize("option, value", [("--model", "elsewhere"), ("--split", "test"), ("--precision", "int8")])
def test_eval_options_of_a_beir_folder_are_refused_for_gold_questions(option, value):
    gold = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "questions.yaml"
    result = semindex("eval", str(gold), "--index", str(INDEX), option, value)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"{option} applies to a BEIR folder" in result.stderr


def test_eval_of_a_beir_folder_names_the_split_it_chose(tmp_path):
    from test_evaluate import write_beir

    folder = write_beir(tmp_path / "tiny")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tbees\t1\n", encoding="utf-8")
    env = {**os.environ, "SEMINDEX_CACHE": str(tmp_path / "cache")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "query.cli", "eval", str(folder), "--mode", "keyword",  # noqa: E731
                                        "--precision", "fp32", *args], capture_output=True, text=True, timeout=300, env=env)
    result = run()
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "several splits (dev, train) and no test.tsv; name one with --split" in result.stderr
    result = run("--split", "dev")
    assert result.returncode == 0, result.stderr
    assert "(dev split)" in result.stdout
    result = run("--split", "dev", "--json")
    assert json.loads(result.stdout)["split"] == "dev" and json.loads(result.stdout)["queries"] == 1


def test_eval_warns_once_for_several_modes(tmp_path):
    gold = tmp_path / "gold.yaml"
    gold.write_text('- {question: "Who is the executive director of EleutherAI?", answers: ["Stella Biderman"], '
                    'sources: [nosuch.txt]}\n', encoding="utf-8")
    result = semindex("eval", str(gold), "--index", str(INDEX), "--mode", "dense", "--mode", "keyword", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"warning: {gold}: entry 1: source(s) 'nosuch.txt' not in the index; it scores 0"]
    assert [row["warnings"] for row in json.loads(result.stdout)] == [[result.stderr.splitlines()[0][9:]]] * 2


def test_eval_index_option_is_refused_for_a_beir_folder(tmp_path):
    (tmp_path / "beir").mkdir()
    result = semindex("eval", str(tmp_path / "beir"), "--index", str(INDEX))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--index applies to gold questions" in result.stderr


def test_eval_limit_keeps_the_first_gold_questions():
    gold = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "questions.yaml"
    result = semindex("eval", str(gold), "--index", str(INDEX), "--mode", "keyword", "--limit", "3", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queries"] == 3


def test_corpus_text_that_looks_like_markup_is_printed_as_it_is(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report [draft].md").write_text(
        '---\ntitle: "Parrots [/red] and macaws"\n---\nParrots [/] live in the Amazon. '
        "A [link=http://x]macaw[/link] can live sixty years.\n", encoding="utf-8")
    index = str(tmp_path / "index")
    assert semindex("build", str(corpus), "--index", index).returncode == 0
    for args in (("search", "parrots"), ("ask", "How long can a macaw live?"), ("info",)):
        result = semindex(*args, "--index", index)
        assert result.returncode == 0, result.stderr
        assert "report [draft].md" in result.stdout
    assert "[link=http://x]macaw[/link]" in semindex("search", "macaw", "--index", index).stdout


def test_empty_question_is_one_line_and_bad_sizes_are_usage_errors():
    result = semindex("ask", " ", "--index", str(INDEX))
    assert result.returncode == 2 and result.stderr.strip() == "error: the question is empty"
    gold = str(Path(__file__).resolve().parents[1] / "bench" / "calibration_questions.yaml")
    for args, option in ((("build", "corpus", "--index", "unused", "--max-tokens", "0"), "--max-tokens"),
                         (("eval", gold, "--index", str(INDEX), "--limit", "0"), "--limit")):
        result = semindex(*args)
        assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["search", "ask"])
def test_a_question_of_invalid_bytes_is_one_line_error(command):
    result = subprocess.run([sys.executable, "-m", "query.cli", command, b"EleutherAI \xff", "--index", str(INDEX)],
                            capture_output=True, timeout=300)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode() == "error: the question is not valid Unicode: unpaired surrogate '\\udcff' at character 11\n"


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_check_at_another_precision_hints_the_build_that_brings_the_index_to_it(bundled_index: Path):
    corpus = INDEX.parent / "corpus"
    result = semindex("build", str(corpus), "--index", str(bundled_index), "--check", "--precision", "fp32")
    assert result.returncode == 1
    assert f"{bundled_index}: stale: passages embedded at int8, not fp32" in result.stderr.splitlines()
    assert result.stderr.splitlines()[-1] == f"rebuild it with: semindex build {corpus} --index {bundled_index} --precision fp32"


def test_check_removes_the_temporary_folders_of_killed_checks_only(tmp_path):
    scratch = tmp_path / "tmp"
    killed = scratch / f"semindex-check-{dead_pid()}-abcd_123"
    running = scratch / f"semindex-check-{os.getpid()}-efgh_456"
    old_unnamed, new_unnamed, other = scratch / "semindex-check-k3j_x9a2", scratch / "semindex-check-q0w_e1r2", scratch / "other"
    for folder in (killed, running, old_unnamed, new_unnamed, other):
        (folder / "index").mkdir(parents=True)
    os.utime(old_unnamed, (0, 0))  # made long ago, by a version that put no pid in the name
    env = {**os.environ, "TMPDIR": str(scratch)}
    result = subprocess.run([sys.executable, "-m", "query.cli", "build", str(INDEX.parent / "corpus"), "--index", str(INDEX),
                             "--check"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in scratch.glob("semindex-check-*")} == {running.name, new_unnamed.name}  # its own is gone too
    assert other.is_dir()

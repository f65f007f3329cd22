"""The evaluator end to end (query.evaluate): gold questions against the bundled index, and a
small BEIR folder indexed into a cache keyed by corpus and model, in every mode."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from indexer.errors import SemindexError
from query.evaluate import METRIC_KEYS, beir_documents, beir_index_path, cache_fill_lock, evaluate_beir, evaluate_gold

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "index"
GOLD = ROOT.parent / "shared" / "eval" / "questions.yaml"

DOCUMENTS = {
    "bees": ("Honey bee colonies", "Worker bees forage for nectar and pollen and store honey in wax combs."),
    "volcano": ("Volcanic eruptions", "Magma rises through the crust and erupts as lava, ash and volcanic gas."),
    "chess": ("Chess openings", "The Sicilian Defence answers the king's pawn opening with a pawn to c5."),
    "tides": ("Ocean tides", "The gravitational pull of the Moon raises the tides twice a day."),
    "bread": ("Sourdough bread", "A sourdough starter of wild yeast and lactobacilli leavens the dough."),
}
QUERIES = {
    "q1": ("Where do bees store honey?", "bees"),
    "q2": ("What makes lava come out of a volcano?", "volcano"),
    "q3": ("Which chess defence replies with a pawn to c5?", "chess"),
    "q4": ("Why does the Moon cause tides?", "tides"),
}


def write_beir(folder: Path, *, documents: dict = DOCUMENTS, queries: dict = QUERIES, split: str = "train") -> Path:
    """A BEIR folder of ``documents`` (key: (title, text)) and ``queries`` (id: (text, relevant key))."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": key, "title": title, "text": text}) + "\n" for key, (title, text) in documents.items()),
        encoding="utf-8",
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, (text, _) in queries.items()), encoding="utf-8"
    )
    (folder / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{qid}\t{doc}\t1\n" for qid, (_, doc) in queries.items()),
        encoding="utf-8",
    )
    return folder


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_beir_folder_in_every_mode(tmp_path, mode):
    folder = write_beir(tmp_path / "tiny")
    report = evaluate_beir(folder, mode=mode, cache=tmp_path / "cache").to_dict()
    assert report["queries"] == len(QUERIES)
    assert set(METRIC_KEYS) <= report.keys() and report["abstain"] is None
    # every query has one obviously relevant document among five unrelated ones
    assert report["hit@1"] == 1.0 and report["ndcg@10"] == 1.0 and report["recall@100"] == 1.0, report
    assert report["latency_mean_ms"] > 0 and report["latency_p95_ms"] > 0


def test_beir_folder_is_evaluated_on_its_test_split_when_it_has_one(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\tchess\t1\nq4\tbread\t1\n",
                                              encoding="utf-8")
    cache = tmp_path / "cache"
    tested = evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32").to_dict()
    assert (tested["split"], tested["queries"], tested["hit@1"]) == ("test", 2, 0.5)  # q4's judged document is wrong
    trained = evaluate_beir(folder, split="train", mode="keyword", cache=cache, precision="fp32").to_dict()
    assert (trained["split"], trained["queries"], trained["hit@1"]) == ("train", 4, 1.0)


def test_beir_index_is_cached_per_corpus_and_model(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32")
    built = [path for path in (cache / "beir").iterdir() if path.is_dir()]
    assert len(built) == 1
    marker = built[0] / "CURRENT"
    stamp = marker.stat().st_mtime_ns
    evaluate_beir(folder, mode="dense", cache=cache, precision="fp32")
    assert marker.stat().st_mtime_ns == stamp, "the second evaluation reused the cached index"
    from indexer.chunking import ChunkSettings

    keys = {beir_index_path(folder, cache=cache, model=model, settings=ChunkSettings(), precision="fp32")
            for model in (None, "sentence-transformers/all-mpnet-base-v2")}
    assert len(keys) == 2 and built[0] in keys, "another model gets another cache folder"


def test_a_second_run_waits_for_the_one_filling_the_cache_then_reuses_it(tmp_path, capsys):
    from indexer.build import build_from_parsed
    from indexer.chunking import ChunkSettings
    from query.beir import load_beir

    folder = write_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    index = beir_index_path(folder, cache=cache, model=None, settings=ChunkSettings(), precision="fp32")
    reports, failures = [], []

    def second_run():
        try:
            reports.append(evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32").to_dict())
        except Exception as exc:  # surfaced by the assertion below
            failures.append(exc)

    with cache_fill_lock(index):  # the first run, filling the cache
        waiter = threading.Thread(target=second_run, daemon=True)
        waiter.start()
        said, deadline = "", time.time() + 60
        while "waiting" not in said and waiter.is_alive() and time.time() < deadline:
            time.sleep(0.05)
            said += capsys.readouterr().err
        assert "another run is indexing this corpus; waiting for it" in said and waiter.is_alive(), (said, failures)
        build_from_parsed(beir_documents(load_beir(folder)), index=index, model=None, settings=ChunkSettings(),
                          precision="fp32")
        stamp = (index / "CURRENT").stat().st_mtime_ns
    waiter.join(timeout=300)
    assert not failures and reports and reports[0]["hit@1"] == 1.0, failures
    assert (index / "CURRENT").stat().st_mtime_ns == stamp, "the run that waited reused the index, not rebuilt it"


def test_answer_accuracy_is_the_share_of_short_answers_containing_a_gold_answer(tmp_path):
    asked = "Who is the executive director of EleutherAI?"
    gold = tmp_path / "gold.yaml"
    gold.write_text(yaml.safe_dump([
        {"question": asked, "answers": ["Stella Biderman"], "sources": ["002_d47237756c0cdcf3.txt"]},
        {"question": asked, "answers": ["Somebody Else"], "sources": ["002_d47237756c0cdcf3.txt"]},
        {"question": "Who won the 2022 FIFA World Cup?", "answers": [], "sources": []},
    ]), encoding="utf-8")
    report = evaluate_gold(gold, index=INDEX).to_dict()
    assert report["answer"] == 0.5 and report["abstain"] == 1.0 and report["queries"] == 3, report


def test_relevant_documents_missing_from_a_beir_corpus_are_reported(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    with (folder / "qrels" / "train.tsv").open("a", encoding="utf-8") as qrels:
        qrels.write("q2\tgone\t1\nq3\tbread\t0\n")
    report = evaluate_beir(folder, mode="keyword", cache=tmp_path / "cache", precision="fp32").to_dict()
    assert report["recall@10"] == 7 / 8, report  # q2 finds one of its two relevant documents
    assert report["warnings"] == [f"{folder / 'qrels' / 'train.tsv'}: 1 relevant document(s) not in corpus.jsonl "
                                  "(first: 'gone'); they count as relevant and cannot be found"]
    assert evaluate_beir(folder, mode="keyword", cache=tmp_path / "cache", precision="fp32", limit=1).warnings == []


def test_gold_questions_against_the_bundled_index():
    report = evaluate_gold(GOLD, index=INDEX).to_dict()
    assert report["queries"] == 18
    assert report["hit@1"] == 1.0 and report["abstain"] == 1.0, report


def test_missing_target_is_one_line_error(tmp_path):
    with pytest.raises(SemindexError, match="corpus.jsonl: file not found"):
        evaluate_beir(tmp_path / "nowhere", cache=tmp_path / "cache")


GOOD_ENTRY = {"question": "Who is the executive director of EleutherAI?", "answers": ["Stella Biderman"],
              "sources": ["002_d47237756c0cdcf3.txt"]}


def test_gold_questions_that_can_only_score_zero_are_named(tmp_path):
    gold = tmp_path / "gold.yaml"
    gold.write_text(yaml.safe_dump([
        GOOD_ENTRY,
        {**GOOD_ENTRY, "sources": ["002_d47237756c0cdcf3.md", "elsewhere/002.txt"]},
        {**GOOD_ENTRY, "answers": ["Stella Bidermann"]},
    ]), encoding="utf-8")
    report = evaluate_gold(gold, index=INDEX, mode="keyword").to_dict()
    assert report["hit@1"] == 1 / 3, report
    assert report["warnings"] == [
        f"{gold}: entry 2: source(s) '002_d47237756c0cdcf3.md', 'elsewhere/002.txt' not in the index; it scores 0",
        f"{gold}: entry 3: no passage of its sources contains one of its answers; it scores 0",
    ]


@pytest.mark.parametrize(("entry", "problem"), [
    ({**GOOD_ENTRY, "answers": "Zzyzx Nobody"}, "'answers' must be a list of non-empty strings"),
    ({**GOOD_ENTRY, "answers": [1234]}, "'answers' must be a list of non-empty strings"),
    ({**GOOD_ENTRY, "answers": [""]}, "'answers' must be a list of non-empty strings"),
    ({**GOOD_ENTRY, "sources": "002_x.txt"}, "'sources' must be a list of non-empty strings"),
    ({**GOOD_ENTRY, "question": 12345}, "'question' must be a non-empty string"),
    ({**GOOD_ENTRY, "question": " "}, "'question' must be a non-empty string"),
    ({key: value for key, value in GOOD_ENTRY.items() if key != "question"}, "'question' must be a non-empty string"),
    ({**GOOD_ENTRY, "sources": None}, "'sources' is needed when 'answers' is given"),
    ({**GOOD_ENTRY, "question": "Who\udcff?"}, "'question' is not valid Unicode (unpaired surrogate '\\udcff' at character 3)"),
    ({"question": "Who?", "answer": ["a misspelt key"], "sources": ["x.txt"]},
     "'answers' is missing; give the answers, or [] for a question the corpus does not answer"),
    ({**GOOD_ENTRY, "answers": None}, "'answers' is missing; give the answers, or [] for a question the corpus does not answer"),
    ("just a string", "expected a mapping with 'question', 'answers' and 'sources'"),
])
def test_malformed_gold_entry_is_one_line_error(tmp_path, entry, problem):
    import yaml

    path = tmp_path / "questions.yaml"
    path.write_text(yaml.safe_dump([GOOD_ENTRY, {"question": "Unanswerable?", "answers": []}, entry]), encoding="utf-8")
    # validated before the index is opened: a missing index would be the error otherwise
    with pytest.raises(SemindexError) as info:
        evaluate_gold(path, index=tmp_path / "no-index")
    assert str(info.value) == f"{path}: entry 3: {problem}"


@pytest.mark.parametrize(("text", "problem"), [
    ("[]\n", ": expected a non-empty list of entries"),
    ("question: what?\n", ": expected a non-empty list of entries"),
    ("", ": expected a non-empty list of entries"),
    ("- question: ok\n- {question: what?\n", ":2: invalid YAML (expected ',' or '}'"),
    (b"- question: \xff\n", ": cannot read gold questions"),
    ("- question: \x00\n", ": invalid YAML (unacceptable character"),
])
def test_unreadable_gold_file_is_one_line_error(tmp_path, text, problem):
    path = tmp_path / "questions.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SemindexError) as info:
        evaluate_gold(path, index=tmp_path / "no-index")
    assert str(info.value).startswith(f"{path}{problem}")
    assert "\n" not in str(info.value)


def test_beir_qrels_without_judged_queries_is_one_line_error(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n\n", encoding="utf-8")
    with pytest.raises(SemindexError) as info:
        evaluate_beir(folder, cache=tmp_path / "cache")
    assert str(info.value) == f"{folder / 'qrels' / 'train.tsv'}: no judged queries"
    assert not (tmp_path / "cache").exists(), "refused before any index is built"


@pytest.mark.parametrize("corpus", ["", "\n", '{"_id": "d1", "text": ""}\n{"_id": "d2", "title": " ", "text": "\\n"}\n'])
def test_beir_corpus_without_text_is_one_line_error(tmp_path, corpus):
    folder = write_beir(tmp_path / "tiny")
    (folder / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    with pytest.raises(SemindexError) as info:
        evaluate_beir(folder, cache=tmp_path / "cache")
    assert str(info.value) == f"{folder / 'corpus.jsonl'}: no documents with text"
    assert not (tmp_path / "cache").exists(), "refused before any index is built"


@pytest.mark.parametrize(("name", "line", "problem"), [
    ("queries.jsonl", '{"_id": "q1", "text": "Where do bees \\udcff store honey?"}',
     "1: not valid Unicode (unpaired surrogate '\\udcff' at character 14)"),
    ("queries.jsonl", '{"_id": "q1", "text": "   "}', "1: query 'q1' is judged but has no text"),
    ("corpus.jsonl", '{"_id": "bees", "title": "Honey bee colonies", "text": "\\ud800"}',
     "1: not valid Unicode (unpaired surrogate '\\ud800' at character 18)"),
])
def test_beir_text_that_cannot_be_searched_is_one_line_error(tmp_path, name, line, problem):
    folder = write_beir(tmp_path / "tiny")
    path = folder / name
    path.write_text(line + "\n" + "".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    with pytest.raises(SemindexError) as info:
        evaluate_beir(folder, cache=tmp_path / "cache")
    assert str(info.value) == f"{path}:{problem}"


def test_a_damaged_beir_cache_is_indexed_again(tmp_path, capsys, monkeypatch):
    import query.index

    folder = write_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32")
    index = next(path for path in (cache / "beir").iterdir() if path.is_dir())
    generation = index / (index / "CURRENT").read_text().strip()
    with (generation / "passages.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("{}\n")
    monkeypatch.setattr(query.index, "_OPEN", {})  # as in a new process
    report = evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32").to_dict()
    assert report["hit@1"] == 1.0
    assert "passages.jsonl: corrupt" in capsys.readouterr().err


def test_a_copy_of_the_relevant_text_counts_as_the_same_hit(tmp_path, embedder):
    from indexer.build import build_index

    text = "Ferret Labs is directed by Alice Zorn, who founded it in 2019.\n"
    corpus = tmp_path / "corpus"
    for folder in ("a", "b"):
        (corpus / folder).mkdir(parents=True)
        (corpus / folder / "copy.txt").write_text(text, encoding="utf-8")
    (corpus / "other.txt").write_text("The harbour ferry resumed service on Monday after the storm.\n", encoding="utf-8")
    build_index(corpus=corpus, index=tmp_path / "index", embedder=embedder)
    for source in ("a/copy.txt", "b/copy.txt"):
        path = tmp_path / "gold.yaml"
        path.write_text(yaml.safe_dump([{"question": "Who directs Ferret Labs?", "answers": ["Alice Zorn"],
                                         "sources": [source]}]), encoding="utf-8")
        report = evaluate_gold(path, index=tmp_path / "index", mode="keyword").to_dict()
        assert report["hit@1"] == 1.0, (source, report)


def test_a_beir_cache_built_by_other_indexer_code_is_updated(tmp_path, capsys):
    from indexer.store import MANIFEST, live_generation

    folder = write_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32")
    index = next(path for path in (cache / "beir").iterdir() if path.is_dir())
    old = live_generation(index)
    manifest = json.loads((old / MANIFEST).read_text(encoding="utf-8"))
    manifest["pipeline"] = "sha256:an-older-indexer"
    (old / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32")
    assert live_generation(index) != old
    assert "built by another version of the indexer" in capsys.readouterr().err
    evaluate_beir(folder, mode="keyword", cache=cache, precision="fp32")  # now current: left alone
    assert "built by another version" not in capsys.readouterr().err


def test_several_targets_print_one_summary_with_a_mean_row_per_mode(tmp_path):
    """`semindex eval A B --mode … --json`: every target's reports, then one summary row per
    (target, mode) with its headline measure, and per mode the mean over the targets."""
    import subprocess
    import sys

    half = tmp_path / "half.yaml"
    entries = yaml.safe_load(GOLD.read_text(encoding="utf-8"))
    half.write_text(yaml.safe_dump(entries[:6]), encoding="utf-8")
    semindex = Path(sys.executable).with_name("semindex")
    done = subprocess.run([semindex, "eval", GOLD, half, "--index", INDEX, "--mode", "hybrid", "--mode", "keyword",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["targets"]) == 4
    rows = {(row["target"], row["mode"]): row for row in data["summary"]}
    assert list(rows)[-2:] == [("mean", "hybrid"), ("mean", "keyword")]
    for mode in ("hybrid", "keyword"):
        first, second = rows[(str(GOLD), mode)], rows[(str(half), mode)]
        assert first["measure"] == second["measure"] == "hit@1"
        assert rows[("mean", mode)]["score"] == pytest.approx((first["score"] + second["score"]) / 2)
    own = evaluate_gold(half, index=INDEX, mode="keyword").scores["hit@1"]
    assert rows[(str(half), "keyword")]["score"] == own

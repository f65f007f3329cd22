"""Hand-computed checks for query.metrics and the BEIR loader in query.beir.

Expected values are worked out in the comments; log2(2) = 1, log2(3) ~ 1.585,
log2(4) = 2, log2(5) ~ 2.322. Reference semantics: trec_eval's ndcg_cut, recall,
recip_rank and success, which is what pytrec_eval and BEIR report.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from query.beir import BeirFormatError, Document, choose_split, corpus_hash, load_beir
from query.metrics import (
    dedupe_ranking,
    has_relevant,
    hit_at_k,
    mean,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    rank_with_ties,
    recall_at_k,
    summarize,
)

# --- nDCG -------------------------------------------------------------------------


def test_ndcg_perfect_ranking_is_one() -> None:
    qrels = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "x"], qrels, k=10) == pytest.approx(1.0)


def test_ndcg_single_relevant_at_rank_three() -> None:
    # DCG = 1/log2(3+1) = 1/2; IDCG = 1/log2(2) = 1  ->  0.5
    assert ndcg_at_k(["x", "y", "a", "z"], {"a": 1}, k=10) == pytest.approx(0.5)


def test_ndcg_several_relevant() -> None:
    # Relevant a (rank 1) and c (rank 3), b unretrieved.
    # DCG  = 1/log2(2) + 1/log2(4)              = 1 + 0.5       = 1.5
    # IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4)  = 1 + 0.63093 + 0.5 = 2.13093
    expected = 1.5 / (1 + 1 / math.log2(3) + 0.5)
    assert ndcg_at_k(["a", "x", "c"], {"a": 1, "b": 1, "c": 1}, k=10) == pytest.approx(expected)
    assert expected == pytest.approx(0.703918, abs=1e-6)


def test_ndcg_graded_swapped_uses_linear_gain() -> None:
    # Grades a=2, b=1, ranked b then a.
    # DCG  = 1/log2(2) + 2/log2(3) = 1 + 1.26186 = 2.26186
    # IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.63093 = 2.63093
    # nDCG = 2.26186 / 2.63093 = 0.85972  (2**rel - 1 gains would give 2.893 / 3.631 = 0.797)
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, k=10) == pytest.approx(expected)
    assert expected == pytest.approx(0.859719, abs=1e-6)


def test_ndcg_ignores_zero_and_negative_grades() -> None:
    # Only a counts: DCG = 1/log2(3) = 0.63093, IDCG = 1  ->  0.63093
    qrels = {"a": 1, "z": 0, "n": -1}
    assert ndcg_at_k(["z", "a", "n"], qrels, k=10) == pytest.approx(1 / math.log2(3))


def test_ndcg_cutoff_smaller_than_list() -> None:
    # k=2 sees ["x", "y"] only: DCG = 0 although a is at rank 3.
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, k=2) == 0.0
    # IDCG is truncated at k too: 3 relevant docs, k=1, a at rank 1 -> 1/1 = 1.0
    assert ndcg_at_k(["a", "b", "c"], {"a": 1, "b": 1, "c": 1}, k=1) == pytest.approx(1.0)


def test_ndcg_ideal_is_sorted_by_grade_and_truncated_at_k() -> None:
    # qrels a=1, b=3, c=2; ranking a, c; k=2.
    # DCG  = 1/log2(2) + 2/log2(3)   = 1 + 1.26186 = 2.26186
    # IDCG = 3/log2(2) + 2/log2(3)   = 3 + 1.26186 = 4.26186  (grade 1 falls past k)
    expected = (1 + 2 / math.log2(3)) / (3 + 2 / math.log2(3))
    assert ndcg_at_k(["a", "c"], {"a": 1, "b": 3, "c": 2}, k=2) == pytest.approx(expected)


# --- queries without a relevant document ------------------------------------------


def test_query_without_relevant_document_scores_zero_everywhere() -> None:
    qrels = {"a": 0, "b": -1}
    ranking = ["a", "b"]
    assert not has_relevant(qrels)
    assert not has_relevant({})
    assert has_relevant({"a": 0, "b": 2})
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        assert metric(ranking, qrels, k=10) == 0.0
        assert metric([], {}, k=10) == 0.0


def test_empty_ranking_scores_zero() -> None:
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        assert metric([], {"a": 1}, k=5) == 0.0


def test_k_must_be_positive() -> None:
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        with pytest.raises(ValueError, match="k must be >= 1"):
            metric(["a"], {"a": 1}, k=0)


# --- recall, MRR, hit --------------------------------------------------------------


def test_recall_with_more_relevant_than_k() -> None:
    # 4 relevant, k=2, both top-2 relevant: 2/4 = 0.5 (denominator not capped at k)
    qrels = {"a": 1, "b": 1, "c": 1, "d": 1}
    assert recall_at_k(["a", "b", "c", "d"], qrels, k=2) == pytest.approx(0.5)
    assert recall_at_k(["a", "b", "c", "d"], qrels, k=4) == pytest.approx(1.0)


def test_recall_counts_any_positive_grade_once() -> None:
    # Relevant: a (2), b (1); c has grade 0. Top 3 = a, c, x -> 1 of 2 = 0.5
    assert recall_at_k(["a", "c", "x", "b"], {"a": 2, "b": 1, "c": 0}, k=3) == pytest.approx(0.5)


def test_mrr() -> None:
    qrels = {"b": 1, "d": 1}
    # First relevant is b at rank 2 -> 1/2
    assert mrr_at_k(["a", "b", "c", "d"], qrels, k=10) == pytest.approx(0.5)
    # k=1 sees only a -> 0
    assert mrr_at_k(["a", "b", "c", "d"], qrels, k=1) == 0.0
    # First relevant at rank 4 -> 0.25
    assert mrr_at_k(["x", "y", "z", "d"], qrels, k=4) == pytest.approx(0.25)


def test_hit() -> None:
    qrels = {"c": 1}
    assert hit_at_k(["a", "b", "c"], qrels, k=3) == 1.0
    assert hit_at_k(["a", "b", "c"], qrels, k=2) == 0.0


# --- duplicates --------------------------------------------------------------------


def test_dedupe_ranking_keeps_first_occurrence() -> None:
    assert dedupe_ranking(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
    assert dedupe_ranking([]) == []


def test_metrics_collapse_duplicates_before_cutoff() -> None:
    # Passages of a appear three times; distinct top-2 is a, b.
    ranking = ["a", "a", "a", "b"]
    qrels = {"a": 1, "b": 1}
    # Without dedupe a would earn gain twice (DCG > IDCG); with it: a@1, b@2 -> 1.0
    assert ndcg_at_k(ranking, qrels, k=2) == pytest.approx(1.0)
    # Recall 2/2, not 3/2 or 1/2 (b is the second *distinct* doc).
    assert recall_at_k(ranking, qrels, k=2) == pytest.approx(1.0)
    # x duplicated ahead of b: distinct order x, b -> b at rank 2 -> 1/2
    assert mrr_at_k(["x", "x", "b"], {"b": 1}, k=2) == pytest.approx(0.5)


# --- ties --------------------------------------------------------------------------


def test_rank_with_ties_breaks_ties_by_doc_id_descending() -> None:
    scores = {"d1": 0.5, "d3": 0.5, "d2": 0.9, "d0": 0.5, "d9": 0.1}
    assert rank_with_ties(scores) == ["d2", "d3", "d1", "d0", "d9"]
    # String order, not numeric: "10" < "9"
    assert rank_with_ties({"9": 1.0, "10": 1.0}) == ["9", "10"]


def test_rank_with_ties_compares_scores_as_float32() -> None:
    # 0.5 and 0.5 + 1e-12 are the same float32, so the tie falls back to doc id desc,
    # exactly as trec_eval (which stores scores as C float) ranks them.
    assert rank_with_ties({"b": 0.5, "a": 0.5 + 1e-12}) == ["b", "a"]
    # A difference float32 can represent still decides.
    assert rank_with_ties({"b": 0.5, "a": 0.5 + 1e-3}) == ["a", "b"]
    assert rank_with_ties({"a": 1e300, "b": -1e300, "c": 0.0}) == ["a", "c", "b"]


def test_rank_with_ties_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_with_ties({"a": math.nan})


def test_tie_order_changes_ndcg() -> None:
    # a (relevant) and b tie; trec_eval order puts b first -> a at rank 2 -> 1/log2(3)
    scores = {"a": 1.0, "b": 1.0}
    qrels = {"a": 1}
    assert ndcg_at_k(rank_with_ties(scores), qrels, k=10) == pytest.approx(1 / math.log2(3))
    # The caller's own order is taken as given.
    assert ndcg_at_k(["a", "b"], qrels, k=10) == pytest.approx(1.0)


# --- aggregation -------------------------------------------------------------------


def test_mean_and_summarize() -> None:
    assert mean([1.0, 2.0, 4.0]) == pytest.approx(7 / 3)
    with pytest.raises(ValueError):
        mean([])
    per_query = [{"ndcg@10": 0.5, "recall@10": 1.0}, {"ndcg@10": 1.0, "recall@10": 0.0}]
    assert summarize(per_query) == pytest.approx({"ndcg@10": 0.75, "recall@10": 0.5})
    with pytest.raises(ValueError, match="query 1"):
        summarize([{"ndcg@10": 0.5}, {"recall@10": 1.0}])
    with pytest.raises(ValueError):
        summarize([])


def test_percentile_linear_interpolation() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    # index = (4 - 1) * 0.95 = 2.85 -> 30 + 0.85 * (40 - 30) = 38.5
    assert percentile(values, 95) == pytest.approx(38.5)
    # index = 3 * 0.5 = 1.5 -> 20 + 0.5 * 10 = 25
    assert percentile([40.0, 10.0, 30.0, 20.0], 50) == pytest.approx(25.0)
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 95)
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_percentile_matches_numpy_default() -> None:
    np = pytest.importorskip("numpy")
    values = [0.013, 0.2, 0.0071, 1.5, 0.33, 0.021, 0.9]
    for p in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert percentile(values, p) == float(np.percentile(values, p))


# --- BEIR loader -------------------------------------------------------------------


def _write_beir(folder: Path, *, qrels_text: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = [
        {"_id": "d1", "title": "Alpha", "text": "first doc"},
        {"_id": "d2", "title": "", "text": "second doc"},
        {"_id": 3, "text": "numeric id, no title"},
    ]
    queries = [
        {"_id": "q1", "text": "what is alpha"},
        {"_id": "q2", "text": "second question"},
        {"_id": "q3", "text": "query without qrels"},
    ]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in corpus), encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in queries) + "\n", encoding="utf-8"
    )
    (folder / "qrels").mkdir(exist_ok=True)
    if qrels_text is None:
        qrels_text = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\t3\t0\nq2\td2\t2\n"
    (folder / "qrels" / "train.tsv").write_text(qrels_text, encoding="utf-8")
    return folder


def test_load_beir_tiny_folder(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    ds = load_beir(folder, split="train")
    assert ds.corpus == {
        "d1": Document(title="Alpha", text="first doc"),
        "d2": Document(title="", text="second doc"),
        "3": Document(title="", text="numeric id, no title"),
    }
    # q3 has no qrels and is dropped; order follows the qrels file.
    assert ds.queries == {"q1": "what is alpha", "q2": "second question"}
    # Identical repeated row (q2, d2, 2) is tolerated; grade 0 is kept as written.
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "3": 0}}


def test_corpus_hash_is_sha256_of_corpus_bytes(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    expected = hashlib.sha256((folder / "corpus.jsonl").read_bytes()).hexdigest()
    assert corpus_hash(folder) == expected
    with pytest.raises(BeirFormatError, match="file not found"):
        corpus_hash(tmp_path / "nowhere")


def test_load_beir_missing_qrels_file(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    with pytest.raises(BeirFormatError, match=r"test\.tsv: file not found"):
        load_beir(folder, split="test")


def test_split_defaults_to_test_then_to_the_only_one(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    assert choose_split(folder) == "train"
    assert load_beir(folder).split == "train"
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n", encoding="utf-8")
    with pytest.raises(BeirFormatError, match=r"several splits \(dev, train\) and no test\.tsv; name one with --split"):
        load_beir(folder)
    assert load_beir(folder, split="dev").qrels == {"q1": {"d2": 1}}
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\t3\t1\n", encoding="utf-8")
    dataset = load_beir(folder)
    assert (dataset.split, dataset.qrels) == ("test", {"q2": {"3": 1}})
    for path in (folder / "qrels").iterdir():
        path.unlink()
    (folder / "qrels" / "._train.tsv").write_text("AppleDouble metadata", encoding="utf-8")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    assert choose_split(folder) == "train"
    (folder / "qrels" / "train.tsv").unlink()
    with pytest.raises(BeirFormatError, match=r"qrels: no qrels files"):
        load_beir(folder)


def test_load_beir_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"_id": "d4", "text": \n')
    with pytest.raises(BeirFormatError, match=r"corpus\.jsonl:4: invalid JSON") as info:
        load_beir(folder)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("qrels_text", "message"),
    [
        ("q1\td1\t1\n", r"train\.tsv:1: expected header"),
        ("query-id\tcorpus-id\tscore\nq1\td1\n", r"train\.tsv:2: expected 3 tab-separated"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"train\.tsv:2: score 'high'"),
        ("query-id\tcorpus-id\tscore\nq9\td1\t1\n", r"train\.tsv:2: query 'q9' not in"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", r"train\.tsv:3: conflicting"),
    ],
)
def test_load_beir_malformed_qrels(tmp_path: Path, qrels_text: str, message: str) -> None:
    folder = _write_beir(tmp_path / "tiny", qrels_text=qrels_text)
    with pytest.raises(BeirFormatError, match=message):
        load_beir(folder)


def test_load_beir_duplicate_and_missing_ids(tmp_path: Path) -> None:
    folder = _write_beir(tmp_path / "tiny")
    with (folder / "corpus.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "d1", "text": "again"}) + "\n")
    with pytest.raises(BeirFormatError, match=r"corpus\.jsonl:4: duplicate _id 'd1'"):
        load_beir(folder)
    (folder / "queries.jsonl").write_text('{"text": "no id"}\n', encoding="utf-8")
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n', encoding="utf-8")
    with pytest.raises(BeirFormatError, match=r"queries\.jsonl:1: missing or invalid '_id'"):
        load_beir(folder)

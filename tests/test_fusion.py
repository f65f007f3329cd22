"""Fusion of dense and keyword runs (query.fusion), checked against hand-computed scores,
and its effect on a real question whose only evidence is one rare word."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from query import search
from bench.fusion_variants import minmax_fusion, reciprocal_rank_fusion
from query.fusion import with_true_zeros, zscore_fusion

INDEX = Path(__file__).resolve().parent.parent / "index"


def test_reciprocal_rank_fusion_by_hand():
    fused = dict(reciprocal_rank_fusion([[("a", 9.0), ("b", 1.0)], [("b", 0.2), ("c", 0.1)]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)


def test_reciprocal_rank_fusion_weights_and_tie_order():
    fused = reciprocal_rank_fusion([[("b", 1.0)], [("a", 1.0)]], k=1, weights=[1.0, 1.0])
    assert fused == [("a", 0.5), ("b", 0.5)], "equal scores are ordered by item, not by run"
    fused = reciprocal_rank_fusion([[("b", 1.0)], [("a", 1.0)]], k=1, weights=[2.0, 1.0])
    assert fused == [("b", 1.0), ("a", 0.5)]


def test_zscore_fusion_by_hand():
    # dense 3, 1 -> z +1, -1; keyword 10, 0 on other items -> z +1, -1; "c" is missing from
    # the dense run (gets its minimum, -1) and "a" from the keyword run (likewise)
    fused = dict(zscore_fusion([[("a", 3.0), ("b", 1.0)], [("b", 10.0), ("c", 0.0)]], weights=[0.6, 0.4]))
    assert fused["a"] == pytest.approx(0.6 * 1 + 0.4 * -1)
    assert fused["b"] == pytest.approx(0.6 * -1 + 0.4 * 1)
    assert fused["c"] == pytest.approx(0.6 * -1 + 0.4 * -1)


def test_zscore_fusion_ignores_a_run_without_spread():
    fused = dict(zscore_fusion([[("a", 2.0), ("b", 0.0)], [("b", 5.0)]], weights=[0.5, 0.5]))
    assert fused == {"a": pytest.approx(0.5), "b": pytest.approx(-0.5)}


def test_true_zeros_give_a_lone_keyword_match_its_lead():
    dense = [(f"p{i}", 0.5 - 0.01 * i) for i in range(9)] + [("rare", 0.45)]
    keyword = [("rare", 3.0)]
    completed = with_true_zeros(keyword, [dense])
    assert completed[0] == ("rare", 3.0) and sorted(completed[1:]) == [(f"p{i}", 0.0) for i in range(9)]
    # alone, the keyword run has no spread and counts for nothing: the dense order stands
    assert zscore_fusion([dense, keyword], weights=[0.6, 0.4])[0][0] == "p0"
    # over its true zeros the lone match has z = 3 (one 3.0 among nine zeros: (3 - 0.3) / 0.9)
    fused = dict(zscore_fusion([dense, completed], weights=[0.6, 0.4]))
    assert max(fused, key=fused.get) == "rare"
    cosines = [score for _, score in dense]
    dense_z = (0.45 - statistics.fmean(cosines)) / statistics.pstdev(cosines)
    assert fused["rare"] == pytest.approx(0.6 * dense_z + 0.4 * 3.0)


def test_minmax_fusion_by_hand():
    fused = dict(minmax_fusion([[("a", 3.0), ("b", 1.0), ("c", 2.0)], [("c", 4.0)]], weights=[0.5, 0.5]))
    assert fused == {"a": pytest.approx(0.5), "b": pytest.approx(0.0), "c": pytest.approx(0.25 + 0.5)}


def test_a_rare_word_found_only_by_keywords_ranks_first_in_hybrid():
    """"Booz" (of Booz Allen Hamilton) occurs in one passage and means nothing to the dense
    model; BM25 finds that passage alone, and fusion must not throw that away."""
    top = search("Booz", k=1, index=INDEX)[0]
    assert "Booz Allen Hamilton" in top.text


def test_a_rare_word_ranks_its_article_first_in_hybrid_article_ranking():
    """The same for whole articles (``rank_articles``, what a BEIR evaluation ranks): the
    Booz passage is in body file 002, linked to the MIT Technology Review article."""
    from query.index import open_searcher

    top = open_searcher(INDEX).rank_articles("Booz", k=1)[0][0]
    assert top == "https://www.technologyreview.com/2023/05/12/1072950/open-source-ai-google-openai-eleuther-meta/"

"""Hand-computed retrieval metrics: every expected value below is worked out in the comment beside it."""

from __future__ import annotations

import math

import pytest

from mmrag_assets.lib.evaluation.metrics import (
    aggregate,
    credited_grades,
    evaluate_query,
    is_relevant,
    mrr,
    ndcg_at_k,
    rank_results,
    recall_at_k,
)

LOG2_3 = math.log2(3)  # discount of rank 2 is 1/log2(3); rank 3: 1/2; rank 4: 1/log2(5)


def test_ndcg_binary() -> None:
    # DCG = 1/1 + 0 + 1/2 = 1.5 ; IDCG (two relevant) = 1 + 1/log2(3) = 1.63093
    assert ndcg_at_k([1, 0, 1], [1, 1], 3) == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert ndcg_at_k([1, 0, 1], [1, 1], 3) == pytest.approx(0.919720, abs=1e-6)
    # k=1 cuts both: DCG = 1, IDCG = 1
    assert ndcg_at_k([1, 0, 1], [1, 1], 1) == 1.0
    assert ndcg_at_k([0, 1], [1], 1) == 0.0


def test_ndcg_graded_uses_exponential_gain() -> None:
    # gains 2^2-1=3, 0, 2^1-1=1 -> DCG = 3 + 0 + 1/2 = 3.5 ; ideal [2, 1] -> 3 + 1/log2(3) = 3.63093
    assert ndcg_at_k([2, 0, 1], [1, 2], 3) == pytest.approx(3.5 / (3 + 1 / LOG2_3))
    assert ndcg_at_k([2, 0, 1], [1, 2], 3) == pytest.approx(0.963941, abs=1e-6)
    # the weaker result first: DCG = 1 + 3/log2(3) = 2.89279 -> 0.796708
    assert ndcg_at_k([1, 2], [2, 1], 2) == pytest.approx((1 + 3 / LOG2_3) / (3 + 1 / LOG2_3))
    assert ndcg_at_k([2, 1], [2, 1], 10) == pytest.approx(1.0)


def test_no_relevant_gives_zero_and_is_excluded_from_means() -> None:
    assert ndcg_at_k([0, 0], [], 5) == 0.0
    assert recall_at_k([0, 0], 0, 5) == 0.0
    assert mrr([0, 0]) == 0.0
    results = [{"source": "a.pdf", "page": 1, "score": 1.0, "item_id": "x:1"}]
    unjudged = evaluate_query(results, [])
    assert unjudged["has_relevant"] is False and unjudged["ndcg@5"] == 0.0 and unjudged["n_relevant"] == 0
    judged = evaluate_query(results, [{"source": "a.pdf", "page": 1}])
    assert judged["ndcg@5"] == 1.0 and judged["mrr"] == 1.0
    agg = aggregate([judged, unjudged])
    assert agg["ndcg@5"] == 1.0 and agg["mrr"] == 1.0  # not 0.5: the unjudged query is left out
    assert (agg["n_queries"], agg["n_queries_evaluated"], agg["n_queries_without_relevant"]) == (2, 1, 1)
    assert aggregate([unjudged])["ndcg@5"] is None


def test_recall_and_mrr() -> None:
    assert recall_at_k([0, 1, 0, 1], 4, 2) == 0.25
    assert recall_at_k([0, 1, 0, 1], 4, 4) == 0.5
    assert mrr([0, 0, 1, 1]) == pytest.approx(1 / 3)
    assert mrr([0, 0, 1], k=2) == 0.0
    with pytest.raises(ValueError):
        ndcg_at_k([1], [1], 0)


def test_ties_broken_by_item_id_whatever_the_input_order() -> None:
    hit = {"item_id": "d1:2", "source": "d.pdf", "page": 2, "score": 0.9}
    miss = {"item_id": "d1:10", "source": "d.pdf", "page": 10, "score": 0.9}  # "d1:10" < "d1:2" as strings
    top = {"item_id": "d1:7", "source": "d.pdf", "page": 7, "score": 0.95}
    judgement = [{"source": "d.pdf", "page": 2}]
    for order in ([hit, miss, top], [miss, hit, top], [top, hit, miss]):
        assert [r["item_id"] for r in rank_results(order)] == ["d1:7", "d1:10", "d1:2"]
        out = evaluate_query(order, judgement, ks=(2, 3))
        assert out["mrr"] == pytest.approx(1 / 3)  # rank 3
        assert out["ndcg@2"] == 0.0
        assert out["ndcg@3"] == pytest.approx(0.5)  # 1/log2(4) over ideal 1
        assert (out["hit@2"], out["mrr@2"]) == (0.0, 0.0)  # rank 3 is past the cut
        assert (out["hit@3"], out["mrr@3"]) == (1.0, pytest.approx(1 / 3))
    unscored = [{"source": "d.pdf", "page": 2}, {"source": "d.pdf", "page": 1}]
    assert rank_results(unscored) == unscored  # no scores: the engine's order is the ranking


def test_graded_query_end_to_end() -> None:
    results = [
        {"item_id": "a:3", "source": "a.pdf", "page": 3, "score": 0.9},  # grade 1
        {"item_id": "a:1", "source": "a.pdf", "page": 1, "score": 0.8},  # not judged
        {"item_id": "a:5", "source": "a.pdf", "page": 5, "score": 0.7},  # grade 2
    ]
    relevant = [
        {"source": "a.pdf", "page": 5, "grade": 2},
        {"source": "a.pdf", "page": 3, "grade": 1},
        {"source": "a.pdf", "page": 9, "grade": 0},
    ]  # grade 0: judged irrelevant, not counted
    out = evaluate_query(results, relevant, ks=(1, 3))
    # DCG@3 = 1 + 0 + 3/2 = 2.5 ; IDCG@3 = 3 + 1/log2(3) = 3.63093 -> 0.688529
    assert out["ndcg@3"] == pytest.approx(2.5 / (3 + 1 / LOG2_3))
    assert out["ndcg@1"] == pytest.approx(1 / 3)  # gain 1 where 3 was possible
    assert out["recall@1"] == 0.5 and out["recall@3"] == 1.0 and out["n_relevant"] == 2


def test_page_and_source_matching() -> None:
    j = {"source": "a.pdf", "page": 3, "grade": 2}
    assert is_relevant({"source": "a.pdf", "page": 3}, j) == 2.0
    assert is_relevant({"source": "a.pdf", "page": 4}, j) == 0.0
    assert is_relevant({"source": "b.pdf", "page": 3}, j) == 0.0
    assert is_relevant({"source": "a.pdf"}, j) == 0.0  # the judgement needs a page the result lacks
    assert is_relevant({"source": "a.pdf", "page": 4}, {"source": "a.pdf"}) == 1.0  # any page of the doc


def test_audio_interval_overlap() -> None:
    j = {"source": "talk.wav", "start_s": 40.0, "end_s": 50.0}
    assert is_relevant({"source": "talk.wav", "start_s": 30.0, "end_s": 45.0}, j) == 1.0  # 5 s overlap
    assert is_relevant({"source": "talk.wav", "start_s": 42.0, "end_s": 44.0}, j) == 1.0  # inside
    assert is_relevant({"source": "talk.wav", "start_s": 50.0, "end_s": 80.0}, j) == 0.0  # touches only
    assert is_relevant({"source": "talk.wav", "start_s": 0.0, "end_s": 30.0}, j) == 0.0  # before
    assert is_relevant({"source": "talk.wav", "start_s": 30.0, "end_s": 45.0}, j, min_overlap_s=5.0) == 0.0
    assert is_relevant({"source": "talk.wav", "start_s": 30.0, "end_s": 45.1}, j, min_overlap_s=5.0) == 1.0
    assert is_relevant({"source": "talk.wav", "page": 1, "t_s": 45.0}, j) == 1.0  # keyframe point inside
    assert is_relevant({"source": "talk.wav", "page": 1, "t_s": 50.0}, j) == 1.0  # closed interval
    assert is_relevant({"source": "talk.wav", "page": 1}, j) == 0.0  # no time at all


def test_overlapping_windows_credit_a_judgement_once() -> None:
    # Two 30 s windows with 5 s overlap both cover the judged 26-28 s passage.
    results = [
        {"item_id": "t:t0", "source": "t.wav", "start_s": 0.0, "end_s": 30.0, "score": 0.9},
        {"item_id": "t:t25000", "source": "t.wav", "start_s": 25.0, "end_s": 55.0, "score": 0.8},
        {"item_id": "t:t50000", "source": "t.wav", "start_s": 50.0, "end_s": 80.0, "score": 0.7},
    ]
    relevant = [
        {"source": "t.wav", "start_s": 26.0, "end_s": 28.0},
        {"source": "t.wav", "start_s": 60.0, "end_s": 62.0},
    ]
    assert credited_grades(results, relevant) == [1.0, 0.0, 1.0]
    out = evaluate_query(results, relevant, ks=(3,))
    assert out["recall@3"] == 1.0  # not 1.5
    # DCG = 1 + 0 + 1/2 = 1.5 ; IDCG = 1 + 1/log2(3) -> 0.919720
    assert out["ndcg@3"] == pytest.approx(1.5 / (1 + 1 / LOG2_3))


def test_a_result_takes_its_best_open_judgement() -> None:
    results = [{"source": "a.pdf", "page": 1}, {"source": "a.pdf", "page": 1}]
    relevant = [{"source": "a.pdf", "grade": 1}, {"source": "a.pdf", "page": 1, "grade": 3}]
    assert credited_grades(results, relevant) == [3.0, 1.0]


def test_aggregate_means() -> None:
    q1 = evaluate_query([{"source": "a", "page": 1}], [{"source": "a", "page": 1}], ks=(5,))
    q2 = evaluate_query(
        [{"source": "b", "page": 1}, {"source": "a", "page": 1}], [{"source": "a", "page": 1}], ks=(5,)
    )
    agg = aggregate([q1, q2])
    assert agg["mrr"] == pytest.approx((1 + 0.5) / 2)
    assert agg["ndcg@5"] == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert agg["recall@5"] == 1.0
    assert aggregate([]) == {"n_queries": 0, "n_queries_evaluated": 0, "n_queries_without_relevant": 0}

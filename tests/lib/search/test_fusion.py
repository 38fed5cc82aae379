"""Final-ranking fusion (lib/search/fusion.py) and idf query-token weighting (term_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged
from mmrag_assets.lib.search.fusion import coverage_weights, ranks, weighted_rrf
from mmrag_assets.lib.search.term_weights import idf, weight_query


def test_weighted_rrf_formula_and_weights() -> None:
    rankings = {"maxsim": np.array([3, 1, 2]), "lexical": np.array([1, 4])}
    fused = weighted_rrf(rankings, {"maxsim": 1.0, "lexical": 2.0}, rrf_k=10)
    assert fused[1] == pytest.approx(1 / 12 + 2 / 11)
    assert fused[3] == pytest.approx(1 / 11)
    assert fused[4] == pytest.approx(2 / 12)
    assert fused[2] == pytest.approx(1 / 13)
    # a zero or missing weight drops the channel
    assert set(weighted_rrf(rankings, {"maxsim": 1.0, "lexical": 0.0}, 10)) == {1, 2, 3}
    assert set(weighted_rrf(rankings, {"lexical": 1.0}, 10)) == {1, 4}


def test_fusion_keeps_the_lexical_winner_the_rerank_buried() -> None:
    # the rerank puts item 7 fourth; BM25 puts it first: fused, it beats every item only the
    # rerank likes (the old behaviour returned the rerank's order: 9, 8, 5, 7)
    fused = weighted_rrf(
        {"maxsim": np.array([9, 8, 5, 7]), "lexical": np.array([7, 2])}, {"maxsim": 1, "lexical": 1}, 60
    )
    assert max(fused, key=fused.get) == 7


def test_a_repeated_position_counts_once_at_its_best_rank() -> None:
    assert weighted_rrf({"maxsim": np.array([5, 5, 6])}, {"maxsim": 1.0}, 0) == {5: 1.0, 6: 1 / 3}
    assert ranks(np.array([5, 5, 6])) == {5: 1, 6: 3}


def test_negative_rrf_k_is_refused() -> None:
    with pytest.raises(ValueError, match="rrf_k"):
        weighted_rrf({"maxsim": np.array([1])}, {"maxsim": 1.0}, -1)


def test_idf_orders_rare_above_frequent() -> None:
    w = idf(np.array([0, 1, 50, 100]), 100)
    assert (w > 0).all() and w[0] > w[1] > w[2] > w[3]


def test_weight_query_scales_rows_to_mean_one() -> None:
    q = np.ones((3, 4), dtype=np.float32)
    table = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    out = weight_query(q, np.array([0, 1, 2]), table)
    np.testing.assert_allclose(out[:, 0], [0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="token ids"):
        weight_query(q, np.array([0, 1]), table)


def test_idf_weighted_lite_maxsim_ranks_the_rare_word_page_first() -> None:
    """The README's example on the real lite vocabulary: unweighted MaxSim of static token vectors
    prefers a page holding the query's frequent words; idf weighting prefers the page that holds
    the rare error code."""
    from mmrag_assets.lib.index.embedding.lite import LiteEmbedder

    emb = LiteEmbedder(dim=256)
    report = (
        "What does the quarterly result mean? Revenue does grow, and the error margin is what we expected."
    )
    others = [
        f"What does the team mean by quarter {i}? The error bars show what the revenue does."
        for i in range(30)
    ]
    manual = "Fault codes. E04: DC insulation fault, inspect the PV cables. E05: ground fault."
    docs = [report, manual, *others]
    ids = emb.token_ids(docs, emb.doc_max_tokens)
    vocab = emb.vocabulary()
    uniq = [np.unique(i) for i in ids]
    store = Ragged.from_list([vocab[u] for u in uniq], dtype=np.float32)
    df = np.bincount(np.concatenate(uniq), minlength=len(vocab))
    query = "what does error E04 mean"
    q = emb.embed_queries([query])[0]
    plain = maxsim_ragged(q, store.flat, store.offsets)
    assert plain[0] > plain[1]  # the old behaviour: the report above the manual
    qw = weight_query(q, emb.token_ids([query], emb.query_max_tokens)[0], idf(df, len(docs)))
    weighted = maxsim_ragged(qw, store.flat, store.offsets)
    assert int(np.argmax(weighted)) == 1


def test_convex_combination_of_min_max_normalised_scores() -> None:
    from mmrag_assets.lib.search.fusion import convex

    lists = {
        "lexical": (np.array([4, 2, 9]), np.array([30.0, 5.0, 4.0])),  # item 4 far ahead
        "dense": (np.array([2, 9, 4]), np.array([0.61, 0.60, 0.50])),  # three alike cosines
    }
    fused = convex(lists, {"lexical": 1.0, "dense": 1.0})
    assert fused[4] == pytest.approx(1.0)
    assert fused[2] == pytest.approx(1 / 26 + 1.0)
    assert fused[9] == pytest.approx(0.0 + 0.1 / 0.11)
    # RRF over the same lists cannot see that BM25's winner is far ahead: it puts 2 above 4
    rrf = weighted_rrf({n: p for n, (p, _) in lists.items()}, {"lexical": 1.0, "dense": 1.0}, 60)
    assert rrf[2] > rrf[4] and fused[4] > fused[9]
    assert convex({"dense": (np.array([1, 2]), np.array([0.5, 0.5]))}, {"dense": 2.0}) == {1: 2.0, 2: 2.0}
    assert convex(lists, {"lexical": 0.0, "dense": 0.0}) == {}


def test_coverage_moves_the_weights_between_exact_and_semantic() -> None:
    w, sem = {"maxsim": 1.0, "lexical": 2.0, "dense": 1.0}, {"maxsim": 0.5, "lexical": 0.25, "dense": 2.0}
    assert coverage_weights(w, sem, 1.0, 0.7, 0.95) == w  # every query word in an item: as configured
    assert coverage_weights(w, sem, 0.95, 0.7, 0.95) == w
    assert coverage_weights(w, sem, 0.6, 0.7, 0.95) == {"maxsim": 0.5, "lexical": 0.5, "dense": 2.0}
    mid = coverage_weights(w, sem, 0.825, 0.7, 0.95)  # halfway: each factor halfway to its semantic value
    assert mid == pytest.approx({"maxsim": 0.75, "lexical": 1.25, "dense": 1.5})
    assert coverage_weights(w, sem, None, 0.7, 0.95) == w  # no coverage (trained tier): unchanged
    off = coverage_weights({**w, "dense": 0.0}, sem, 0.5, 0.7, 0.95)
    assert off["dense"] == 0.0  # a channel switched off stays off
    assert coverage_weights(w, {}, 0.5, 0.7, 0.95) == w  # no factor for a channel: 1

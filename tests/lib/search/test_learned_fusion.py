"""The learned fusion: features from a query's evidence, the model file, training and calibration."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.evaluation import fusion_train as ft
from mmrag_assets.lib.search.channels import LateInteraction, Query
from mmrag_assets.lib.search.fusion import Evidence, ScoreFusion
from mmrag_assets.lib.search.learned import (
    FEATURES,
    MODEL_FEATURES,
    WHY_TERMS,
    FusionModel,
    LearnedFusion,
    candidate_features,
    check_writable,
)


def _view(modality: list[str], start_s: list[float | None], n_tokens: list[int]) -> SimpleNamespace:
    return SimpleNamespace(
        modality=np.array(modality),
        items={"start_s": np.array(start_s, dtype=object), "n_tokens": np.array(n_tokens)},
        codebook=SimpleNamespace(kind="vocab"),
    )


def _evidence() -> Evidence:
    # items: 0 page, 1 transcript window, 2 video keyframe, 3 page that only BM25 lists
    view = _view(["page", "segment", "image", "page"], [None, 12.0, 30.0, None], [500, 80, 40, 700])
    late = LateInteraction(
        raw={0: 0.9, 1: 0.7, 2: 0.5, 3: 0.4}, calibrated={0: 1.5, 1: 0.8, 2: 0.1, 3: -0.5}, below={3},
        order=np.array([0, 1, 2]), scores=np.array([1.5, 0.8, 0.1], dtype=np.float32),
    )  # fmt: skip
    lists = {
        "maxsim": (late.order, late.scores),
        "lexical": (np.array([3, 0]), np.array([8.0, 4.0])),
        "dense": (np.array([1, 0, 2]), np.array([0.62, 0.55, 0.40])),
    }
    q = Query("how do I reset the router?", view, None, 200, np.ones((6, 4), dtype=np.float32))
    return Evidence(q, late, lists, {"first_stage": {0: 1, 1: 2, 2: 3, 3: 9}}, coverage=0.9)


def test_features_of_every_listed_candidate() -> None:
    pos, x, names = candidate_features(_evidence())
    assert names == list(FEATURES)
    assert pos.tolist() == [0, 1, 2, 3]  # the maxsim list first, then what only another channel lists
    f = {n: x[:, j] for j, n in enumerate(names)}
    assert f["bm25"].tolist() == [0.5, 0.0, 0.0, 1.0]  # normalised by the query's best BM25 score
    assert (
        f["maxsim_rank"][3] == 0.0 and f["maxsim_rank"][0] == 1.0
    )  # below its threshold: not ranked by MaxSim
    assert f["dense_gap"][1] == 0.0 and f["dense_gap"][0] == pytest.approx(-0.07)
    assert f["dense_gap"][3] == pytest.approx(0.40 - 0.62 - 0.05)  # not listed: below the list's last
    assert f["is_segment"].tolist() == [0, 1, 0, 0] and f["is_image"].tolist() == [0, 0, 1, 0]
    assert f["is_recording"].tolist() == [0, 1, 1, 0]
    assert f["segment_x_dense"].tolist() == [0.0, 0.0, 0.0, 0.0]  # the window is the dense channel's best
    assert f["maxsim_gap"].tolist() == pytest.approx([0.0, -0.2, -0.4, -0.5])
    assert f["question"].tolist() == [1.0] * 4 and f["query_len"][0] == pytest.approx(math.log1p(6))
    assert f["log_len"][1] == pytest.approx(math.log1p(80))


def test_score_fusion_terms_are_the_convex_combinations_parts() -> None:
    ev = _evidence()
    s = SimpleNamespace(weights={"maxsim": 1.0, "lexical": 2.0, "dense": 0.5}, rrf_k=60,
                        coverage_weights=SimpleNamespace(semantic={"lexical": 0.5}, low=0.7, high=0.95))  # fmt: skip
    score = ScoreFusion(s)
    w = score.weights_for(ev)
    assert w["lexical"] == pytest.approx(2.0 * (0.8 + 0.2 * 0.5))  # coverage 0.9 between low and high
    pos, x, names = candidate_features(ev, w)
    f = {n: x[:, j] for j, n in enumerate(names)}
    total = f["fuse_maxsim"] + f["fuse_lexical"] + f["fuse_dense"]
    fused = score.fuse(ev)
    assert total.tolist() == pytest.approx([fused.scores[i] for i in pos.tolist()])
    assert f["fuse_lexical"].tolist() == pytest.approx(
        [0.0, 0.0, 0.0, w["lexical"]]
    )  # min-max: BM25's last gets 0
    assert f["segment_x_fuse_dense"].tolist() == pytest.approx([0.0, w["dense"], 0.0, 0.0])
    assert f["fuse_dense_x_uncov"].tolist() == pytest.approx((f["fuse_dense"] * 0.1).tolist())
    # the learned fusion reports the weights its terms were made with
    model = _model({"fuse_lexical": 1.0})
    assert LearnedFusion(model, score).fuse(ev).weights == w


def _model(coef: dict[str, float], intercept: float = -3.0) -> FusionModel:
    n = len(FEATURES)
    c = np.array([coef.get(f, 0.0) for f in FEATURES])
    return FusionModel(list(FEATURES), np.zeros(n), np.ones(n), c, intercept, {"arch": "lite"}, {"name": "t"})


def test_learned_fusion_scores_are_probabilities_explained_by_their_terms() -> None:
    model = _model({"dense_gap": 10.0, "is_segment": 1.0, "bm25": 2.0})
    fused = LearnedFusion(model).fuse(_evidence())
    assert set(fused.scores) == {0, 1, 2, 3}
    assert all(0.0 < p < 1.0 for p in fused.scores.values())
    assert max(fused.scores, key=fused.scores.get) == 1  # the window the dense channel ranks first
    for i, p in fused.scores.items():
        why = fused.why[i]
        assert len(why) <= WHY_TERMS + 1 and "bias" in why
        assert sum(why.values()) == pytest.approx(math.log(p / (1 - p)))  # the terms are the whole log-odds


def test_model_file_round_trip_and_refusals(tmp_path) -> None:
    model = _model({"bm25": 1.5})
    p = model.save(tmp_path / "m.json")
    back = FusionModel.from_json(json.loads(p.read_text()))
    x = np.random.default_rng(0).normal(size=(5, len(FEATURES)))
    assert np.allclose(back.proba(x), model.proba(x))
    d = model.to_json()
    with pytest.raises(ConfigError, match="unknown features"):
        FusionModel.from_json({**d, "features": ["nope", *d["features"][1:]]})
    with pytest.raises(ConfigError, match="scale"):
        FusionModel.from_json({**d, "scale": [0.0] * len(FEATURES)})
    with pytest.raises(ConfigError, match="format"):
        FusionModel.from_json({**d, "format": "pickle"})
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="not an"):
        check_writable(tmp_path / "other.json")
    assert check_writable(p) == p


def test_a_model_of_another_tier_falls_back_to_score_fusion() -> None:
    s = SimpleNamespace(weights={"maxsim": 1.0, "lexical": 2.0, "dense": 1.0}, rrf_k=60, fusion_model="t",
                        coverage_weights=SimpleNamespace(semantic={}, low=0.7, high=0.95))  # fmt: skip
    trained_view = SimpleNamespace(codebook=SimpleNamespace(kind="kmeans"))  # a trained (visual) codebook
    fusion = LearnedFusion.for_search(s, trained_view, _model({}))
    assert isinstance(fusion, ScoreFusion)
    assert "lite tier" in fusion.fuse(_evidence()).extra["fallback"]
    assert isinstance(LearnedFusion.for_search(s, _evidence().query.view, _model({})), LearnedFusion)


def _gap_dataset(n_queries: int, seed: int) -> ft.Dataset:
    """Queries whose answer is a transcript window half the time: windows get a third of a page's
    BM25 score for the same words, so BM25 alone ranks a page that merely shares words first."""
    rng = np.random.default_rng(seed)
    xs, ys, gs, ms = [], [], [], []
    j = {f: k for k, f in enumerate(FEATURES)}
    for g in range(n_queries):
        n = 30
        x = np.zeros((n, len(FEATURES)))
        seg = rng.random(n) < 0.3
        y = np.zeros(n, dtype=int)
        ans = int(rng.integers(n))
        seg[ans] = g % 2 == 0
        y[ans] = 1
        bm = rng.uniform(0.2, 0.9, n)
        bm[ans] = rng.uniform(0.8, 1.0)
        bm[seg] /= 3.0  # the modality gap
        x[:, j["bm25"]] = x[:, j["fuse_lexical"]] = bm
        x[:, j["is_segment"]] = seg
        x[:, j["segment_x_bm25"]] = x[:, j["segment_x_fuse_lexical"]] = seg * bm
        xs.append(x)
        ys.append(y)
        gs.append(np.full(n, g))
        ms.append(np.where(seg, "segment", "page"))
    x = np.concatenate(xs)
    return ft.Dataset(x, np.concatenate(ys), np.concatenate(gs), np.concatenate(ms), x[:, j["bm25"]],
                      [f"q{g}" for g in range(n_queries)], [{}] * n_queries, "bm25")  # fmt: skip


def test_training_learns_the_per_modality_scale_that_bm25_alone_misses() -> None:
    train, test = _gap_dataset(80, 1), _gap_dataset(60, 2)
    model, report = ft.fit(train)
    before = ft.ranking_metrics(test.baseline, test)
    assert model.features == list(MODEL_FEATURES)
    after = ft.ranking_metrics(model.proba(ft.columns(test, model.features)), test)
    assert before["mrr@10"] < 0.75  # spoken answers lose to pages that share words
    assert after["mrr@10"] > before["mrr@10"] + 0.15
    assert report["C"] in ft.C_GRID and str(report["C"]) in report["cv"]
    assert (
        model.coef[model.features.index("segment_x_fuse_lexical")] > 0
    )  # a window's BM25 counts for more than a page's


def test_reliability_per_modality() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(int)
    m = np.where(rng.random(20000) < 0.5, "page", "segment")
    good = ft.reliability(p, y, m)
    assert set(good) == {"all", "page", "segment"} and good["all"]["ece"] < 0.02
    bad = ft.reliability(np.where(m == "segment", p / 4, p), y, m)  # segments' probabilities 4x too low
    assert bad["segment"]["ece"] > 0.25 and bad["page"]["ece"] < 0.03
    assert sum(c[2] for c in bad["segment"]["curve"]) == bad["segment"]["n"]
    mapped = ft.platt(p, y)(p)
    assert ft.log_loss(mapped, y) <= ft.log_loss(p, y) + 0.01

"""Drift plumbing on real LanceDB tables and a real DuckDB catalog, with synthetic multivectors (no model).

Items mimic late-interaction output: an item is ``n_tokens`` unit vectors scattered around an item
direction drawn from a clustered, anisotropic population; a "model" is a fixed random projection.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mmrag_assets.lib.quality import baselines as bs
from mmrag_assets.lib.quality.drift import Baseline
from mmrag_assets.lib.quality.frames import embeddings_frame, pool_multivectors, summarize_table
from mmrag_assets.lib.quality.monitor import AUTO_USER, evaluate_drift, set_baselines, thresholds_for
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime

DIM, LATENT = 64, 12
VK = "synthetic__v1__p1__d64"


def doc_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def population(
    n: int, seed: int, *, model_seed: int = 3, rotate: np.ndarray | None = None
) -> list[np.ndarray]:
    """n multivectors (n_tokens_i, DIM) with unit rows."""
    rng = np.random.default_rng(seed)
    m = np.random.default_rng(model_seed)
    w = m.normal(size=(LATENT, DIM)) / np.sqrt(LATENT)
    offset = m.normal(size=DIM) * 0.8  # anisotropy shared by every item
    centers = np.random.default_rng(99).normal(size=(6, LATENT)) * 1.5
    out = []
    for _ in range(n):
        z = centers[rng.integers(6)] + rng.normal(size=LATENT)
        direction = z @ w + offset
        toks = direction + rng.normal(size=(int(rng.integers(20, 60)), DIM)) * 1.2  # (n_tokens, DIM)
        if rotate is not None:
            toks = toks @ rotate
        out.append((toks / np.linalg.norm(toks, axis=1, keepdims=True)).astype(np.float32))
    return out


def write_doc(tbl, name: str, vecs: list[np.ndarray], modality: str = "page") -> list[str]:
    d = doc_id(name)
    items = [
        {
            "item_id": f"{d}:{i + 1}",
            "doc_id": d,
            "source": name,
            "modality": modality,
            "page": i + 1,
            "start_s": None,
            "end_s": None,
            "text": f"page {i + 1}",
            "image_path": None,
            "thumb_path": None,
            "ingest_fp": "fp",
        }
        for i in range(len(vecs))
    ]
    lx.upsert_documents(tbl, [d], items, vecs, DIM)
    return [it["item_id"] for it in items]


@pytest.fixture
def env(make_cfg):
    cfg = make_cfg("checks.permutations=100")
    tbl = lx.open_table(Runtime(cfg), VK, DIM)
    return cfg, Catalog(cfg.catalog_path), tbl


def test_pooling_is_the_mean_token_vector_normalised_with_its_norm_kept() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # mean (0.5, 0.5): norm 0.707
    b = np.array([[3.0, 4.0]], np.float32)
    pooled, norms = pool_multivectors(np.vstack([a, b]), np.array([2, 1]))
    np.testing.assert_allclose(norms, [np.sqrt(0.5), 5.0], rtol=1e-6)
    np.testing.assert_allclose(pooled, [[np.sqrt(0.5), np.sqrt(0.5)], [0.6, 0.8]], rtol=1e-6)
    pooled, norms = pool_multivectors(b, np.array([0, 1]))  # an empty item is NaN, not someone else's row
    assert np.isnan(pooled[0]).all() and np.isnan(norms[0])
    np.testing.assert_allclose(pooled[1], [0.6, 0.8], rtol=1e-6)


def test_summaries_match_the_stored_vectors(env) -> None:
    _, _, tbl = env
    vecs = population(5, seed=1)
    ids = write_doc(tbl, "a.pdf", vecs)
    s = summarize_table(tbl, batch_rows=2)  # batches cut through the rows: offsets must be per batch
    order = [s.item_ids.index(i) for i in ids]
    for row, v in zip(order, vecs, strict=True):
        mean = v.astype(np.float16).astype(np.float32).mean(axis=0)
        np.testing.assert_allclose(s.norms[row], np.linalg.norm(mean), rtol=1e-3)
        np.testing.assert_allclose(s.pooled[row], mean / np.linalg.norm(mean), atol=2e-3)
        assert s.tokens[row] == len(v)
    assert set(s.modality) == {"page"}


def test_thresholds_merge_default_then_modality(make_cfg) -> None:
    cfg = make_cfg()
    seg, page = (
        thresholds_for(cfg.checks.thresholds, "segment"),
        thresholds_for(cfg.checks.thresholds, "page"),
    )
    assert seg.ks_tokens.warn == 0.35 and seg.ks_tokens.error == 0.55  # conf/checks/default.yaml
    assert page.ks_tokens.warn == 0.25 and seg.mmd2 == page.mmd2 and seg.alpha == 0.01


def test_baseline_store_logs_who_when_why_and_the_newest_is_live(env) -> None:
    cfg, cat, tbl = env
    write_doc(tbl, "a.pdf", population(30, seed=1))
    first = set_baselines(cfg.checks, cat, tbl, VK, user="alice", reason="initial corpus", run_id="r1")
    second = set_baselines(cfg.checks, cat, tbl, VK, user="bob", reason="new scanner", run_id="r2")
    log = bs.baseline_log(cat, VK)
    assert [(r["action"], r["user_name"], r["reason"], r["run_id"]) for r in log] == [
        ("rotate", "bob", "new scanner", "r2"),
        ("set", "alice", "initial corpus", "r1"),
    ]
    assert log[0]["previous_id"] == first[0]["baseline_id"] and log[0]["logged_at"] >= log[1]["logged_at"]
    live = bs.active_baseline(cat, VK, "page")
    assert live.baseline_id == second[0]["baseline_id"] and live.created_by == "bob"
    assert isinstance(live.baseline, Baseline) and live.baseline.n_items == 30 and live.baseline.dim == DIM
    assert len(bs.baseline_item_ids(cat, live.baseline_id)) == 30


def test_first_check_creates_the_baseline_then_an_unchanged_table_passes(env, tmp_path) -> None:
    cfg, cat, tbl = env
    write_doc(tbl, "a.pdf", population(60, seed=1))
    first = evaluate_drift(cfg.checks, cat, tbl, VK, run_id="run1", plot_dir=tmp_path / "plots")
    assert first.passed and "first baseline" in " ".join(first.modalities["page"].notes)
    assert bs.baseline_log(cat, VK)[0]["user_name"] == AUTO_USER
    again = evaluate_drift(cfg.checks, cat, tbl, VK, run_id="run2", plot_dir=tmp_path / "plots")
    assert again.passed, again.modalities["page"].scopes[0].report.summary()
    assert [r.scope for r in again.modalities["page"].scopes] == ["all"]  # nothing new since the baseline
    md = again.modalities["page"]
    assert md.plot_path.is_file() and md.plot_path.read_bytes()[:4] == b"\x89PNG"
    rows = cat.query("SELECT * FROM drift_history WHERE run_id = 'run2'")
    assert (
        len(rows) == 1 and rows[0]["severity"] == "OK" and "centroid_shift" in json.loads(rows[0]["metrics"])
    )


def test_a_rotated_space_under_the_same_version_is_an_error(env, tmp_path) -> None:
    cfg, cat, tbl = env
    write_doc(tbl, "a.pdf", population(60, seed=1))
    set_baselines(cfg.checks, cat, tbl, VK, user="alice", reason="initial")
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(DIM, DIM)))  # a random rotation of the space
    write_doc(tbl, "a.pdf", population(60, seed=1, rotate=q))  # same items, re-embedded in place
    out = evaluate_drift(cfg.checks, cat, tbl, VK, run_id="rot", plot_dir=tmp_path)
    assert out.severity == "ERROR" and not out.passed
    assert out.modalities["page"].scopes[0].report.alarms.get("centroid_shift") == "ERROR"


def test_a_bad_new_batch_is_caught_even_when_the_whole_table_dilutes_it(env, tmp_path) -> None:
    cfg, cat, tbl = env
    write_doc(tbl, "a.pdf", population(300, seed=1))
    set_baselines(cfg.checks, cat, tbl, VK, user="alice", reason="initial")
    noise = [
        (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
        for v in np.random.default_rng(7).normal(size=(30, 40, DIM))
    ]  # scans of noise: 30 items
    write_doc(tbl, "noise.pdf", noise)
    out = evaluate_drift(cfg.checks, cat, tbl, VK, run_id="noise", plot_dir=tmp_path)
    scopes = {r.scope: r.report for r in out.modalities["page"].scopes}
    assert set(scopes) == {"all", "new"} and scopes["new"].n_batch == 30
    assert scopes["new"].severity == "ERROR", scopes["new"].summary()
    assert out.severity == "ERROR"


def test_a_switched_model_is_compared_with_the_previous_versions_baseline(env, make_cfg, tmp_path) -> None:
    cfg, cat, tbl = env
    write_doc(tbl, "a.pdf", population(60, seed=1))
    set_baselines(cfg.checks, cat, tbl, VK, user="alice", reason="initial")
    other_vk = "synthetic__v2__p1__d64"
    other = lx.open_table(Runtime(cfg), other_vk, DIM)
    write_doc(other, "a.pdf", population(60, seed=1, model_seed=11))  # same documents, another model
    out = evaluate_drift(cfg.checks, cat, other, other_vk, run_id="switch", plot_dir=tmp_path)
    md = out.modalities["page"]
    assert md.baseline.version_key == VK and "mmrag baseline" in " ".join(md.notes)
    assert out.severity == "ERROR"
    set_baselines(cfg.checks, cat, other, other_vk, user="alice", reason="switched to v2 on purpose")
    assert evaluate_drift(cfg.checks, cat, other, other_vk, run_id="accepted", plot_dir=tmp_path).passed


def test_embeddings_frame_measures_each_multivector(env) -> None:
    _, _, tbl = env
    vecs = population(3, seed=2)
    ids = write_doc(tbl, "a.pdf", vecs)
    write_doc(tbl, "b.pdf", population(2, seed=3))
    df = embeddings_frame(tbl, [doc_id("a.pdf")]).set_index("item_id")
    assert sorted(df.index) == sorted(ids)
    assert [int(df.loc[i, "n_tokens"]) for i in ids] == [len(v) for v in vecs]
    assert (df["dim"] == DIM).all() and (df["n_nonfinite"] == 0).all()
    assert "vector" not in df.columns and len(embeddings_frame(tbl)) == 5

"""model=colqwen3 end to end with a tiny random Qwen3-VL: the same loader, index, drift check and
evaluation paths as the other visual tiers, on the sample corpus already indexed with lite."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pymupdf
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.index.embedding import version_key_for
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.instance import open_instance
from mmrag_assets.orchestration.launch import index

pytestmark = [pytest.mark.integration, pytest.mark.slow]


TINY_COLQWEN3 = ["model=tiny", "model.arch=colqwen3", "model.dim=320"]


def _drift(cfg) -> dg.AssetCheckEvaluation:
    with open_instance(cfg) as instance:
        rec = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("search_index"), "embedding_drift")]
        )
    return next(iter(rec.values())).evaluation


def _rerun_checks(cfg) -> dict[str, dg.AssetCheckEvaluation]:
    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.resources import resources_for

    with open_instance(cfg) as instance:
        r = dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=["search_index"],
            instance=instance,
            resources=resources_for(cfg.overrides),
            raise_on_error=False,
        )
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in r.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_tiny_colqwen3_indexes_searches_and_evaluates(indexed, capsys) -> None:
    from mmrag_assets.cli import main
    from mmrag_assets.lib.search.searcher import search

    # random weights rank arbitrarily: keep every candidate (thresholds are tested elsewhere)
    low = [f"search.thresholds.text_{m}=-1e9" for m in ("page", "image", "segment")]
    cfg = load_config([*indexed.overrides[:2], *TINY_COLQWEN3, *low])
    vk = version_key_for(cfg.model)
    assert vk == "colqwen3__mmrag_tiny__random_init_seed0__p1__d320"

    summary = index(cfg)
    assert summary["ingested"] == 0 and summary["embedded"] > 0  # same storage: only the embedding is new
    tbl = lx.connect(Runtime(cfg)).open_table(lx.table_name(vk))
    cat = Catalog(cfg.catalog_path)
    assert tbl.count_rows() == cat.scalar(
        "SELECT (SELECT count(*) FROM pages) + (SELECT count(*) FROM segments)"
    )
    assert set(tbl.to_lance().to_table(columns=["modality"]).column("modality").to_pylist()) == {
        "page",
        "image",
        "segment",
    }
    assert tbl.schema.field("vector").type.value_type.list_size == 320  # ColQwen3's head, stored as is

    resp = search("lighthouse at dusk", k=5, cfg=cfg)
    assert resp.results and all(r.score == r.score for r in resp.results)  # no NaN scores

    capsys.readouterr()
    assert main(["eval", "--json", *cfg.overrides]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["model"]["arch"] == "colqwen3" and out["config"]["model"]["dim"] == 320
    assert out["n_queries"] > 0 and set(out["by_channel"]) == {"page", "image", "segment"}
    for stage in ("first_stage", "reranked"):
        assert 0.0 <= out["metrics"][stage]["ndcg@10"] <= 1.0


def test_drift_check_flags_the_switch_to_colqwen3_until_a_baseline_accepts_it(tmp_path: Path) -> None:
    """A 24-page manual indexed with lite sets the first drift baseline (>= 20 items); the tiny
    ColQwen3's 320-d vectors are then compared with it (another model: an error), until
    `mmrag baseline` accepts them; the next check compares ColQwen3 with its own baseline."""
    from mmrag_assets.cli import main

    rng = np.random.default_rng(0)
    words = [
        "inverter",
        "battery",
        "voltage",
        "panel",
        "roof",
        "bracket",
        "torque",
        "firmware",
        "router",
        "reset",
        "breaker",
        "grid",
    ]
    doc = pymupdf.open()
    for _ in range(24):
        doc.new_page(width=420, height=595).insert_textbox(
            pymupdf.Rect(20, 20, 400, 575), " ".join(rng.choice(words, size=40)), fontsize=9
        )
    (tmp_path / "corpus").mkdir()
    doc.save(tmp_path / "corpus" / "manual.pdf")
    base = [
        f"corpus.root={tmp_path / 'corpus'}",
        f"storage.root={tmp_path / 'storage'}",
        "ingest.dpi=30",
        "ocr=none",
    ]
    lite = load_config([*base, "model=lite"])
    index(lite)
    cfg = load_config([*base, *TINY_COLQWEN3])
    index(cfg)
    drift = _drift(cfg)
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    assert drift.metadata["baselines"].value["page"]["version_key"] == version_key_for(lite.model)
    assert "mmrag baseline" in drift.metadata["notes"].value

    assert main(["baseline", "--reason", "tiny colqwen3 is the reference now", *cfg.overrides]) == 0
    drift = _rerun_checks(cfg)["embedding_drift"]
    assert drift.passed, drift.metadata["drift"].value
    assert drift.metadata["baselines"].value["page"]["version_key"] == version_key_for(cfg.model)
    assert "| page | all | 24 |" in drift.metadata["drift"].value

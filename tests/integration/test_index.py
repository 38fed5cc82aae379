"""Embeddings and the LanceDB index, through real Dagster runs on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pymupdf
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.launch import index
from mmrag_assets.lib.catalog import Catalog
from mmrag_assets.lib.index import table as lx
from mmrag_assets.lib.index.embedding import version_key_for

pytestmark = pytest.mark.integration


def _table(cfg):
    return lx.connect(cfg).open_table(lx.table_name(version_key_for(cfg.model)))


def test_lite_index_holds_every_text_item(indexed) -> None:
    cfg = indexed
    tbl = _table(cfg)
    rows = tbl.to_lance().to_table(columns=["item_id", "modality", "n_tokens", "source", "text"]).to_pylist()
    cat = Catalog(cfg.catalog_path)
    with_text = {r["item_id"] for r in cat.query("SELECT item_id FROM pages WHERE text <> '' UNION SELECT item_id FROM segments")}
    assert {r["item_id"] for r in rows} == with_text  # lite: images without a text layer get no vectors
    assert {r["modality"] for r in rows} >= {"page", "segment"}
    vec = tbl.to_lance().to_table(columns=["vector"], limit=1).column("vector")[0].as_py()
    assert len(vec[0]) == cfg.model.dim
    assert abs(np.linalg.norm(np.array(vec[0], dtype=np.float32)) - 1) < 1e-2
    stats = lx.analytics(tbl, cfg.model.dim)  # DuckDB over the Lance dataset
    assert sum(s["items"] for s in stats) == len(rows)


def test_status_json_reports_the_index(indexed) -> None:
    cfg = indexed
    r = subprocess.run(
        [sys.executable, "-m", "mmrag_assets.cli", "status", "--json", f"corpus.root={cfg.corpus.root}", f"storage.root={cfg.storage.root}"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    idx = json.loads(r.stdout)["index"]
    tbl = _table(cfg)
    assert idx == {"table": tbl.name, "version": tbl.version, "rows": tbl.count_rows(), "bytes_per_item": idx["bytes_per_item"]}
    assert idx["bytes_per_item"] > 0


def test_unchanged_corpus_writes_nothing(indexed) -> None:
    cfg = indexed
    before = _table(cfg).version
    summary = index(cfg)
    assert summary["ingested"] == 0 and summary["embedded"] == 0
    assert _table(cfg).version == before
    assert summary["index"]["rebuilt"] is False


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["colqwen2_5", "colpali", "colsmol"])
def test_tiny_visual_tiers_index_every_page_and_image(indexed, arch: str) -> None:
    # random weights rank arbitrarily: keep every candidate (thresholds are tested elsewhere)
    low = [f"search.thresholds.text_{m}=-1e9" for m in ("page", "image", "segment")]
    cfg = load_config([*indexed.overrides[:2], "model=tiny", f"model.arch={arch}", *low])
    summary = index(cfg)
    assert summary["ingested"] == 0  # same storage: only the embedding version differs
    tbl = _table(cfg)
    assert tbl.name != _table(indexed).name  # a separate table per embedding version
    names = lx.list_item_tables(lx.connect(cfg))
    assert _table(indexed).name in names and tbl.name in names
    cat = Catalog(cfg.catalog_path)
    n_items = cat.scalar("SELECT (SELECT count(*) FROM pages) + (SELECT count(*) FROM segments)")
    assert tbl.count_rows() == n_items  # visual tiers embed images without text too
    modalities = set(tbl.to_lance().to_table(columns=["modality"]).column("modality").to_pylist())
    assert modalities == {"page", "image", "segment"}
    from mmrag_assets.lib.search.searcher import search

    resp = search("lighthouse at dusk", k=5, cfg=cfg)
    assert resp.results and all(r.score == r.score for r in resp.results)  # no NaN scores


def _pdf(path: Path, text: str, pages: int = 2) -> None:
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"{text} page {i + 1}")
    doc.save(path)


def test_change_reembeds_only_that_document_and_delete_removes_rows(make_cfg, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _pdf(corpus / "tides.pdf", "Tidal turbines harvest energy from ocean currents")
    _pdf(corpus / "bees.pdf", "Honey bees communicate with a waggle dance")
    cfg = make_cfg(corpus=corpus)
    assert index(cfg)["embedded"] == 2
    _pdf(corpus / "tides.pdf", "Tidal turbines harvest energy from ocean currents, revised", pages=3)
    s = index(cfg)
    assert s["ingested"] == 1 and s["embedded"] == 1
    sources = _table(cfg).to_lance().to_table(columns=["source", "item_id"]).to_pylist()
    assert sorted(r["source"] for r in sources) == ["bees.pdf", "bees.pdf", "tides.pdf", "tides.pdf", "tides.pdf"]
    (corpus / "bees.pdf").unlink()
    index(cfg)
    assert {r["source"] for r in _table(cfg).to_lance().to_table(columns=["source"]).to_pylist()} == {"tides.pdf"}


def test_nan_vectors_are_quarantined_not_written(make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmrag_assets.lib.index.embedding.lite import LiteEmbedder

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _pdf(corpus / "ok.pdf", "Perfectly ordinary text", pages=1)
    _pdf(corpus / "poison.pdf", "POISON makes the model emit NaN", pages=1)
    original = LiteEmbedder._embed_texts

    def poisoned(self, texts):
        out = original(self, texts)
        return [np.full_like(v, np.nan) if "POISON" in t else v for t, v in zip(texts, out, strict=True)]

    monkeypatch.setattr(LiteEmbedder, "_embed_texts", poisoned)
    cfg = make_cfg(corpus=corpus)
    index(cfg)
    assert [r["source"] for r in _table(cfg).to_lance().to_table(columns=["source"]).to_pylist()] == ["ok.pdf"]
    q = Catalog(cfg.catalog_path).query("SELECT source, stage, reason FROM quarantine WHERE stage = 'embed'")
    assert len(q) == 1 and q[0]["source"] == "poison.pdf" and "NaN or infinite" in q[0]["reason"]

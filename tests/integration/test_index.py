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
from mmrag_assets.lib.index.embedding import version_key_for
from mmrag_assets.lib.index.vectors import iter_item_vectors
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.launch import index

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _table(cfg):
    return lx.connect(Runtime(cfg)).open_table(lx.table_name(version_key_for(cfg.model)))


def test_lite_index_holds_every_text_item(indexed) -> None:
    cfg = indexed
    tbl = _table(cfg)
    rows = tbl.to_lance().to_table(columns=["item_id", "modality", "n_tokens", "source", "text"]).to_pylist()
    cat = Catalog(cfg.catalog_path)
    with_text = {
        r["item_id"]
        for r in cat.query("SELECT item_id FROM pages WHERE text <> '' UNION SELECT item_id FROM segments")
    }
    assert {r["item_id"] for r in rows} == with_text  # lite: images without a text layer get no vectors
    assert {r["modality"] for r in rows} >= {"page", "segment"}
    # the lite tier stores token ids (its token vectors are a lookup table), never a vector column
    assert "vector" not in tbl.schema.names and str(tbl.schema.field("tokens").type) == "list<item: uint16>"
    _, vecs = next(iter_item_vectors(tbl, ["item_id"], batch_rows=1))
    assert vecs.dim == cfg.model.dim
    assert np.allclose(np.linalg.norm(vecs.flat, axis=1), 1, atol=1e-5)
    stats = lx.analytics(tbl, cfg.model.dim)  # DuckDB over the Lance dataset
    assert sum(s["items"] for s in stats) == len(rows)


def test_status_json_reports_the_index(indexed) -> None:
    cfg = indexed
    r = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        [
            sys.executable,
            "-m",
            "mmrag_assets.cli",
            "status",
            "--json",
            f"corpus.root={cfg.corpus.root}",
            f"storage.root={cfg.storage.root}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    idx = json.loads(r.stdout)["index"]
    tbl = _table(cfg)
    assert idx == {
        "table": tbl.name,
        "version": tbl.version,
        "rows": tbl.count_rows(),
        "bytes_per_item": idx["bytes_per_item"],
        "published": idx["published"],
        "problems": [],  # nothing incomplete or damaged
    }
    assert idx["bytes_per_item"] > 0
    assert idx["published"]["items"] <= idx["rows"] and idx["published"]["documents"] > 0


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
    names = lx.list_item_tables(lx.connect(Runtime(cfg)))
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


def _tides_and_bees(tmp_path: Path) -> Path:
    """A corpus of two 2-page PDFs."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _pdf(corpus / "tides.pdf", "Tidal turbines harvest energy from ocean currents")
    _pdf(corpus / "bees.pdf", "Honey bees communicate with a waggle dance")
    return corpus


def test_change_reembeds_only_that_document_and_delete_removes_rows(make_cfg, tmp_path: Path) -> None:
    corpus = _tides_and_bees(tmp_path)
    cfg = make_cfg(corpus=corpus)
    assert index(cfg)["embedded"] == 2
    _pdf(corpus / "tides.pdf", "Tidal turbines harvest energy from ocean currents, revised", pages=3)
    s = index(cfg)
    assert s["ingested"] == 1 and s["embedded"] == 1
    # the publish decision and why are metadata of the search_index materialisation: 3 pages
    # encoded, the 2 replaced ones tombstoned, which crosses index.policy.max_tombstone_share
    md = s["index"]
    assert (md["publish_action"], md["items_added"], md["items_removed"]) == ("compact", 3, 2)
    assert "max_tombstone_share" in md["publish_reason"] and (md["segments"], md["tombstones"]) == (1, 0)
    sources = _table(cfg).to_lance().to_table(columns=["source", "item_id"]).to_pylist()
    assert sorted(r["source"] for r in sources) == [
        "bees.pdf",
        "bees.pdf",
        "tides.pdf",
        "tides.pdf",
        "tides.pdf",
    ]
    (corpus / "bees.pdf").unlink()
    index(cfg)
    assert {r["source"] for r in _table(cfg).to_lance().to_table(columns=["source"]).to_pylist()} == {
        "tides.pdf"
    }


def test_bad_token_ids_are_quarantined_not_written(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lite tier stores token ids: ids outside the vocabulary are quarantined like NaN vectors
    (NaN vectors of the vector tiers fail the embeddings contract: tests/data_contracts/test_contracts.py::test_nan_vectors)."""
    from mmrag_assets.lib.index.embedding.lite import LiteEmbedder

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _pdf(corpus / "ok.pdf", "Perfectly ordinary text", pages=1)
    _pdf(corpus / "poison.pdf", "POISON makes the tokenizer emit ids past the vocabulary", pages=1)
    original = LiteEmbedder.embed_text_tokens

    def poisoned(self, texts):
        out = original(self, texts)
        return [ids + 40_000 if "POISON" in t else ids for t, ids in zip(texts, out, strict=True)]

    monkeypatch.setattr(LiteEmbedder, "embed_text_tokens", poisoned)
    cfg = make_cfg(corpus=corpus)
    index(cfg)
    assert [r["source"] for r in _table(cfg).to_lance().to_table(columns=["source"]).to_pylist()] == [
        "ok.pdf"
    ]
    q = Catalog(cfg.catalog_path).query("SELECT source, stage, reason FROM quarantine WHERE stage = 'embed'")
    assert (
        len(q) == 1
        and q[0]["source"] == "poison.pdf"
        and "not ids of the 32,000-token vocabulary" in q[0]["reason"]
    )


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def test_lite_index_bytes_per_item_all_structures_included(indexed) -> None:
    """Lite stores token ids, not vectors: everything on disk for the index (the LanceDB table with
    its data, full-text and scalar indexes and version manifests, plus the live search-index
    version) stays under 8 KB per item even on the tiny sample corpus, where fixed per-file
    overheads weigh most (the real-text benchmark in BENCHMARKS.md measures a 100k-chunk corpus)."""
    from mmrag_assets.lib.store import manifest as mf

    cfg = indexed
    tbl = _table(cfg)
    lance_dir = Path(tbl.to_lance().uri)
    m = mf.read_manifest(mf.IndexLocation.of(cfg.storage_root, version_key_for(cfg.model)))
    index_bytes = sum(f["size"] for f in m["files"].values())
    total = _du(lance_dir) + index_bytes
    per_item = total / m["n_alive"]
    assert m["n_alive"] == tbl.count_rows() and per_item < 8 * 1024, f"{per_item:.0f} bytes per item"
    # for scale: a single float16 copy of the same token vectors would be ~100x more
    n_tokens = sum(tbl.to_lance().to_table(columns=["n_tokens"]).column("n_tokens").to_pylist())
    assert n_tokens * cfg.model.dim * 2 > 10 * total


def test_documents_outside_the_allowed_set_are_not_searchable(make_cfg, tmp_path: Path) -> None:
    """Rows of a document whose checks did not pass may sit in the table; a published version
    never serves them, through the first stage or the BM25 channel."""
    from mmrag_assets.lib.index.embedding import load_embedder
    from mmrag_assets.lib.index.publish import location_for, params_from_config, publish
    from mmrag_assets.lib.search.searcher import search

    corpus = _tides_and_bees(tmp_path)
    cfg = make_cfg(corpus=corpus)
    index(cfg)
    emb = load_embedder(cfg.model, cfg.models_dir)
    tbl = lx.open_embedder_table(Runtime(cfg), emb)
    docs = {
        r["source"]: r["doc_id"]
        for r in Catalog(cfg.catalog_path).query("SELECT source, doc_id FROM documents")
    }
    res = publish(
        location_for(cfg, emb.version_key),
        tbl,
        emb,
        params_from_config(cfg),
        allowed_doc_ids=[docs["tides.pdf"]],
    )
    assert res.changed and res.removed == 2 and res.not_allowed == 2 and res.items == 2
    for lexical in (True, False):
        hits = search(
            "honey bees waggle dance",
            k=10,
            cfg=load_config(
                [*cfg.overrides, f"search.lexical={str(lexical).lower()}", "search.thresholds.text_page=-1e9"]
            ),
        )
        assert hits.results and {r.source for r in hits.results} == {"tides.pdf"}
    publish(
        location_for(cfg, emb.version_key),
        tbl,
        emb,
        params_from_config(cfg),
        allowed_doc_ids=list(docs.values()),
    )
    assert search("honey bees waggle dance", k=1, cfg=cfg).results[0].source == "bees.pdf"


def test_searchers_are_keyed_on_the_whole_index_identity(indexed) -> None:
    """A model.dim=64 search in the same process is answered by the d64 index, not the d256 one."""
    from mmrag_assets.lib.search.searcher import get_searcher, search

    d64 = load_config([*indexed.overrides, "model.dim=64"])
    index(d64)
    rt = Runtime(indexed)
    a, b = get_searcher(rt), get_searcher(Runtime(d64))
    assert a.reader is not b.reader and a.meta["table"] != b.meta["table"] and "d64" in b.meta["table"]
    r = search("what does inverter error code E04 mean", k=1, cfg=d64)
    assert r.index["table"].endswith("__d64") and r.results[0].page == 4
    assert get_searcher(rt).reader is a.reader  # shared by the runtime's searchers, not rebuilt per call
    rt.close()
    assert get_searcher(rt).reader is not a.reader  # a closed runtime's next searcher opens the index again


def test_renamed_file_is_served_under_its_new_name_without_embedding_again(make_cfg, tmp_path: Path) -> None:
    from mmrag_assets.lib.search.searcher import search

    corpus = _tides_and_bees(tmp_path)
    cfg = make_cfg(corpus=corpus)
    index(cfg)
    before = _table(cfg).to_lance().to_table(columns=["item_id", "tokens"]).to_pylist()
    (corpus / "energy").mkdir()
    (corpus / "tides.pdf").rename(corpus / "energy" / "tidal-power.pdf")
    s = index(cfg)
    assert (s["ingested"], s["embedded"], s["renamed"]) == (0, 0, 1)
    rows = _table(cfg).to_lance().to_table(columns=["item_id", "source", "tokens"]).to_pylist()
    assert sorted(r["source"] for r in rows) == ["bees.pdf"] * 2 + ["energy/tidal-power.pdf"] * 2
    # the same items with the same token ids: carried over from the old rows, not embedded again
    assert {r["item_id"]: r["tokens"] for r in rows} == {r["item_id"]: r["tokens"] for r in before}
    hits = search("tidal turbines ocean currents", k=2, cfg=cfg).results
    assert hits[0].source == "energy/tidal-power.pdf"
    assert {r["source"] for r in Catalog(cfg.catalog_path).live_documents()} == {
        "bees.pdf",
        "energy/tidal-power.pdf",
    }
    again = index(cfg)  # the rename is done: nothing left to do
    assert again["run_id"] is None

"""The catalog reads and writes the stages call instead of holding SQL (issue 26), on a DuckDB file
and, where the server runs, on Postgres: the same rows from both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from data_contracts import pages as pages_suite
from mmrag_assets.lib.store import drift_tables as dt
from mmrag_assets.lib.store.catalog import Catalog
from tests.scale.services import fresh_database, postgres_available


@pytest.fixture(params=["duckdb", "postgres"])
def cat(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "duckdb":
        yield Catalog(tmp_path / "catalog.duckdb")
        return
    if not postgres_available():
        pytest.skip("needs the Postgres server on 127.0.0.1:5432 (.ci/run starts it)")
    with fresh_database() as url:
        yield Catalog(url)


def _doc(doc_id: str, source: str, kind: str = "pdf", status: str = "ok") -> dict:
    return {"doc_id": doc_id, "source": source, "kind": kind, "sha256": doc_id * 8, "size": 1,
            "n_pages": 1, "n_segments": 0, "duration_s": None, "status": status, "fingerprint": f"f{doc_id}"}  # fmt: skip


def _page(doc_id: str, text: str) -> dict:
    return {"item_id": f"{doc_id}:1", "doc_id": doc_id, "page": 1, "modality": "page",
            "image_path": f"pages/{doc_id}/fp/1.png", "text": text}  # fmt: skip


def _fill(cat: Catalog) -> None:
    cat.replace_manifest([
        {"source": "b.pdf", "doc_id": "b", "sha256": "b" * 8, "size": 2, "mtime_ns": 20, "kind": "pdf", "status": "ok"},
        {"source": "a.png", "doc_id": "a", "sha256": "a" * 8, "size": 1, "mtime_ns": 10, "kind": "image", "status": "ok", "etag": "e"},
        {"source": "x.bin", "doc_id": None, "size": 3, "mtime_ns": 30, "kind": "unsupported", "status": "ok"},
        {"source": "q.pdf", "doc_id": "q", "sha256": "q" * 8, "size": 4, "mtime_ns": 40, "kind": "pdf",
         "status": "quarantined", "reason": "broken"},
    ])  # fmt: skip
    cat.write_document(_doc("a", "a.png", "image"), pages=[_page("a", "")])
    cat.write_document(_doc("b", "b.pdf"), pages=[_page("b", "some text")],
                       segments=[{"item_id": "b:t0", "doc_id": "b", "start_s": 0.0, "end_s": 1.0, "text": "said"}])  # fmt: skip
    cat.write_document(_doc("q", "q.pdf", status="quarantined"), pages=[_page("q", "kept text")],
                       quarantine=[{"source": "q.pdf", "stage": "render", "reason": "broken"}])  # fmt: skip


def test_manifest_and_document_reads(cat: Catalog) -> None:
    _fill(cat)
    assert sorted((r["source"], r["etag"]) for r in cat.scan_cache_rows()) == [
        ("a.png", "e"), ("b.pdf", None), ("x.bin", None)
    ]  # fmt: skip
    assert [(r["source"], r["doc_id"], r["kind"]) for r in cat.manifest_ok()] == [
        ("a.png", "a", "image"), ("b.pdf", "b", "pdf"), ("x.bin", None, "unsupported")
    ]  # fmt: skip
    assert cat.manifest_files() == [
        {"source": "a.png", "size": 1, "mtime_ns": 10},
        {"source": "b.pdf", "size": 2, "mtime_ns": 20},
        {"source": "x.bin", "size": 3, "mtime_ns": 30},
    ]
    assert cat.source_kinds() == {"a.png": "image", "b.pdf": "pdf", "q.pdf": "pdf"}
    states = cat.document_states()
    assert states["q"] == {"doc_id": "q", "source": "q.pdf", "sha256": "q" * 8, "fingerprint": "fq",
                           "status": "quarantined"}  # fmt: skip
    assert sorted(states) == ["a", "b", "q"]
    assert cat.live_fingerprints(["a", "q", "gone"]) == {"a": "fa"}
    assert cat.live_fingerprints([]) == {}
    assert cat.live_kind_counts() == {"image": 1, "pdf": 1}
    assert (cat.count_rows("pages"), cat.count_rows("segments")) == (3, 1)
    assert cat.quarantine_reasons() == [{"source": "q.pdf", "reason": "broken"}]
    assert cat.page_image_paths() == {f"pages/{d}/fp/1.png" for d in "abq"}
    # quarantined q never counts; a's page has no text (an image item unless the tier is text-only)
    assert cat.embeddable_items([], images=True) == 3
    assert cat.embeddable_items([], images=False) == 2
    assert cat.embeddable_items(["b"], images=True) == 1
    frame = cat.contract_frame(pages_suite.SOURCE_SQL, ["b", "a"])
    assert list(frame["item_id"]) == ["a:1", "b:1"] and list(frame["doc_n_pages"]) == [1, 1]
    assert len(cat.contract_frame(pages_suite.SOURCE_SQL)) == 3
    assert cat.contract_frame(pages_suite.SOURCE_SQL, []).empty


def test_experiments(cat: Catalog) -> None:
    for i, sweep in enumerate(["s1", "s1", None]):
        cat.add_experiment({"run_id": f"r{i}", "created_at": datetime(2026, 12, 7, 10, i), "sweep_id": sweep,
                            "origin": "cli", "queries": "q.jsonl", "queries_sha256": "h", "overrides": "[]",
                            "config": "{}", "metrics": f'{{"n": {i}}}', "per_query": "[]"})  # fmt: skip
    assert [r["run_id"] for r in cat.experiments()] == ["r2", "r1", "r0"]
    assert [r["run_id"] for r in cat.experiments(sweep_id="s1", limit=1)] == ["r1"]
    (r,) = cat.experiments(run_ids=["r0", "nope"])
    assert r["metrics"].replace(" ", "") == '{"n":0}' and r["sweep_id"] == "s1"


def test_drift_tables(cat: Catalog) -> None:
    t = [datetime(2026, 12, 7, 10, m) for m in range(4)]
    for i, (vk, at) in enumerate([("v1", t[0]), ("v1", t[1]), ("v2", t[2])]):
        base = {"baseline_id": f"b{i}", "version_key": vk, "modality": "page", "n_items": 2, "dim": 4,
                "table_version": i, "payload": '{"k": 1}', "created_at": at, "created_by": "me", "reason": "why"}  # fmt: skip
        log = {"logged_at": at, "version_key": vk, "modality": "page", "action": "set", "baseline_id": f"b{i}",
               "previous_id": None, "n_items": 2, "user_name": "me", "reason": "why", "run_id": None}  # fmt: skip
        dt.append_baseline(cat, base, [f"{vk}:x", f"{vk}:y"], log)
    (live,) = dt.newest_baselines(cat, "v1", "page", payload=False, limit=1)
    assert live["baseline_id"] == "b1" and "payload" not in live
    (other,) = dt.newest_baselines(cat, "v1", "page", other_versions=True, payload=True, limit=1)
    assert other["baseline_id"] == "b2" and other["payload"].replace(" ", "") == '{"k":1}'
    assert dt.baseline_item_ids(cat, "b2") == {"v2:x", "v2:y"}
    assert [r["baseline_id"] for r in dt.baseline_log(cat)] == ["b2", "b1", "b0"]
    assert [r["baseline_id"] for r in dt.baseline_log(cat, "v1")] == ["b1", "b0"]

    dt.append_drift(cat, t[3], [{"version_key": "v1", "modality": "page", "scope": "all", "severity": "OK",
                                 "metrics": "{}"}])  # fmt: skip
    dt.append_drift(cat, t[3], [])
    assert cat.scalar("SELECT count(*) FROM drift_history WHERE baseline_id IS NULL") == 1
    gap = {"version_key": "v1", "modality": "page", "cosine": 0.5, "n_probes": 3, "n_items": 2}
    dt.append_gaps(cat, t[0], [{**gap, "centroid_distance": 1.0}])
    dt.append_gaps(cat, t[1], [{**gap, "centroid_distance": 2.0, "baseline_id": "b1"}])
    dt.append_gaps(cat, t[2], [{**gap, "centroid_distance": 3.0}])
    assert dt.gap_of_baseline(cat, "b1", "page")["centroid_distance"] == 2.0
    assert dt.gap_of_baseline(cat, "b0", "page") is None
    assert dt.first_gap(cat, "v1", "page")["centroid_distance"] == 1.0
    assert dt.first_gap(cat, "v2", "page") is None
    assert [g["centroid_distance"] for g in dt.gap_history(cat, "v1", "page", limit=2)] == [3.0, 2.0]
    assert len(dt.gap_history(cat, "v1")) == 3

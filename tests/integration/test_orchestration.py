"""Dagster as the only orchestrator: one run per command, shared concurrency pools, one-line errors,
and configs that never answer from another config's index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.index.embedding import version_key_for
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.instance import open_instance
from mmrag_assets.orchestration.launch import index

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = ["model=lite", "ingest.dpi=30", "search.prebuild=[pooled]", "search.first_stage=pooled"]


def _pdf(path: Path, text: str, pages: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"{text} page {i + 1}")
    doc.save(path)


def _mmrag(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mmrag_assets.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ},
    )


def test_one_command_is_one_named_dagster_run(tmp_path: Path) -> None:
    import dagster as dg

    for i in range(6):
        _pdf(tmp_path / "corpus" / f"doc{i}.pdf", f"document number {i} about topic {i * 7}")
    cfg = load_config([f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'storage'}", *FAST])
    summary = index(cfg)
    assert summary["ingested"] == 6 and summary["embedded"] == 6 and not summary["failed"]
    with open_instance(cfg) as instance:
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["index_job"]  # not one run per document, not an ephemeral job
        mats = instance.fetch_materializations(dg.AssetKey("page_images"), limit=100).records
        first, last = (
            runs[0].tags["dagster/asset_partition_range_start"],
            runs[0].tags["dagster/asset_partition_range_end"],
        )
        span = int(last, 16) - int(first, 16) + 1  # the contiguous range of shards that had work
        assert (
            len(mats) == len({r.partition_key for r in mats}) == span <= 16
        )  # one event per shard, not per document
    again = index(cfg)
    assert (again["ingested"], again["embedded"], again["run_id"]) == (
        0,
        0,
        None,
    )  # nothing to do: no run at all
    (tmp_path / "corpus" / "doc0.pdf").unlink()
    removed = index(cfg)
    assert removed["ingested"] == 0 and removed["run_id"] is not None
    with open_instance(cfg) as instance:
        assert [r.job_name for r in instance.get_runs()] == [
            "publish_job",
            "index_job",
        ]  # a removal: publish only


def test_a_model_sweep_in_one_process_searches_each_index(tmp_path: Path) -> None:
    from mmrag_assets.lib.search.searcher import search

    _pdf(tmp_path / "corpus" / "tides.pdf", "Tidal turbines harvest energy from ocean currents")
    _pdf(tmp_path / "corpus" / "bees.pdf", "Honey bees communicate with a waggle dance")
    base = [f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'storage'}", *FAST]
    answered = {}
    for dim in (64, 128, 256):
        cfg = load_config([*base, f"model.dim={dim}"])
        index(cfg)
        resp = search("waggle dance of bees", k=2, cfg=cfg)
        answered[dim] = resp.index["table"]
        assert resp.results[0].source == "bees.pdf"
    assert answered == {
        d: lx.table_name(version_key_for(load_config([*base, f"model.dim={d}"]).model))
        for d in (64, 128, 256)
    }
    assert len(set(answered.values())) == 3
    for dim in (256, 64):  # and back again, in the same process
        cfg = load_config([*base, f"model.dim={dim}"])
        assert search("ocean currents", k=1, cfg=cfg).index["table"] == answered[dim]


def test_a_missing_corpus_is_one_error_line(tmp_path: Path) -> None:
    p = _mmrag("index", f"corpus.root={tmp_path / 'nonexistent'}", f"storage.root={tmp_path / 's'}")
    _out, err = p.communicate(timeout=300)
    assert p.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: corpus.root=") and "is not a directory" in lines[-1]
    assert "Traceback" not in err and len(lines) <= 2, err
    bad = _mmrag("index", "search.first_stage=hnsw", f"storage.root={tmp_path / 's'}")
    _, err = bad.communicate(timeout=300)
    assert bad.returncode == 2 and err.strip().splitlines()[-1] == (
        "error: search.first_stage=hnsw is not valid: choose one of plaid, binary, pooled, muvera"
    )


@pytest.mark.slow
def test_two_writers_at_once_wait_for_each_other_and_leave_no_duplicates(tmp_path: Path) -> None:
    for i in range(8):
        _pdf(tmp_path / "corpus" / f"doc{i}.pdf", f"document {i} on subject {i * 13}", pages=3)
    overrides = [f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'storage'}", *FAST]
    a, b = (
        _mmrag("index", *overrides),
        _mmrag("index", *overrides),
    )  # a fresh storage root: first use races too
    (_, err_a), (_, err_b) = a.communicate(timeout=900), b.communicate(timeout=900)
    assert (a.returncode, b.returncode) == (0, 0), err_a + err_b
    cfg = load_config(overrides)
    tbl = lx.open_table(Runtime(cfg), version_key_for(cfg.model), cfg.model.dim, create=False)
    ids = tbl.to_lance().to_table(columns=["item_id"]).column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == 24
    with open_instance(cfg) as instance:
        assert all(r.status.value == "SUCCESS" for r in instance.get_runs())


def test_the_dagster_ui_shows_the_data(tmp_path: Path) -> None:
    """What a user sees in the UI, read back from the instance's event log."""
    import dagster as dg

    _pdf(tmp_path / "corpus" / "SunVolt manual.pdf", "SunVolt inverter error codes")
    (tmp_path / "corpus" / "notes.xyz").write_bytes(b"\x00\x01 not a document")
    cfg = load_config([f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'storage'}", *FAST])
    index(cfg)
    with open_instance(cfg) as instance:

        def latest(asset: str) -> dict:
            ev = instance.get_latest_materialization_event(dg.AssetKey(asset))
            return ev.asset_materialization.metadata

        (run,) = instance.get_runs()
        assert run.job_name == "index_job"  # a named job, not __ephemeral_asset_job__
        pages = latest("page_images")  # the only shard with a document
        assert "SunVolt manual.pdf" in pages["documents"].value  # the file name, not only a content hash
        assert pages["previews"].value.startswith("![SunVolt manual.pdf p.1](data:image/jpeg;base64,")
        manifest = latest("corpus_manifest")
        assert "notes.xyz" in manifest["quarantined_files"].value and manifest["quarantined"].value == 1
        index_meta = latest("search_index")
        assert isinstance(
            index_meta["built_at"], dg.TimestampMetadataValue
        )  # a date in the UI, not an epoch float
        assert isinstance(index_meta["table_version"], dg.TextMetadataValue)  # a constant: not auto-plotted
        drift = next(
            iter(
                instance.event_log_storage.get_latest_asset_check_execution_by_key(
                    [dg.AssetCheckKey(dg.AssetKey("search_index"), "embedding_drift")]
                ).values()
            )
        ).evaluation
        assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN  # 2 items: not "Passed"
        assert drift.description.startswith("skipped: drift not assessed")

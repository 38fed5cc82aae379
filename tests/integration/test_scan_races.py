"""Files that vanish or change between the scan (corpus_manifest) and their ingestion: a warning
line each in the run log and in `mmrag status`, never a silent skip (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.store.runtime import Runtime
from tests.hostile_corpus import _pdf

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_file_that_moves_after_the_scan_gets_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dagster as dg

    from mmrag_assets.cli.pipeline import print_status
    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.defs.ingest.sensors import range_tags
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.lib.store.catalog import Catalog
    from mmrag_assets.orchestration.instance import open_instance
    from mmrag_assets.orchestration.launch import ingest
    from mmrag_assets.resources import resources_for

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("gone.pdf", "grown.pdf", "kept.pdf"):
        (corpus / name).write_bytes(_pdf(f"The {name} document", pages=1))
    overrides = [f"corpus.root={corpus}", f"storage.root={tmp_path / 'storage'}", "ocr=none"]
    cfg = load_config(overrides)
    with open_instance(cfg) as instance:
        kw = {"instance": instance, "resources": resources_for(overrides)}
        assert dg.materialize([*ASSETS, *ASSET_CHECKS], selection=["corpus_manifest"], **kw).success
        (corpus / "gone.pdf").unlink()  # after the scan, before ingestion
        (corpus / "grown.pdf").write_bytes(_pdf("The grown document, rewritten", pages=2))
        run = dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=["page_images", "transcript_segments"],
            tags=range_tags("0", "f"),
            **kw,
        )
        assert run.success
        logs = [e.user_message for e in instance.all_logs(run.run_id)]
    assert any(m.startswith("gone.pdf vanished after the scan") for m in logs), logs
    assert any(m.startswith("grown.pdf changed after the scan") for m in logs), logs
    assert {r["source"] for r in Catalog(cfg.catalog_url).query("SELECT source FROM documents")} == {
        "kept.pdf"
    }

    st = catalog_status(Runtime(cfg))
    assert {(m["source"], m["what"]) for m in st["changed_after_scan"]} == {
        ("gone.pdf", "vanished"),
        ("grown.pdf", "changed"),
    }
    print_status(st)
    out = capsys.readouterr().out
    assert "vanished or changed after the last scan: 2" in out
    assert "  gone.pdf vanished after the scan" in out and "  grown.pdf changed after the scan" in out

    ingest(cfg)  # the next run catches up: nothing left to report
    assert catalog_status(Runtime(cfg))["changed_after_scan"] == []
    assert {r["source"] for r in Catalog(cfg.catalog_url).query("SELECT source FROM documents")} == {
        "kept.pdf",
        "grown.pdf",
    }

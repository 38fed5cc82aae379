"""kill -9 at every moment of ingest, embedding and publish, then a rerun: exactly the rows, search
results and status of an uninterrupted run; no duplicate rows; orphan versions collected; the
killed run marked failed so that nothing waits on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.lib.faults import POINTS
from mmrag_assets.lib.store.runtime import Runtime
from tests.faults.conftest import cfg_for, make_corpus, mmrag, snapshot

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

# (fault point, hit) -> what the store must look like right after the kill (proof it hit mid-way)
CASES = {
    "ingest.document:3": "3 of 6 documents ingested, nothing embedded",
    "embed.written:2": "a chunk's fragments written, its batch not staged: nothing in the table",
    "embed.chunk:2": "some items staged, not all; nothing in the table",
    "embed.staged:1": "every item staged, nothing committed or published",
    "embed.committed:1": "every item committed to the table, nothing published",
    "publish.before_current:1": "a version written, CURRENT never switched",
    "publish.after_current:1": "CURRENT switched, garbage not collected",
}


def test_every_fault_point_has_a_case() -> None:
    assert {c.split(":")[0] for c in CASES} == set(POINTS)


@pytest.mark.parametrize("fault", list(CASES))
def test_kill9_then_rerun_equals_a_clean_run(fault: str, tmp_path: Path, clean_run) -> None:
    import dagster as dg

    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.index.publish import location_for
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.lib.store import manifest as mf
    from mmrag_assets.lib.store.catalog import Catalog
    from mmrag_assets.orchestration.instance import open_instance
    from mmrag_assets.orchestration.launch import index

    make_corpus(tmp_path / "corpus")
    cfg = cfg_for(tmp_path)
    killed = mmrag(cfg, "index", fault=fault)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, not a clean exit

    loc = location_for(cfg, version_key_for(cfg.model))
    st = catalog_status(Runtime(cfg))
    ix = st["index"]
    point = fault.split(":")[0]
    if point == "ingest.document":
        assert Catalog(cfg.catalog_path).scalar("SELECT count(*) FROM documents") == 3 and not ix
    elif point in ("embed.written", "embed.chunk", "embed.staged"):
        from mmrag_assets.lib.index.staging import staging_for
        from mmrag_assets.lib.store import table as lx

        tbl = lx.open_table(
            Runtime(cfg), version_key_for(cfg.model), lx.model_schema(cfg.model), create=False
        )
        staged = sum(b.rows for b in staging_for(Runtime(cfg), tbl).batches())
        assert ix["rows"] == 0 and ix["published"] is None  # a killed embedding step leaves no row visible
        assert (
            staged == {"embed.written": 3, "embed.chunk": 6, "embed.staged": 18}[point]
        )  # what the rerun resumes from
    elif point == "embed.committed":
        assert ix["rows"] == 18 and ix["published"] is None
    elif point == "publish.before_current":
        assert mf.current_version(loc) is None and mf.list_versions(loc) == [1]
        assert ix["published"] is None
    else:
        assert mf.current_version(loc) == 1

    index(cfg)  # the rerun, as `mmrag index` does it
    after = snapshot(cfg)
    assert len(after["item_ids"]) == len(set(after["item_ids"]))  # nothing duplicated
    for key in ("item_ids", "rows", "served_documents", "results", "status", "index_items"):
        assert after[key] == clean_run[key], key
    live = mf.current_version(loc)
    assert mf.list_versions(loc) == [live]  # orphan and replaced versions collected (grace 0 here)
    with open_instance(cfg) as instance:  # the killed run is failed, not STARTED forever
        statuses = [r.status for r in instance.get_runs()]
        assert dg.DagsterRunStatus.STARTED not in statuses and dg.DagsterRunStatus.FAILURE in statuses

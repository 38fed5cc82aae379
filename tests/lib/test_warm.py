"""Background imports of the modules a run's later steps need (lib/warm.py)."""

from __future__ import annotations

import sys

from mmrag_assets.lib import warm


def test_each_job_warms_the_modules_its_later_steps_import() -> None:
    assert warm.for_job("index_job") == warm.CONTRACTS + warm.INDEX
    assert warm.for_job("ingest_job") == warm.CONTRACTS
    assert warm.for_job("shard_index_job_multiprocess") == warm.CONTRACTS + warm.INDEX
    assert warm.for_job("shard_ingest_job_celery") == warm.CONTRACTS
    assert warm.for_job("publish_job") == warm.INDEX
    assert warm.for_job("search_index_job_multiprocess") == warm.INDEX
    assert warm.for_job("corpus_manifest_job") == ()


def test_modules_are_imported_once_in_a_daemon_thread_and_failures_are_left_to_the_step() -> None:
    name = "json.tool"  # small, stdlib, rarely imported by anything else
    sys.modules.pop(name, None)
    t = warm.warm_imports(("mmrag_no_such_module_x", name))
    assert t is not None and t.daemon
    t.join(timeout=60)
    assert name in sys.modules and name in warm.last
    assert "mmrag_no_such_module_x" not in warm.last  # skipped, no exception in the thread
    assert warm.warm_imports(("mmrag_no_such_module_x", name)) is None  # once per process and list
    assert warm.warm_imports(("json",)) is None  # nothing left to import

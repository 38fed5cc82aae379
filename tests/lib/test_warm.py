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


def test_the_packages_both_threads_reach_are_imported_before_the_background_thread_starts() -> None:
    """A fresh process: the caller has ``sqlalchemy.orm`` as soon as ``warm_imports`` returns, so a step's
    own imports never meet the background thread inside its circular package imports."""
    import subprocess

    code = (
        "import sys\n"
        "from mmrag_assets.lib import warm\n"
        "assert 'sqlalchemy.orm' not in sys.modules\n"
        "t = warm.warm_imports(('mmrag_no_such_module_x',))\n"  # a thread that imports nothing
        "assert 'sqlalchemy.orm' in sys.modules, 'imported by the background thread only'\n"
        "t.join(timeout=60)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr

"""The celery app of ``mmrag worker`` (orchestration/celery_app.py): importing it reads no environment;
the worker's preload happens when celery initialises the worker, before its pool forks."""

from __future__ import annotations

import os
import subprocess
import sys


def test_preload_runs_at_worker_init_not_at_import() -> None:
    code = (
        "import sys\n"
        "from celery import signals\n"
        "import mmrag_assets.orchestration.celery_app\n"
        "assert 'json.tool' not in sys.modules, 'imported when the app module was'\n"
        "signals.worker_init.send(sender=None)\n"
        "assert 'json.tool' in sys.modules, 'not imported at worker_init'\n"
    )
    env = {**os.environ, "MMRAG_PRELOAD": "json.tool,mmrag_no_such_module_x"}  # a missing one is skipped
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr

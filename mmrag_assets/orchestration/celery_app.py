"""The celery app ``mmrag worker`` runs: dagster-celery's tasks, with mmrag's code imported once in
the worker's main process, before celery's prefork pool forks its processes from it. A pool process
lives on from step to step, so no step pays an interpreter start or an import (the modules named in
``MMRAG_PRELOAD``, which ``mmrag worker`` sets from the config: ``forkserver.preload_modules``), and
model weights stay loaded between steps (``visual.load_model`` keeps them per process)."""

from __future__ import annotations

import importlib
import os

from dagster_celery.app import app, execute_job, execute_plan, resume_job  # noqa: F401 - the tasks

import mmrag_assets.orchestration.preload  # noqa: F401 - warning filters and log levels of a forking process

for _name in filter(None, os.environ.get("MMRAG_PRELOAD", "").split(",")):
    try:
        importlib.import_module(_name)
    except ImportError:  # an optional dependency this machine lacks: its steps import it, or fail, as before
        pass

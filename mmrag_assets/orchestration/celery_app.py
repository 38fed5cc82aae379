"""The celery app ``mmrag worker`` runs: dagster-celery's tasks, with mmrag's code imported once in
the worker's main process, before celery's prefork pool forks its processes from it. A pool process
lives on from step to step, so no step pays an interpreter start or an import (the modules named in
``MMRAG_PRELOAD``, which ``mmrag worker`` sets from the config: ``forkserver.preload_modules``; imported
when celery initialises the worker, not when this module is imported), and
model weights stay loaded between steps (``visual.load_model`` keeps them per process)."""

from __future__ import annotations

import importlib
import os
from typing import Any

from celery import signals
from dagster_celery.app import app, execute_job, execute_plan, resume_job  # noqa: F401 - the tasks

import mmrag_assets.orchestration.preload  # noqa: F401 - warning filters and log levels of a forking process


@signals.worker_init.connect
def preload_modules(**_kwargs: Any) -> None:
    """In the worker's main process, after its set-up and before its pool forks (celery sends
    ``worker_init`` there): the modules ``mmrag worker`` named. Importing this module reads nothing."""
    for name in filter(None, os.environ.get("MMRAG_PRELOAD", "").split(",")):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional dependency missing here: its steps import it, or fail, as before
            pass

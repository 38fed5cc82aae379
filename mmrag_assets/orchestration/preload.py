"""Imported first by the processes that others fork from after importing mmrag's code once: the
server of a scale-out command's run processes (``distributed.run_processes``) and a celery
worker's main process (``mmrag worker``, ``celery_app.py``).

Forking after the imports is safe here because nothing has run yet: no LanceDB/Lance call (their
runtimes start on first use), no ONNX or torch session, no open connection. LanceDB restarts its
background event-loop thread in each forked child and warns that this is experimental; Lance warns
on every fork that it is not fork-safe (which holds for a process that used it, not for one that
only imported it). Both warnings are silenced in these processes only, for that reason.
"""

from __future__ import annotations

import logging
import warnings

warnings.filterwarnings("ignore", message="lancedb fork support is experimental", category=RuntimeWarning)
warnings.filterwarnings("ignore", message="lance is not fork-safe")
# Dagster's SQLite instance runs alembic on every open; its INFO lines would reach the console of the
# command from every run process (the CLI process sets its own level, see cli/__init__.py)
logging.getLogger("alembic").setLevel(logging.WARNING)

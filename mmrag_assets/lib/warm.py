"""Import in the background what a run's later steps will need, while ingestion keeps the cores
busy in native code (rendering, OCR and the dense encoder release the GIL).

A one-file ``mmrag index`` spent ~4 s of CPU importing Great Expectations (the contracts step),
~1.6 s LanceDB (the embedding step) and ~1.5 s scikit-learn, SciPy and matplotlib (the drift
check), each at the start of its step, after ingestion had finished: py-spy. Started when a run has
documents to ingest, a daemon thread imports them meanwhile; a module it fails to import is left to
the step that needs it (which then reports the error as before).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time

log = logging.getLogger(__name__)

# the contracts step (every run that ingests)
CONTRACTS = ("great_expectations", "data_contracts.runner")
# the embedding, publish and drift steps (runs that embed and publish)
INDEX = (
    "lancedb",
    "scipy.stats",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
)


def for_job(job_name: str) -> tuple[str, ...]:
    """The modules the steps of ``job_name`` import late: the contracts' for every job that ingests,
    LanceDB's and the drift check's as well for the jobs that embed and publish."""
    embeds = "index" in job_name and "ingest" not in job_name
    ingests = "ingest" in job_name or job_name == "index_job" or job_name.startswith("shard_index")
    return (CONTRACTS if ingests else ()) + (INDEX if embeds or job_name.startswith("publish") else ())


# imported by the calling thread before the background one starts: modules that both the background
# imports (Great Expectations) and a step's own late imports reach, whose package imports itself in a
# circle. Two threads importing such a package at once can meet in that circle: Python's import lock
# then breaks the deadlock by handing one thread the partially initialised module, and a step failed
# with "partially initialized module 'sqlalchemy.orm.exc' has no attribute 'UnmappedClassError'"
# (an `mmrag ingest` under tests/integration/test_ingest_pipeline.py, load 5 on 2 cores). ~0.08 s.
FIRST = ("sqlalchemy.orm",)

_started: set[tuple[str, ...]] = set()
_lock = threading.Lock()
last: dict[str, float] = {}  # module -> seconds its import took in the background (diagnostics, tests)


def warm_imports(modules: tuple[str, ...]) -> threading.Thread | None:
    """Start a daemon thread importing ``modules`` in order (once per process and list); None when
    nothing is left to import."""
    import sys

    todo = tuple(m for m in modules if m not in sys.modules)
    with _lock:
        if not todo or modules in _started:
            return None
        _started.add(modules)
    for m in FIRST:
        try:
            importlib.import_module(m)
        except ImportError:  # not installed: nothing to share
            pass
    t = threading.Thread(target=_import_all, args=(todo,), name="mmrag-warm-imports", daemon=True)
    t.start()
    return t


def _import_all(modules: tuple[str, ...]) -> None:
    for m in modules:
        t = time.perf_counter()
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - the step that needs it imports it again and reports
            log.debug("background import of %s failed: %s", m, e)
            continue
        last[m] = time.perf_counter() - t

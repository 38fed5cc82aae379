"""What the processes that runs fork from import once: Python's forkserver, started clean (no thread
or runtime of the starting process, e.g. LanceDB's, is forked), imports :func:`preload_modules`,
and each run process is a fork of it. Used by the scale-out run processes
(``distributed.run_processes``), the daemon's run launcher (``warm_runs.py``) and, as a list,
``mmrag worker`` (celery_app.py)."""

from __future__ import annotations

import multiprocessing
from typing import Any

from mmrag_assets.config import MmragConfig

# What every run process needs, imported once by the server the run processes are forked from (the
# spawned process per run this replaces re-imported all of it: ~4 s of CPU each here, with Great
# Expectations ~4.7 s of it on its own, docs/scaling-out.md). An import that fails is skipped.
PRELOAD = (
    "mmrag_assets.orchestration.preload",  # first: what forking after these imports needs (warnings, log levels)
    "dagster._core.executor.multiprocess",
    "dagster._cli.api",  # what a launched run process runs (warm_runs.execute_run) and the instance it
    "dagster._core.storage.sqlite_storage",  # opens (alembic and the storages: ~1 s of imports per run)
    "mmrag_assets.definitions",
    "mmrag_assets.orchestration.preload_definitions",  # builds them, once
    "data_contracts.runner",
    "great_expectations",
    "lancedb",
    "lance",
    "pymupdf",
    "PIL.Image",
    "psycopg",
    "psycopg2",
    "pandas",
    "scipy.stats",
)
PRELOAD_BY_CONFIG = {  # heavier modules only the configs that use them load
    "lite": ("wordllama",),
    "visual": ("torch", "transformers", "colpali_engine"),
    "ocr": ("rapidocr", "onnxruntime"),
    "dense": ("onnxruntime", "tokenizers"),
    "postgres": ("dagster_postgres",),  # the instance's storage
}


def preload_modules(cfg: MmragConfig) -> list[str]:
    """:data:`PRELOAD`, what the steps import late (``lib/warm.py``: the contracts', LanceDB's and the
    drift check's), then the models' runtimes ``cfg`` uses."""
    from mmrag_assets.lib.warm import CONTRACTS, INDEX

    mods = [*PRELOAD, *CONTRACTS, *INDEX]
    mods += PRELOAD_BY_CONFIG["lite" if cfg.model.arch == "lite" else "visual"]
    if cfg.ocr.engine != "none":
        mods += PRELOAD_BY_CONFIG["ocr"]
    if cfg.dense.model != "none":
        mods += PRELOAD_BY_CONFIG["dense"]
    if cfg.orchestration.instance == "postgres":
        mods += PRELOAD_BY_CONFIG["postgres"]
    return list(dict.fromkeys(mods))


def forkserver_context(modules: list[str]) -> Any:
    """A multiprocessing context whose processes fork from a server that imported ``modules``
    (started on the first process; one server per Python process, so the last list set wins)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(modules)
    return ctx

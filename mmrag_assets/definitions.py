"""Assembly only: every asset, check, job, sensor and schedule of mmrag."""

from __future__ import annotations

import functools
import json
import os

import dagster as dg

from mmrag_assets.config import load_config
from mmrag_assets.defs.answer.assets import answers
from mmrag_assets.defs.evaluation import EVAL_ASSETS, EVAL_JOBS
from mmrag_assets.defs.index.assets import item_embeddings, search_index
from mmrag_assets.defs.ingest.assets import corpus_manifest, document_content
from mmrag_assets.defs.ingest.sensors import corpus_reconcile_schedule, corpus_sensor_every
from mmrag_assets.defs.jobs import PIPELINE_JOBS, SCALE_JOBS
from mmrag_assets.defs.quality import QUALITY_ASSETS, QUALITY_CHECKS, QUALITY_JOBS, QUALITY_SENSORS
from mmrag_assets.defs.search.assets import search_results
from mmrag_assets.defs.shared import cli_logger
from mmrag_assets.resources import resources_for

ASSETS = [
    corpus_manifest,
    document_content,
    item_embeddings,
    search_index,
    search_results,
    answers,
    *QUALITY_ASSETS,
    *EVAL_ASSETS,
]
ASSET_CHECKS = [*QUALITY_CHECKS]


def build_definitions(
    overrides: list[str] | None = None, executor: dg.ExecutorDefinition | None = None
) -> dg.Definitions:
    interval = load_config(list(overrides or [])).orchestration.sensor_interval_s
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[*PIPELINE_JOBS, *SCALE_JOBS, *QUALITY_JOBS, *EVAL_JOBS],
        sensors=[corpus_sensor_every(interval), *QUALITY_SENSORS],
        schedules=[corpus_reconcile_schedule],
        resources=resources_for(list(overrides or [])),
        executor=executor or dg.in_process_executor,
        loggers={"mmrag_cli": cli_logger},
    )


@functools.cache
def loaded() -> dg.Definitions:
    """The definitions of the code location that ``mmrag ui`` (its webserver, daemon and code server)
    and the runs they launch load: ``mmrag ui key=value ...`` passes its overrides in
    ``MMRAG_OVERRIDES`` (a JSON list), read when they are loaded, not at import. Built once per process
    (a process forked after building them, ``orchestration/forkserver.py``, reuses them)."""
    return build_definitions(json.loads(os.environ.get("MMRAG_OVERRIDES", "[]")))


@dg.definitions
def defs() -> dg.Definitions:
    """``workspace.yaml``'s entry point (Dagster calls it when it loads the code location)."""
    return loaded()

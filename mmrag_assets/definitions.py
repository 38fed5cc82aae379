"""Assembly only: every asset, check, job, sensor and schedule of mmrag."""

from __future__ import annotations

import json
import os

import dagster as dg

from mmrag_assets.defs.evaluation import EVAL_ASSETS, EVAL_JOBS
from mmrag_assets.defs.index.assets import item_embeddings, search_index
from mmrag_assets.defs.ingest.assets import corpus_manifest, document_content
from mmrag_assets.defs.ingest.sensors import (
    corpus_manifest_job,
    corpus_reconcile_schedule,
    corpus_sensor,
    ingest_job,
)
from mmrag_assets.defs.quality import QUALITY_ASSETS, QUALITY_CHECKS, QUALITY_JOBS, QUALITY_SENSORS
from mmrag_assets.defs.search.assets import search_results
from mmrag_assets.resources.mmrag import MmragResource

ASSETS = [corpus_manifest, document_content, item_embeddings, search_index, search_results, *QUALITY_ASSETS, *EVAL_ASSETS]
ASSET_CHECKS = [*QUALITY_CHECKS]


def build_definitions(overrides: list[str] | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[corpus_manifest_job, ingest_job, *QUALITY_JOBS, *EVAL_JOBS],
        sensors=[corpus_sensor, *QUALITY_SENSORS],
        schedules=[corpus_reconcile_schedule],
        resources={"mmrag": MmragResource(overrides=list(overrides or []))},
        executor=dg.in_process_executor,
    )


# `mmrag ui key=value ...` passes its overrides here (a JSON list) so the UI runs the CLI's config.
defs = build_definitions(json.loads(os.environ.get("MMRAG_OVERRIDES", "[]")))

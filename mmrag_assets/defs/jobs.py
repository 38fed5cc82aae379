"""The named jobs the CLI, the sensor, the schedule and the UI launch (one run per command)."""

from __future__ import annotations

import dagster as dg

PIPELINE = ["corpus_manifest", "page_images", "transcript_segments", "item_embeddings", "search_index"]

index_job = dg.define_asset_job(
    "index_job",
    selection=dg.AssetSelection.assets(*PIPELINE),
    description="Manifest, ingest, embed and publish the documents of a range of shards (mmrag index).",
    tags={"mmrag/writer": "true"},
)
ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(*PIPELINE[:3]),
    description="Manifest and ingest the documents of a range of shards (mmrag ingest).",
    tags={"mmrag/writer": "true"},
)
publish_job = dg.define_asset_job(
    "publish_job",
    selection=dg.AssetSelection.assets("corpus_manifest", "search_index"),
    description="Manifest and publish only: removals and held-back documents, when no shard has work.",
    tags={"mmrag/writer": "true"},
)
corpus_manifest_job = dg.define_asset_job("corpus_manifest_job", selection=["corpus_manifest"])

PIPELINE_JOBS = [index_job, ingest_job, publish_job, corpus_manifest_job]

# ---------------------------------------------------------------- scale-out (orchestration.workers > 1)
# `mmrag index` on several workers: one corpus_manifest run, then one run per range of shards, side
# by side, then one publish run, each in a run process forked from a preloaded server
# (distributed.run_processes). The executor is chosen by the job (Dagster picks executors per job):
# on one machine ("multiprocess") a run's steps execute in its own process (a process per step
# re-imported everything: ~4 s of CPU a step), across machines they go to celery workers.
SHARD_INDEX = ["page_images", "transcript_segments", "item_embeddings"]


def _scale_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    from dagster_celery import celery_executor

    out = []
    for suffix, executor in (("multiprocess", dg.in_process_executor), ("celery", celery_executor)):
        out += [
            dg.define_asset_job(f"shard_index_job_{suffix}", selection=dg.AssetSelection.assets(*SHARD_INDEX),
                                executor_def=executor, tags={"mmrag/writer": "true"},
                                description="Ingest and embed the documents of one range of shards (scale-out)."),
            dg.define_asset_job(f"shard_ingest_job_{suffix}", selection=dg.AssetSelection.assets(*SHARD_INDEX[:2]),
                                executor_def=executor, tags={"mmrag/writer": "true"},
                                description="Ingest the documents of one range of shards (scale-out)."),
            dg.define_asset_job(f"search_index_job_{suffix}", selection=dg.AssetSelection.assets("search_index"),
                                executor_def=executor, tags={"mmrag/writer": "true"},
                                description="Publish the search index after the shard runs (scale-out)."),
        ]  # fmt: skip
    return out


SCALE_JOBS = _scale_jobs()

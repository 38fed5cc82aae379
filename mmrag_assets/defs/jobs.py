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

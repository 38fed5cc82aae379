"""Sensor and schedule that keep the ``documents`` partitions equal to the corpus."""


import hashlib
import json

import dagster as dg
from dagster import SensorEvaluationContext

from mmrag_assets.defs.ingest.partitions import documents_partitions
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.ingest.corpus import scan, scan_cache
from mmrag_assets.resources.mmrag import MmragResource

corpus_manifest_job = dg.define_asset_job("corpus_manifest_job", selection=["corpus_manifest"])
ingest_job = dg.define_asset_job("ingest_job", selection=["page_images", "transcript_segments"])


@dg.sensor(
    jobs=[corpus_manifest_job, ingest_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def corpus_sensor(context: SensorEvaluationContext, mmrag: MmragResource) -> dg.SensorResult | dg.SkipReason:
    """Notices new, changed and deleted files: adds/removes ``documents`` partitions, requests a
    manifest run (which purges deleted documents) and one ingest run per unprocessed document."""
    cfg = mmrag.config()
    state = json.loads(context.cursor) if context.cursor else {}
    cache = {k: tuple(v) for k, v in state.get("cache", {}).items()}
    try:
        result = scan(cfg, cache=cache)
    except ConfigError as e:  # no corpus yet: say so on every tick instead of erroring
        return dg.SkipReason(str(e))
    current = set(result.docs)
    registered = set(context.instance.get_dynamic_partitions(documents_partitions.name))
    added, removed = sorted(current - registered), sorted(registered - current)
    signature = hashlib.sha256(
        json.dumps(
            [sorted(current), sorted((e.source, e.status, e.reason) for e in result.entries)], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    requests: list[dg.RunRequest] = []
    if signature != state.get("signature"):
        requests.append(dg.RunRequest(job_name=corpus_manifest_job.name, run_key=f"manifest:{signature}"))
    done = context.instance.get_materialized_partitions(dg.AssetKey("page_images"))
    for doc_id in sorted(current - set(done)):
        e = result.docs[doc_id]
        requests.append(
            dg.RunRequest(
                job_name=ingest_job.name, partition_key=doc_id, run_key=f"ingest:{doc_id}:{e.mtime_ns}",
                tags={"mmrag/source": e.source},
            )
        )
    if added or removed:
        context.log.info(f"documents: +{len(added)} -{len(removed)}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            documents_partitions.build_add_request(added),
            documents_partitions.build_delete_request(removed),
        ],
        cursor=json.dumps({"signature": signature, "cache": scan_cache(result)}),
    )


corpus_reconcile_schedule = dg.ScheduleDefinition(
    name="corpus_reconcile_schedule",
    job=corpus_manifest_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly full reconciliation of the corpus manifest, partitions and catalog.",
)

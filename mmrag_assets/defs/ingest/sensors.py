"""The sensor and schedule that keep the index equal to the corpus."""

import hashlib
import json

import dagster as dg
from dagster import SensorEvaluationContext

from mmrag_assets.defs.jobs import index_job, publish_job
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.ingest.corpus import SHARD_KEYS, scan, scan_cache
from mmrag_assets.lib.plan import plan_run
from mmrag_assets.resources import MmragConfigResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START: first, RANGE_END: last}


def corpus_tick(
    context: SensorEvaluationContext, mmrag: MmragConfigResource
) -> dg.SensorResult | dg.SkipReason:
    """Notices new, changed and deleted files and requests one run that ingests, embeds and
    publishes the shards they fall in (or only publishes, for deletions)."""
    rt = mmrag.runtime
    state = json.loads(context.cursor) if context.cursor else {}
    cache = {k: tuple(v) for k, v in state.get("cache", {}).items()}
    try:
        result = scan(rt, cache=cache)
    except ConfigError as e:  # no corpus yet: say so on every tick instead of erroring
        return dg.SkipReason(str(e))
    plan = plan_run(rt, rt.catalog, version_key=rt.version_key, result=result)
    signature = hashlib.sha256(
        json.dumps(
            [sorted(result.docs), sorted((e.source, e.status, e.reason) for e in result.entries)]
        ).encode()
    ).hexdigest()[:16]
    # the corpus state's generation: run keys repeat while a state lasts (the ticks during its run
    # request nothing new) but not when an earlier state comes back (a file added, deleted, added
    # again), whose run keys Dagster would skip as already used
    gen = int(state.get("gen", 0)) + (signature != state.get("signature"))
    cursor = json.dumps({"signature": signature, "gen": gen, "cache": scan_cache(result)})
    if not plan.shards and signature == state.get("signature"):
        return dg.SensorResult(skip_reason=dg.SkipReason(f"up to date: {plan.describe()}"), cursor=cursor)
    if plan.shards:
        first, last = plan.range  # type: ignore[misc]
        request = dg.RunRequest(
            job_name=index_job.name,
            run_key=f"index:{signature}:{gen}:{first}-{last}",
            tags=range_tags(first, last),
        )
    else:
        request = dg.RunRequest(job_name=publish_job.name, run_key=f"publish:{signature}:{gen}")
    context.log.info(f"requesting {request.job_name}: {plan.describe()}")
    return dg.SensorResult(run_requests=[request], cursor=cursor)


def corpus_sensor_every(seconds: int) -> dg.SensorDefinition:
    """The corpus sensor, evaluated at most every ``seconds`` (``orchestration.sensor_interval_s``:
    a tick is a stat of every corpus file and two catalog queries, and how long a dropped file
    waits before its run is requested)."""

    @dg.sensor(name="corpus_sensor", jobs=[index_job, publish_job], minimum_interval_seconds=seconds,
               default_status=dg.DefaultSensorStatus.RUNNING)  # fmt: skip
    def corpus_sensor(
        context: SensorEvaluationContext, mmrag: MmragConfigResource
    ) -> dg.SensorResult | dg.SkipReason:
        return corpus_tick(context, mmrag)

    corpus_sensor.__doc__ = corpus_tick.__doc__
    return corpus_sensor


def __getattr__(name: str) -> dg.SensorDefinition:
    """``corpus_sensor``: the sensor at the default config's interval (definitions.py builds the run's own)."""
    if name == "corpus_sensor":
        from mmrag_assets.config import load_config

        return corpus_sensor_every(load_config([]).orchestration.sensor_interval_s)
    raise AttributeError(name)


@dg.schedule(job=index_job, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING)
def corpus_reconcile_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Nightly full reconciliation of every shard: manifest, ingest, embed, publish."""
    return dg.RunRequest(run_key=None, tags=range_tags(SHARD_KEYS[0], SHARD_KEYS[-1]))

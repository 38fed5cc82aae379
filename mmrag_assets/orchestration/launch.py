"""Launch mmrag's named Dagster jobs on the shared instance: what ``mmrag ingest`` / ``mmrag index``
(and the tests, and the benchmarks) do. One run per command, over the range of document shards
the plan says have work; the run executes in this process through the same concurrency pools as
runs the daemon or the UI launch, so a second writer waits for the first instead of racing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.instance import open_instance, process_tags
from mmrag_assets.orchestration.runs import RunOutcome, cli_run_config, resolved_config, run_outcome

# Dagster (and the definitions) are imported where a run starts, not here: a no-op `mmrag index`
# decides from the catalog and the index files alone (importing dagster costs ~3-6 s here)
if TYPE_CHECKING:
    import dagster as dg


def _holders(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """(run id, started at) of runs holding a writer or publisher slot now."""
    from mmrag_assets.defs.shared import PUBLISHER, WRITER

    out = []
    for pool in (WRITER, PUBLISHER):
        with contextlib.suppress(Exception):  # a storage without pools: nothing to report
            for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots:
                run = instance.get_run_by_id(slot.run_id)
                stamp = run and instance.get_run_record_by_id(run.run_id)
                started = stamp.start_time if stamp and stamp.start_time else None
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
                out.append((slot.run_id, when))
    return out


def launch(
    cfg: MmragConfig,
    instance: dg.DagsterInstance,
    job_name: str,
    shards: tuple[str, str] | None = None,
    *,
    say: Callable[[str], None] | None = None,
    verbose: bool = False,
    run_config: dict[str, Any] | None = None,
) -> RunOutcome:
    """Execute one run of ``job_name`` (over the shard range ``shards``) in this process."""
    from mmrag_assets.definitions import build_definitions
    from mmrag_assets.defs.ingest.sensors import range_tags

    say = say or (lambda _m: None)
    for run_id, started in _holders(instance):
        say(
            f"another index run is in progress (run {run_id}, started at {started}); waiting for it to finish"
        )
    tags = process_tags()
    if shards:
        tags.update(range_tags(*shards))
    job = build_definitions(cfg.overrides).resolve_job_def(job_name)
    from mmrag_assets.lib.warm import for_job, warm_imports

    warm_imports(for_job(job_name))  # while the run starts (instance writes) and ingests
    t0 = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        tags=tags,
        run_config={**cli_run_config(verbose), **resolved_config(cfg), **(run_config or {})},
        raise_on_error=False,
    )
    return run_outcome(result, t0)


def _published(rt: Runtime, version_key: str) -> bool:
    """The live index version already serves exactly the documents that may be served."""
    from mmrag_assets.lib.quality.gates import CATALOG_CHECKS, EMBEDDINGS_CHECK, gate_keys
    from mmrag_assets.lib.store.manifest import is_published, location_for
    from mmrag_assets.lib.store.storage import pull_index

    pull_index(rt.storage, version_key)  # an object-store root: its live version decides

    allowed = rt.catalog.publishable_documents(
        list(CATALOG_CHECKS.values()),
        EMBEDDINGS_CHECK,
        version_key,
        gate_keys(rt.cfg.checks.contracts, rt.cfg.model.dim),
    )
    return is_published(location_for(rt, version_key), allowed)


# ---------------------------------------------------------------- the commands
def ingest(
    cfg: MmragConfig, say: Callable[[str], None] | None = None, *, verbose: bool = False
) -> dict[str, Any]:
    """``mmrag ingest``: one ``ingest_job`` run over the shards with new or changed documents."""
    return _pipeline(cfg, "ingest_job", False, say, verbose)


def index(
    cfg: MmragConfig, say: Callable[[str], None] | None = None, *, verbose: bool = False, verify: bool = False
) -> dict[str, Any]:
    """``mmrag index``: one ``index_job`` run (ingest, embed, publish) over the shards with work, or a
    ``publish_job`` run when only removals or held-back documents changed what is served. First the
    store is verified and what is damaged repaired (``lib/store/verify.py``; ``verify``: checksums, a full
    table scan and a damaged catalog too)."""
    return _pipeline(cfg, "index_job", True, say, verbose, verify)


def _pipeline(
    cfg: MmragConfig, job: str, embeds: bool, say, verbose: bool, verify: bool = False
) -> dict[str, Any]:
    """The command's plan and run in one runtime (``embeds``: the job embeds and publishes the
    runtime's embedding version)."""
    with Runtime(cfg) as rt:
        return _pipeline_in(rt, job, rt.version_key if embeds else None, say, verbose, verify)


def _pipeline_in(
    rt: Runtime, job: str, version_key: str | None, say, verbose: bool, verify: bool
) -> dict[str, Any]:
    from mmrag_assets.lib.ingest.corpus import SHARD_KEYS
    from mmrag_assets.lib.plan import plan_run
    from mmrag_assets.lib.store.verify import check_and_repair

    cfg = rt.cfg
    say = say or (lambda _m: None)
    t0 = time.perf_counter()
    check = check_and_repair(rt, version_key, deep=verify) if version_key or verify else None
    for p in check.problems if check else []:
        say(f"damaged: {p}")
    for r in check.repaired if check else []:
        say(f"repair: {r}")
    if verify and check and not check.problems:
        say(f"verified in {check.seconds:.1f} s: nothing damaged")
    catalog = rt.catalog
    plan = plan_run(rt, catalog, version_key=version_key)
    if cfg.corpus_remote and plan.scan is not None:
        from mmrag_assets.lib.ingest.corpus import record_scan

        # an object-store corpus: the objects this scan downloaded to hash are hashed for every
        # machine now (the run's manifest step, on any worker, finds them unchanged: no download)
        record_scan(catalog, plan.scan)
    if check and check.rerun_all:
        plan.shards = list(SHARD_KEYS)  # the assets redo exactly what is missing, per document
    say(f"{plan.describe()}; shards with work: {' '.join(plan.shards) or 'none'}")
    if plan.range is None and not plan.removed and (version_key is None or _published(rt, version_key)):
        say("up to date: nothing to ingest, embed or publish")
        return {
            "run_id": None,
            "documents": plan.documents,
            "ingested": 0,
            "embedded": 0,
            "renamed": 0,
            "failed": [],
            "seconds": round(time.perf_counter() - t0, 2),
            "index": {"rebuilt": False},
        }
    from mmrag_assets.orchestration.distributed import launch_parallel, merge, parallel

    if parallel(cfg):  # every run in a preloaded run process: this one imports no Dagster
        out = merge(launch_parallel(cfg, plan, embed=version_key is not None, say=say, verbose=verbose))
    else:
        out = _launch_here(cfg, job, plan, version_key, say, verbose)
    return _finish(cfg, catalog, out, plan, version_key, t0)


def _launch_here(
    cfg: MmragConfig, job: str, plan: Any, version_key: str | None, say, verbose: bool
) -> RunOutcome:
    """The command's one run, in this process."""
    from mmrag_assets.orchestration.instance import set_pool_limits

    with open_instance(cfg) as instance:
        set_pool_limits(instance, cfg)
        if plan.range is not None:
            return launch(cfg, instance, job, plan.range, say=say, verbose=verbose)
        name = "corpus_manifest_job" if version_key is None else "publish_job"
        return launch(cfg, instance, name, say=say, verbose=verbose)


def _finish(
    cfg: MmragConfig, catalog: Any, out: RunOutcome, plan: Any, version_key: str | None, t0: float
) -> dict[str, Any]:
    from mmrag_assets.lib.quality.gates import gate_keys

    if not out.success and not out.blocked:
        raise MmragError(f"run {out.run_id} failed: {out.error}")
    failed = [
        {"source": r["source"], "error": f"{r['check_name']} failed (held back from the index)"}
        for r in catalog.failing_checks(version_key or "", gate_keys(cfg.checks.contracts, cfg.model.dim))
        if r["run_id"] in (out.run_ids or [out.run_id])
    ]
    ing = out.metadata.get("page_images", {})
    emb = out.metadata.get("item_embeddings", {})
    failed += list(emb.get("failed_documents") or [])
    return {
        "run_id": out.run_id,
        "run_ids": out.run_ids or [out.run_id],
        "documents": plan.documents,
        "ingested": int(ing.get("documents_ingested", 0)),
        "embedded": int(emb.get("documents_embedded", 0)),
        "renamed": int(emb.get("documents_relabelled", 0)),  # rows rewritten under the new name, not embedded
        "failed": failed,
        "seconds": round(time.perf_counter() - t0, 2),
        "index": out.metadata.get("search_index", {}),
    }

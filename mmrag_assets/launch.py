"""Launch mmrag's named Dagster jobs on the shared instance: what ``mmrag ingest`` / ``mmrag index``
(and the tests, and the benchmarks) do. One run per command, over the range of document shards
the plan says have work; the run executes in this process through the same concurrency pools as
runs the daemon or the UI launch, so a second writer waits for the first instead of racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError

# Dagster (and the definitions) are imported where a run starts, not here: a no-op `mmrag index`
# decides from the catalog and the index files alone (importing dagster costs ~3-6 s here)
if TYPE_CHECKING:
    import dagster as dg

PID_TAG, HOST_TAG, STARTED_TAG = "mmrag/pid", "mmrag/host", "mmrag/process_started"


def dagster_home(cfg: MmragConfig) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<storage.root>/dagster``, created with an instance config."""
    return Path(os.environ.get("DAGSTER_HOME") or cfg.dagster_home)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def open_instance(cfg: MmragConfig) -> Iterator[dg.DagsterInstance]:
    """The shared instance; its first creation (schema migration) is serialised by a file lock, so
    two commands starting on a fresh storage root never race on the SQLite schema."""
    import dagster as dg

    from mmrag_assets.distributed import instance_yaml

    home = dagster_home(cfg)
    with _file_lock(home.parent / f".{home.name}.init.lock"):
        home.mkdir(parents=True, exist_ok=True)
        yaml = home / "dagster.yaml"
        text = instance_yaml(cfg)  # SQLite or Postgres storage, from the orchestration config
        managed = bool(os.environ.get("DAGSTER_HOME")) and yaml.exists()  # a deployment's own (deploy/dagster.yaml)
        if not managed and (not yaml.exists() or yaml.read_text() != text):
            tmp = yaml.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(yaml)
        instance = dg.DagsterInstance.from_config(str(home))
    with instance:
        sweep_dead_runs(instance)
        yield instance


def _process_alive(pid: int, started: float | None) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return started is None or abs(p.create_time() - started) < 1.0  # not a reused pid
    except psutil.NoSuchProcess:
        return False


def sweep_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs this machine's mmrag processes started and that died (``kill -9``, a
    crash), and free their concurrency slots, so that nothing waits on them forever. Runs the
    daemon launched are watched by Dagster's run monitoring (instance config)."""
    import dagster as dg

    alive = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
    host = socket.gethostname()
    swept = []
    for run in instance.get_runs(dg.RunsFilter(statuses=alive, tags={HOST_TAG: host})):
        pid = int(run.tags.get(PID_TAG, "0"))
        started = float(run.tags[STARTED_TAG]) if STARTED_TAG in run.tags else None
        if pid and not _process_alive(pid, started):
            if run.status != dg.DagsterRunStatus.NOT_STARTED:
                instance.report_run_failed(run, f"the process that ran it (pid {pid}) is gone; marked failed by mmrag")
            else:
                instance.report_run_canceled(run, f"the process that created it (pid {pid}) is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            swept.append(run.run_id)
    return swept


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


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    error: str | None
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset -> metadata (last event)
    seconds: float = 0.0
    blocked: bool = False  # failed only because blocking checks failed (documents held back), not a fault
    run_ids: list[str] = field(default_factory=list)  # every run of a scale-out command (distributed.py)


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
        say(f"another index run is in progress (run {run_id}, started at {started}); waiting for it to finish")
    import psutil

    me = psutil.Process()
    tags = {PID_TAG: str(me.pid), HOST_TAG: socket.gethostname(), STARTED_TAG: f"{me.create_time():.3f}"}
    if shards:
        tags.update(range_tags(*shards))
    job = build_definitions(cfg.overrides).resolve_job_def(job_name)
    from mmrag_assets.lib.warm import for_job, warm_imports

    warm_imports(for_job(job_name))  # while the run starts (instance writes) and ingests
    t0 = time.perf_counter()
    result = job.execute_in_process(
        instance=instance, tags=tags, run_config={**cli_run_config(verbose), **(run_config or {})}, raise_on_error=False
    )
    return run_outcome(result, t0)


def run_outcome(result: Any, t0: float, *, first_partition_wins: bool = False) -> RunOutcome:
    """What a finished run says: success, its one-line error, whether only blocking checks failed,
    and each asset's materialisation metadata (the last one's, or with ``first_partition_wins`` the
    unpartitioned one or else the first partition's)."""
    meta: dict[str, dict[str, Any]] = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.materialization
        key = mat.asset_key.to_user_string()
        if not first_partition_wins or mat.partition is None or key not in meta:
            meta[key] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    failures = [e for e in result.all_events if e.is_step_failure]
    blocked = bool(failures) and all(
        e.event_specific_data and e.event_specific_data.error
        and e.event_specific_data.error.cls_name == "DagsterAssetCheckFailedError"
        for e in failures
    )
    error = None if result.success else failure_message(result)
    return RunOutcome(result.run_id, result.success, error, meta, time.perf_counter() - t0, blocked)


def failure_message(result: Any) -> str:
    """The innermost cause of the first failed step (or of the resources that failed to start):
    mmrag's own message, not Dagster's wrapper."""
    for e in result.all_events:
        data = e.event_specific_data
        err = getattr(data, "error", None) if data is not None else None
        if err is None or not (e.is_step_failure or e.event_type_value in ("RESOURCE_INIT_FAILURE", "RUN_FAILURE")):
            continue
        while err.cause is not None:
            err = err.cause
        head, _, rest = err.message.strip().partition(": ")
        msg = rest if rest and head.endswith(err.cls_name or "\0") else err.message.strip()
        return f"{e.step_key or 'resources'}: {msg.splitlines()[0] if msg else err.cls_name}"
    return f"Dagster run {result.run_id} failed: see the run in `mmrag ui`"


def _published(cfg: MmragConfig, catalog: Any, version_key: str) -> bool:
    """The live index version already serves exactly the documents that may be served."""
    from mmrag_assets.lib.index.manifest import is_published, location_for
    from mmrag_assets.lib.quality.gates import CATALOG_CHECKS, EMBEDDINGS_CHECK, gate_keys
    from mmrag_assets.lib.storage import pull_index, storage_for

    pull_index(storage_for(cfg), version_key)  # an object-store root: its live version decides

    allowed = catalog.publishable_documents(list(CATALOG_CHECKS.values()), EMBEDDINGS_CHECK, version_key, gate_keys(cfg))
    return is_published(location_for(cfg, version_key), allowed)


# ---------------------------------------------------------------- the commands
def ingest(cfg: MmragConfig, say: Callable[[str], None] | None = None, *, verbose: bool = False) -> dict[str, Any]:
    """``mmrag ingest``: one ``ingest_job`` run over the shards with new or changed documents."""
    return _pipeline(cfg, "ingest_job", None, say, verbose)


def index(
    cfg: MmragConfig, say: Callable[[str], None] | None = None, *, verbose: bool = False, verify: bool = False
) -> dict[str, Any]:
    """``mmrag index``: one ``index_job`` run (ingest, embed, publish) over the shards with work, or a
    ``publish_job`` run when only removals or held-back documents changed what is served. First the
    store is verified and what is damaged repaired (``lib/verify.py``; ``verify``: checksums, a full
    table scan and a damaged catalog too)."""
    from mmrag_assets.lib.index.embedding import version_key_for

    return _pipeline(cfg, "index_job", version_key_for(cfg.model), say, verbose, verify)


def _pipeline(
    cfg: MmragConfig, job: str, version_key: str | None, say, verbose: bool, verify: bool = False
) -> dict[str, Any]:
    from mmrag_assets.lib.catalog import Catalog
    from mmrag_assets.lib.ingest.corpus import SHARD_KEYS
    from mmrag_assets.lib.plan import plan_run
    from mmrag_assets.lib.verify import check_and_repair

    say = say or (lambda _m: None)
    t0 = time.perf_counter()
    check = check_and_repair(cfg, version_key, deep=verify) if version_key or verify else None
    for p in check.problems if check else []:
        say(f"damaged: {p}")
    for r in check.repaired if check else []:
        say(f"repair: {r}")
    if verify and check and not check.problems:
        say(f"verified in {check.seconds:.1f} s: nothing damaged")
    catalog = Catalog(cfg.catalog_url)
    plan = plan_run(cfg, catalog, version_key=version_key)
    if cfg.corpus_remote and plan.scan is not None:
        from mmrag_assets.lib.ingest.corpus import record_scan

        # an object-store corpus: the objects this scan downloaded to hash are hashed for every
        # machine now (the run's manifest step, on any worker, finds them unchanged: no download)
        record_scan(catalog, plan.scan)
    if check and check.rerun_all:
        plan.shards = list(SHARD_KEYS)  # the assets redo exactly what is missing, per document
    say(f"{plan.describe()}; shards with work: {' '.join(plan.shards) or 'none'}")
    if plan.range is None and not plan.removed and (version_key is None or _published(cfg, catalog, version_key)):
        say("up to date: nothing to ingest, embed or publish")
        return {"run_id": None, "documents": plan.documents, "ingested": 0, "embedded": 0, "failed": [],
                "seconds": round(time.perf_counter() - t0, 2), "index": {"rebuilt": False}}
    from mmrag_assets.distributed import launch_parallel, merge, parallel

    if parallel(cfg):  # every run in a preloaded run process: this one imports no Dagster
        out = merge(launch_parallel(cfg, plan, embed=version_key is not None, say=say, verbose=verbose))
    else:
        out = _launch_here(cfg, job, plan, version_key, say, verbose)
    return _finish(cfg, catalog, out, plan, version_key, t0)


def _launch_here(cfg: MmragConfig, job: str, plan: Any, version_key: str | None, say, verbose: bool) -> RunOutcome:
    """The command's one run, in this process."""
    from mmrag_assets.distributed import set_pool_limits

    with open_instance(cfg) as instance:
        set_pool_limits(instance, cfg)
        if plan.range is not None:
            return launch(cfg, instance, job, plan.range, say=say, verbose=verbose)
        name = "corpus_manifest_job" if version_key is None else "publish_job"
        return launch(cfg, instance, name, say=say, verbose=verbose)


def _finish(cfg: MmragConfig, catalog: Any, out: RunOutcome, plan: Any, version_key: str | None, t0: float) -> dict[str, Any]:
    from mmrag_assets.lib.quality.gates import gate_keys

    if not out.success and not out.blocked:
        raise MmragError(f"run {out.run_id} failed: {out.error}")
    failed = [
        {"source": r["source"], "error": f"{r['check_name']} failed (held back from the index)"}
        for r in catalog.failing_checks(version_key or "", gate_keys(cfg))
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
        "failed": failed,
        "seconds": round(time.perf_counter() - t0, 2),
        "index": out.metadata.get("search_index", {}),
    }


def cli_run_config(verbose: bool) -> dict[str, Any]:
    return {"loggers": {"mmrag_cli": {"config": {"log_level": "DEBUG" if verbose else "INFO"}}}}

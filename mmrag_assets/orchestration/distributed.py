"""Scale-out runs: the Dagster instance on Postgres and document shards spread over workers.

With ``orchestration.workers > 1`` (and an out-of-process executor), ``mmrag index`` runs

1. ``corpus_manifest_job`` (one scan; it purges removed documents),
2. one ``shard_index_job_<executor>`` run per contiguous range of the shards with work (ranges
   balanced by document count), the runs side by side: ``multiprocess`` executes each run's steps
   in the run's own process on this machine, ``celery`` sends them to workers anywhere; every run
   claims the same pools as any other,
3. one ``search_index_job_<executor>`` run that commits what every shard run embedded (staged Lance
   fragments, one transaction) and publishes it.

Every run of a command executes in one of ``workers`` run processes forked from a server that
imported the code once (:func:`run_processes`), so a run or a step costs no interpreter start and
no re-import; celery workers likewise import it once, before their pool processes fork (``mmrag
worker``).

Per-document work runs in parallel only where storage takes concurrent writers: the writer and the
embedding pools' limits are ``orchestration.workers`` with ``catalog=postgres`` and 1 with the DuckDB
file (one writer process). Embedding steps never commit to the LanceDB table: they stage Lance
fragments (``lib/index/staging.py``) that the publisher, whose pool stays at 1, commits at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.config import MmragConfig
from mmrag_assets.orchestration.forkserver import forkserver_context, preload_modules
from mmrag_assets.orchestration.instance import dagster_home, open_instance, process_tags, set_pool_limits
from mmrag_assets.orchestration.runs import RunOutcome, cli_run_config, resolved_config, run_outcome

# Dagster is imported where it is used: the launcher of a scale-out command coordinates run processes
# that have it preloaded, and imports none of it itself (~1 s of CPU)
if TYPE_CHECKING:
    import dagster as dg


def parallel(cfg: MmragConfig) -> bool:
    return cfg.orchestration.executor != "in_process" and cfg.orchestration.workers > 1


def split_ranges(shards: list[str], weights: Counter, k: int) -> list[tuple[str, str]]:
    """At most ``k`` contiguous ranges over ``shards`` (sorted), balanced by ``weights`` (documents)."""
    k = max(1, min(k, len(shards)))
    total = sum(max(1, weights.get(s, 0)) for s in shards)
    out, cur, acc = [], [], 0.0
    for i, s in enumerate(shards):
        cur.append(s)
        acc += max(1, weights.get(s, 0))
        left = len(shards) - i - 1
        if len(out) < k - 1 and (acc >= total * (len(out) + 1) / k or left == k - 1 - len(out)) and left:
            out.append((cur[0], cur[-1]))
            cur = []
    if cur:
        out.append((cur[0], cur[-1]))
    return out


def run_config(cfg: MmragConfig, verbose: bool, *, celery: bool = False) -> dict[str, Any]:
    """Run config for runs outside this process. A run executed in a run process of this machine gets
    the resolved config (``config_json``: it composes nothing); a run whose steps go to celery workers
    gets the CLI's overrides with the roots resolved, so that a worker on another machine composes the
    same config with its own local folders (``storage.cache_dir``), and the executor's settings."""
    overrides = [x for x in cfg.overrides if not x.startswith(("corpus.root=", "storage.root="))]
    overrides += [f"corpus.root={cfg.corpus.root}", f"storage.root={cfg.storage.root}"]
    if not celery:
        return {**cli_run_config(verbose), **resolved_config(cfg, overrides)}
    rc = {**cli_run_config(verbose), "resources": {"mmrag": {"config": {"overrides": overrides}}}}
    return {**rc, "execution": {"config": celery_config(cfg)}}


def celery_config(cfg: MmragConfig) -> dict[str, Any]:
    """The celery executor's config; workers get the same (``mmrag worker`` writes it as their yaml)."""
    c = cfg.orchestration.celery
    source: dict[str, Any] = {
        # acks on receipt: a worker killed mid-step fails its task (WorkerLostError), so the step and
        # the run fail and the next `mmrag index` redoes that range; the task never waits for a redelivery
        "task_acks_late": False,
        "worker_prefetch_multiplier": 1,
        # and never one more: with prefetch a busy worker held the next step's task, acknowledged, so a
        # worker lost mid-step took a task nobody had started with it, and that run waited forever (seen
        # in the loopback test: one shard run hung on a step submitted to a worker killed during another
        # run's step). Celery 5.7 (pinned) on a Redis broker: fetch only when a pool process is free
        "worker_disable_prefetch": True,
    }
    if c.key_prefix:
        source["broker_transport_options"] = {"global_keyprefix": c.key_prefix}
        source["result_backend_transport_options"] = {"global_keyprefix": c.key_prefix}
    return {"broker": c.broker, "backend": c.backend, "config_source": source}


def celery_yaml(cfg: MmragConfig) -> str:
    import yaml

    return yaml.safe_dump({"execution": {"config": celery_config(cfg)}}, sort_keys=True)


def _recon(job_name: str) -> Any:
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module(
        "mmrag_assets.definitions", "defs", working_directory=os.getcwd()
    )
    return repo.get_reconstructable_job(job_name)


log = logging.getLogger(__name__)
SUBMITTED = re.compile(
    r'Submitting celery task for step ".*" to queue "(.*)"'
)  # dagster-celery's engine event
WATCH_TAG = "mmrag/watch"  # names the run a WorkerWatch looks after (execute_job makes the run id)
_TASKS: dict[tuple[str, str], str] = {}  # (run id, step key) -> the celery task id this process published
_TASKS_LOCK = threading.Lock()


def _record_task(sender: Any = None, headers: Any = None, body: Any = None, **_: Any) -> None:
    """celery ``after_task_publish``: which task carries which step (dagster-celery keeps it to itself)."""
    try:
        from dagster._grpc.types import ExecuteStepArgs
        from dagster_shared.serdes import unpack_value

        args = unpack_value(body[1]["execute_step_args_packed"], ExecuteStepArgs)
        with _TASKS_LOCK:
            for key in args.step_keys_to_execute:
                _TASKS[(args.run_id, key)] = headers["id"]
    except Exception:  # noqa: BLE001, S110 - another task, or a format this version does not know: not watched
        pass


class WorkerWatch(threading.Thread):
    """Fails the steps of a celery run whose worker died with them.

    A pool process that dies (the OOM killer) fails its task at once (celery: ``WorkerLostError``). A
    whole worker that dies (its machine, SIGKILL of the worker) takes the task with it: the task was
    acknowledged on receipt, so no result would ever come and the executor would wait forever. This
    thread reads which worker runs each of the run's steps (the "in celery worker" event) and asks those
    workers (ping, then their active and reserved tasks); a step whose worker has not answered, or has
    answered without holding its task, for ``orchestration.celery.worker_lost_s`` is lost: the thread
    records why in the run's event log and stores a ``WorkerLostError`` as that task's result, so the
    executor fails the step and the run as for a dead pool process, and the next ``mmrag index``
    redoes their documents."""

    def __init__(self, cfg: MmragConfig, home: Path, token: str, poll_s: float = 2.0) -> None:
        super().__init__(name="mmrag-worker-watch", daemon=True)
        self.cfg, self.home, self.token, self.poll_s = cfg, home, token, poll_s
        self.lost_s = float(cfg.orchestration.celery.worker_lost_s)
        self.stop, self.lost = threading.Event(), ""
        self._waiting: dict[str, float] = {}  # queue -> since when steps wait on it
        self._said: set[str] = set()
        self._placement: StepPlacement | None = None

    def run(self) -> None:
        import dagster as dg
        from dagster_celery.make_app import make_app

        c = self.cfg.orchestration.celery
        app = make_app({"broker": c.broker, "backend": c.backend, **celery_config(self.cfg)})
        silent: dict[tuple[str, str], float] = {}  # (worker, step) -> when it was first found silent
        failed: set[str] = set()
        with dg.DagsterInstance.from_config(str(self.home)) as inst:
            while not self.stop.wait(self.poll_s):
                try:
                    if self._look(app, inst, silent, failed):
                        return
                except Exception as e:  # noqa: BLE001 - a broker or database hiccup: look again next time
                    log.warning("worker watch: %s: %s", type(e).__name__, e)

    def _look(self, app: Any, inst: dg.DagsterInstance, silent: dict, failed: set[str]) -> bool:
        """One look at the run; True once it has finished."""
        import dagster as dg
        from billiard.exceptions import WorkerLostError
        from celery import states

        runs = inst.get_runs(dg.RunsFilter(tags={WATCH_TAG: self.token}), limit=1)
        if not runs:
            return False
        run = runs[0]
        if run.is_finished:
            return True
        if self._placement is None or self._placement.run_id != run.run_id:
            self._placement = StepPlacement(run.run_id)
        placed = self._placement.update(inst)
        busy, queued = placed.busy, placed.queued
        now = time.monotonic()
        self._say_unserved(app, inst, run, queued, now)
        if busy:
            alive, held = self._ask(app, sorted(busy))
            for host, steps in busy.items():
                for step in steps - failed:
                    with _TASKS_LOCK:
                        task_id = _TASKS.get((run.run_id, step))
                    # silent: the worker does not answer, or answers without holding the step's task
                    # (its pool process died and the worker did not report it)
                    ok = host in alive and (task_id is None or host not in held or task_id in held[host])
                    silent.pop((host, step), None) if ok else silent.setdefault((host, step), now)
        for (host, step), since in sorted(silent.items()):
            if step in failed or now - since < self.lost_s or step not in busy.get(host, ()):
                continue
            with _TASKS_LOCK:
                task_id = _TASKS.get((run.run_id, step))
            if task_id and app.AsyncResult(task_id).ready():
                continue  # its result came after all
            msg = (f"celery worker {host} was lost while running {step} (no answer for {self.lost_s:g} s, "
                   "orchestration.celery.worker_lost_s); the next `mmrag index` redoes its documents")  # fmt: skip
            self.lost = msg
            inst.report_engine_event(msg, run)
            if task_id:  # the executor reads it as the step's result: the step fails
                app.backend.store_result(task_id, WorkerLostError(msg), states.FAILURE)
            failed.add(step)
        return False

    def _say_unserved(
        self, app: Any, inst: dg.DagsterInstance, run: Any, queued: dict[str, str], now: float
    ) -> None:
        """Say once per queue, in the run's event log, when steps wait on a queue no live worker consumes
        (they wait for one: a run on the embedding queue with no GPU worker up is not lost, but stuck)."""
        if not queued:
            return
        first = self._waiting = {q: self._waiting.get(q, now) for q in set(queued.values())}
        late = sorted(q for q, t in first.items() if now - t >= self.lost_s and q not in self._said)
        if not late:
            return
        served = {
            q["name"] for qs in (app.control.inspect(timeout=1.0).active_queues() or {}).values() for q in qs
        }
        for q in late:
            if q in served:
                self._waiting.pop(q, None)  # consumed, just busy: look again later
                continue
            steps = ", ".join(sorted(s for s, qq in queued.items() if qq == q))
            inst.report_engine_event(f"no live celery worker consumes queue {q!r}: {steps} wait for one "
                                     f"(start `mmrag worker --queue {q}`)", run)  # fmt: skip
            self._said.add(q)

    @staticmethod
    def _ask(app: Any, hosts: list[str]) -> tuple[set[str], dict[str, set[str]]]:
        """The workers among ``hosts`` that answer a ping, and the task ids each holds (active or
        reserved; a worker missing from the second answer is left out of it, not counted empty)."""
        alive = {h for reply in app.control.ping(destination=hosts, timeout=1.0) for h in reply}
        held: dict[str, set[str]] = {}
        if alive:
            ask = app.control.inspect(destination=sorted(alive), timeout=1.0)
            for answer in (ask.active() or {}, ask.reserved() or {}):
                for host, tasks in answer.items():
                    held.setdefault(host, set()).update(t.get("id") for t in tasks or [])
        return alive, held


class StepPlacement:
    """Where a run's steps are, read from its event log incrementally (each look reads only the events
    since the last one): ``busy`` {worker hostname: its steps} for steps a celery worker started that
    have not ended, ``queued`` {step: queue} for steps submitted that no worker has started yet."""

    ENDED = frozenset({"STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"})

    def __init__(self, run_id: str) -> None:
        self.run_id, self.cursor = run_id, None
        self.on: dict[str, str] = {}  # step -> worker
        self.queued: dict[str, str] = {}  # step -> queue

    def update(self, instance: dg.DagsterInstance) -> StepPlacement:
        while True:
            conn = instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=1000)
            for rec in conn.records:
                self._see(rec.event_log_entry)
            self.cursor = conn.cursor
            if not conn.has_more:
                return self

    def _see(self, entry: Any) -> None:
        ev, msg = entry.dagster_event, entry.message or ""
        if ev is None or not ev.step_key:
            return
        if ev.event_type_value in self.ENDED:
            self.on.pop(ev.step_key, None)
            self.queued.pop(ev.step_key, None)
        elif "in celery worker" in msg:
            host = getattr(ev.event_specific_data.metadata.get("Celery worker"), "value", None)
            if host:
                self.on[ev.step_key] = str(host)
                self.queued.pop(ev.step_key, None)
        elif m := SUBMITTED.match(msg):
            self.queued[ev.step_key] = m.group(1)

    @property
    def busy(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for step, host in self.on.items():
            out.setdefault(host, set()).add(step)
        return out


def _exit_with_parent(poll_s: float = 2.0) -> None:
    """End this process when the launcher that started it is gone (killed: its runs would otherwise
    go on, orphaned, for ever). The runs it leaves STARTED are swept by the next ``mmrag index``
    (the launcher's pid tag names a dead process)."""
    parent = multiprocessing.parent_process()
    while parent is not None and parent.is_alive():
        time.sleep(poll_s)
    os._exit(3)


_WATCHING_PARENT = False


def execute(
    cfg: MmragConfig,
    home: Path,
    job_name: str,
    tags: dict[str, str],
    rc: dict[str, Any],
    env: dict[str, str] | None = None,
    *,
    pools: bool = False,
) -> Any:
    """One run of ``job_name`` on its own instance handle, in this process's main thread (a celery
    run with a WorkerWatch beside it). ``env``: the launcher's environment (a process forked from
    the preloaded server has the server's, from when it started). ``pools``: first mark failed the
    runs of dead processes and set the pools' limits (freeing slots that killed steps held)."""
    global _WATCHING_PARENT
    import dagster as dg

    t0 = time.perf_counter()
    if env is not None and env != dict(os.environ):
        os.environ.clear()
        os.environ.update(env)
    if (
        multiprocessing.parent_process() is not None and not _WATCHING_PARENT
    ):  # a run process (launch_parallel)
        _WATCHING_PARENT = True
        threading.Thread(target=_exit_with_parent, name="mmrag-parent-watch", daemon=True).start()
    if pools:
        with open_instance(cfg) as inst:  # creates it on first use, sweeps runs of dead processes
            set_pool_limits(inst, cfg)
    watch = None
    if rc.get("execution") and cfg.orchestration.executor == "celery":
        from celery.signals import after_task_publish

        after_task_publish.connect(_record_task, weak=False, dispatch_uid="mmrag-record-task")
        token = uuid.uuid4().hex
        tags = {**tags, WATCH_TAG: token}
        watch = WorkerWatch(cfg, home, token)
        watch.start()
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = dg.execute_job(
                _recon(job_name), instance=instance, run_config=rc, tags=tags, raise_on_error=False
            )
            out = run_outcome(result, t0, first_partition_wins=True)
    finally:
        if watch is not None:
            watch.stop.set()
    if watch is not None and watch.lost and not out.success:
        out.error = watch.lost
    return out


def run_processes(cfg: MmragConfig, n: int) -> ProcessPoolExecutor:
    """``n`` run processes forked from a server that imported ``forkserver.preload_modules`` once (Python's
    forkserver: a clean process, so no thread or runtime of this one, e.g. LanceDB's, is forked). A
    process runs several runs one after the other (the manifest, a shard range, the publish): a run
    costs its own work plus milliseconds of process overhead. Forked, not threads: Dagster configures
    Python logging per run (dictConfig), which deadlocks against another run's handlers in one process."""
    return ProcessPoolExecutor(max_workers=n, mp_context=forkserver_context(preload_modules(cfg)))


def launch_parallel(
    cfg: MmragConfig,
    plan: Any,
    *,
    embed: bool,
    say: Callable[[str], None],
    verbose: bool,
) -> list[Any]:
    """Steps 1-3 of the module docstring; returns the outcomes of every run, in order."""
    from mmrag_assets.lib.ingest.corpus import shard_of

    home = dagster_home(cfg)
    base_tags = process_tags()
    celery = cfg.orchestration.executor == "celery"
    local_rc, rc = run_config(cfg, verbose), run_config(cfg, verbose, celery=celery)
    env = dict(os.environ)
    ranges: list[tuple[str, str]] = []
    if plan.range is not None:
        weights = Counter(shard_of(d) for d in (plan.scan.docs if plan.scan else {}))
        ranges = split_ranges(plan.shards, weights, cfg.orchestration.workers)

    def one(
        pool: ProcessPoolExecutor, job: str, tags: dict[str, str], rc: dict[str, Any], pools: bool = False
    ) -> Any:
        return pool.submit(execute, cfg, home, job, tags, rc, env, pools=pools)

    def outcome(f: Any) -> Any:
        try:
            return f.result()
        except Exception as e:  # noqa: BLE001 - a run process that died: reported like a failed run
            return RunOutcome("-", False, f"{type(e).__name__}: {e}")

    with run_processes(cfg, max(1, len(ranges))) as pool:
        outcomes = [outcome(one(pool, "corpus_manifest_job", dict(base_tags), local_rc, pools=True))]
        if not outcomes[0].success:
            return outcomes
        suffix = cfg.orchestration.executor
        if ranges:
            job = f"shard_{'index' if embed else 'ingest'}_job_{suffix}"
            where = "steps on celery workers" if celery else "steps in each run's process"
            say(
                f"{len(ranges)} shard runs side by side ({suffix}: {where}): "
                + ", ".join(f"{a}-{b}" for a, b in ranges)
            )
            # the partition range tags Dagster reads (defs/ingest/sensors.py range_tags, without importing it here)
            futures = [one(pool, job, {**base_tags, **_range_tags(*r)}, rc) for r in ranges]
            results = [outcome(f) for f in futures]
            outcomes += results
            if not all(o.success or o.blocked for o in results):
                return outcomes
        if embed:  # pools=True: frees the slots a killed step of a shard run still holds
            outcomes.append(outcome(one(pool, f"search_index_job_{suffix}", dict(base_tags), rc, pools=True)))
    return outcomes


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def merge(outcomes: list[Any]) -> Any:
    """The runs of one scale-out command as one outcome (counts summed, the publish's index)."""
    bad = [o for o in outcomes if not (o.success or o.blocked)]
    first_bad = bad[0] if bad else None
    meta: dict[str, dict[str, Any]] = {}
    for asset, keys in (
        ("page_images", ("documents_ingested",)),
        ("item_embeddings", ("documents_embedded", "documents_relabelled")),
    ):
        rows = [o.metadata[asset] for o in outcomes if asset in o.metadata]
        if rows:
            meta[asset] = {k: sum(int(r.get(k, 0)) for r in rows) for k in keys}
    failed_docs = [
        d for o in outcomes for d in (o.metadata.get("item_embeddings", {}).get("failed_documents") or [])
    ]
    meta.setdefault("item_embeddings", {})["failed_documents"] = failed_docs
    for o in outcomes:
        if "search_index" in o.metadata:
            meta["search_index"] = o.metadata["search_index"]
    last = first_bad or outcomes[-1]
    out = RunOutcome(
        last.run_id,
        first_bad is None and all(o.success for o in outcomes),
        first_bad.error if first_bad else None,
        meta,
        sum(o.seconds for o in outcomes),
        blocked=first_bad is None and any(o.blocked for o in outcomes),
    )
    out.run_ids = [o.run_id for o in outcomes]
    return out

"""The shared Dagster instance every mmrag command, the UI, the daemon and the workers use: where it
lives, its ``dagster.yaml`` (SQLite under the storage root, or Postgres), its concurrency pools, and
the sweep that marks failed the runs of this machine's mmrag processes that died."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mmrag_assets.config import MmragConfig

# Dagster is imported where it is used: a no-op `mmrag index` decides without it (~3-6 s of imports)
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

    home = dagster_home(cfg)
    with _file_lock(home.parent / f".{home.name}.init.lock"):
        home.mkdir(parents=True, exist_ok=True)
        yaml = home / "dagster.yaml"
        text = instance_yaml(cfg)  # SQLite or Postgres storage, from the orchestration config
        managed = (
            bool(os.environ.get("DAGSTER_HOME")) and yaml.exists()
        )  # a deployment's own (deploy/dagster.yaml)
        if not managed and (not yaml.exists() or yaml.read_text() != text):
            tmp = yaml.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(yaml)
        instance = dg.DagsterInstance.from_config(str(home))
    with instance:
        sweep_dead_runs(instance)
        yield instance


def process_tags(pid: int | None = None) -> dict[str, str]:
    """The tags that name the process running a run (this process by default): its pid, this host,
    and its start time, so that a reused pid is not taken for it (a process already gone gets none)."""
    import psutil

    tags = {PID_TAG: str(pid or os.getpid()), HOST_TAG: socket.gethostname()}
    with contextlib.suppress(psutil.NoSuchProcess):
        tags[STARTED_TAG] = f"{psutil.Process(pid).create_time():.3f}"
    return tags


def run_process(run: dg.DagsterRun) -> tuple[int, float | None] | None:
    """(pid, start time) of the process :func:`process_tags` recorded on ``run``, if it ran on this host."""
    if run.tags.get(HOST_TAG) != socket.gethostname() or not run.tags.get(PID_TAG):
        return None
    started = run.tags.get(STARTED_TAG)
    return int(run.tags[PID_TAG]), float(started) if started else None


def process_alive(pid: int, started: float | None) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return started is None or abs(p.create_time() - started) < 1.0  # not a reused pid
    except psutil.NoSuchProcess:
        return False


def sweep_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs this machine's mmrag processes started and that died (``kill -9``, a
    crash), and free their concurrency slots, so that nothing waits on them forever. The runs the
    daemon launches carry the same tags (``warm_runs.py``), so a command finds those too; the daemon's
    run monitoring (instance config) watches them as well."""
    import dagster as dg

    alive = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
    host = socket.gethostname()
    swept = []
    for run in instance.get_runs(dg.RunsFilter(statuses=alive, tags={HOST_TAG: host})):
        recorded = run_process(run)
        if recorded is not None and not process_alive(*recorded):
            pid = recorded[0]
            if run.status != dg.DagsterRunStatus.NOT_STARTED:
                instance.report_run_failed(
                    run, f"the process that ran it (pid {pid}) is gone; marked failed by mmrag"
                )
            else:
                instance.report_run_canceled(run, f"the process that created it (pid {pid}) is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            swept.append(run.run_id)
    return swept


INSTANCE_BASE = """\
# Written by mmrag from the orchestration config: the CLI, `mmrag ui`, the daemon and the workers share this instance.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4     # queued (daemon/UI) runs; writers serialise on the pools below
  pools:
    default_limit: 1           # mmrag_writer, mmrag_embed (both raised to orchestration.workers with catalog=postgres), mmrag_publisher
run_queue:
  dequeue_interval_seconds: 1  # a run the sensor requested starts within a second (Dagster's default 5 s)
run_monitoring:
  enabled: true                # with the daemon: runs whose worker died are marked failed
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""


def instance_yaml(cfg: MmragConfig) -> str:
    """The instance's ``dagster.yaml``: SQLite under the storage root, or Postgres (``dagster-postgres``),
    and the daemon's run launcher (``orchestration.run_launcher``)."""
    text = INSTANCE_BASE
    if cfg.orchestration.run_launcher == "warm":
        from mmrag_assets.orchestration.forkserver import preload_modules

        text += (
            "run_launcher:               # runs the daemon launches fork from a preloaded server (warm_runs.py)\n"
            "  module: mmrag_assets.orchestration.warm_runs\n  class: WarmRunLauncher\n  config:\n    preload:\n"
        ) + "".join(f"      - {m}\n" for m in preload_modules(cfg))
    if cfg.orchestration.instance != "postgres":
        return text
    # dagster-postgres speaks psycopg2 (`NOTIFY run_events, %(id)s`); SQLAlchemy 2.1 picks psycopg 3 for a
    # bare postgresql:// URL, so the driver is named
    url = str(cfg.orchestration.postgres_url)
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return text + f'storage:\n  postgres:\n    postgres_url: "{url}"\n'


def writer_slots(cfg: MmragConfig) -> int:
    """How many steps may write the catalog at once: one for a DuckDB file (one writer process)."""
    return max(1, cfg.orchestration.workers) if cfg.catalog.backend == "postgres" else 1


def set_pool_limits(instance: dg.DagsterInstance, cfg: MmragConfig) -> None:
    """The pools' limits for this config, after freeing slots that finished runs still hold (a step
    whose worker was killed never released its slot)."""
    import dagster as dg

    from mmrag_assets.defs.shared import EMBED, PUBLISHER, WRITER

    storage = instance.event_log_storage
    done = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.SUCCESS}
    for pool in (WRITER, EMBED, PUBLISHER):
        for slot in storage.get_concurrency_info(pool).claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            if run is None or run.status in done:
                storage.free_concurrency_slots_for_run(slot.run_id)
    want = {WRITER: writer_slots(cfg), EMBED: writer_slots(cfg), PUBLISHER: 1}
    for pool, n in want.items():
        info = storage.get_concurrency_info(pool)
        if info.slot_count != n:
            storage.set_concurrency_slots(pool, n)

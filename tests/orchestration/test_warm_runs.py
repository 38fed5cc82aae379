"""The daemon's run launcher (orchestration/warm_runs.py): runs forked from a preloaded server, their
process recorded on the run, terminated and health-checked by it, with a real Dagster instance."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.launcher.base import LaunchRunContext, WorkerStatus

from mmrag_assets.config import load_config
from mmrag_assets.orchestration.forkserver import PRELOAD
from mmrag_assets.orchestration.instance import PID_TAG, instance_yaml, open_instance
from mmrag_assets.orchestration.warm_runs import WarmRunLauncher
from tests.orchestration import warm_jobs

pytestmark = pytest.mark.slow

# a stdlib module nothing here imports: seen by the run only if the forkserver preloaded it
PRELOADED = "json.tool"


@pytest.fixture
def instance(tmp_path: Path):
    cfg = load_config([f"storage.root={tmp_path / 'storage'}", f"corpus.root={tmp_path / 'corpus'}"])
    with open_instance(cfg) as inst:
        yield inst


def _launcher(instance: dg.DagsterInstance, warm: bool = True) -> WarmRunLauncher:
    # what a run process needs from Dagster (as forkserver.PRELOAD), and the module the runs look for
    launcher = WarmRunLauncher(preload=[*PRELOAD[:4], PRELOADED])
    launcher.register_instance(instance)
    if warm:
        assert launcher.warm_up(timeout_s=120)
    return launcher


def _launch(
    instance: dg.DagsterInstance, out: Path, sleep_s: float = 0.0, launcher: WarmRunLauncher | None = None
) -> tuple[WarmRunLauncher, str]:
    launcher = launcher or _launcher(instance)
    recon = dg.reconstructable(warm_jobs.report_job)
    run = instance.create_run_for_job(
        job_def=warm_jobs.report_job,
        run_config={"ops": {"report": {"config": {"out": str(out), "sleep_s": sleep_s}}}},
        job_code_origin=recon.get_python_origin(),
    )
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return launcher, run.run_id


def _wait(pred, timeout_s: float = 120.0) -> None:
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout_s, "timed out"
        time.sleep(0.1)


def _status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def _finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    return instance.get_run_by_id(run_id).is_finished


def test_the_mmrag_instance_names_the_warm_launcher_with_the_configs_preload(tmp_path: Path) -> None:
    cfg = load_config([f"storage.root={tmp_path}"])
    with open_instance(cfg) as inst:
        assert isinstance(inst.run_launcher, WarmRunLauncher)
        assert "mmrag_assets.definitions" in inst.run_launcher._preload
    assert "run_launcher" not in instance_yaml(load_config(["orchestration.run_launcher=dagster"]))


def test_a_run_executes_in_a_fork_of_the_preloaded_server(instance, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    _, run_id = _launch(instance, out)
    _wait(lambda: _finished(instance, run_id))
    assert _status(instance, run_id) == dg.DagsterRunStatus.SUCCESS
    seen = json.loads(out.read_text())
    assert seen["json_tool"], "the run's process did not come from the preloaded server"
    assert seen["ppid"] != os.getpid()  # a child of the forkserver, not of the launching process
    run = instance.get_run_by_id(run_id)
    assert int(run.tags[PID_TAG]) == seen["pid"]
    starts = [e for e in instance.all_logs(run_id) if "Started process for run" in (e.message or "")]
    assert starts and f"pid: {seen['pid']}" in starts[0].message  # Dagster's own record of the run process


def test_the_first_launch_starts_the_server_and_waits_for_it(instance, tmp_path: Path) -> None:
    launcher = _launcher(instance, warm=False)
    assert not launcher.warm_up(wait=False)  # starting now, not ready yet
    _, run_id = _launch(instance, tmp_path / "first.json", launcher=launcher)
    assert launcher.warm_up(wait=False)
    _wait(lambda: _finished(instance, run_id))
    assert _status(instance, run_id) == dg.DagsterRunStatus.SUCCESS
    assert json.loads((tmp_path / "first.json").read_text())["json_tool"]  # forked from the server


def test_a_server_that_cannot_start_leaves_runs_to_spawned_processes(
    instance, tmp_path: Path, caplog, request
) -> None:
    """A preloaded module that raises at import kills Python's forkserver: runs still run, each in a
    spawned process (what Dagster's launcher does), and the daemon's log says why, once."""
    from multiprocessing import forkserver

    # one forkserver per Python process: stop the one earlier tests started (as CPython's own tests do),
    # so this launcher's server preloads its list; the next test starts a good one again
    forkserver._forkserver._stop()
    request.addfinalizer(forkserver._forkserver._stop)
    launcher = WarmRunLauncher(
        preload=["mmrag_assets.orchestration.preload", "tests.orchestration.broken_preload"]
    )
    launcher.register_instance(instance)
    for name in ("first.json", "second.json"):
        _, run_id = _launch(instance, tmp_path / name, launcher=launcher)
        _wait(lambda run_id=run_id: _finished(instance, run_id))
        assert _status(instance, run_id) == dg.DagsterRunStatus.SUCCESS
        assert not json.loads((tmp_path / name).read_text())["json_tool"]  # a fresh interpreter
    warned = [r for r in caplog.records if "forkserver is not available" in r.getMessage()]
    assert len(warned) == 1


def test_terminate_cancels_a_running_run(instance, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    launcher, run_id = _launch(instance, out, sleep_s=120)
    _wait(out.exists)
    assert launcher.check_run_worker_health(instance.get_run_by_id(run_id)).status == WorkerStatus.RUNNING
    other = WarmRunLauncher()  # as the webserver's process would: it never launched the run
    other.register_instance(instance)
    assert other.terminate(run_id)
    _wait(lambda: _finished(instance, run_id), 60)
    assert _status(instance, run_id) == dg.DagsterRunStatus.CANCELED
    assert not other.terminate(run_id)  # finished: nothing to terminate


def test_a_run_whose_process_died_is_reported_failed_by_the_health_check(instance, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    launcher, run_id = _launch(instance, out, sleep_s=120)
    _wait(out.exists)
    os.kill(json.loads(out.read_text())["pid"], signal.SIGKILL)
    run = instance.get_run_by_id(run_id)
    _wait(lambda: launcher.check_run_worker_health(run).status == WorkerStatus.FAILED, 30)
    assert _status(instance, run_id) == dg.DagsterRunStatus.STARTED  # what run monitoring then marks failed

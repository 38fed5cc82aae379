"""The run launcher of the runs the daemon starts (the corpus sensor's, the schedule's, the UI's):
each run executes in a process forked from a server that imported Dagster, the definitions and
the heavy libraries once (``orchestration.run_launcher: warm``, the default).

Dagster's default launcher asks the code location's server to start a *spawned* process per run,
which imports Dagster, mmrag's definitions and then, step by step, Great Expectations, LanceDB,
ONNX Runtime, RapidOCR, SciPy, scikit-learn, matplotlib: with ``mmrag ui`` on the 620-page store of
bench/index_speed.py, 3-4 s from the run's creation to its start and as much again in imports
inside the run, for a dropped 10-page file whose own work is a few seconds (bench/sensor_latency.py,
BENCHMARKS 'Sensor latency'). Here Python's forkserver imports :func:`preload_modules
<mmrag_assets.orchestration.forkserver.preload_modules>` once, started at the first launch (the same
list as the scale-out run processes, ``preload.py`` says why forking after these imports is safe),
and each run is a fork of it that runs exactly what ``dagster api execute_run`` runs.

The run's process is a child of the forkserver, not of the daemon: it is recorded on the run by the
same tags as the CLI's runs (pid, host, process start), so run monitoring (``check_run_worker_health``)
and mmrag's sweep of dead runs both see a run whose process died, and ``terminate`` (the UI's
button, from the webserver's process) interrupts it by pid, as Dagster's code server interrupts the
run processes it started (SIGINT, after marking the run canceling).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from mmrag_assets.orchestration.forkserver import forkserver_context
from mmrag_assets.orchestration.instance import process_alive, process_tags, run_process

log = logging.getLogger(__name__)
START_TIMEOUT_S = 300.0  # the forkserver's imports take ~8-15 s on 2 busy cores; past this, spawn


def execute_run(run_id: str, instance_ref: Any) -> None:
    """A forked run process: the body of ``dagster api execute_run`` (the instance from its ref, the
    job reconstructed from the run's code origin, events to the instance's event log)."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._utils.interrupts import capture_interrupts

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as SIGINT: Dagster reports the interruption
    with capture_interrupts(), dg.DagsterInstance.from_ref(instance_ref) as instance:
        rc = _execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)
    sys.exit(rc)


def _nothing() -> None:
    """The first process forked from the server: its start means the server has imported everything."""


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a process forked from a preloaded forkserver (see the module docstring).

    ``preload``: the modules the forkserver imports, in order (``instance_yaml`` writes the list of
    the config's :func:`preload_modules`); a module that fails to import is skipped by the forkserver
    and imported by the run that needs it."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload: Sequence[str] = ()):
        self._inst_data = inst_data
        self._preload = list(preload)
        self._ctx: Any = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._warned = False
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"preload": dg.Field([str], is_required=False, default_value=[])}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmRunLauncher:
        return cls(inst_data=inst_data, preload=config_value.get("preload", []))

    def _context(self) -> Any:
        """The forkserver's context, its server started and ready: the first launch after the daemon
        starts waits for its imports (~8-15 s here), about what a spawned run spends importing the same
        modules (one trial of bench/sensor_latency.py, a file dropped as the first run: 26.9 s served
        against 28-39 s with Dagster's launcher). Starting it in the background and spawning meanwhile
        was slower for those runs (34-37 s): two cold imports competed for the two cores.

        A server that cannot start (a preloaded module that raises anything but ImportError kills
        Python's forkserver) or is not ready within ``START_TIMEOUT_S``: runs start in a spawned
        process each, as Dagster's own launcher starts them, and the daemon's log says why."""
        if self.warm_up(timeout_s=START_TIMEOUT_S) and self._error is None:
            return self._ctx
        if not self._warned:
            self._warned = True
            why = (
                f"it failed: {self._error!r}"
                if self._error is not None
                else f"not ready after {START_TIMEOUT_S} s"
            )
            log.warning("mmrag's run forkserver is not available (%s); each run starts in a new process", why)
        return multiprocessing.get_context("spawn")

    def warm_up(self, wait: bool = True, timeout_s: float | None = None) -> bool:
        """Start the forkserver (once) in a thread; it is ready when a first, empty process has forked
        from it, i.e. after its imports (or when that failed: ``_error``). ``wait``: block until then
        (or ``timeout_s``); True if ready."""
        with self._lock:
            if self._ctx is None:
                self._ctx = forkserver_context(self._preload)

                def start() -> None:
                    try:
                        p = self._ctx.Process(target=_nothing, name="mmrag-forkserver-ready")
                        p.start()
                        p.join()
                        if p.exitcode != 0:
                            self._error = RuntimeError(f"its first process exited with {p.exitcode}")
                    except Exception as e:  # noqa: BLE001 - any failure means: spawn instead
                        self._error = e
                    finally:
                        self._ready.set()

                threading.Thread(target=start, name="mmrag-forkserver-start", daemon=True).start()
        return self._ready.wait(timeout_s) if wait else self._ready.is_set()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        # join the run processes that ended: their objects go, and the pipes to the forkserver with them
        multiprocessing.active_children()
        proc = self._context().Process(
            target=execute_run,
            args=(run.run_id, self._instance.get_ref()),
            name=f"dagster-run-{run.run_id[:8]}",
        )
        proc.start()
        self._instance.add_run_tags(run.run_id, process_tags(proc.pid))

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        recorded = run_process(run)
        if recorded is None or not process_alive(*recorded):
            return False
        pid = recorded[0]
        self._instance.report_run_canceling(run)
        os.kill(pid, signal.SIGINT)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        recorded = run_process(run)
        if recorded is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run process recorded on this host")
        if process_alive(*recorded):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {recorded[0]}) is gone")

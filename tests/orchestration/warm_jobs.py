"""Jobs the warm run launcher's tests launch (a module the forked run process reconstructs them from)."""

import json
import os
import sys
import time
from pathlib import Path

import dagster as dg


@dg.op(config_schema={"out": str, "sleep_s": float})
def report(context: dg.OpExecutionContext) -> None:
    """Writes what the run process saw at its start: its pid and parent, which modules were there."""
    out = Path(context.op_config["out"])
    seen = {"pid": os.getpid(), "ppid": os.getppid(), "json_tool": "json.tool" in sys.modules}
    out.write_text(json.dumps(seen))
    time.sleep(context.op_config["sleep_s"])


@dg.job(executor_def=dg.in_process_executor)  # as mmrag's jobs: the steps run in the run's process
def report_job() -> None:
    report()

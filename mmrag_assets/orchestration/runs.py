"""What a finished Dagster run says (:class:`RunOutcome`), and the run config of the CLI's logger."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    error: str | None
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset -> metadata (last event)
    seconds: float = 0.0
    blocked: bool = False  # failed only because blocking checks failed (documents held back), not a fault
    run_ids: list[str] = field(default_factory=list)  # every run of a scale-out command (distributed.py)


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
        e.event_specific_data
        and e.event_specific_data.error
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
        if err is None or not (
            e.is_step_failure or e.event_type_value in ("RESOURCE_INIT_FAILURE", "RUN_FAILURE")
        ):
            continue
        while err.cause is not None:
            err = err.cause
        head, _, rest = err.message.strip().partition(": ")
        msg = rest if rest and head.endswith(err.cls_name or "\0") else err.message.strip()
        return f"{e.step_key or 'resources'}: {msg.splitlines()[0] if msg else err.cls_name}"
    return f"Dagster run {result.run_id} failed: see the run in `mmrag ui`"


def cli_run_config(verbose: bool) -> dict[str, Any]:
    return {"loggers": {"mmrag_cli": {"config": {"log_level": "DEBUG" if verbose else "INFO"}}}}


def resolved_config(cfg: Any, overrides: list[str] | None = None) -> dict[str, Any]:
    """The run config that hands a run the config its launcher composed (``MmragConfig.to_json``):
    the ``mmrag`` resource of each step rebuilds the dataclasses instead of composing the overrides
    again; the overrides stay for the record (the run's config in the UI, ``config_metadata``)."""
    mmrag = {
        "overrides": list(cfg.overrides if overrides is None else overrides),
        "config_json": cfg.to_json(),
    }
    return {"resources": {"mmrag": {"config": mmrag}}}

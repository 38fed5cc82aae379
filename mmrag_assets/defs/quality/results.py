"""The latest result of every asset check, read from the Dagster instance (``mmrag checks``).

For a check partitioned by document, "the latest result" is the latest result of each current
document taken together: the check passes when every document's latest result passed, and the
entry shows the most recent failing document's result (its metadata names the rows), with all
failing documents listed in ``failing_partitions``. An unpartitioned check shows its latest
completed evaluation. Severity is ``OK`` for a pass, ``WARN``/``ERROR`` for a failure, ``None``
when the check never ran.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import dagster as dg

HISTORY_LIMIT = 10_000  # completed evaluations scanned per partitioned check
_DATA_URI = re.compile(r"\(data:image/[a-z]+;base64,[A-Za-z0-9+/=]+\)")


def metadata_to_json(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata values as plain JSON; inline images are replaced by a pointer to the PNG's path entry."""
    out: dict[str, Any] = {}
    for k, v in metadata.items():
        if isinstance(v, dg.MetadataValue):
            v = v.value
        if isinstance(v, str):
            v = _DATA_URI.sub("(inline PNG omitted: see the *_plot path)", v)
        elif not isinstance(v, int | float | bool | list | dict | type(None)):
            v = str(v)
        out[k] = v
    return out


def _entry(key: dg.AssetCheckKey, blocking: bool, record) -> dict[str, Any]:
    ev = record.evaluation if record is not None else None
    if ev is None:
        return {
            "asset": key.asset_key.to_user_string(),
            "check": key.name,
            "passed": None,
            "severity": None,
            "metadata": {},
            "blocking": blocking,
            "partition": None,
            "run_id": None,
            "evaluated_at": None,
        }
    return {
        "asset": key.asset_key.to_user_string(),
        "check": key.name,
        "passed": bool(ev.passed),
        "severity": "OK" if ev.passed else ev.severity.value,
        "metadata": metadata_to_json(dict(ev.metadata)),
        "blocking": blocking,
        "partition": record.partition,
        "run_id": record.run_id,
        "evaluated_at": datetime.fromtimestamp(record.create_timestamp, UTC).isoformat(timespec="seconds"),
    }


def latest_check_results(
    instance: dg.DagsterInstance, overrides: list[str] | None = None
) -> list[dict[str, Any]]:
    """One entry per asset check defined in mmrag, sorted by asset and check name."""
    from dagster._core.storage.asset_check_execution_record import (
        COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    )

    from mmrag_assets.definitions import build_definitions

    graph = build_definitions(overrides).resolve_asset_graph()
    storage = instance.event_log_storage
    out = []
    for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        node = graph.get(key)
        if node.partitions_def is None:
            history = storage.get_asset_check_execution_history(
                key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
            )
            out.append(_entry(key, node.blocking, history[0] if history else None))
            continue
        current = set(node.partitions_def.get_partition_keys(dynamic_partitions_store=instance))
        latest: dict[str, Any] = {}  # partition -> newest completed record
        for rec in storage.get_asset_check_execution_history(
            key, limit=HISTORY_LIMIT, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
        ):
            if rec.partition in current and rec.partition not in latest:
                latest[rec.partition] = rec
        failing = [r for r in latest.values() if not r.evaluation.passed]  # newest first
        shown = failing[0] if failing else max(latest.values(), key=lambda r: r.id, default=None)
        entry = _entry(key, node.blocking, shown)
        entry["passed"] = None if shown is None else not failing
        entry["failing_partitions"] = sorted(r.partition for r in failing)
        entry["partitions_checked"] = len(latest)
        out.append(entry)
    return out

"""The latest result of every asset check, read from the Dagster instance (``mmrag checks``).

Each check shows its latest completed evaluation; severity is ``OK`` for a pass, ``WARN``/``ERROR``
for a failure, ``None`` when the check never ran. Which documents a failing contract holds back
right now is the catalog's ``document_checks`` table (``Catalog.failing_checks``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import dagster as dg

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
        "description": ev.description,
        "metadata": metadata_to_json(dict(ev.metadata)),
        "blocking": blocking,
        "partition": record.partition,
        "run_id": record.run_id,
        "evaluated_at": datetime.fromtimestamp(record.create_timestamp, UTC).isoformat(timespec="seconds"),
    }


def latest_check_results(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[dict[str, Any]]:
    """One entry per asset check of ``defs``, sorted by asset and check name."""
    from dagster._core.storage.asset_check_execution_record import (
        COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    )

    graph = defs.resolve_asset_graph()
    storage = instance.event_log_storage
    out = []
    for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        history = storage.get_asset_check_execution_history(
            key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
        )
        out.append(_entry(key, graph.get(key).blocking, history[0] if history else None))
    return out

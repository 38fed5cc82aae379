"""Drift baselines, their audit log, drift results and modality-gap measurements in the catalog.

A baseline is stored per (embedding version, modality) and never overwritten: setting one appends a
row, and the newest row is the live one. Every set/rotation is logged with who, when and why.
The tables and their SQL are in ``lib/store/drift_tables.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mmrag_assets.lib.quality.drift import Baseline
from mmrag_assets.lib.store import drift_tables as dt
from mmrag_assets.lib.store.catalog import Catalog


@dataclass
class StoredBaseline:
    baseline_id: str
    version_key: str
    modality: str
    n_items: int
    table_version: int | None
    created_at: datetime
    created_by: str
    reason: str
    baseline: Baseline

    def describe(self) -> dict[str, Any]:
        """What a reader needs to know about where a comparison's reference came from."""
        return {
            "baseline_id": self.baseline_id,
            "version_key": self.version_key,
            "n_items": self.n_items,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "created_by": self.created_by,
            "reason": self.reason,
        }


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # DuckDB TIMESTAMP: naive UTC


def save_baseline(
    catalog: Catalog,
    version_key: str,
    modality: str,
    baseline: Baseline,
    item_ids: Sequence[str],
    *,
    user: str,
    reason: str,
    table_version: int | None = None,
    run_id: str | None = None,
) -> str:
    """Append a baseline (it becomes the live one) and log the set/rotation; returns its id."""

    previous = active_baseline(catalog, version_key, modality, load=False)
    created = _now()
    baseline_id = f"{version_key}:{modality}:{int(created.timestamp() * 1e6)}"
    dt.append_baseline(
        catalog,
        {
            "baseline_id": baseline_id,
            "version_key": version_key,
            "modality": modality,
            "n_items": baseline.n_items,
            "dim": baseline.dim,
            "table_version": table_version,
            "payload": json.dumps(baseline.to_dict()),
            "created_at": created,
            "created_by": user,
            "reason": reason,
        },
        item_ids,
        {
            "logged_at": created,
            "version_key": version_key,
            "modality": modality,
            "action": "rotate" if previous else "set",
            "baseline_id": baseline_id,
            "previous_id": previous.baseline_id if previous else None,
            "n_items": baseline.n_items,
            "user_name": user,
            "reason": reason,
            "run_id": run_id,
        },
    )
    return baseline_id


def active_baseline(
    catalog: Catalog, version_key: str, modality: str, *, load: bool = True
) -> StoredBaseline | None:
    """The live baseline of one embedding version and modality, or None."""
    rows = _stored(dt.newest_baselines(catalog, version_key, modality, payload=load, limit=1))
    return rows[0] if rows else None


def latest_baseline_elsewhere(catalog: Catalog, version_key: str, modality: str) -> StoredBaseline | None:
    """The newest baseline of ``modality`` under any *other* embedding version (the model before a switch)."""
    rows = _stored(
        dt.newest_baselines(catalog, version_key, modality, other_versions=True, payload=True, limit=1)
    )
    return rows[0] if rows else None


def _stored(rows: list[dict[str, Any]]) -> list[StoredBaseline]:
    out = []
    for r in rows:
        payload = r.pop("payload", None)
        b = Baseline.from_dict(json.loads(payload)) if payload else None
        out.append(StoredBaseline(**r, baseline=b))  # type: ignore[arg-type]
    return out


baseline_item_ids = dt.baseline_item_ids
baseline_log = dt.baseline_log
gap_history = dt.gap_history


def record_drift(catalog: Catalog, rows: Iterable[dict[str, Any]]) -> None:
    rows = [{**r, "metrics": json.dumps(r.get("metrics") or {})} for r in rows]
    if not rows:
        return
    dt.append_drift(catalog, _now(), rows)


def record_gap(catalog: Catalog, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    if not rows:
        return
    dt.append_gaps(catalog, _now(), rows)


def gap_reference(catalog: Catalog, version_key: str, modality: str) -> dict[str, Any] | None:
    """The gap measured when the live baseline was set, else the first gap measured for this version."""
    live = active_baseline(catalog, version_key, modality, load=False)
    if live is not None:
        ref = dt.gap_of_baseline(catalog, live.baseline_id, modality)
        if ref is not None:
            return ref
    return dt.first_gap(catalog, version_key, modality)

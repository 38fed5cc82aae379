"""Drift baselines, their audit log, drift results and modality-gap measurements in the DuckDB catalog.

A baseline is stored per (embedding version, modality) and never overwritten: setting one appends a
row, and the newest row is the live one. Every set/rotation is logged with who, when and why.
The tables are declared in ``lib/store/catalog.SCHEMA``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mmrag_assets.lib.quality.drift import Baseline
from mmrag_assets.lib.store.catalog import Catalog, bulk_insert


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
    payload = json.dumps(baseline.to_dict())
    with catalog.connect() as con:
        con.execute("BEGIN")
        con.execute(
            "INSERT INTO drift_baselines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                baseline_id,
                version_key,
                modality,
                baseline.n_items,
                baseline.dim,
                table_version,
                payload,
                created,
                user,
                reason,
            ],
        )
        bulk_insert(
            con, "drift_baseline_items", ["baseline_id", "item_id"], [[baseline_id, i] for i in item_ids]
        )
        con.execute(
            "INSERT INTO baseline_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                created,
                version_key,
                modality,
                "rotate" if previous else "set",
                baseline_id,
                previous.baseline_id if previous else None,
                baseline.n_items,
                user,
                reason,
                run_id,
            ],
        )
        con.execute("COMMIT")
    return baseline_id


def active_baseline(
    catalog: Catalog, version_key: str, modality: str, *, load: bool = True
) -> StoredBaseline | None:
    """The live baseline of one embedding version and modality, or None."""
    rows = _baselines(
        catalog, "version_key = ? AND modality = ?", [version_key, modality], load=load, limit=1
    )
    return rows[0] if rows else None


def latest_baseline_elsewhere(catalog: Catalog, version_key: str, modality: str) -> StoredBaseline | None:
    """The newest baseline of ``modality`` under any *other* embedding version (the model before a switch)."""
    rows = _baselines(
        catalog, "version_key <> ? AND modality = ?", [version_key, modality], load=True, limit=1
    )
    return rows[0] if rows else None


def _baselines(
    catalog: Catalog, where: str, params: list[Any], *, load: bool, limit: int
) -> list[StoredBaseline]:
    cols = "baseline_id, version_key, modality, n_items, table_version, created_at, created_by, reason"
    rows = catalog.query(
        f"SELECT {cols}{', payload' if load else ''} FROM drift_baselines WHERE {where} "
        f"ORDER BY created_at DESC, baseline_id DESC LIMIT {int(limit)}",
        params,
    )
    out = []
    for r in rows:
        payload = r.pop("payload", None)
        b = Baseline.from_dict(json.loads(payload)) if payload else None
        out.append(StoredBaseline(**r, baseline=b))  # type: ignore[arg-type]
    return out


def baseline_item_ids(catalog: Catalog, baseline_id: str) -> set[str]:
    return {
        r["item_id"]
        for r in catalog.query(
            "SELECT item_id FROM drift_baseline_items WHERE baseline_id = ?", [baseline_id]
        )
    }


def baseline_log(catalog: Catalog, version_key: str | None = None) -> list[dict[str, Any]]:
    """Every set/rotation, newest first."""
    where, params = ("WHERE version_key = ?", [version_key]) if version_key else ("", [])
    return catalog.query(f"SELECT * FROM baseline_log {where} ORDER BY logged_at DESC, modality", params)


def record_drift(catalog: Catalog, rows: Iterable[dict[str, Any]]) -> None:
    cols = [
        "run_id",
        "version_key",
        "modality",
        "scope",
        "baseline_id",
        "table_version",
        "severity",
        "n_batch",
        "n_baseline",
        "metrics",
        "notes",
        "plot_path",
    ]
    rows = [{**r, "metrics": json.dumps(r.get("metrics") or {})} for r in rows]
    if not rows:
        return
    now = _now()
    with catalog.connect() as con:
        con.executemany(
            f"INSERT INTO drift_history (checked_at, {', '.join(cols)}) VALUES (?, {', '.join('?' * len(cols))})",
            [[now, *[r.get(c) for c in cols]] for r in rows],
        )


def record_gap(catalog: Catalog, rows: Iterable[dict[str, Any]]) -> None:
    cols = [
        "run_id",
        "version_key",
        "modality",
        "centroid_distance",
        "cosine",
        "n_probes",
        "n_items",
        "table_version",
        "baseline_id",
    ]
    rows = list(rows)
    if not rows:
        return
    now = _now()
    with catalog.connect() as con:
        con.executemany(
            f"INSERT INTO modality_gap_history (measured_at, {', '.join(cols)}) VALUES (?, {', '.join('?' * len(cols))})",
            [[now, *[r.get(c) for c in cols]] for r in rows],
        )


def gap_reference(catalog: Catalog, version_key: str, modality: str) -> dict[str, Any] | None:
    """The gap measured when the live baseline was set, else the first gap measured for this version."""
    live = active_baseline(catalog, version_key, modality, load=False)
    if live is not None:
        rows = catalog.query(
            "SELECT * FROM modality_gap_history WHERE baseline_id = ? AND modality = ? LIMIT 1",
            [live.baseline_id, modality],
        )
        if rows:
            return rows[0]
    rows = catalog.query(
        "SELECT * FROM modality_gap_history WHERE version_key = ? AND modality = ? ORDER BY measured_at LIMIT 1",
        [version_key, modality],
    )
    return rows[0] if rows else None


def gap_history(
    catalog: Catalog, version_key: str, modality: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Gap measurements of one embedding version, newest first."""
    where, params = "version_key = ?", [version_key]
    if modality:
        where, params = where + " AND modality = ?", [*params, modality]
    return catalog.query(
        f"SELECT * FROM modality_gap_history WHERE {where} ORDER BY measured_at DESC LIMIT {int(limit)}",
        params,
    )

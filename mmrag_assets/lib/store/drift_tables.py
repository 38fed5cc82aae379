"""The catalog's data-quality tables: drift baselines and their items, the baseline log, drift
results and modality-gap measurements (declared in ``catalog.SCHEMA``; ``lib/quality/baselines.py``
gives them meaning). Rows go in and come out as dicts; JSON columns stay text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mmrag_assets.lib.store.catalog import Catalog, bulk_insert

BASELINE_COLUMNS = (
    "baseline_id",
    "version_key",
    "modality",
    "n_items",
    "dim",
    "table_version",
    "payload",
    "created_at",
    "created_by",
    "reason",
)
LOG_COLUMNS = (
    "logged_at",
    "version_key",
    "modality",
    "action",
    "baseline_id",
    "previous_id",
    "n_items",
    "user_name",
    "reason",
    "run_id",
)
DRIFT_COLUMNS = (
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
)
GAP_COLUMNS = (
    "run_id",
    "version_key",
    "modality",
    "centroid_distance",
    "cosine",
    "n_probes",
    "n_items",
    "table_version",
    "baseline_id",
)


def _values(cols: Sequence[str]) -> str:
    return ", ".join("?" * len(cols))


def append_baseline(
    catalog: Catalog, baseline: Mapping[str, Any], item_ids: Sequence[str], log: Mapping[str, Any]
) -> None:
    """A baseline row, the items it summarises and its log row, in one transaction."""
    with catalog.connect() as con:
        con.execute("BEGIN")
        con.execute(
            f"INSERT INTO drift_baselines ({', '.join(BASELINE_COLUMNS)}) VALUES ({_values(BASELINE_COLUMNS)})",
            [baseline[c] for c in BASELINE_COLUMNS],
        )
        bulk_insert(
            con,
            "drift_baseline_items",
            ["baseline_id", "item_id"],
            [[baseline["baseline_id"], i] for i in item_ids],
        )
        con.execute(
            f"INSERT INTO baseline_log ({', '.join(LOG_COLUMNS)}) VALUES ({_values(LOG_COLUMNS)})",
            [log[c] for c in LOG_COLUMNS],
        )
        con.execute("COMMIT")


def newest_baselines(
    catalog: Catalog,
    version_key: str,
    modality: str,
    *,
    other_versions: bool = False,
    payload: bool,
    limit: int,
) -> list[dict[str, Any]]:
    """Baseline rows of ``modality`` under ``version_key`` (``other_versions``: under any other), newest
    first; ``payload`` adds the JSON payload."""
    cols = "baseline_id, version_key, modality, n_items, table_version, created_at, created_by, reason"
    return catalog.query(
        f"SELECT {cols}{', payload' if payload else ''} FROM drift_baselines "
        f"WHERE version_key {'<>' if other_versions else '='} ? AND modality = ? "
        f"ORDER BY created_at DESC, baseline_id DESC LIMIT {int(limit)}",
        [version_key, modality],
    )


def baseline_item_ids(catalog: Catalog, baseline_id: str) -> set[str]:
    return {
        r["item_id"]
        for r in catalog.query(
            "SELECT item_id FROM drift_baseline_items WHERE baseline_id = ?", [baseline_id]
        )
    }


def baseline_log(catalog: Catalog, version_key: str | None = None) -> list[dict[str, Any]]:
    """Every set/rotation (of one embedding version, when given), newest first."""
    where, params = ("WHERE version_key = ?", [version_key]) if version_key else ("", [])
    return catalog.query(f"SELECT * FROM baseline_log {where} ORDER BY logged_at DESC, modality", params)


def append_drift(catalog: Catalog, checked_at: datetime, rows: Sequence[Mapping[str, Any]]) -> None:
    """Drift results (``DRIFT_COLUMNS``, a missing one NULL), all checked at ``checked_at``."""
    _append(catalog, "drift_history", "checked_at", checked_at, DRIFT_COLUMNS, rows)


def append_gaps(catalog: Catalog, measured_at: datetime, rows: Sequence[Mapping[str, Any]]) -> None:
    """Modality-gap measurements (``GAP_COLUMNS``, a missing one NULL), all taken at ``measured_at``."""
    _append(catalog, "modality_gap_history", "measured_at", measured_at, GAP_COLUMNS, rows)


def _append(
    catalog: Catalog, table: str, time_column: str, at: datetime, columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:  # fmt: skip
    if not rows:
        return
    with catalog.connect() as con:
        con.executemany(
            f"INSERT INTO {table} ({time_column}, {', '.join(columns)}) VALUES (?, {_values(columns)})",
            [[at, *[r.get(c) for c in columns]] for r in rows],
        )


def gap_of_baseline(catalog: Catalog, baseline_id: str, modality: str) -> dict[str, Any] | None:
    """The gap measured while ``baseline_id`` was set."""
    rows = catalog.query(
        "SELECT * FROM modality_gap_history WHERE baseline_id = ? AND modality = ? LIMIT 1",
        [baseline_id, modality],
    )
    return rows[0] if rows else None


def first_gap(catalog: Catalog, version_key: str, modality: str) -> dict[str, Any] | None:
    """The first gap measured for an embedding version and modality."""
    rows = catalog.query(
        "SELECT * FROM modality_gap_history WHERE version_key = ? AND modality = ? ORDER BY measured_at LIMIT 1",
        [version_key, modality],
    )
    return rows[0] if rows else None


def gap_history(
    catalog: Catalog, version_key: str, modality: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Gap measurements of one embedding version (and modality, when given), newest first."""
    where, params = "version_key = ?", [version_key]
    if modality:
        where, params = where + " AND modality = ?", [*params, modality]
    return catalog.query(
        f"SELECT * FROM modality_gap_history WHERE {where} ORDER BY measured_at DESC LIMIT {int(limit)}",
        params,
    )

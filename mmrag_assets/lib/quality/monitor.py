"""Embedding drift of an index against stored baselines (no Dagster): setting baselines, comparing,
plotting and recording the results in the catalog.

Which items a drift check compares, per modality, against the live baseline of the current
embedding version (``all`` and ``new`` are both assessed, the worse one counts):

- ``all``: every item in the table now. Catches a whole-space change (a model revision swapped
  in under the same version key, a rotated space).
- ``new``: the items that were not in the baseline (added since it was taken). Catches a bad
  recent batch (blank scans, a text-only batch) that the whole table would dilute.

When the current version has no baseline for a modality but another version does (the model was
switched), the table is compared with that baseline and the report says so: accept the new model
on purpose with ``mmrag baseline``. When no version has one, the first baseline is created
automatically from the current items (logged as ``mmrag (automatic)``), so monitoring starts with
the first index instead of silently passing. Item summaries are described in ``quality.py``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.lib.quality import baselines as bs
from mmrag_assets.lib.quality.drift import (
    Baseline,
    DriftReport,
    DriftThresholds,
    ItemSample,
    compare,
    drift_plot,
)
from mmrag_assets.lib.quality.frames import ItemSummaries, measure_gap, summarize_table

if TYPE_CHECKING:
    from mmrag_assets.config import ChecksConfig
    from mmrag_assets.lib.store.catalog import Catalog

AUTO_USER = "mmrag (automatic)"
RANK = {"OK": 0, "WARN": 1, "ERROR": 2}


# ---------------------------------------------------------------- baselines
def set_baselines(
    checks: ChecksConfig,
    catalog: Catalog,
    tbl,
    version_key: str,
    *,
    user: str,
    reason: str,
    run_id: str | None = None,
    embedder=None,
    summaries: ItemSummaries | None = None,
) -> list[dict[str, Any]]:
    """Freeze the current items of every modality as the live baseline; returns one row per modality.

    With an ``embedder`` the modality gap is measured too and stored as the reference of the baseline.
    """
    from mmrag_assets.errors import NotFound

    s = summaries if summaries is not None else summarize_table(tbl)
    if len(s) == 0:
        raise NotFound(
            f"index table {tbl.name} is empty: run `mmrag index` (same model overrides) before setting a baseline"
        )
    out = []
    parts = s.by_modality()
    for m, items in parts.items():
        b = Baseline.from_items(
            items.pooled, items.norms, items.tokens, sample_size=checks.sample_size, seed=checks.seed
        )
        bid = bs.save_baseline(
            catalog,
            version_key,
            m,
            b,
            items.item_ids,
            user=user,
            reason=reason,
            table_version=int(tbl.version),
            run_id=run_id,
        )
        out.append({"modality": m, "baseline_id": bid, "n_items": b.n_items, "sample": len(b.sample)})
    if embedder is not None and checks.probe_queries:
        ids = {r["modality"]: r["baseline_id"] for r in out}
        gap = measure_gap(embedder, checks.probe_queries, parts)
        bs.record_gap(
            catalog,
            [
                {
                    **g,
                    "run_id": run_id,
                    "version_key": version_key,
                    "table_version": int(tbl.version),
                    "baseline_id": ids[g["modality"]],
                }
                for g in gap
            ],
        )
    return out


# ---------------------------------------------------------------- drift
def thresholds_for(thresholds: Mapping[str, Any], modality: str) -> DriftThresholds:
    """``checks.thresholds.default`` overridden metric by metric by ``checks.thresholds.<modality>``."""
    base = DriftThresholds.from_mapping(thresholds.get("default"))
    return DriftThresholds.from_mapping(thresholds.get(modality), base=base)


@dataclass
class ScopeResult:
    scope: str  # all | new
    report: DriftReport
    batch: ItemSample


@dataclass
class ModalityDrift:
    modality: str
    severity: str  # OK | WARN | ERROR
    n_items: int
    baseline: bs.StoredBaseline | None
    scopes: list[ScopeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot_path: Path | None = None

    @property
    def assessed(self) -> bool:
        """Some scope was compared on enough items (else the severity OK means "not assessed")."""
        return any(not r.report.insufficient_data for r in self.scopes)

    def worst(self) -> ScopeResult | None:
        return max(self.scopes, key=lambda r: (RANK[r.report.severity], r.scope == "new"), default=None)


@dataclass
class DriftOutcome:
    version_key: str
    table_version: int
    severity: str
    modalities: dict[str, ModalityDrift]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.severity == "OK"

    @property
    def assessed(self) -> bool:
        return any(md.assessed for md in self.modalities.values())


def evaluate_drift(
    checks: ChecksConfig,
    catalog: Catalog,
    tbl,
    version_key: str,
    *,
    run_id: str | None = None,
    plot_dir: Path | None = None,
    storage_root: Path | None = None,
    summaries: ItemSummaries | None = None,
) -> DriftOutcome:
    """Compare the table with the live baselines, per modality; record the results and write plots
    (under ``plot_dir``; recorded relative to ``storage_root`` when they are inside it)."""
    c = checks
    s = summaries if summaries is not None else summarize_table(tbl)
    version = int(tbl.version)
    out = DriftOutcome(version_key, version, "OK", {})
    if len(s) == 0:
        out.notes.append(f"index table {tbl.name} is empty: nothing to compare")
        return out
    history: list[dict[str, Any]] = []
    for m, items in s.by_modality().items():
        th = thresholds_for(c.thresholds, m)
        md = ModalityDrift(m, "OK", len(items), bs.active_baseline(catalog, version_key, m))
        out.modalities[m] = md
        ref = md.baseline
        if ref is None:
            ref = bs.latest_baseline_elsewhere(catalog, version_key, m)
            if ref is not None:
                md.baseline = ref
                md.notes.append(
                    f"no baseline for this embedding version yet; compared with the baseline of {ref.version_key} "
                    f"(the model changed?): accept it on purpose with `mmrag baseline --reason ...`"
                )
        if ref is None:
            if len(items) < th.min_items:
                md.notes.append(
                    f"no baseline yet and only {len(items)} items (< {th.min_items}): drift not assessed"
                )
                continue
            set_baselines(
                checks,
                catalog,
                tbl,
                version_key,
                user=AUTO_USER,
                reason=f"first baseline: none existed for {m}",
                run_id=run_id,
                summaries=items,
            )
            md.baseline = bs.active_baseline(catalog, version_key, m)
            md.notes.append("no baseline existed: this table became the first baseline (see baseline_log)")
            continue
        batches = [("all", items)]
        if ref.version_key == version_key:
            known = bs.baseline_item_ids(catalog, ref.baseline_id)
            new_idx = np.array(
                [i for i, iid in enumerate(items.item_ids) if iid not in known], dtype=np.int64
            )
            if 0 < len(new_idx) < len(items):
                batches.append(("new", items.take(new_idx)))
        for scope, batch in batches:
            smp = batch.sample()
            rep = compare(
                ref.baseline,
                smp.pooled,
                smp.norms,
                smp.tokens,
                thresholds=th,
                permutations=c.permutations,
                seed=c.seed,
            )
            md.scopes.append(ScopeResult(scope, rep, smp))
        worst = md.worst()
        md.severity = worst.report.severity if worst else "OK"
        if worst and plot_dir is not None:
            name = f"{m}-{(run_id or 'adhoc')[:8]}.png"
            md.plot_path = drift_plot(ref.baseline.sample, worst.batch, worst.report, Path(plot_dir) / name)
        for r in md.scopes:
            history.append(
                {
                    "run_id": run_id,
                    "version_key": version_key,
                    "modality": m,
                    "scope": r.scope,
                    "baseline_id": ref.baseline_id,
                    "table_version": version,
                    "severity": r.report.severity,
                    "n_batch": r.report.n_batch,
                    "n_baseline": r.report.n_baseline,
                    "metrics": {
                        k: {"value": _num(v.value), "p": _num(v.p_value), "severity": v.severity}
                        for k, v in r.report.metrics.items()
                    },
                    "notes": "; ".join(md.notes + r.report.notes),
                    "plot_path": _rel(md.plot_path, storage_root) if r is worst else None,
                }
            )
    bs.record_drift(catalog, history)
    out.severity = max((md.severity for md in out.modalities.values()), key=RANK.__getitem__, default="OK")
    return out


def drift_table_md(outcome: DriftOutcome) -> str:
    """Markdown table: one row per modality and scope."""
    metrics = ["centroid_shift", "mmd2", "domain_auc", "ks_norms", "ks_tokens", "variance_ratio"]
    lines = [
        "| modality | scope | items | baseline | severity | " + " | ".join(metrics) + " | notes |",
        "|" + "---|" * (len(metrics) + 6),
    ]
    for m, md in outcome.modalities.items():
        if not md.scopes:
            lines.append(
                f"| {m} | - | {md.n_items} | - | OK | "
                + " | ".join("-" for _ in metrics)
                + f" | {'; '.join(md.notes)} |"
            )
        for r in md.scopes:
            cells = []
            for k in metrics:
                v = r.report.metrics.get(k)
                cells.append(
                    "-"
                    if v is None
                    else f"{v.value:.3g}{'' if v.severity == 'OK' else ' **' + v.severity + '**'}"
                )
            notes = "; ".join(md.notes + r.report.notes)
            lines.append(
                f"| {m} | {r.scope} | {r.report.n_batch} | {r.report.n_baseline} | {r.report.severity} | "
                + " | ".join(cells)
                + f" | {notes} |"
            )
    return "\n".join(lines)


def png_markdown(path: Path, alt: str) -> str:
    """The PNG inline as a data URI: the Dagster UI renders it in the check's metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')})"


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)


def _rel(p: Path | None, root: Path | None) -> str | None:
    if p is None or root is None:
        return None if p is None else str(p)
    try:
        return Path(p).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(p)

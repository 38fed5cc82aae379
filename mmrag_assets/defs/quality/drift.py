"""Embedding drift and modality gap of the served index, and the baselines they compare against.

Both checks read the LanceDB table of the configured embedding version once, after ``search_index``
(non-blocking: they report, they do not stop search). Which items are compared with which baseline
is described in ``lib/quality.py``.
"""

import getpass

import dagster as dg

from mmrag_assets.defs.shared import EMBED_TAGS, WRITER, config_metadata, text
from mmrag_assets.resources import CatalogResource, EmbedderResource, LanceStoreResource, MmragConfigResource

DRIFT = dg.AssetCheckSpec(
    "embedding_drift",
    asset="search_index",
    description="Pooled-vector, norm and tokens-per-item drift per modality against the live baseline "
    "(centroid shift, MMD, domain classifier, KS, variance ratio); PNG plot per modality.",
)
GAP = dg.AssetCheckSpec(
    "modality_gap",
    asset="search_index",
    description="Distance between the probe queries' centroid and each item modality's centroid, "
    "tracked over time (DuckDB modality_gap_history) against the value measured with the baseline.",
)


def _severity(s: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if s == "ERROR" else dg.AssetCheckSeverity.WARN


@dg.multi_asset_check(
    specs=[DRIFT, GAP], name="index_quality", can_subset=False, pool=WRITER, op_tags=EMBED_TAGS
)
def index_quality(
    context: dg.AssetCheckExecutionContext,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    lance: LanceStoreResource,
    embedder: EmbedderResource,
):
    from mmrag_assets.lib.quality import baselines as bs
    from mmrag_assets.lib.quality.frames import measure_gap, summarize_table
    from mmrag_assets.lib.quality.monitor import drift_table_md, evaluate_drift, png_markdown

    cfg = mmrag.cfg
    vk = embedder.version_key
    tbl = lance.table(create=False)
    catalog = catalog.catalog
    run_id = context.run.run_id
    items = summarize_table(tbl)  # one pass over the vectors for both checks

    # ---- drift
    out = evaluate_drift(
        cfg.checks,
        catalog,
        tbl,
        vk,
        run_id=run_id,
        plot_dir=cfg.storage_root / "reports" / "drift" / vk,
        storage_root=cfg.storage_root,
        summaries=items,
    )
    meta: dict = {
        "version_key": vk,
        "table_version": text(out.table_version),
        "severity": out.severity,
        "drift": dg.MetadataValue.md(drift_table_md(out)),
        "baselines": dg.MetadataValue.json(
            {m: md.baseline.describe() if md.baseline else None for m, md in out.modalities.items()}
        ),
        "notes": "; ".join(out.notes + [f"{m}: {n}" for m, md in out.modalities.items() for n in md.notes])
        or "(none)",
    }
    for m, md in out.modalities.items():
        meta[f"{m}_severity"] = md.severity
        if md.plot_path is not None:
            meta[f"{m}_plot"] = dg.MetadataValue.path(str(md.plot_path))
            meta[f"{m}_plot_inline"] = dg.MetadataValue.md(png_markdown(md.plot_path, f"drift {m}"))
    if not out.assessed:  # too little data to say anything: not a pass
        meta["assessed"] = False
        yield dg.AssetCheckResult(
            check_name="embedding_drift",
            asset_key="search_index",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="skipped: drift not assessed ("
            + (meta["notes"] if meta["notes"] != "(none)" else "no items")
            + ")",
            metadata=meta,
        )
    else:
        yield dg.AssetCheckResult(
            check_name="embedding_drift",
            asset_key="search_index",
            passed=out.passed,
            severity=_severity(out.severity),
            metadata={**meta, "assessed": True},
        )

    # ---- modality gap
    probes = list(cfg.checks.probe_queries)
    if not probes or len(items) == 0:
        yield dg.AssetCheckResult(
            check_name="modality_gap",
            asset_key="search_index",
            passed=True,
            metadata={
                "note": "no probe queries configured (checks.probe_queries)" if not probes else "empty index"
            },
        )
        return
    gap = measure_gap(embedder.embedder, probes, items.by_modality())
    rows, moved = [], {}
    lines = ["| modality | distance | cosine | reference | change |", "|---|---|---|---|---|"]
    for g in gap:
        ref = bs.gap_reference(catalog, vk, g["modality"])
        delta = g["centroid_distance"] - ref["centroid_distance"] if ref else 0.0
        if abs(delta) >= cfg.checks.gap_warn:
            moved[g["modality"]] = round(delta, 4)
        when = (
            f"{ref['centroid_distance']:.4f} ({ref['measured_at']:%Y-%m-%d %H:%M})"
            if ref
            else "(first measurement)"
        )
        lines.append(
            f"| {g['modality']} | {g['centroid_distance']:.4f} | {g['cosine']:.4f} | {when} | {delta:+.4f} |"
        )
        rows.append({**g, "run_id": run_id, "version_key": vk, "table_version": out.table_version})
    bs.record_gap(catalog, rows)
    history = {
        m: [
            [h["measured_at"].isoformat(timespec="seconds"), round(h["centroid_distance"], 4)]
            for h in bs.gap_history(catalog, vk, m, 20)
        ]
        for m in sorted({g["modality"] for g in gap})
    }
    yield dg.AssetCheckResult(
        check_name="modality_gap",
        asset_key="search_index",
        passed=not moved,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "gap": dg.MetadataValue.md("\n".join(lines)),
            **{f"{g['modality']}_distance": round(g["centroid_distance"], 4) for g in gap},
            "moved": dg.MetadataValue.json(moved),
            "gap_warn": text(cfg.checks.gap_warn),
            "probes": len(probes),
            "history": dg.MetadataValue.json(history),
        },
    )


class BaselineConfig(dg.Config):
    reason: str = ""  # why the baseline is (re)set: recorded in baseline_log
    requested_by: str = ""  # who: defaults to the OS user running the step


@dg.asset(deps=["search_index"], group_name="quality", kinds={"duckdb"}, pool=WRITER, op_tags=EMBED_TAGS)
def drift_baselines(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    lance: LanceStoreResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The live drift baselines of the configured embedding version, one per modality (DuckDB
    ``drift_baselines``): centroid, per-dimension mean and variance, norm and tokens-per-item
    quantiles and a fixed random sample of pooled vectors. Materialised on purpose only (``mmrag
    baseline``, ``drift_baseline_job``); every set or rotation is logged with who, when and why."""
    from mmrag_assets.lib.quality.monitor import set_baselines

    cfg = mmrag.cfg
    vk = embedder.version_key
    tbl = lance.table(create=False)
    user = config.requested_by.strip() or getpass.getuser()
    reason = config.reason.strip() or "(no reason given)"
    rows = set_baselines(
        cfg.checks,
        catalog.catalog,
        tbl,
        vk,
        user=user,
        reason=reason,
        run_id=context.run.run_id,
        embedder=embedder.embedder if cfg.checks.probe_queries else None,
    )
    context.log.info(f"drift baselines of {vk} set by {user}: {reason}")
    return dg.MaterializeResult(
        metadata={
            "version_key": vk,
            "table_version": text(int(tbl.version)),
            "set_by": user,
            "reason": reason,
            "baselines": dg.MetadataValue.json(rows),
            **{f"{r['modality']}_items": r["n_items"] for r in rows},
            **config_metadata(cfg),
        }
    )

"""The DuckDB ``experiments`` table: one row per evaluation run, so runs can be compared later.

SELECT run_id, metrics->>'$.label' AS run, metrics->>'$.reranked."ndcg@10"' AS ndcg10,
       metrics->>'$.latency_ms.total.p50' AS p50_ms
FROM experiments ORDER BY run_id
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import ConfigError, NotFound
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime

METRIC_SECTIONS = ("by_channel", "by_tag", "latency_ms", "first_stage_latency_ms")


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=str, allow_nan=False)


def row_of(record: Mapping[str, Any], *, sweep_id: str | None = None, origin: str = "cli") -> dict[str, Any]:
    # flat, so that SQL reads metrics->>'$.reranked."ndcg@10"' or metrics->'$.latency_ms.total'
    metrics = {**record.get("metrics", {}), **{k: record[k] for k in METRIC_SECTIONS if k in record}}
    extra = {
        k: record[k]
        for k in ("label", "index", "n_queries", "n_failed", "k", "seconds", "sources_not_in_corpus")
        if k in record
    }
    return {
        "run_id": record["run_id"],
        "created_at": record["created_at"],
        "sweep_id": sweep_id,
        "origin": origin,
        "queries": record.get("queries"),
        "queries_sha256": record.get("queries_sha256"),
        "overrides": _dumps(list(record.get("overrides", []))),
        "config": _dumps(record.get("config", {})),
        "metrics": _dumps({**metrics, **extra}),
        "per_query": _dumps(record.get("per_query", [])),
    }


def store_experiment(
    catalog_path: str | Path, record: Mapping[str, Any], *, sweep_id: str | None = None, origin: str = "cli"
) -> str:
    """Insert one run (``lib.evaluation.evaluate``'s record); returns its run id."""
    row = row_of(record, sweep_id=sweep_id, origin=origin)
    Catalog(catalog_path).add_experiment(row)
    return row["run_id"]


def load_experiments(
    catalog_path: str | Path,
    *,
    run_ids: Sequence[str] | None = None,
    sweep_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Rows as dicts with the JSON columns decoded, newest first."""
    rows = Catalog(catalog_path).experiments(run_ids=run_ids, sweep_id=sweep_id, limit=limit)
    for r in rows:
        for c in ("overrides", "config", "metrics", "per_query"):
            r[c] = json.loads(r[c]) if isinstance(r[c], str) else r[c]
    return rows


# ---------------------------------------------------------------- running


def index_status(rt: Runtime) -> str | None:
    """None when the runtime's config can be searched as configured, else what is missing. Looks
    only at the live manifest of the config's embedding version (no model load); a corpus that
    changed since the last ``mmrag index`` is not detected here."""
    from mmrag_assets.lib.store import manifest as mf
    from mmrag_assets.lib.store.storage import pull_index

    cfg, vk = rt.cfg, rt.version_key
    pull_index(rt.storage, vk)  # an object-store root: mirror its live version first
    loc = mf.IndexLocation.of(rt.storage_root, vk)
    if mf.current_version(loc) is None:
        return f"no index for model={cfg.model.name} ({vk}) under {cfg.storage.root}"
    fs = cfg.search.first_stage
    if fs not in mf.read_manifest(loc)["strategies"]:
        if fs not in cfg.search.prebuild:
            raise ConfigError(
                f"search.first_stage={fs} is not in search.prebuild={list(cfg.search.prebuild)}: "
                f"add it (e.g. 'search.prebuild=[{','.join([*cfg.search.prebuild, fs])}]') so indexing builds it"
            )
        return f"the index of model={cfg.model.name} has no {fs} first stage yet"
    return None


def source_kinds(rt: Runtime) -> dict[str, str]:
    """source -> kind (pdf, image, audio, video) of every supported file in the corpus manifest."""
    if not Catalog.exists(rt.catalog_url):
        return {}
    return rt.catalog.source_kinds()


def open_searcher(
    rt: Runtime,
    ensure_index: Callable[[MmragConfig], Any] | None = None,
    progress: Callable[[str], None] | None = None,
):
    """The runtime's ``Searcher``; a missing index is built by ``ensure_index`` (when given and
    ``eval.index_missing``) or reported with the command that builds it."""
    from mmrag_assets.lib.search.searcher import get_searcher

    cfg = rt.cfg
    missing = index_status(rt)
    if missing:
        if ensure_index is None or not cfg.eval.index_missing:
            raise NotFound(f"{missing}: run `mmrag index {' '.join(cfg.overrides)}` first")
        if progress:
            progress(f"{missing}: indexing first")
        ensure_index(cfg)
    return get_searcher(rt)


def run_experiment(
    cfg: MmragConfig,
    *,
    label: str | None = None,
    ensure_index: Callable[[MmragConfig], Any] | None = None,
    sweep_id: str | None = None,
    origin: str = "cli",
    progress: Callable[[str], None] | None = None,
    by: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate ``cfg`` on ``eval.queries`` (metrics broken down by ``eval.by`` and the tags in ``by``) and
    store the run in the ``experiments`` table. Each config is opened in its own runtime, closed after."""
    from mmrag_assets.lib.evaluation.evaluate import evaluate
    from mmrag_assets.lib.evaluation.query_set import load_query_set

    query_set = load_query_set(cfg.eval.queries)
    with Runtime(cfg) as rt:
        searcher = open_searcher(rt, ensure_index, progress)
        tags = list(
            dict.fromkeys([*cfg.eval.by, *by])
        )  # configured tags first, then the command's, once each
        record = evaluate(cfg, searcher, query_set, kinds=source_kinds(rt), progress=progress, by=tags)
    record["label"] = label or " ".join(cfg.overrides) or "(defaults)"
    meta = getattr(searcher, "meta", {})
    record["index"] = {
        "table": meta.get("table"),
        "version": meta.get("table_version"),
        "items": meta.get("items"),
    }
    store_experiment(cfg.catalog_url, record, sweep_id=sweep_id, origin=origin)
    return record


def run_grid(
    overrides: Sequence[str],
    *,
    ensure_index: Callable[[MmragConfig], Any] | None = None,
    origin: str = "cli",
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
    by: Sequence[str] = (),
) -> dict[str, Any]:
    """Expand Hydra multirun ``overrides``, evaluate every config (a failing one is reported, the
    others still run), store each run, and write the comparison report and plot under
    ``eval.report_dir`` of the first config. Returns ``sweep_id``, ``varying``, ``runs`` (records),
    ``failed``, and ``report``/``plot`` paths when some run succeeded."""
    from mmrag_assets.config import load_config
    from mmrag_assets.errors import MmragError
    from mmrag_assets.lib.evaluation import report, sweep
    from mmrag_assets.lib.evaluation.evaluate import new_run_id

    say = progress or (lambda _m: None)
    grid = sweep.expand(overrides)
    keys = sweep.varying(grid)
    cfgs = [load_config(run) for run in grid]  # every config composes before anything runs
    sweep_id = new_run_id()
    say(f"sweep {sweep_id}: {len(grid)} configs over {', '.join(keys) or '(nothing varies)'}")
    runs, failed = [], []
    for i, (run, cfg) in enumerate(zip(grid, cfgs, strict=True), 1):
        label = sweep.label(run, keys)
        say(f"[{i}/{len(grid)}] {label}")
        try:
            runs.append(
                run_experiment(
                    cfg,
                    label=label,
                    ensure_index=ensure_index,
                    sweep_id=sweep_id,
                    origin=origin,
                    progress=say,
                    by=by,
                )
            )
        except MmragError as e:
            say(f"[{i}/{len(grid)}] {label} failed: {e}")
            failed.append({"label": label, "overrides": run, "error": str(e)})
    out: dict[str, Any] = {"sweep_id": sweep_id, "varying": keys, "runs": runs, "failed": failed}
    if runs:
        report_dir = cfgs[0].eval.report_dir or str(cfgs[0].storage_root / "reports")
        fixed = [o for o in grid[0] if o.partition("=")[0] not in keys]
        md, png = report.write_report(runs, report_dir, name or f"sweep-{sweep_id}", fixed=fixed)
        out |= {"report": str(md), "plot": str(png)}
    return out

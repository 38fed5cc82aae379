"""Materialise assets in-process through Dagster (the same code the UI runs) for the CLI and tests."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError

INSTANCE_YAML = """\
# Written by mmrag: the CLI, `mmrag ui` and the daemon share this instance.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1   # the DuckDB catalog has one writer at a time
"""


def dagster_home(cfg: MmragConfig) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<storage.root>/dagster``; created with an instance config."""
    home = Path(os.environ.get("DAGSTER_HOME") or cfg.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    yaml = home / "dagster.yaml"
    if not yaml.exists():
        yaml.write_text(INSTANCE_YAML)
    return home


@contextlib.contextmanager
def open_instance(cfg: MmragConfig) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(dagster_home(cfg))) as instance:
        yield instance


def _quiet_run_config() -> dict[str, Any]:
    level = os.environ.get("MMRAG_DAGSTER_LOG_LEVEL", "WARNING")
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def materialize(
    instance: dg.DagsterInstance,
    overrides: list[str],
    selection: list[str],
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.resources.mmrag import MmragResource

    result = dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        selection=selection,
        partition_key=partition_key,
        instance=instance,
        resources={"mmrag": MmragResource(overrides=list(overrides))},
        run_config=_quiet_run_config(),
        raise_on_error=False,
    )
    if not result.success:
        errors = [
            e.event_specific_data.error.message.strip()
            for e in result.all_events
            if e.is_step_failure and e.event_specific_data and e.event_specific_data.error
        ]
        raise MmragError(f"Dagster run {result.run_id} failed: {errors[0] if errors else 'see the run log'}")
    return result


def ingest(cfg: MmragConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Manifest first, then one run per document partition that is new, changed or unmaterialised."""
    from mmrag_assets.lib.catalog import Catalog
    from mmrag_assets.lib.ingest.document import fingerprint

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    with open_instance(cfg) as instance:
        materialize(instance, cfg.overrides, ["corpus_manifest"])
        catalog = Catalog(cfg.catalog_path)
        docs = catalog.query("SELECT doc_id, source, kind, sha256 FROM manifest WHERE status = 'ok' ORDER BY source")
        have = {r["doc_id"]: r for r in catalog.query("SELECT doc_id, sha256, fingerprint FROM documents")}
        done = instance.get_materialized_partitions(dg.AssetKey("page_images"))
        todo = [
            d for d in docs
            if d["doc_id"] not in done
            or d["doc_id"] not in have
            or have[d["doc_id"]]["fingerprint"] != fingerprint(cfg, d["kind"])
        ]
        say(f"{len(docs)} documents, {len(todo)} to ingest")
        failed: list[dict[str, str]] = []
        for i, d in enumerate(todo, 1):
            t = time.perf_counter()
            try:
                materialize(instance, cfg.overrides, ["page_images", "transcript_segments"], partition_key=d["doc_id"])
            except MmragError as e:  # a failed contract blocks this document, not the corpus
                failed.append({"source": d["source"], "error": str(e)})
                say(f"[{i}/{len(todo)}] {d['source']}: FAILED: {e}")
                continue
            row = catalog.document(d["doc_id"]) or {}
            say(
                f"[{i}/{len(todo)}] {d['source']}: {row.get('status')}, {row.get('n_pages', 0)} pages, "
                f"{row.get('n_segments', 0)} segments ({time.perf_counter() - t:.1f} s)"
            )
    return {
        "documents": len(docs), "ingested": len(todo) - len(failed), "failed": failed,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def index(cfg: MmragConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ingest where needed, embed every document whose rows are missing or stale (one Dagster run
    each; up-to-date documents are not even launched), then build the table-level indexes and the
    search sidecar."""
    from mmrag_assets.lib.catalog import Catalog
    from mmrag_assets.lib.index import table as lx
    from mmrag_assets.lib.index.embedding import get_embedder

    say = progress or (lambda _m: None)
    summary = ingest(cfg, progress)
    t0 = time.perf_counter()
    catalog = Catalog(cfg.catalog_path)
    embedder = get_embedder(cfg.model, cfg.models_dir)  # loaded once: the runs below reuse it
    tbl = lx.open_table(cfg, embedder.version_key, embedder.dim)
    docs = catalog.query("SELECT doc_id, source FROM documents WHERE status <> 'quarantined' ORDER BY source")
    with open_instance(cfg) as instance:
        done = instance.get_materialized_partitions(dg.AssetKey("item_embeddings"))
        todo = [d for d in docs if d["doc_id"] not in done or not lx.plan_document(catalog, tbl, embedder, d["doc_id"])[1]]
        say(f"{len(docs)} documents, {len(todo)} to embed with {embedder.version_key}")
        failed = list(summary["failed"])
        for i, d in enumerate(todo, 1):
            t = time.perf_counter()
            try:
                r = materialize(instance, cfg.overrides, ["item_embeddings"], partition_key=d["doc_id"])
            except MmragError as e:
                failed.append({"source": d["source"], "error": str(e)})
                say(f"[{i}/{len(todo)}] embed {d['source']}: FAILED: {e}")
                continue
            meta = _metadata(r, "item_embeddings")
            what = "unchanged" if meta.get("skipped") else f"{meta.get('items_embedded', 0)} items embedded"
            say(f"[{i}/{len(todo)}] embed {d['source']}: {what} ({time.perf_counter() - t:.1f} s)")
        try:
            meta = _metadata(materialize(instance, cfg.overrides, ["search_index"]), "search_index")
        except MmragError as e:  # e.g. a blocking embeddings contract upstream is failing
            failed.append({"source": "(search_index)", "error": str(e)})
            meta = {}
    say(f"index {meta.get('index_table')} v{meta.get('index_version')}: {meta.get('index_rows')} items")
    embedded = len(todo) - (len(failed) - len(summary["failed"]))
    return {**summary, "failed": failed, "embedded": embedded, "index_seconds": round(time.perf_counter() - t0, 2), "index": meta}


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for ev in result.get_asset_materialization_events():
        mat = ev.materialization
        if mat.asset_key.to_user_string() == asset:
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {}


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

"""Embedding and index assets: per-shard multi-vectors written as staged Lance fragments (any number
of embedding steps at once), then the single publisher commits them to the LanceDB table in one
transaction and builds the published search version from the documents whose blocking checks passed."""

import time

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext

from mmrag_assets.defs.index.automation import EMBEDDINGS_AUTOMATION, INDEX_AUTOMATION
from mmrag_assets.defs.shared import (
    EMBED,
    EMBED_TAGS,
    PUBLISHER,
    SINGLE_RUN,
    config_metadata,
    md_table,
    shards,
    text,
    when,
)
from mmrag_assets.lib.faults import fault_point
from mmrag_assets.lib.index.batch import embed_and_write, plan_embeddings
from mmrag_assets.lib.index.staging import commit_staged, staged_state, staging_for
from mmrag_assets.lib.ingest.corpus import shard_of
from mmrag_assets.lib.quality.gates import CATALOG_CHECKS, EMBEDDINGS_CHECK, gate_keys
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.storage import gc_remote_index, pull_index, push_index
from mmrag_assets.resources import CatalogResource, EmbedderResource, LanceStoreResource, MmragConfigResource


@dg.asset(
    partitions_def=shards,
    backfill_policy=SINGLE_RUN,
    deps=["page_images", "transcript_segments"],
    group_name="index",
    kinds={"lancedb", "pytorch"},
    automation_condition=EMBEDDINGS_AUTOMATION,
    pool=EMBED,
    op_tags=EMBED_TAGS,
)
def item_embeddings(
    context: AssetExecutionContext,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    lance: LanceStoreResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """Late-interaction multi-vectors of the pages, images and transcript windows of the run's
    shards, written as Lance fragments of the LanceDB table of the configured embedding version and
    staged (``lib/index/staging.py``): no table version holds them until ``search_index`` commits
    every staged batch at once, so embedding steps of several workers run side by side, and a step
    killed mid-way leaves nothing visible (its rerun resumes from the batches it finished)."""
    cfg, cat = mmrag.cfg, catalog.catalog
    keys = set(context.partition_keys)
    docs = [r for r in cat.live_documents() if shard_of(r["doc_id"]) in keys]
    sources = {r["doc_id"]: r["source"] for r in docs}
    held = {
        r["doc_id"]: f"{r['check_name']} failed"
        for r in cat.failing_checks(embedder.version_key, gate_keys(cfg.checks.contracts, cfg.model.dim))
        if r["check_name"] in CATALOG_CHECKS.values() and r["doc_id"] in sources
    }
    tbl = lance.table()
    staging = staging_for(mmrag.runtime, tbl)
    model = embedder.embedder
    plan = plan_embeddings(cat, tbl, model, list(sources), held, staged_state(staging.batches()))
    for d, why in plan.held.items():
        context.log.warning(f"{sources[d]}: not embedded, {why}")
    if plan.staged:
        context.log.info(f"{len(plan.staged)} documents already staged by an earlier run: not embedded again")
    store = mmrag.runtime.storage
    run = embed_and_write(
        tbl, model, plan.todo, cfg.storage_root, chunk_items=cfg.index.write_chunk_items, say=context.log.info,
        store=store if store.remote else None, staging=staging, run_id=context.run.run_id, reuse=plan.relabel,
    )  # fmt: skip
    fault_point("embed.staged")
    by_doc: dict[str, list[dict]] = {}
    for q in run.quarantined:
        by_doc.setdefault(q["doc_id"], []).append({k: v for k, v in q.items() if k != "doc_id"})
        context.log.warning(f"quarantined {q['source']}: {q['reason']}")
    for d in plan.todo:
        if d not in run.failed:
            cat.replace_quarantine(d, "embed", by_doc.get(d, []))
    for d, err in run.failed.items():
        cat.replace_quarantine(d, "embed", [{"source": sources[d], "reason": f"embedding failed: {err}"}])
        context.log.error(f"{sources[d]}: embedding failed: {err}")
    rows = [
        {
            "doc_id": d,
            "source": sources[d],
            "items": len(plan.todo[d]),
            "status": "failed: " + run.failed[d]
            if d in run.failed
            else ("renamed: rows rewritten, not embedded again" if d in plan.relabel else "embedded"),
        }
        for d in plan.todo
    ] + [
        {"doc_id": d, "source": sources[d], "items": "", "status": f"held back: {why}"}
        for d, why in plan.held.items()
    ]
    rows.sort(key=lambda r: r["source"])
    for key in keys:
        mine = [r for r in rows if shard_of(r["doc_id"]) == key]
        context.add_asset_metadata(
            {"documents": md_table(mine, ["source", "items", "status"])}, partition_key=key
        )
    tokens = np.array(run.tokens or [0])
    n_items = sum(len(v) for v in plan.todo.values())
    return dg.MaterializeResult(
        metadata={
            "documents_embedded": len(set(run.embedded_docs) - plan.relabel),
            "documents_relabelled": len(set(run.embedded_docs) & plan.relabel),
            "documents_unchanged": len(plan.unchanged) - len(plan.staged),
            "documents_resumed": len(plan.staged),
            "documents_held_back": len(plan.held),
            "documents_failed": len(run.failed),
            "failed_documents": dg.MetadataValue.json(
                [{"source": sources[d], "error": f"embedding failed: {e}"} for d, e in run.failed.items()]
            ),
            "items_embedded": run.written,
            "batches_staged": run.batches,
            "items_quarantined": len(run.quarantined),
            "tokens_per_item_mean": float(tokens.mean()),
            "tokens_per_item_p95": float(np.percentile(tokens, 95)),
            "items_per_s": round(n_items / run.seconds, 2) if run.seconds else 0.0,
            "bytes_written": run.bytes_written,
            "table": tbl.name,
            "table_version": text(int(tbl.version)),
            "model_id": model.model_id,
            "revision": model.revision,
            "device": model.device,
            "dtype": model.dtype,
            **config_metadata(cfg),
        }
    )


@dg.asset(
    deps=[item_embeddings],
    group_name="index",
    kinds={"lancedb"},
    automation_condition=INDEX_AUTOMATION,
    pool=PUBLISHER,
    op_tags=EMBED_TAGS,
)
def search_index(
    context: AssetExecutionContext,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    lance: LanceStoreResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The published search version of the current embedding version. First every staged batch of
    embeddings is committed to the LanceDB table in one transaction (``lib/index/staging.py``); then a
    new index version holds what changed in the table since the live one (a delta segment and
    tombstones; compaction or a codebook retrain when ``index.policy`` says so), the score
    calibration, and the table's BM25 and scalar indexes, from the documents whose every blocking
    check passed. Documents held back by a
    failed check are listed, never served."""
    from mmrag_assets.lib.index.publish import location_for, params_from_config, publish
    from mmrag_assets.lib.ingest.corpus import gc_pages

    cfg, cat = mmrag.cfg, catalog.catalog
    vk = embedder.version_key
    keys = gate_keys(cfg.checks.contracts, cfg.model.dim)
    tbl = lance.table()
    t0 = time.perf_counter()
    repaired = lx.repair_duplicates(tbl)
    if repaired:
        context.log.warning(
            f"repaired {len(repaired)} duplicated item ids in {tbl.name} (kept the newest row of each)"
        )
    rt = mmrag.runtime
    committed = commit_staged(tbl, staging_for(rt, tbl), cat, version_key=vk)
    if committed.batches:
        context.log.info(
            f"committed {committed.batches} staged batches ({committed.rows_added} rows of {committed.documents} "
            f"documents) in one transaction: table version {committed.version_before} -> {committed.version_after}"
        )
    for d in committed.dropped:
        context.log.warning(f"staged batch {d['batch']} not committed: {d['reason']}")
    allowed = cat.publishable_documents(list(CATALOG_CHECKS.values()), EMBEDDINGS_CHECK, vk, keys)
    held = cat.failing_checks(vk, keys)
    store = rt.storage
    pull_index(store, vk)  # an object-store root: continue from its live version, whoever published it
    res = publish(location_for(cfg, vk), tbl, embedder.embedder, params_from_config(cfg), allowed_doc_ids=allowed,
                  progress=context.log.info)  # fmt: skip
    uploaded = push_index(store, vk)  # files first, CURRENT last: replicas follow CURRENT
    bucket_gc = gc_remote_index(
        store, vk, grace_s=cfg.index.gc_grace_s
    )  # the bucket's old versions, same rule
    removed = gc_pages(rt, cat, referenced=set(), grace_s=cfg.storage.gc_grace_s)
    stats = lx.table_stats(tbl)
    for r in held:
        context.log.warning(f"{r['source']}: held back from the index ({r['check_name']} failed)")
    return dg.MaterializeResult(
        metadata={
            "index_table": stats["table"],
            "table_version": text(stats["version"]),
            "rows_in_table": stats["rows"],
            "embeddings_commit": dg.MetadataValue.json(committed.as_metadata()),
            "duplicates_repaired": len(repaired),
            "items_published": res.items,
            "documents_published": res.documents,
            "documents_held_back": len({r["doc_id"] for r in held}),
            "held_back": md_table(held, ["source", "check_name", "run_id"]),
            "bytes_per_item": round(res.bytes_per_item, 1),
            "rebuilt": res.changed,
            "index_version": text(res.version),
            "publish_action": res.action,
            "publish_reason": res.reason,
            "items_added": res.added,
            "items_removed": res.removed,
            "segments": res.segments,
            "tombstones": res.tombstones,
            "strategies": ", ".join(params_from_config(cfg).strategies),
            "built_at": when(res.published_at),
            "publish": dg.MetadataValue.json(res.as_metadata()),
            "page_folders_removed": len(removed),
            "storage_root": text(cfg.storage.root),
            "bytes_uploaded": uploaded,
            "object_store_gc": dg.MetadataValue.json(bucket_gc),
            "by_modality": md_table(
                lx.analytics(tbl, cfg.model.dim), ["modality", "items", "tokens_per_item", "documents"]
            ),
            "seconds": round(time.perf_counter() - t0, 2),
            **config_metadata(cfg),
        }
    )

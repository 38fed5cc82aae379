"""Embedding and index assets: per-document multi-vectors upserted into LanceDB, then the
table-level indexes (full text, scalar, first-stage structures, score calibration)."""

import time

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext

from mmrag_assets.defs.ingest.assets import config_metadata
from mmrag_assets.defs.ingest.partitions import documents_partitions
from mmrag_assets.defs.quality.automation import EMBEDDINGS_AUTOMATION, INDEX_AUTOMATION
from mmrag_assets.lib.catalog import Catalog
from mmrag_assets.lib.index import table as lx
from mmrag_assets.resources.mmrag import MmragResource


@dg.asset(
    partitions_def=documents_partitions,
    deps=["page_images", "transcript_segments"],
    group_name="index",
    kinds={"lancedb", "pytorch"},
    automation_condition=EMBEDDINGS_AUTOMATION,
)
def item_embeddings(context: AssetExecutionContext, mmrag: MmragResource) -> dg.MaterializeResult:
    """Late-interaction multi-vectors of one document's pages, images and transcript windows,
    upserted by item id into the LanceDB table of the configured embedding version."""
    from mmrag_assets.lib.index.embedding import get_embedder

    cfg = mmrag.config()
    catalog = Catalog(cfg.catalog_path)
    doc_id = context.partition_key
    embedder = get_embedder(cfg.model, cfg.models_dir)
    tbl = lx.open_table(cfg, embedder.version_key, embedder.dim)
    items, unchanged = lx.plan_document(catalog, tbl, embedder, doc_id)
    base = {"table": tbl.name, "model_id": embedder.model_id, "revision": embedder.revision, **config_metadata(cfg)}
    if unchanged:
        return dg.MaterializeResult(
            metadata={"skipped": "unchanged", "items": len(items), "table_version": int(tbl.version), **base}
        )
    t0 = time.perf_counter()
    vecs = lx.embed_items(embedder, items, cfg.storage_root)
    seconds = time.perf_counter() - t0
    out = lx.upsert_document(tbl, doc_id, items, vecs, embedder.dim)
    catalog.replace_quarantine(doc_id, "embed", out.quarantined)
    for q in out.quarantined:
        context.log.warning(f"quarantined {q['source']}: {q['reason']}")
    tokens = np.array(out.tokens or [0])
    return dg.MaterializeResult(
        metadata={
            "items_embedded": out.written,
            "items_deleted": out.deleted,
            "items_quarantined": len(out.quarantined),
            "tokens_per_item_mean": float(tokens.mean()),
            "tokens_per_item_p95": float(np.percentile(tokens, 95)),
            "items_per_s": round(len(items) / seconds, 3) if seconds else 0.0,
            "device": embedder.device,
            "dtype": embedder.dtype,
            "bytes_written": out.bytes_written,
            "table_version": int(tbl.version),
            **base,
        }
    )


@dg.asset(deps=[item_embeddings], group_name="index", kinds={"lancedb"}, automation_condition=INDEX_AUTOMATION)
def search_index(context: AssetExecutionContext, mmrag: MmragResource) -> dg.MaterializeResult:
    """Table-level structures of the current embedding version: BM25 full-text index, scalar
    indexes on modality and document id, the first-stage search sidecar and score calibration."""
    from mmrag_assets.lib.index.embedding import get_embedder
    from mmrag_assets.lib.index.sidecar import build_sidecar

    cfg = mmrag.config()
    embedder = get_embedder(cfg.model, cfg.models_dir)
    tbl = lx.open_table(cfg, embedder.version_key, embedder.dim)
    t0 = time.perf_counter()
    info = build_sidecar(cfg, tbl, embedder)
    stats = lx.table_stats(tbl)
    return dg.MaterializeResult(
        metadata={
            **{f"index_{k}": v for k, v in stats.items()},
            "by_modality": dg.MetadataValue.json(lx.analytics(tbl, embedder.dim)),
            "sidecar": dg.MetadataValue.json(info),
            "seconds": round(time.perf_counter() - t0, 2),
            **config_metadata(cfg),
        }
    )

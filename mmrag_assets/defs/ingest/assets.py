"""Ingestion assets: the corpus manifest, then per-document page images and transcript windows."""


from collections import Counter

import dagster as dg
from dagster import AssetExecutionContext

from mmrag_assets.defs.ingest.partitions import documents_partitions, reconcile_partitions
from mmrag_assets.lib.catalog import Catalog
from mmrag_assets.lib.ingest.corpus import locate, purge_documents, record_scan, scan
from mmrag_assets.lib.ingest.document import fingerprint, ingest_document
from mmrag_assets.resources.mmrag import MmragResource


def config_metadata(cfg) -> dict:
    return {"resolved_config": dg.MetadataValue.json(cfg.to_dict()), "overrides": " ".join(cfg.overrides) or "(none)"}


@dg.asset(group_name="ingest", kinds={"duckdb"})
def corpus_manifest(context: AssetExecutionContext, mmrag: MmragResource) -> dg.MaterializeResult:
    """Every file under ``corpus.root``: size, mtime, sha256, sniffed kind and status (ok,
    duplicate, quarantined with a reason). Registers one ``documents`` partition per distinct
    content and purges the rows of documents that left the corpus."""
    cfg = mmrag.config()
    catalog = Catalog(cfg.catalog_path)
    result = scan(cfg, catalog)
    record_scan(catalog, result)
    current = set(result.docs)
    purged = purge_documents(cfg, catalog, catalog.doc_ids() - current)
    added, removed = reconcile_partitions(context.instance, current)
    kinds = Counter(e.kind for e in result.docs.values())
    return dg.MaterializeResult(
        metadata={
            "files": len(result.entries),
            "documents": len(current),
            **{f"documents_{k}": kinds.get(k, 0) for k in ("pdf", "image", "audio", "video")},
            "quarantined": len(result.quarantined),
            "duplicates": sum(e.status == "duplicate" for e in result.entries),
            "partitions_added": len(added),
            "partitions_removed": len(removed),
            "documents_purged": purged,
            **config_metadata(cfg),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "page_images", group_name="ingest", deps=[corpus_manifest], kinds={"duckdb"},
            description="Rendered PDF pages, normalised standalone images and video keyframes, with text layers.",
        ),
        dg.AssetSpec(
            "transcript_segments", group_name="ingest", deps=[corpus_manifest], kinds={"duckdb"},
            description="Timestamped transcript windows of audio and video documents (faster-whisper + VAD).",
        ),
    ],
    partitions_def=documents_partitions,
    can_subset=False,
)
def document_content(context: AssetExecutionContext, mmrag: MmragResource):
    """One document: pages/images (PyMuPDF, Pillow, PyAV) and transcript windows (faster-whisper).
    Bad input becomes a quarantine row; unchanged documents are skipped (idempotent)."""
    cfg = mmrag.config()
    catalog = Catalog(cfg.catalog_path)
    doc_id = context.partition_key
    entry = locate(cfg, catalog, doc_id)
    existing = catalog.document(doc_id)
    if existing and existing["fingerprint"] == fingerprint(cfg, entry.kind) and existing["sha256"] == entry.sha256:
        if existing["source"] != entry.source:  # renamed or moved: same content, same rows
            with catalog.connect() as con:
                con.execute("UPDATE documents SET source = ? WHERE doc_id = ?", [entry.source, doc_id])
        meta = {"skipped": "unchanged", "source": entry.source, "pages": existing["n_pages"], "segments": existing["n_segments"]}
        yield dg.MaterializeResult(asset_key="page_images", metadata=meta)
        yield dg.MaterializeResult(asset_key="transcript_segments", metadata=meta)
        return
    res = ingest_document(cfg, source=entry.source, doc_id=doc_id, kind=entry.kind, sha256=entry.sha256, size=entry.size)
    catalog.write_document(res.doc, res.pages, res.segments, res.quarantine)
    for q in res.quarantine:
        context.log.warning(f"quarantined {q['source']} ({q['stage']}): {q['reason']}")
    common = {
        "source": entry.source, "kind": entry.kind, "status": res.status, "seconds": round(res.seconds, 3),
        "quarantine_reasons": "; ".join(q["reason"] for q in res.quarantine) or "(none)", **config_metadata(cfg),
    }
    yield dg.MaterializeResult(
        asset_key="page_images",
        metadata={
            "pages": len(res.pages),
            "pages_per_s": round(len(res.pages) / res.seconds, 2) if res.pages and res.seconds else 0.0,
            "text_chars": sum(len(p["text"]) for p in res.pages),
            **common,
        },
    )
    yield dg.MaterializeResult(
        asset_key="transcript_segments",
        metadata={
            "segments": len(res.segments),
            "duration_s": res.doc["duration_s"] or 0.0,
            "real_time_factor": round(res.seconds / res.doc["duration_s"], 4) if res.doc["duration_s"] else 0.0,
            **common,
        },
    )

"""Ingestion assets: the corpus manifest, then page images and transcript windows per shard."""

import time
from collections import Counter

import dagster as dg
from dagster import AssetExecutionContext

from mmrag_assets.defs.shared import SINGLE_RUN, WRITER, config_metadata, md_table, previews, shards
from mmrag_assets.lib.faults import fault_point
from mmrag_assets.lib.index.embedding.dense import prefetch_windows
from mmrag_assets.lib.ingest.corpus import (
    plan_ingest,
    purge_documents,
    record_scan,
    scan,
    shard_of,
    since_scan,
    since_scan_line,
)
from mmrag_assets.lib.ingest.document import OfficeConversions, ingest_document
from mmrag_assets.lib.ingest.objects import SourceChanged
from mmrag_assets.lib.progress import Progress
from mmrag_assets.lib.warm import for_job, warm_imports
from mmrag_assets.resources import CatalogResource, MmragConfigResource


@dg.asset(group_name="ingest", kinds={"duckdb"}, pool=WRITER)
def corpus_manifest(
    context: AssetExecutionContext, mmrag: MmragConfigResource, catalog: CatalogResource
) -> dg.MaterializeResult:
    """Every file under ``corpus.root``: size, mtime, sha256, sniffed kind and status (ok, duplicate,
    quarantined with a reason). Purges the catalog and index rows of documents that left the corpus."""
    rt, cfg, cat = mmrag.runtime, mmrag.cfg, catalog.catalog
    before = _object_stats(rt)
    result = scan(rt, cat)
    record_scan(cat, result)
    gone = cat.doc_ids() - set(result.docs)
    purged = purge_documents(rt, cat, gone)
    kinds = Counter(e.kind for e in result.docs.values())
    quarantined = [{"source": e.source, "kind": e.kind, "reason": e.reason} for e in result.quarantined]
    for q in quarantined:
        context.log.warning(f"quarantined {q['source']}: {q['reason']}")
    return dg.MaterializeResult(
        metadata={
            "files": len(result.entries),
            "documents": len(result.docs),
            **{
                f"documents_{k}": kinds.get(k, 0)
                for k in ("pdf", "image", "audio", "video", "office", "text")
            },
            "quarantined": len(quarantined),
            "quarantined_files": md_table(quarantined, ["source", "kind", "reason"]),
            "duplicates": sum(e.status == "duplicate" for e in result.entries),
            "documents_purged": purged,
            **_object_metadata(rt, before),
            **config_metadata(cfg),
        }
    )


def _object_stats(rt) -> dict[str, int]:
    if not rt.corpus_remote:
        return {}
    from mmrag_assets.lib.ingest.objects import corpus_objects

    return dict(corpus_objects(rt).stats)


def _object_metadata(rt, before: dict[str, int]) -> dict[str, int]:
    """An object-store corpus: this step's requests (GETs: objects downloaded; HEADs: ETags read)
    and cache hits on this machine."""
    if not rt.corpus_remote:
        return {}
    from mmrag_assets.lib.ingest.objects import corpus_objects, stats_delta

    d = stats_delta(before, dict(corpus_objects(rt).stats))
    return {
        "objects_downloaded": d.get("get", 0),
        "objects_bytes_downloaded": d.get("get_bytes", 0),
        "objects_head": d.get("head", 0),
        "objects_cache_hits": d.get("hit", 0),
        "objects_evicted": d.get("evicted", 0),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "page_images",
            group_name="ingest",
            deps=[corpus_manifest],
            kinds={"duckdb"},
            description="Rendered PDF pages, normalised standalone images and video keyframes, with text layers.",
        ),
        dg.AssetSpec(
            "transcript_segments",
            group_name="ingest",
            deps=[corpus_manifest],
            kinds={"duckdb"},
            description="Timestamped transcript windows of audio and video documents (faster-whisper + VAD).",
        ),
    ],
    partitions_def=shards,
    backfill_policy=SINGLE_RUN,
    can_subset=False,
    pool=WRITER,
)
def document_content(context: AssetExecutionContext, mmrag: MmragConfigResource, catalog: CatalogResource):
    """The documents of the run's shards: pages/images (PyMuPDF, Pillow, PyAV) and transcript
    windows (faster-whisper). New or changed documents are ingested, unchanged ones skipped, renamed
    ones relabelled; bad input becomes a quarantine row, and one document's failure never stops the others."""
    rt, cfg, cat = mmrag.runtime, mmrag.cfg, catalog.catalog
    keys = list(context.partition_keys)
    plan = plan_ingest(rt, cat, set(keys))
    cat.relabel(
        [(e.doc_id, e.source) for e in plan.renamed]
    )  # same content and settings: only the name changes
    for e in plan.changed_on_disk:
        context.log.warning(since_scan_line(e.source, e.reason))
    if plan.todo:  # the later steps' imports, while ingestion keeps the cores busy in native code
        warm_imports(for_job(context.run.job_name))
    done: list[dict] = []
    t_all = time.perf_counter()
    before = _object_stats(rt)
    progress = Progress("ingested", len(plan.todo), context.log.info, unit="documents")
    office = OfficeConversions(
        cfg.convert, None if rt.corpus_remote else rt.corpus_root, plan.todo
    )  # Office files converted a batch at a time, as they come up
    for e in plan.todo:
        try:
            res = ingest_document(
                rt,
                source=e.source,
                doc_id=e.doc_id,
                kind=e.kind,
                sha256=e.sha256,
                size=e.size,
                progress=lambda p, src=e.source: context.log.info(f"{src}: {p.line()}"),
                say=context.log.info,
                converted=office.take(e.doc_id),
            )
        except SourceChanged as moved:  # an object-store corpus: its download no longer matches the scan
            context.log.warning(since_scan_line(e.source, moved.what))
            progress.step(detail=f"last: {e.source}, {moved.what} after the scan, not ingested")
            continue
        if (moved := since_scan(rt, e)) is not None:  # while it was read: its rows may mix two versions
            context.log.warning(since_scan_line(e.source, moved))
            progress.step(detail=f"last: {e.source}, {moved} while it was read, not written")
            continue
        cat.write_document(
            {**res.doc, "run_id": context.run.run_id}, res.pages, res.segments, res.quarantine, ocr=res.ocr
        )
        # the dense channel's windows of this document start encoding on the other core now, while
        # the next document renders (the publish step of this run takes them)
        prefetch_windows(
            cfg.dense, [p.get("text") for p in res.pages] + [sg.get("text") for sg in res.segments]
        )
        for q in res.quarantine:
            context.log.warning(f"quarantined {q['source']} ({q['stage']}): {q['reason']}")
        thumbs = [
            (f"{e.source} p.{pg['page']}", rt.storage_root / (pg["thumb_path"] or pg["image_path"]))
            for pg in res.pages[:1]
        ]
        done.append(
            {
                "thumbs": thumbs,
                "source": e.source,
                "doc_id": e.doc_id,
                "kind": e.kind,
                "status": res.status,
                "pages": len(res.pages),
                "segments": len(res.segments),
                "seconds": round(res.seconds, 2),
                "ocr_images": res.ocr_stats.get("images", 0),
                "ocr_cached": res.ocr_stats.get("cached", 0),
                "reason": "; ".join(q["reason"] for q in res.quarantine),
            }
        )
        progress.step(
            detail=f"last: {e.source}, {res.status}, {len(res.pages)} pages, {len(res.segments)} segments"
        )
        fault_point("ingest.document")
    office.close()
    progress.done(
        f"{sum(d['status'] == 'quarantined' for d in done)} quarantined, {plan.unchanged} unchanged"
    )
    seconds = time.perf_counter() - t_all
    cols = ["source", "status", "pages", "segments", "seconds", "reason"]
    for key in keys:
        mine = [d for d in done if shard_of(d["doc_id"]) == key]
        for asset in ("page_images", "transcript_segments"):
            meta = {"shard_documents_ingested": len(mine), "documents": md_table(mine, cols)}
            if asset == "page_images":
                meta["previews"] = previews([t for d in mine for t in d["thumbs"]])
            context.add_asset_metadata(meta, asset_key=asset, partition_key=key)
    pages = sum(d["pages"] for d in done)
    common = {
        **_object_metadata(rt, before),
        "documents_ingested": len(done),
        "documents_unchanged": plan.unchanged,
        "documents_renamed": len(plan.renamed),
        "documents_quarantined": sum(d["status"] == "quarantined" for d in done),
        "seconds": round(seconds, 2),
        **config_metadata(cfg),
    }
    yield dg.MaterializeResult(
        asset_key="page_images",
        metadata={
            "pages": pages,
            "pages_per_s": round(pages / seconds, 2) if pages and seconds else 0.0,
            "ocr_images": sum(d["ocr_images"] for d in done),
            "ocr_cached": sum(d["ocr_cached"] for d in done),
            **common,
        },
    )
    yield dg.MaterializeResult(
        asset_key="transcript_segments", metadata={"segments": sum(d["segments"] for d in done), **common}
    )

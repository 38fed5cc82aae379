"""The two baselines a user could assemble in an afternoon, over the product's own extraction.

- **BM25**: LanceDB full-text search over the text the product extracted (PDF text layers,
  transcript windows). Scanned pages, images and keyframes have no text: BM25 cannot see them.
- **OCR + BM25**: the same, after OCRing (RapidOCR, PP-OCR models inside its wheel, on
  onnxruntime) every page image, standalone image and keyframe the product rendered whose text
  layer is not usable. OCR text is cached by the image's sha256. This is deliberately the
  minimal call with RapidOCR's defaults (what a user would write in an afternoon), not the
  product's own ``lib/ingest/ocr.py``, which the product's figures should reflect once ingestion
  uses it.

Items are the catalog's rows (``pages`` and ``segments`` of ``catalog.duckdb``), so a result is
judged exactly like the product's results (same item ids, sources, pages and time spans).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmrag_assets.lib.store.catalog import Catalog

USABLE_CHARS = 30  # a text layer with fewer non-space characters is treated as absent (OCR it)
_PUNCT = re.compile(r"[^\w\s]+")


def catalog_items(storage_root: Path) -> list[dict[str, Any]]:
    """Every retrievable item the product ingested: pages, images, keyframes, transcript windows,
    with the text a user would have without the product's OCR: an item whose text came from OCR
    alone (``text_source = 'ocr'``) has none here (the 'OCR + BM25' baseline OCRs it itself); the
    few ``layer+ocr`` pages keep the OCR lines the product appended to a short layer."""
    cat = Catalog(storage_root / "catalog.duckdb")
    pages = cat.query(
        """SELECT p.item_id, p.doc_id, d.source, p.modality, p.page, p.image_path,
                  CASE WHEN p.text_source = 'ocr' THEN '' ELSE coalesce(p.text, '') END AS text
           FROM pages p JOIN documents d USING (doc_id) WHERE d.status <> 'quarantined'"""
    )
    segs = cat.query(
        """SELECT s.item_id, s.doc_id, d.source, s.start_s, s.end_s, s.text
           FROM segments s JOIN documents d USING (doc_id) WHERE d.status <> 'quarantined'"""
    )
    items = [{**p, "start_s": None, "end_s": None} for p in pages]
    items += [{**s, "modality": "segment", "page": None, "image_path": None} for s in segs]
    return items


def source_kinds(storage_root: Path) -> dict[str, str]:
    rows = Catalog(storage_root / "catalog.duckdb").query(
        "SELECT source, kind FROM manifest WHERE kind <> 'unsupported'"
    )
    return {r["source"]: r["kind"] for r in rows}


class RapidOcr:
    """The minimal call a user would write: one engine, text lines joined, cached by image hash."""

    def __init__(self, cache: Path) -> None:
        from rapidocr import RapidOCR  # lazy: loads onnxruntime and the bundled models

        self.engine = RapidOCR()
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.calls = 0
        self.seconds = 0.0

    def text(self, image: Path) -> str:
        key = hashlib.sha256(image.read_bytes()).hexdigest()
        hit = self.cache / f"{key}.txt"
        if hit.exists():
            return hit.read_text(encoding="utf-8")
        t0 = time.perf_counter()
        out = self.engine(str(image))
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        text = "\n".join(out.txts or ()) if out is not None else ""
        hit.write_text(text, encoding="utf-8")
        return text


def with_ocr(
    items: list[dict[str, Any]], storage_root: Path, ocr: RapidOcr, progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Items whose text layer is not usable get their rendered image's OCR text."""
    todo = [it for it in items if it["image_path"] and len("".join(it["text"].split())) < USABLE_CHARS]
    out, t0 = [], time.perf_counter()
    done = 0
    for it in items:
        if it in todo:
            it = {**it, "text": (it["text"] + "\n" + ocr.text(storage_root / it["image_path"])).strip()}
            done += 1
            if done % 25 == 0 or done == len(todo):
                progress(
                    f"  OCR {done}/{len(todo)} images ({time.perf_counter() - t0:.0f} s, {ocr.calls} not cached)"
                )
        out.append(it)
    return out


class Bm25:
    """LanceDB's native full-text index (BM25) over the items' text."""

    def __init__(self, items: list[dict[str, Any]], where: Path, name: str) -> None:
        import lancedb
        from lancedb.index import FTS

        self.items = {it["item_id"]: it for it in items}
        db = lancedb.connect(str(where))
        rows = [{"item_id": it["item_id"], "text": it["text"] or ""} for it in items]
        schema = pa.schema([pa.field("item_id", pa.string()), pa.field("text", pa.string())])
        self.table = db.create_table(name, data=pa.Table.from_pylist(rows, schema=schema), mode="overwrite")
        self.table.create_index("text", config=FTS(), replace=True)

    def search(self, query: str, k: int) -> tuple[list[dict[str, Any]], float]:
        t0 = time.perf_counter()
        try:
            rows = self.table.search(query, query_type="fts").select(["item_id", "_score"]).limit(k).to_list()
        except Exception:  # noqa: BLE001 - a query the FTS parser rejects: retry with words only
            rows = (
                self.table.search(_PUNCT.sub(" ", query), query_type="fts")
                .select(["item_id", "_score"])
                .limit(k)
                .to_list()
            )
        ms = (time.perf_counter() - t0) * 1000
        out = []
        for rank, r in enumerate(rows, 1):
            it = self.items[r["item_id"]]
            out.append(
                {
                    "rank": rank,
                    "score": float(r["_score"]),
                    "item_id": it["item_id"],
                    "modality": it["modality"],
                    "source": it["source"],
                    "page": it["page"],
                    "start_s": it["start_s"],
                    "end_s": it["end_s"],
                }
            )
        return out, ms

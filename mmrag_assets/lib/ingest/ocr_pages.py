"""The OCR step of ingestion: decide which rendered pages, images and keyframes need OCR, run
it through the cache, and fold the text into the page rows.

Per item kind (each switchable in ``OcrPlan``):
- a standalone image or a video keyframe: OCRed whole; its text becomes the item's text
  (``text_source = ocr``);
- a PDF page without a usable text layer (``ocr_select.layer_usable``): OCRed whole; a layer that
  is printable but short (a stamp, a one-line page) is kept and the OCR lines it lacks appended
  (``layer+ocr``, or ``layer`` when OCR adds nothing, e.g. on a page rendered too small to read);
  an unprintable layer (broken font encoding) is replaced (``ocr``);
- a PDF page with a usable layer: its large raster images not already covered by layer words
  are OCRed as regions, and the lines the layer lacks are appended (``layer+ocr``), else the
  layer stays alone (``layer``).

The words and boxes that entered the text go to ``page_ocr`` rows, in pixels of the stored page
image. A failed image keeps its row (with whatever text it had) and yields a reason for the
quarantine table; nothing here raises for bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrag_assets.config import ocr_pdf_problems
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.ingest.ocr import OcrLine, OcrResult, OcrSettings, get_engine
from mmrag_assets.lib.ingest.ocr_batch import OcrCache, OcrOutcome, OcrProgress, OcrStats, OcrTask, ocr_batch
from mmrag_assets.lib.ingest.ocr_select import (
    PageGeometry,
    layer_stats,
    layer_usable,
    novel_lines,
    raster_regions,
)


@dataclass(frozen=True)
class OcrPlan:
    """What gets OCRed and with which engine settings (the ``ocr`` config group)."""

    settings: OcrSettings
    images: bool  # standalone images
    pdf_pages: bool  # PDF pages without a usable text layer
    pdf_images: bool  # raster images on PDF pages that have a usable layer
    keyframes: bool  # video keyframes
    min_layer_chars: int  # text-layer rule (ocr_select.layer_usable)
    min_printable_share: float
    min_image_area: float  # share of the page an embedded image must cover to be OCRed
    max_layer_coverage: float  # ... unless layer words cover this share of it already
    max_known_share: float  # an OCR line is dropped when this share of its words is in the layer


def plan_from_config(ocr: Any) -> OcrPlan | None:
    """The plan of an ``ocr`` config section (``config.OcrConfig``); None when OCR is off."""
    if ocr.engine == "none":
        return None
    settings = OcrSettings(
        languages=tuple(ocr.languages),
        min_confidence=ocr.min_confidence,
        max_pixels=ocr.max_pixels,
        max_side_px=ocr.max_side_px,
        det_max_side_px=ocr.det_max_side_px,
        direction=ocr.direction,
        threads=ocr.threads,
        batch_size=ocr.batch_size,
        rec_batch=ocr.rec_batch,
        det_model_path=ocr.det_model_path,
        rec_model_path=ocr.rec_model_path,
        cls_model_path=ocr.cls_model_path,
    )
    i, pdf = ocr.inputs, ocr.pdf
    problems = ocr_pdf_problems(pdf)  # the config's own range checks
    if problems:
        raise ConfigError(problems[0])
    return OcrPlan(
        settings=settings,
        images=i.images,
        pdf_pages=i.pdf_pages,
        pdf_images=i.pdf_images,
        keyframes=i.keyframes,
        min_layer_chars=pdf.min_layer_chars,
        min_printable_share=pdf.min_printable_share,
        min_image_area=pdf.min_image_area,
        max_layer_coverage=pdf.max_layer_coverage,
        max_known_share=pdf.max_known_share,
    )


# Keys of the ocr section that change how fast OCR runs, not what it produces: left out of the
# ingest fingerprint, so that tuning them does not re-ingest and re-embed a corpus.
RUNTIME_KEYS = (
    "threads",
    "batch_size",
    "rec_batch",
)  # rec_batch: padding, like threads' reduction order, moves a
# character at most (bench/ocr_settings.py: the same word recall at 1, 2, 3 and 6)


@dataclass
class OcrApplied:
    ocr_rows: list[dict[str, Any]] = field(default_factory=list)  # page_ocr rows
    reasons: list[str] = field(default_factory=list)  # one per failed image, for the quarantine table
    stats: OcrStats = field(default_factory=OcrStats)


def _what(kind: str, row: dict[str, Any]) -> str:
    if kind == "pdf":
        return f"page {row['page']}"
    if kind == "video":
        return f"keyframe at {row['t_s'] or 0:.1f} s"
    return "image"


def set_text_sources(pages: list[dict[str, Any]]) -> None:
    """``text_source`` before any OCR: ``layer`` where a row has text, else ``none``."""
    for row in pages:
        row["text_source"] = "layer" if (row.get("text") or "").strip() else "none"


def apply_ocr(
    pages: list[dict[str, Any]],
    *,
    kind: str,
    doc_id: str,
    source_path: Path,
    storage_root: Path,
    plan: OcrPlan,
    cache: OcrCache | None,
    progress: Callable[[OcrProgress], None] | None = None,
) -> OcrApplied:
    """OCR what ``plan`` asks for among one document's page rows; sets ``text`` and
    ``text_source`` on every row in place and returns the ``page_ocr`` rows."""
    out = OcrApplied()
    whole: dict[str, dict[str, Any]] = {}  # task id -> row
    layered: list[dict[str, Any]] = []
    set_text_sources(pages)
    for row in pages:
        wanted = {"image": plan.images, "video": plan.keyframes}.get(kind)
        if kind == "pdf":
            usable = layer_usable(
                row["text"] or "",
                min_chars=plan.min_layer_chars,
                min_printable_share=plan.min_printable_share,
            )
            if not usable and plan.pdf_pages:
                whole[row["item_id"]] = row
            elif usable and plan.pdf_images:
                layered.append(row)
        elif wanted:
            whole[row["item_id"]] = row
    regions = (
        raster_regions(
            source_path,
            [PageGeometry(r["page"], r["width"], r["height"]) for r in layered],
            min_image_area=plan.min_image_area,
            max_layer_coverage=plan.max_layer_coverage,
        )
        if layered
        else {}
    )
    tasks = [OcrTask(i, storage_root / r["image_path"]) for i, r in whole.items()]
    region_rows: dict[str, tuple[dict[str, Any], list[tuple[int, int, int, int]]]] = {}
    for row in layered:
        boxes = regions.get(row["page"], [])
        if boxes:
            region_rows[row["item_id"]] = (row, boxes)
            tasks += [
                OcrTask(
                    f"{row['item_id']}@{n}",
                    storage_root / row["image_path"],
                    region=b,
                    size=(row["width"], row["height"]),
                )
                for n, b in enumerate(boxes)
            ]
    if not tasks:
        return out
    outcomes = {o.id: o for o in ocr_batch(tasks, plan.settings, cache=cache, progress=progress)}
    out.stats.add(list(outcomes.values()))
    key = get_engine(plan.settings).key
    min_conf = plan.settings.min_confidence
    for item_id, row in whole.items():
        o = outcomes[item_id]
        if o.result is None:
            out.reasons.append(f"OCR of {_what(kind, row)} failed: {o.error}")
            continue
        res = o.result.filtered(min_conf)
        layer = row.get("text") or ""
        if kind == "pdf" and layer.strip() and layer_stats(layer).printable_share >= plan.min_printable_share:
            res = novel_lines(res, layer, max_known_share=plan.max_known_share)
            if res.lines:
                row["text"], row["text_source"] = f"{layer}\n\n{res.text}", "layer+ocr"
        else:
            row["text"], row["text_source"] = res.text, "ocr"
        out.ocr_rows.append(_ocr_row(doc_id, item_id, res, None, key))
    for item_id, (row, boxes) in region_rows.items():
        got = [outcomes[f"{item_id}@{n}"] for n in range(len(boxes))]
        for o in got:
            if o.result is None:
                out.reasons.append(f"OCR of an image on {_what(kind, row)} failed: {o.error}")
        merged = _merge_regions(
            [o for o in got if o.result is not None], row["width"], row["height"], min_conf
        )
        if merged is None:
            continue
        novel = novel_lines(merged, row["text"], max_known_share=plan.max_known_share)
        if novel.lines:
            row["text"], row["text_source"] = f"{row['text']}\n\n{novel.text}", "layer+ocr"
        out.ocr_rows.append(_ocr_row(doc_id, item_id, novel, [list(b) for b in boxes], key))
    return out


def _merge_regions(got: list[OcrOutcome], width: int, height: int, min_conf: float) -> OcrResult | None:
    if not got:
        return None
    lines: list[OcrLine] = []
    for o in got:
        assert o.result is not None
        lines.extend(o.result.filtered(min_conf).lines)
    return OcrResult(width, height, tuple(lines))


def _ocr_row(
    doc_id: str, item_id: str, res: OcrResult, regions: list[list[int]] | None, key: str
) -> dict[str, Any]:
    import json

    scores = [ln.score for ln in res.lines]
    d = res.to_dict()
    return {
        "item_id": item_id,
        "doc_id": doc_id,
        "width": res.width,
        "height": res.height,
        "regions": json.dumps(regions) if regions is not None else None,
        "n_lines": len(res.lines),
        "n_words": sum(len(ln.words) for ln in res.lines),
        "mean_score": sum(scores) / len(scores) if scores else None,
        "text": res.text,
        "lines": json.dumps(d["lines"], ensure_ascii=False, separators=(",", ":")),
        "engine_key": key,
    }

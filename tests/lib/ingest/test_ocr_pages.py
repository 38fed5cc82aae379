"""The OCR step of ingestion on real PDFs: which pages get OCR, what their text becomes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mmrag_assets.lib.ingest.ocr import OcrSettings, get_engine
from mmrag_assets.lib.ingest.ocr_batch import MemoryOcrCache
from mmrag_assets.lib.ingest.ocr_pages import OcrPlan, apply_ocr
from mmrag_assets.lib.ingest.render import render_pdf
from tests.tolerance import assert_has_line, assert_most_keywords, found_keywords

PLAN = OcrPlan(
    settings=OcrSettings(
        languages=("en",),
        min_confidence=0.5,
        max_pixels=50_000_000,
        max_side_px=2000,
        det_max_side_px=1280,
        direction=True,
        threads=0,
        batch_size=4,
    ),
    images=True,
    pdf_pages=True,
    pdf_images=True,
    keyframes=True,
    min_layer_chars=50,
    min_printable_share=0.9,
    min_image_area=0.03,
    max_layer_coverage=0.02,
    max_known_share=0.5,
)
LAYER = "Fix the stainless mounting bracket with four M8 anchor bolts and tighten them to 12 Nm. " * 3


def _chart_png() -> bytes:
    """A raster chart whose labels exist only as pixels (drawn by PyMuPDF, rasterised)."""
    import pymupdf

    d = pymupdf.open()
    p = d.new_page(width=300, height=120)
    p.insert_text((20, 40), "Wholesale 18%", fontname="helv", fontsize=16)
    p.insert_text((20, 80), "Online 47%", fontname="helv", fontsize=16)
    return p.get_pixmap(dpi=150, alpha=False).tobytes("png")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """A 4-page PDF: 1 good text layer; 2 a scan (image only); 3 a scan with a stray invisible
    stamp; 4 a good layer plus a raster chart. Rendered as page_images does it."""
    import pymupdf

    src = pymupdf.open()
    orig = src.new_page(width=595, height=842)
    orig.insert_textbox(
        pymupdf.Rect(56, 60, 540, 400),
        "Error code E04: DC insulation fault. Inspect the PV cables "
        "for damaged insulation and measure the insulation resistance.",
        fontname="helv",
        fontsize=14,
    )
    scan_pix = orig.get_pixmap(dpi=150, alpha=False)
    doc = pymupdf.open()
    p1 = doc.new_page(width=595, height=842)
    p1.insert_textbox(pymupdf.Rect(56, 60, 540, 400), LAYER, fontname="helv", fontsize=11)
    for n in (2, 3):
        p = doc.new_page(width=595, height=842)
        p.insert_image(p.rect, pixmap=scan_pix)
        if n == 3:
            p.insert_text((20, 830), "Scanned with CamScanner", fontsize=8, render_mode=3)
    p4 = doc.new_page(width=595, height=842)
    p4.insert_textbox(pymupdf.Rect(56, 60, 540, 300), LAYER, fontname="helv", fontsize=11)
    p4.insert_image(pymupdf.Rect(100, 400, 500, 560), stream=_chart_png())
    base = tmp_path_factory.mktemp("ocrpages")
    pdf = base / "mixed.pdf"
    doc.save(pdf)
    storage = base / "storage"
    r = render_pdf(
        pdf,
        storage / "pages" / "d",
        dpi=100,
        max_pages=10,
        target_pixels=4_000_000,
        image_format="png",
        jpeg_quality=90,
        thumbnail_px=128,
    )
    rows = [
        {
            "item_id": f"d:{p.page}",
            "page": p.page,
            "modality": "page",
            "width": p.width,
            "height": p.height,
            "text": p.text,
            "t_s": None,
            "image_path": Path(p.image_path).relative_to(storage).as_posix(),
        }
        for p in r.pages
    ]
    return pdf, storage, rows


def _apply(rendered, plan: OcrPlan = PLAN, cache=None):
    pdf, storage, rows = rendered
    rows = [dict(r) for r in rows]
    eng = get_engine(plan.settings)
    calls = eng.calls
    out = apply_ocr(
        rows,
        kind="pdf",
        doc_id="d",
        source_path=pdf,
        storage_root=storage,
        plan=plan,
        cache=cache if cache is not None else MemoryOcrCache(),
    )
    return {r["page"]: r for r in rows}, out, eng.calls - calls


def test_pages_without_a_usable_layer_are_ocred_and_good_layers_are_not(rendered) -> None:
    pages, out, calls = _apply(rendered)
    # pages 2 and 3 render to the same pixels (the stamp is invisible): one OCR serves both;
    # the chart on page 4 is the other; page 1 is not OCRed at all
    assert calls == 2
    assert pages[1]["text_source"] == "layer" and pages[1]["text"] == rendered[2][0]["text"]
    assert pages[2]["text_source"] == "ocr" and pages[3]["text_source"] == "layer+ocr"
    # OCR words with the tolerance of tests/tolerance.py (similarity >= 80): kernels differ by CPU
    for n in (2, 3):
        assert_most_keywords(["E04", "insulation"], pages[n]["text"].split(), f"page {n}", share=1.0)
    assert pages[3]["text"].startswith("Scanned with CamScanner")  # a printable stamp is kept, OCR appended
    assert pages[4]["text_source"] == "layer+ocr"
    assert pages[4]["text"].startswith(rendered[2][3]["text"])
    ocr_lines = pages[4]["text"][len(rendered[2][3]["text"]) :].splitlines()
    assert_has_line("Wholesale 18%", ocr_lines)
    assert_has_line("Online 47%", ocr_lines)
    rows = {r["item_id"]: r for r in out.ocr_rows}
    assert set(rows) == {"d:2", "d:3", "d:4"}
    assert out.reasons == [] and (out.stats.images, out.stats.cached, out.stats.failed) == (3, 1, 0)


def test_ocr_rows_hold_words_with_boxes_in_page_image_pixels(rendered) -> None:
    pages, out, _ = _apply(rendered)
    for r in out.ocr_rows:
        page = pages[int(r["item_id"].split(":")[1])]
        assert (r["width"], r["height"]) == (page["width"], page["height"])
        lines = json.loads(r["lines"])
        assert r["n_lines"] == len(lines) > 0 and r["n_words"] == sum(len(ln["words"]) for ln in lines)
        assert r["text"] == "\n".join(ln["text"] for ln in lines)
        for ln in lines:
            for w in ln["words"]:
                x0, y0, x1, y1 = w["box"]
                assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"]
    chart = next(r for r in out.ocr_rows if r["item_id"] == "d:4")
    ((rx0, ry0, rx1, ry1),) = json.loads(chart["regions"])
    zoom = 100 / 72  # the chart was placed at (100, 400)-(500, 560) pt on the page
    assert (rx0, ry0) == pytest.approx((100 * zoom, 400 * zoom), abs=2)
    for ln in json.loads(chart["lines"]):  # the chart's words sit inside the chart's region
        assert (
            rx0 <= ln["box"][0]
            and ln["box"][2] <= rx1 + 1
            and ry0 <= ln["box"][1]
            and ln["box"][3] <= ry1 + 1
        )


def test_switching_inputs_off_runs_no_ocr(rendered) -> None:
    off = replace(PLAN, pdf_pages=False, pdf_images=False)
    pages, out, calls = _apply(rendered, off)
    assert calls == 0 and out.ocr_rows == []
    assert [pages[n]["text_source"] for n in (1, 2, 3, 4)] == ["layer", "none", "layer", "layer"]


def test_an_unprintable_layer_is_replaced_by_ocr(rendered) -> None:
    pdf, storage, rows = rendered
    garbled = [dict(r) for r in rows]
    garbled[2]["text"] = "".join(chr(0xE000 + i) for i in range(30))  # broken font encoding on page 3
    pages, _, _ = _apply((pdf, storage, garbled))
    assert pages[3]["text_source"] == "ocr" and "\ue000" not in pages[3]["text"]
    assert found_keywords(["E04"], pages[3]["text"].split())[0]


def test_a_failing_image_keeps_its_row_and_gives_a_reason(rendered) -> None:
    small = replace(PLAN, settings=replace(PLAN.settings, max_pixels=100_000))  # every page is ~1 MP
    pages, out, calls = _apply(rendered, small)
    assert calls == 0 and len(out.reasons) == 3
    assert out.reasons[0].startswith("OCR of page 2 failed: OCR input is 827x1170")
    assert "over ocr.max_pixels=0.1 MP" in out.reasons[0]
    assert out.reasons[2].startswith("OCR of an image on page 4 failed")
    assert pages[2]["text_source"] == "none" and pages[4]["text_source"] == "layer"

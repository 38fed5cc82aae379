"""OCR end to end: real Dagster runs over a scanned PDF, a screenshot and a text PDF, then search."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.ingest.ocr_pages import plan_from_config
from mmrag_assets.lib.search.searcher import search
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.orchestration.launch import index, ingest
from tests.tolerance import assert_most_keywords, closest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCAN = "scans/inverter manual page 4 (scanned).pdf"
SHOT = "screens/proxy dialog.png"
TEXT = "manuals/pump guide.pdf"


def _corpus(root: Path) -> None:
    """A scanned page (rendered from a real PDF page, re-saved as an image-only PDF with a stray
    invisible stamp), a screenshot of a dialog and a PDF with a good text layer."""
    import pymupdf

    src = pymupdf.open()
    p = src.new_page(width=595, height=842)
    p.insert_text((56, 80), "4. Error codes and remedies", fontname="hebo", fontsize=15)
    rows = [
        ("E04", "DC insulation fault: inspect the PV cables"),
        ("E05", "Ground fault current detected"),
        ("E06", "Heatsink over-temperature: clean the fan filter"),
    ]
    for i, (code, text) in enumerate(rows):
        p.insert_text((56, 130 + 28 * i), f"{code}   {text}", fontname="helv", fontsize=12)
    scan = pymupdf.open()
    sp = scan.new_page(width=595, height=842)
    sp.insert_image(sp.rect, pixmap=p.get_pixmap(dpi=150, alpha=False))
    sp.insert_text((20, 830), "Scanned with CamScanner", fontsize=7, render_mode=3)
    (root / "scans").mkdir(parents=True)
    scan.save(root / SCAN)

    dlg = pymupdf.open()
    d = dlg.new_page(width=420, height=130)
    d.insert_text((12, 24), "Connection settings", fontname="hebo", fontsize=13)
    d.insert_text((16, 62), "Proxy server: gateway.corp.example port 3128", fontname="helv", fontsize=11)
    d.insert_text((16, 92), "Bypass proxy for local addresses", fontname="helv", fontsize=11)
    (root / "screens").mkdir()
    d.get_pixmap(dpi=144, alpha=False).save(root / SHOT)

    doc = pymupdf.open()
    for body in (
        "Prime the centrifugal pump before the first start; never run it dry.",
        "Replace the mechanical seal when water drips from the pump housing.",
    ):
        doc.new_page().insert_textbox(pymupdf.Rect(56, 60, 540, 300), body * 3, fontname="helv", fontsize=11)
    (root / "manuals").mkdir()
    doc.save(root / TEXT)


@pytest.fixture(scope="module")
def ocr_indexed(tmp_path_factory: pytest.TempPathFactory):
    from mmrag_assets.lib.ingest.ocr import get_engine

    base = tmp_path_factory.mktemp("ocr-e2e")
    _corpus(base / "corpus")
    cfg = load_config([f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", "model=lite"])
    eng = get_engine(plan_from_config(cfg.ocr).settings)
    calls = eng.calls
    summary = index(cfg)
    return cfg, summary, eng, eng.calls - calls


def _pages(cfg, source: str) -> list[dict]:
    return Catalog(cfg.catalog_path).query(
        "SELECT p.* FROM pages p JOIN documents d USING (doc_id) WHERE d.source = ? ORDER BY p.page", [source]
    )


def test_scanned_page_and_screenshot_get_ocr_text_and_the_text_pdf_does_not(ocr_indexed) -> None:
    cfg, summary, _, calls = ocr_indexed
    assert summary["failed"] == [] and calls == 2, "the scan and the screenshot; the text PDF is not OCRed"
    (scan,) = _pages(cfg, SCAN)
    assert scan["text_source"] == "layer+ocr"  # the printable stamp stays, the OCR text follows it
    assert scan["text"].startswith("Scanned with CamScanner")
    # OCR words with the tolerance of tests/tolerance.py (similarity >= 80): kernels differ by CPU
    assert_most_keywords(["E04", "insulation"], scan["text"].split(), SCAN, share=1.0)
    (shot,) = _pages(cfg, SHOT)
    assert shot["text_source"] == "ocr"
    assert_most_keywords(["gateway.corp.example", "3128"], shot["text"].split(), SHOT, share=1.0)
    assert [p["text_source"] for p in _pages(cfg, TEXT)] == ["layer", "layer"]
    cat = Catalog(cfg.catalog_path)
    rows = {r["item_id"]: r for r in cat.query("SELECT * FROM page_ocr")}
    assert set(rows) == {scan["item_id"], shot["item_id"]}
    r = rows[shot["item_id"]]
    assert (r["width"], r["height"]) == (shot["width"], shot["height"]) and r["regions"] is None
    lines = json.loads(r["lines"])
    proxy = closest("Proxy server: gateway.corp.example port 3128", lines, lambda ln: ln["text"])
    assert proxy is not None and closest("3128", proxy["words"], lambda w: w["text"]) is not None, lines
    assert cat.scalar("SELECT count(*) FROM ocr_cache") == 2
    # what the search page draws: word boxes in the stored image's pixels
    web = cat.ocr_boxes([shot["item_id"], "no-such-item"])
    assert set(web) == {shot["item_id"]}
    w = web[shot["item_id"]]
    assert (w["image_width"], w["image_height"]) == (shot["width"], shot["height"])
    port = closest("3128", w["boxes"], lambda b: b["text"])
    assert port is not None, w["boxes"]
    assert 0 <= port["x0"] < port["x1"] <= shot["width"] and 0 <= port["y0"] < port["y1"] <= shot["height"]


def test_ocr_text_is_found_by_search(ocr_indexed) -> None:
    cfg = ocr_indexed[0]
    hit = search("what does error E04 DC insulation fault mean", k=3, cfg=cfg).results[0]
    assert (hit.source, hit.page, hit.modality) == (SCAN, 1, "page")
    shot = search("which proxy server and port", k=3, cfg=cfg).results[0]
    assert (shot.source, shot.modality) == (SHOT, "image")
    lexical_only = load_config([*cfg.overrides, "search.reranker=none"])
    assert search("gateway.corp.example 3128", k=1, cfg=lexical_only).results[0].source == SHOT


def test_reingest_rerenders_but_never_ocrs_twice(ocr_indexed) -> None:
    """Another thumbnail size re-renders every page (new fingerprint); the pixels are the same,
    so every OCR comes from the cache, and the rows are as before."""
    cfg, _, eng, _ = ocr_indexed
    before = {p["item_id"]: p["text"] for s in (SCAN, SHOT) for p in _pages(cfg, s)}
    again = load_config([*cfg.overrides, "ingest.thumbnail_px=200"])
    calls = eng.calls
    summary = ingest(again)
    assert summary["ingested"] == 3 and eng.calls == calls
    assert {p["item_id"]: p["text"] for s in (SCAN, SHOT) for p in _pages(again, s)} == before
    # threads only change speed: no re-ingest at all
    fast = load_config([*again.overrides, "ocr.threads=1"])
    assert ingest(fast)["ingested"] == 0


def test_ocr_none_turns_it_off_and_a_huge_image_is_quarantined(ocr_indexed) -> None:
    cfg, _, eng, _ = ocr_indexed
    calls = eng.calls
    off = load_config([*cfg.overrides, "ocr=none"])
    ingest(off)
    assert eng.calls == calls
    (scan,) = _pages(off, SCAN)
    assert scan["text_source"] == "layer" and "E04" not in scan["text"]  # only the stray stamp is left
    (shot,) = _pages(off, SHOT)
    assert (shot["text_source"], shot["text"]) == ("none", "")
    assert Catalog(off.catalog_path).scalar("SELECT count(*) FROM page_ocr") == 0

    capped = load_config([*cfg.overrides, "ocr.max_pixels=100000"])  # the pages are 1-2 MP
    ingest(capped)
    cat = Catalog(capped.catalog_path)
    q = cat.query("SELECT source, stage, reason FROM quarantine WHERE stage = 'ocr' ORDER BY source")
    assert [r["source"] for r in q] == [SCAN, SHOT]
    assert re.fullmatch(
        r"OCR of page 1 failed: OCR input is 1240x175\d = 2\.2 MP, over ocr\.max_pixels=0\.1 MP",
        q[0]["reason"],
    )
    assert "over ocr.max_pixels=0.1 MP" in q[1]["reason"]
    docs = {r["source"]: r["status"] for r in cat.query("SELECT source, status FROM documents")}
    assert docs == {SCAN: "partial", SHOT: "partial", TEXT: "ok"}
    assert len(_pages(capped, SHOT)) == 1, "the image keeps its row, without OCR text"

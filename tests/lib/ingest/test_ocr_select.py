"""Which PDF pages and regions need OCR, on real PDFs written with PyMuPDF."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mmrag_assets.lib.ingest.ocr import OcrLine, OcrResult
from mmrag_assets.lib.ingest.ocr_select import (
    PageGeometry,
    layer_stats,
    layer_usable,
    novel_lines,
    raster_regions,
)

RULE = {"min_chars": 50, "min_printable_share": 0.9}
REGIONS = {"min_image_area": 0.03, "max_layer_coverage": 0.02}


def test_text_layer_rule() -> None:
    page = "Switch the DC isolator to OFF before touching any cable. Each PV string connects with MC4."
    assert layer_usable(page, **RULE)
    assert not layer_usable("", **RULE)
    assert not layer_usable("Scanned with CamScanner\n12", **RULE)  # stray stamp on a scan
    garbage = "".join(chr(0xE000 + i % 200) for i in range(300)) + " ok"  # broken font encoding
    s = layer_stats(garbage)
    assert s.chars == 302 and s.printable_share < 0.01
    assert not layer_usable(garbage, **RULE)
    assert layer_stats("a\x00b\ufffd").printable_share == 0.5


def _png(w: int, h: int, text: str = "") -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (w, h), (240, 240, 250))
    if text:
        ImageDraw.Draw(im).text((10, 10), text, fill="black")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Page 1: text + big chart image; 2: the same under an invisible OCR layer; 3: text + icon;
    4: text only; 5: rotated page with a big image."""
    import pymupdf

    doc = pymupdf.open()
    body = "Quarterly revenue grew in every region. " * 8
    chart = pymupdf.Rect(100, 300, 500, 600)
    for n in range(5):
        p = doc.new_page(width=595, height=842)
        p.insert_textbox(pymupdf.Rect(56, 60, 540, 250), body, fontname="helv", fontsize=11)
        if n in (0, 1, 4):
            p.insert_image(chart, stream=_png(400, 300, "Online 42%"))
        if n == 1:  # what OCR tools leave on a scan: the words, invisible, over the picture
            for i in range(14):
                p.insert_text(
                    (110, 320 + i * 20),
                    "Online retail wholesale share of revenue",
                    fontsize=12,
                    render_mode=3,
                )
        if n == 2:
            p.insert_image(pymupdf.Rect(500, 20, 530, 50), stream=_png(30, 30))
        if n == 4:
            p.set_rotation(90)
    path = tmp_path_factory.mktemp("sel") / "doc.pdf"
    doc.save(path)
    return path


def test_raster_regions_finds_uncovered_images_in_pixel_coordinates(pdf: Path) -> None:
    zoom = 150 / 72
    geo = [PageGeometry(n, round(595 * zoom), round(842 * zoom)) for n in range(1, 5)]
    geo.append(PageGeometry(5, round(842 * zoom), round(595 * zoom)))  # rotated: landscape render
    regions = raster_regions(pdf, geo, **REGIONS)
    assert set(regions) == {1, 5}, regions  # 2: covered by its invisible layer; 3: icon; 4: no image
    (box,) = regions[1]
    assert box == pytest.approx((100 * zoom, 300 * zoom, 500 * zoom, 600 * zoom), abs=2)
    (rbox,) = regions[5]
    w, h = rbox[2] - rbox[0], rbox[3] - rbox[1]
    assert w == pytest.approx(300 * zoom, abs=2) and h == pytest.approx(
        400 * zoom, abs=2
    )  # turned with the page
    assert 0 <= rbox[0] and rbox[2] <= geo[4].width and rbox[3] <= geo[4].height


def _line(text: str) -> OcrLine:
    return OcrLine(text, 0.99, (0, 0, 10, 10), ((0, 0), (10, 0), (10, 10), (0, 10)))


def test_novel_lines_keeps_only_what_the_layer_lacks() -> None:
    res = OcrResult(
        100,
        100,
        (_line("Quarterly revenue grew"), _line("Online 42%"), _line("revenue by Wholesale"), _line("--")),
    )
    out = novel_lines(res, "Quarterly revenue grew in every region.", max_known_share=0.5)
    assert [ln.text for ln in out.lines] == ["Online 42%", "revenue by Wholesale"]

"""Which parts of a PDF need OCR: pages without a usable text layer, and raster images on pages
that have one.

A text layer is *usable* when it has at least ``min_chars`` non-blank characters and at least
``min_printable_share`` of them are printable (not control, private-use or unassigned code
points, not U+FFFD). Measured on 8 Debian documentation PDFs (524 pages): the sparsest real page
has 95 non-blank characters and every page is >= 99.7 % printable, while the stray invisible text
that scanning tools stamp on image-only pages ("Scanned with CamScanner": 20, a page number or a
Bates id: under 15) stays far below 50. Broken font encodings come out as private-use or control
code points. A page that fails the rule is OCRed whole; its layer is dropped only when it is
unprintable, else kept with the OCR lines it lacks (a short layer can be right where OCR reads
nothing, e.g. a page rendered at a low DPI).

On a page whose layer is usable, an embedded raster image covering at least
``min_image_area`` of the page is OCRed as a region unless layer words already cover it
(``max_layer_coverage``: share of the region's area under layer word boxes). An invisible OCR
layer rebuilt over rasterised pages of the same PDFs covered 11.5 % of the page at the median,
3 % at the 5th percentile and 0.6 % at the least (a title page); a full-page scan carrying only a
stamp covers far under 1 %. So a low bar (2 %) costs at worst one redundant OCR of a sparse
page, and OCR lines whose words the layer already holds are dropped (``novel_lines``), so the
page text gains only what its pixels add (``text_source = layer+ocr``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmrag_assets.lib.ingest.ocr import Box, OcrLine, OcrResult

if TYPE_CHECKING:
    import pymupdf


@dataclass(frozen=True)
class LayerStats:
    chars: int  # non-whitespace characters
    printable_share: float  # of those, the share that are real printable characters (0 when chars == 0)


def layer_stats(text: str) -> LayerStats:
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return LayerStats(0, 0.0)
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c)[0] == "C")
    return LayerStats(len(chars), 1.0 - bad / len(chars))


def layer_usable(text: str, *, min_chars: int, min_printable_share: float) -> bool:
    s = layer_stats(text)
    return s.chars >= min_chars and s.printable_share >= min_printable_share


@dataclass(frozen=True)
class PageGeometry:
    page: int  # 1-based
    width: int  # rendered page image size in pixels
    height: int


def raster_regions(
    pdf: Path,
    pages: list[PageGeometry],
    *,
    min_image_area: float,
    max_layer_coverage: float,
) -> dict[int, list[Box]]:
    """Page number -> pixel boxes of embedded raster images worth OCRing on that page.

    Overlapping images are merged into one region; regions already covered by layer words
    (an invisible OCR layer) are left out.
    """
    import pymupdf

    out: dict[int, list[Box]] = {}
    with pymupdf.open(pdf) as doc:
        for g in pages:
            page = doc.load_page(g.page - 1)
            regions = _page_regions(page, min_image_area, max_layer_coverage)
            if not regions:
                continue
            sx, sy = g.width / page.rect.width, g.height / page.rect.height
            out[g.page] = [
                (
                    int(r.x0 * sx),
                    int(r.y0 * sy),
                    min(g.width, int(r.x1 * sx + 0.999)),
                    min(g.height, int(r.y1 * sy + 0.999)),
                )
                for r in regions
            ]
    return out


def _page_regions(page: pymupdf.Page, min_image_area: float, max_layer_coverage: float) -> list[pymupdf.Rect]:
    import pymupdf

    prect = page.rect
    page_area = prect.width * prect.height
    if page_area <= 0:
        return []
    rot = page.rotation_matrix  # image and word boxes are unrotated; the render is not
    rects = []
    for info in page.get_image_info():
        r = (pymupdf.Rect(info["bbox"]) * rot) & prect
        if not r.is_empty:
            rects.append(r)
    merged = _merge(rects)
    keep = [r for r in merged if r.width * r.height >= min_image_area * page_area]
    if not keep:
        return []
    words = [pymupdf.Rect(w[:4]) * rot for w in page.get_text("words")]
    return [r for r in keep if _coverage(r, words) < max_layer_coverage]


def _merge(rects: list[pymupdf.Rect]) -> list[pymupdf.Rect]:
    rects = [r for r in rects]
    merged = True
    while merged:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                if rects[i].intersects(rects[j]):
                    rects[i] = rects[i] | rects[j]
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    return rects


def _coverage(region: pymupdf.Rect, words: list[pymupdf.Rect]) -> float:
    area = region.width * region.height
    if area <= 0:
        return 1.0
    covered = sum((w & region).width * (w & region).height for w in words if w.intersects(region))
    return covered / area


_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def novel_lines(result: OcrResult, layer_text: str, *, max_known_share: float) -> OcrResult:
    """Only the OCR lines that the text layer does not already hold.

    A line is dropped when more than ``max_known_share`` of its tokens occur in the layer.
    """
    known = set(tokens(layer_text))
    keep: list[OcrLine] = []
    for ln in result.lines:
        toks = tokens(ln.text)
        if not toks:
            continue
        if sum(t in known for t in toks) / len(toks) <= max_known_share:
            keep.append(ln)
    return OcrResult(result.width, result.height, tuple(keep), result.seconds)

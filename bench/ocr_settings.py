"""OCR engine settings chosen by measurement (issue 23): text-line batch size of the recogniser and
detector resolution, CPU time against word recall, every variant on the same images in one run.

    uv run python bench/ocr_settings.py [--pages 6] [--shots 20] [--rounds 2] [--no-write]

Material (real text, so recall has a ground truth; bench/ingest_ocr.py makes it):
- *scanned pages*: the first ``--pages`` pages of Debian's gnuplot.pdf rasterised at 150 DPI (the
  text layer is the truth);
- *screenshots*: ``--shots`` 900x300 crops of rendered gnuplot pages (the words inside the crop);
- *Doxygen screenshots*: the 9 raster regions that the OCR step reads on the 10-page Doxygen PDF of
  bench/index_speed.py (real UI screenshots; no ground truth: agreement with the default engine).

Variants: the configured engine (``conf/ocr``) and the same engine with one setting changed:
``ocr.rec_batch`` (text lines recognised per call, padded to the widest; RapidOCR's default 6) and
``ocr.det_max_side_px``. Images go through every variant in turn, image by image and round by round,
so that all see the same machine load; CPU seconds (user + sys of this process, every ORT thread)
and wall seconds are summed per variant. Word recall as in bench/ingest_ocr.py: the share of the
truth's distinct words (3+ letters) found in the OCR text. Writes the section "OCR settings".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import commit, emit, table
from bench.index_speed import build_corpus
from bench.ingest import real_pdf
from bench.ingest_ocr import make_material, words

VARIANTS = {  # name -> OcrSettings changes (from conf/ocr)
    "configured (conf/ocr)": {},
    "rec_batch 6 (RapidOCR's default)": {"rec_batch": 6},
    "rec_batch 1": {"rec_batch": 1},
    "rec_batch 2": {"rec_batch": 2},
    "det_max_side_px 960": {"det_max_side_px": 960},
}


HEADERS = ["variant", "pages CPU s", "pages recall", "screenshots CPU s", "screenshots recall",
           "Doxygen CPU s", "Doxygen words kept"]  # fmt: skip


def doxygen_regions() -> list:
    """RGB crops of the raster regions the OCR step reads on the added Doxygen PDF's pages."""
    import pymupdf

    from mmrag_assets.config import load_config
    from mmrag_assets.lib.ingest.ocr_select import PageGeometry, layer_usable, raster_regions

    cfg = load_config([])
    _, added, _ = build_corpus(620)
    doc = pymupdf.open(added)
    out = []
    geo, pix = [], {}
    for i, page in enumerate(doc, 1):
        p = page.get_pixmap(dpi=cfg.ingest.dpi, alpha=False)
        pix[i] = p
        if layer_usable(
            page.get_text(),
            min_chars=cfg.ocr.pdf.min_layer_chars,
            min_printable_share=cfg.ocr.pdf.min_printable_share,
        ):
            geo.append(PageGeometry(i, p.width, p.height))
    import numpy as np

    regions = raster_regions(
        added,
        geo,
        min_image_area=cfg.ocr.pdf.min_image_area,
        max_layer_coverage=cfg.ocr.pdf.max_layer_coverage,
    )
    for pg, boxes in regions.items():
        img = np.frombuffer(pix[pg].samples, dtype=np.uint8).reshape(pix[pg].height, pix[pg].width, 3)
        out += [img[y0:y1, x0:x1].copy() for x0, y0, x1, y1 in boxes]
    return out


def engine(changes: dict, base):
    from mmrag_assets.lib.ingest.ocr import OcrEngine

    return OcrEngine(replace(base, **changes))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--shots", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from mmrag_assets.config import load_config
    from mmrag_assets.lib.ingest.ocr_batch import load_rgb
    from mmrag_assets.lib.ingest.ocr_pages import plan_from_config

    base = plan_from_config(load_config([]).ocr).settings
    src, src_name = real_pdf(args.pages)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mmrag-ocr-settings-") as tmp:
        m = make_material(src, args.pages, args.shots, Path(tmp) / "m")
        import pymupdf

        scan = pymupdf.open(m["scan_pdf"])
        sets = {
            "scanned pages": (
                [load_rgb(pg.get_pixmap(dpi=150, alpha=False).tobytes("png"), max_pixels=10**9) for pg in scan],
                m["truth_pages"],
            ),
            "screenshots": ([load_rgb(p, max_pixels=10**9) for p in m["shots"]], m["truth_shots"]),
            "Doxygen screenshots": (doxygen_regions(), None),
        }  # fmt: skip
        engines = {name: engine(c, base) for name, c in VARIANTS.items()}
        for e in engines.values():  # sessions load lazily: warm each one on an image not measured
            e.recognise(sets["screenshots"][0][0][:120])
        acc = {(v, s): {"cpu": 0.0, "wall": 0.0, "texts": []} for v in engines for s in sets}
        for r in range(args.rounds):
            for s, (imgs, _) in sets.items():
                for img in imgs:
                    for v, e in engines.items():
                        c, t = time.process_time(), time.perf_counter()
                        text = e.recognise(img).filtered(base.min_confidence).text
                        a = acc[(v, s)]
                        a["cpu"] += time.process_time() - c
                        a["wall"] += time.perf_counter() - t
                        if r == 0:
                            a["texts"].append(text)
            print(f"round {r + 1} done", flush=True)
    load1 = os.getloadavg()

    ref = next(iter(VARIANTS))
    rows, out = [], {}
    for v in engines:
        row = [v]
        for s, (imgs, truth) in sets.items():
            a = acc[(v, s)]
            cpu = a["cpu"] / args.rounds
            if truth is not None:
                hit = sum(len(words(t) & words(g)) for t, g in zip(truth, a["texts"], strict=True))
                tot = sum(len(words(t)) for t in truth)
                q = hit / tot
            else:  # agreement with the configured engine's words
                mine = set().union(*(words(t) for t in a["texts"]))
                theirs = set().union(*(words(t) for t in acc[(ref, s)]["texts"]))
                q = len(mine & theirs) / max(len(theirs), 1)
            row += [round(cpu, 2), round(q, 3)]
            out[f"{v} | {s}"] = {"cpu_s": cpu, "wall_s": a["wall"] / args.rounds, "quality": q}
        rows.append(row)
    print(json.dumps(out, indent=1))
    n = {s: len(imgs) for s, (imgs, _) in sets.items()}
    body = (
        f"`bench/ocr_settings.py --pages {args.pages} --shots {args.shots} --rounds {args.rounds}` at `{commit()}`: the "
        f"configured RapidOCR engine\n(PP-OCRv6 small, `conf/ocr`) and variants of one setting, on {n['scanned pages']} "
        f"scanned pages and {n['screenshots']} screenshots of\n{src_name} (word recall against the text layer) and the "
        f"{n['Doxygen screenshots']} screenshot regions of the 10-page Doxygen PDF of\nbench/index_speed.py (share of the "
        "configured engine's words also read). Each image goes through every variant in\nturn; CPU s per round "
        f"(user + sys, every ORT thread). Load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end, on 2\n"
        "cores shared with other jobs.\n\n" + table(HEADERS, rows) + "\n"
    )
    emit("OCR settings", body, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

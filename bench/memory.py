"""Peak memory of `mmrag index` against document size: one PDF of 30, 100 and 300 pages (text,
vector drawings and an embedded raster image on every page), each indexed by a fresh `mmrag index`
process on its own storage root; the figure is the process's peak RSS (``ru_maxrss`` of the
child), the baseline the 30-page document in the same run. Target: 300 pages at most 1.2x 30.

    uv run python bench/memory.py [--pages 30 100 300] [--tier lite] [--no-write]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import table, write_section

WORDS = ["inverter", "battery", "voltage", "panel", "roof", "mounting", "bracket", "torque", "firmware", "router",
         "reset", "wifi", "password", "revenue", "quarter", "region", "sales", "lighthouse", "coast", "diagram",
         "network", "cable", "switch", "install", "warranty"]  # fmt: skip


def make_pdf(path: Path, pages: int) -> None:
    import numpy as np
    import pymupdf
    from PIL import Image

    rng = np.random.default_rng(pages)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    doc = pymupdf.open()
    for p in range(pages):
        page = doc.new_page()
        for line in range(30):
            words = " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 12))
            page.insert_text((50, 60 + line * 14), f"{p + 1}.{line} {words}", fontsize=9)
        page.draw_rect(pymupdf.Rect(50, 500, 300, 700), color=(0, 0, 1), width=2)
        # under ocr.pdf.min_image_area of the page: rendered, not OCRed (OCR would dominate the run time)
        page.insert_image(pymupdf.Rect(320, 500, 420, 575), stream=png)
    doc.save(path)


def peak_rss_of(argv: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """(peak RSS in bytes, wall seconds, exit code) of one child process, measured by a fresh
    wrapper so that ru_maxrss covers that child only."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=True
    )
    kb, wall, rc = out.stdout.split()
    return int(kb) * 1024, float(wall), int(rc)


def main() -> None:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, nargs="+", default=[30, 100, 300])
    ap.add_argument("--tier", default="lite")
    ap.add_argument("--dpi", type=int, default=150)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    assert resource  # the wrapper uses it in the child
    rows, peaks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.pages:
            base = Path(tmp) / f"p{n}"
            (base / "corpus").mkdir(parents=True)
            make_pdf(base / "corpus" / f"doc{n}.pdf", n)
            argv = [sys.executable, "-m", "mmrag_assets.cli", "index", f"corpus.root={base / 'corpus'}",
                    f"storage.root={base / 'storage'}", f"model={args.tier}", f"ingest.dpi={args.dpi}"]  # fmt: skip
            env = {**os.environ, "MMRAG_FORCE_CPU": "1", "HF_HUB_OFFLINE": "1"}
            peak, wall, rc = peak_rss_of(argv, env)
            peaks[n] = peak
            print(f"{n:4d} pages: peak RSS {peak / 2**20:,.0f} MiB, {wall:.1f} s, exit {rc}", flush=True)
            rows.append([n, f"{peak / 2**20:,.0f}", f"{wall:.0f}", rc])
    base_n = args.pages[0]
    for r, n in zip(rows, args.pages, strict=True):
        r.insert(2, f"{peaks[n] / peaks[base_n]:.2f}x")
    big = args.pages[-1]
    ratio = peaks[big] / peaks[base_n]
    verdict = "met" if ratio <= 1.2 else "missed"
    print(f"{big} pages / {base_n} pages: {ratio:.2f}x (target <= 1.2x: {verdict})")
    if args.no_write:
        return
    body = "\n".join(
        [
            (
                f"`bench/memory.py --tier {args.tier}`: one PDF per run (30 lines of text, a vector drawing and an "
                f"small embedded raster image per page), `mmrag index` at {args.dpi} dpi in a fresh process on its "
                "own storage root (OCR on, as by default); peak RSS of that process (`ru_maxrss`), baseline the "
                f"{base_n}-page document in the same run."
            ),
            "",
            table(["pages", "peak RSS (MiB)", f"vs {base_n} pages", "wall (s)", "exit"], rows),
            "",
            (
                f"**{big} pages at {ratio:.3f}x the {base_n}-page peak (target <= 1.2x: {verdict}); "
                f"{(peaks[big] - peaks[base_n]) / (big - base_n) / 2**20:.2f} MiB more per extra page.** Pages are "
                "rendered and written one at a time; a document is embedded and committed to LanceDB as one unit "
                "(`index.write_chunk_items` splits only between documents, so that a document's rows change in one "
                "commit), which is where the remaining growth is expected to come from (not profiled)."
            ),
            f"_measured {time.strftime('%Y-%m-%d %H:%M')} UTC_",
        ]
    )
    print(f"wrote {write_section(f'Memory against document size ({args.tier})', body)}")


if __name__ == "__main__":
    main()

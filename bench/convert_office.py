"""Office conversion throughput: one sandboxed LibreOffice per file (before) against batches of files of
one kind per sandboxed LibreOffice (``convert.batch_files``, after), on the same files in one run, with a
plain unsandboxed ``soffice --convert-to pdf`` per kind (a user's batch) for scale.

Files: the Office files of the every-format corpus (``bench/formats/build.py``: decks, documents and
sheets LibreOffice wrote from Debian documentation, python-pptx/python-docx test files from PyPI).
Pages are the product's pages (slides with their notes pages cut off, one page per sheet); the plain
batch counts its own PDFs' pages (notes pages and print pages included), so compare seconds there.
Rounds alternate which mode goes first.

    uv run python bench/formats/build.py          # the corpus (once)
    uv run python bench/convert_office.py [--rounds 2] [--batch-files 8]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

from _index import load_avg
from _paths import DATA
from _report import commit, emit, table

SECTION = "Office conversion"
CORPUS = DATA / "formats" / "corpus"


def office_files(corpus: Path) -> list[tuple[Path, str, Any]]:
    """(path, format, container findings) of every Office file the container checks let through."""
    from mmrag_assets.config import load_config
    from mmrag_assets.errors import MmragError
    from mmrag_assets.lib.ingest.convert_checks import check_container
    from mmrag_assets.lib.ingest.sniff import sniff_file

    c = load_config([]).convert
    out = []
    for p in sorted(q for q in corpus.rglob("*") if q.is_file()):
        s = sniff_file(p)
        if s.kind != "office":
            continue
        try:
            f = check_container(p, s.detail, max_unpacked_bytes=c.max_unpacked_bytes, max_ratio=c.max_ratio,
                                max_sheet_cells=c.max_sheet_cells)  # fmt: skip
        except MmragError as e:
            print(f"  left out {p.name}: {e}")
            continue
        out.append((p, s.detail, f))
    return out


def pages(pdf: Path) -> int:
    import pymupdf

    with pymupdf.open(pdf) as d:
        return d.page_count


def one_per_file(files: list[tuple[Path, str, Any]], cfg: Any, tmp: Path) -> dict[str, Any]:
    from mmrag_assets.errors import MmragError
    from mmrag_assets.lib.ingest.convert_office import convert_office

    t0, n, failed = time.perf_counter(), 0, 0
    for i, (p, fmt, f) in enumerate(files):
        try:
            n += pages(convert_office(p, fmt, tmp / f"one{i}", cfg, findings=f).pdf)
        except MmragError:
            failed += 1
    return {"seconds": time.perf_counter() - t0, "pages": n, "failed": failed, "processes": len(files)}


def batched(files: list[tuple[Path, str, Any]], cfg: Any, tmp: Path) -> dict[str, Any]:
    from mmrag_assets.errors import MmragError
    from mmrag_assets.lib.ingest.convert_office import BatchStats, OfficeJob, convert_office_batch

    stats = BatchStats()
    t0 = time.perf_counter()
    jobs = [OfficeJob(p, fmt, tmp / f"batch{i}", f) for i, (p, fmt, f) in enumerate(files)]
    res = convert_office_batch(jobs, cfg, stats=stats)
    n = sum(pages(r.pdf) for r in res if not isinstance(r, MmragError))
    return {"seconds": time.perf_counter() - t0, "pages": n, "failed": sum(isinstance(r, MmragError) for r in res),
            "processes": stats.processes, "retried": stats.retried}  # fmt: skip


def plain(files: list[tuple[Path, str, Any]], tmp: Path) -> dict[str, Any]:
    """A user's batch: one plain ``soffice --convert-to pdf`` per kind (no sandbox, no notes pages)."""
    from mmrag_assets.lib.ingest.convert_office import _FILTERS

    t0 = time.perf_counter()
    by: dict[str, list[Path]] = {}
    for i, (p, fmt, _) in enumerate(files):
        dst = tmp / "plain_in" / f"f{i}.{fmt}"  # neutral unique names: same-named files would collide
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        by.setdefault(_FILTERS[fmt], []).append(dst)
    for group in by.values():
        prof = tmp / f"plain_profile_{len(group)}"
        subprocess.run(["soffice", f"-env:UserInstallation={prof.as_uri()}", "--headless", "--norestore",
                        "--convert-to", "pdf", "--outdir", str(tmp / "plain_out"), *map(str, group)],
                       capture_output=True, check=False, timeout=3600)  # fmt: skip
    secs = time.perf_counter() - t0
    n = sum(pages(q) for q in (tmp / "plain_out").glob("*.pdf"))
    return {"seconds": secs, "pages": n, "failed": len(files) - len(list((tmp / "plain_out").glob("*.pdf"))),
            "processes": len(by)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-files", type=int, default=None, help="default: convert.batch_files")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from mmrag_assets.config import load_config

    if not args.corpus.is_dir():
        raise SystemExit(f"{args.corpus} is missing: run `uv run python bench/formats/build.py` first")
    over = [f"convert.batch_files={args.batch_files}"] if args.batch_files else []
    cfg = load_config(over).convert
    files = office_files(args.corpus)
    kinds = sorted({fmt for _, fmt, _ in files})
    started = load_avg()
    print(f"{len(files)} Office files ({', '.join(kinds)}); batch_files={cfg.batch_files}; load {started}")
    modes = {"one sandboxed LibreOffice per file (before)": lambda t: one_per_file(files, cfg, t),
             f"batches of <= {cfg.batch_files} files of one kind, sandboxed (after)": lambda t: batched(files, cfg, t),
             "plain `soffice --convert-to pdf` per kind, no sandbox": lambda t: plain(files, t)}  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        order = list(modes) if r % 2 == 0 else list(modes)[::-1]
        for m in order:
            with tempfile.TemporaryDirectory(prefix="mmrag-bench-convert-") as tmp:
                res = modes[m](Path(tmp))
            print(f"  round {r + 1} {m}: {res}", flush=True)
            runs[m].append(res)
    best = {m: min(v, key=lambda x: x["seconds"]) for m, v in runs.items()}
    before = next(iter(best.values()))
    rows = []
    for m, b in best.items():
        rows.append([m, b["processes"], b["pages"], b["failed"], round(b["seconds"], 1),
                     round(b["pages"] / b["seconds"], 2), f"{before['seconds'] / b['seconds']:.2f}x"])  # fmt: skip
    md = (
        f"`bench/convert_office.py --rounds {args.rounds}` at `{commit()}`: the {len(files)} Office files of "
        f"`bench/formats/build.py`'s corpus ({', '.join(kinds)}), each mode over all of them, best of "
        f"{args.rounds} rounds (alternating order); every sandboxed mode keeps a fresh profile per process, "
        "`unshare -rn`, the address-space cap and the timeout (a batch: `timeout_s` without a finished PDF). "
        f"Pages: the product's pages (slides without their notes pages, one per sheet); the plain batch counts "
        f"its own PDFs' pages (notes pages of the decks not exported, sheets in print pages). Load average "
        f"{started} at the start, {load_avg()} at the end, on 2 shared cores.\n\n"
        + table(
            [
                "mode",
                "LibreOffice processes",
                "pages",
                "files failed",
                "best s",
                "pages/s",
                "speed vs one per file",
            ],
            rows,
        )
    )
    emit(SECTION, md, write=not args.no_write)


if __name__ == "__main__":
    main()

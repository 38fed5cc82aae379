"""What many small LanceDB fragments cost the index, and what the publish's table compaction buys.

Every ingest commit writes a fragment of its own, so a corpus kept current by many small runs ends
up in thousands. The same synthetic ColPali-shaped pages (bench/synth.py, 344 x 128 float16) are
written as one table per layout, ``--rows`` pages per commit, then compacted by the product's own
``lib/store/table.compact_table``; measured on each: the publish's scan (item ids, fingerprints and
row addresses of every row) and the rerank's take of 200 random rows by row address (p50 of 30).

    uv run python bench/fragments.py [--pages 2000] [--rows 1,4] [--no-write]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import synth
from _index import load_avg
from _report import commit, emit, table

from mmrag_assets.lib.index.vectors import TableVectors
from mmrag_assets.lib.store.table import compact_table

TAKES = 30


def measure(tbl: Any) -> tuple[int, float, float]:
    """(fragments, scan ms, p50 ms of a 200-row take)."""
    ds = tbl.to_lance()
    t0 = time.perf_counter()
    scan = ds.to_table(columns=["item_id", "ingest_fp"], with_row_address=True)
    scan_ms = 1e3 * (time.perf_counter() - t0)
    ra = scan.column("_rowaddr").to_numpy()
    src = TableVectors(tbl, tbl.version, ra)
    rng = np.random.default_rng(0)
    lat = []
    for _ in range(TAKES + 3):
        idx = synth.take_rows(rng, len(ra))
        t0 = time.perf_counter()
        src.gather_ragged(idx)
        lat.append(time.perf_counter() - t0)
    return len(ds.get_fragments()), scan_ms, 1e3 * float(np.median(lat[3:]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--rows", default="1,4", help="pages per commit, one table each")
    ap.add_argument("--cache", type=Path, default=synth.CACHE)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    import lancedb

    data = synth.take_table(args.pages, args.cache).to_arrow()
    load0 = load_avg()
    rows_out = []
    for per in [int(x) for x in args.rows.split(",")]:
        d = args.cache / f"fragments-{per}"
        shutil.rmtree(d, ignore_errors=True)
        tbl = lancedb.connect(str(d)).create_table("t", schema=data.schema)
        for s in range(0, data.num_rows, per):
            tbl.add(data.slice(s, per))
        n0, scan0, take0 = measure(tbl)
        out = compact_table(tbl, max_small_fragments=0, target_rows=65536)
        n1, scan1, take1 = measure(tbl)
        rows_out.append([f"{per} page(s) per commit", f"{n0:,} -> {n1:,}", round(scan0, 1), round(scan1, 1), f"{scan0 / scan1:.0f}x",
                         round(take0, 1), round(take1, 1), f"{take0 / take1:.1f}x", out.get("seconds")])  # fmt: skip
        print(rows_out[-1], flush=True)
        shutil.rmtree(d, ignore_errors=True)
    md = "\n".join([
        (f"`bench/fragments.py --pages {args.pages} --rows {args.rows}` (commit {commit()}): {args.pages:,} synthetic ColPali-shaped "
         "pages (344 x 128 float16) written as one LanceDB table per layout, then compacted by `compact_table` (what a publish "
         "does past `index.table_small_fragments`). Scan: item ids, fingerprints and row addresses of every row (what a publish "
         f"reads first); take: 200 random rows by row address (what the rerank reads per query), p50 of {TAKES}; page cache warm. "
         f"Load average {load0} at the start, {load_avg()} at the end."),
        "",
        table(["layout", "fragments", "scan ms", "scan ms compacted", "scan ratio", "take ms", "take ms compacted", "take ratio",
               "compaction s"], rows_out),
    ])  # fmt: skip
    emit("LanceDB fragments", md, write=not args.no_write)


if __name__ == "__main__":
    main()

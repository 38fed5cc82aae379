"""The exact rerank's cost on CPU: float16 screen against float32, and the MaxSim chunk size, same run.

200 candidates per query (the first stage's default) of synthetic ColPali-shaped pages (bench/synth.py,
344 x 128 float16 after pooling by 3), read from the LanceDB table by row address as the product reads
them; the same gathered rows go through each scoring kernel, interleaved query by query:

- ``maxsim_ragged`` in float16 (the screen) and float32, with 262,144-row chunks (before) and 8,192;
- ``rerank_maxsim`` end to end (gather + score + top 10): the default (no screen on a CPU) and
  ``screen=True`` (the default before), checked to return the same top 10 with the same scores.

    uv run python bench/rerank.py [--pages 2000] [--queries 50] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import synth
from _index import load_avg
from _report import commit, emit, table

from mmrag_assets.lib.index.vectors import TableVectors
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged
from mmrag_assets.lib.search.rerank import rerank_maxsim

N_CAND = synth.TAKE_ROWS
KERNELS = [  # (label, compute, chunk rows)
    ("float16 screen, 262,144-row chunks (before)", "float16", 1 << 18),
    ("float16 screen, 8,192-row chunks", "float16", 1 << 13),
    ("float32, 262,144-row chunks", "float32", 1 << 18),
    ("float32, 8,192-row chunks (now)", "float32", 1 << 13),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--cache", type=Path, default=synth.CACHE)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    tbl = synth.take_table(args.pages, args.cache)
    qs, _ = synth.queries(synth.SynthSpec(n_pages=args.pages, pool=3), args.queries, args.cache)
    rowaddr = tbl.to_lance().to_table(columns=[], with_row_address=True).column("_rowaddr").to_numpy()
    src = TableVectors(tbl, tbl.version, rowaddr)
    rng = np.random.default_rng(0)
    cands = [synth.take_rows(rng, len(rowaddr)) for _ in qs]
    load0 = load_avg()
    for q, c in list(zip(qs, cands, strict=True))[:2]:  # warm: page cache, torch
        flat, off = src.gather_ragged(c)
        for _, compute, chunk in KERNELS:
            maxsim_ragged(q, flat, off, compute=compute, chunk_rows=chunk)  # type: ignore[arg-type]
        rerank_maxsim(q, src, c, 10)
    t: dict[str, list[float]] = {"gather from LanceDB": []} | {k[0]: [] for k in KERNELS}
    t |= {
        "rerank_maxsim, default (gather + float32 + top 10)": [],
        "rerank_maxsim, screen=True (gather + screen + rescore)": [],
    }
    same = 0
    for q, c in zip(qs, cands, strict=True):
        t0 = time.perf_counter()
        flat, off = src.gather_ragged(c)
        t["gather from LanceDB"].append(time.perf_counter() - t0)
        for label, compute, chunk in KERNELS:
            t0 = time.perf_counter()
            maxsim_ragged(q, flat, off, compute=compute, chunk_rows=chunk)  # type: ignore[arg-type]
            t[label].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        a = rerank_maxsim(q, src, c, 10)
        t["rerank_maxsim, default (gather + float32 + top 10)"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = rerank_maxsim(q, src, c, 10, screen=True)
        t["rerank_maxsim, screen=True (gather + screen + rescore)"].append(time.perf_counter() - t0)
        same += int(a[0].tolist() == b[0].tolist() and np.array_equal(a[1], b[1]))
    base = float(np.median(t[KERNELS[0][0]]))
    rows = [[k, round(1e3 * float(np.median(v)), 1), round(1e3 * float(np.percentile(v, 95)), 1),
             f"{base / float(np.median(v)):.2f}x" if k in {x[0] for x in KERNELS} else "-"] for k, v in t.items()]  # fmt: skip
    md = "\n".join([
        (f"`bench/rerank.py --pages {args.pages} --queries {args.queries}` (commit {commit()}): {N_CAND} candidates per query "
         f"({N_CAND} x 344 x 128 float16 = {N_CAND * 344 * 128 * 2 / 1e6:.1f} MB) of synthetic ColPali-shaped pages read from "
         f"LanceDB by row address, each of {len(qs)} queries of 20 tokens through every kernel on the same rows, "
         f"interleaved; torch CPU. Load average {load0} at the start, {load_avg()} at the end. Speed-up: against the "
         "first row (the rerank's scoring before this change)."),
        "",
        table(["step", "p50 ms", "p95 ms", "speed-up"], rows),
        "",
        f"- The default and `screen=True` returned the same top 10 with the same float32 scores for {same} of {len(qs)} queries.",
    ])  # fmt: skip
    emit("Rerank (CPU)", md, write=not args.no_write)


if __name__ == "__main__":
    main()

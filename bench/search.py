"""Two-stage late-interaction search benchmark on synthetic ColPali-shaped pages.

For each corpus size and first-stage strategy: recall@10 of the two-stage result (first stage
top-``candidates`` -> exact float16 MaxSim rerank -> top-10) against brute-force MaxSim over
the whole corpus, p50/p95 latency (first stage, rerank, total; query encoding excluded), build
time and first-stage bytes per page. Baselines in the same run: LanceDB's native multivector
search (flat, and over an IVF_PQ index) and brute-force torch MaxSim.

    uv run python bench/search.py --quick                      # 2k pages, smoke test
    uv run python bench/search.py --sizes 10000,100000 --queries 100

Sizes >= ``--pool-from`` pages are stored token-pooled by 3 (344 vectors/page instead of
1,030; see bench/synth.py), because 100k full-shape pages are 26 GB of float16.
Everything expensive (corpus, queries, ground truth, indexes) is cached under bench/.cache/.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import synth
from _report import table, write_section

from mmrag_assets.lib.index.first_stage import build_first_stage, load_first_stage
from mmrag_assets.lib.index.first_stage.base import FirstStageIndex, read_meta
from mmrag_assets.lib.index.vecstore import VecStore
from mmrag_assets.lib.search.rerank import exact_maxsim_all, maxsim_ragged, rerank_maxsim, topk

K = 10
GT_KEEP = 200  # ground-truth ranks kept per query (enough for recall@200 diagnostics)
FULL_TOKENS = 1030
# first-stage strategies benchmarked, with their build parameters (the index cache key) ...
STRATEGY_PARAMS: dict[str, dict[str, Any]] = {
    "plaid": {},
    "binary": {},
    "pooled": {"n_vectors": 38, "method": "rows"},
    "muvera": {"k_sim": 4, "reps": 20, "d_proj": 16},
}
# ... and search-time overrides applied to a cached index (empty: the strategy's defaults)
SEARCH_PARAMS: dict[str, dict[str, Any]] = {}


@dataclass
class Row:
    size: int
    method: str
    queries: int
    recall: float  # two-stage recall@10 vs brute force
    fs_recall: float  # GT top-10 found in the first stage's candidates
    p50: float
    p95: float
    fs_p50: float
    rr_p50: float
    build_s: float | None
    bytes_per_page: float | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- data
def ground_truth(root: Path, store: VecStore, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, GT_KEEP) best item indices and their exact MaxSim, computed once and cached."""
    f = root / f"gt_{len(qs)}.npz"
    if f.exists():
        z = np.load(f)
        return z["idx"], z["scores"]
    t0 = time.perf_counter()
    print(f"  ground truth: brute-force MaxSim, {len(qs)} queries x {store.n_items} items ...", flush=True)
    idx = np.empty((len(qs), GT_KEEP), dtype=np.int64)
    sc = np.empty((len(qs), GT_KEEP), dtype=np.float32)
    # queries in groups so the (items, queries) score block stays small
    for g in range(0, len(qs), 50):
        s = exact_maxsim_all(
            list(qs[g : g + 50]), store, chunk_items=max(1, (1 << 16) // int(store.lengths.max()))
        )
        for j in range(s.shape[1]):
            top = topk(s[:, j], GT_KEEP)
            idx[g + j], sc[g + j] = top, s[top, j]
    np.savez(f, idx=idx, scores=sc)
    print(f"  ground truth done in {time.perf_counter() - t0:.0f}s", flush=True)
    return idx, sc


def params_key(name: str, params: dict[str, Any]) -> str:
    h = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}_{h}"


def get_index(
    root: Path, store: VecStore, name: str, params: dict[str, Any], rebuild: bool
) -> FirstStageIndex:
    d = root / "fs" / params_key(name, params)
    if d.exists() and not rebuild:
        try:
            read_meta(d)
            return load_first_stage(d)
        except Exception as e:  # noqa: BLE001 - a half-written cache: rebuild it
            print(f"  cached {d.name} unusable ({e}); rebuilding")
    shutil.rmtree(d, ignore_errors=True)
    print(f"  building {name} {params} ...", flush=True)
    idx = build_first_stage(name, store, d, **params)
    print(f"  built {name} in {idx.build_s:.0f}s, {idx.bytes_per_item / 1024:.1f} KiB/page", flush=True)
    return idx


# ---------------------------------------------------------------------------------- runs
def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) * 1000 if xs else float("nan")


def run_two_stage(
    size: int,
    label: str,
    fs: FirstStageIndex,
    store: VecStore,
    qs: np.ndarray,
    gt: np.ndarray,
    n_cand: int,
    n_queries: int | None = None,
    rerank: bool = True,
    note: str = "",
    slow_queries: int | None = None,
    warmup: int = 2,
) -> Row:
    nq = min(len(qs), n_queries or len(qs))
    for j in range(min(warmup, nq)):  # warm caches (page cache, allocator, lazy imports)
        t0 = time.perf_counter()
        c, _ = fs.search(qs[j], n_cand)
        if rerank:
            rerank_maxsim(qs[j], store, c, K)
        warm = j == min(warmup, nq) - 1  # judge speed on the last warm-up (the first pays lazy setup)
        if warm and slow_queries and time.perf_counter() - t0 > 1.0 and nq > slow_queries:
            nq = slow_queries  # a slow method: fewer timed queries (said in the table's queries column)
            note = (note + "; " if note else "") + f"slow: {nq} queries"
    t_fs, t_rr, t_all, rec, fs_rec = [], [], [], [], []
    for j in range(nq):
        t0 = time.perf_counter()
        cand, _ = fs.search(qs[j], n_cand)
        t1 = time.perf_counter()
        top = rerank_maxsim(qs[j], store, cand, K)[0] if rerank else cand[:K]
        t2 = time.perf_counter()
        t_fs.append(t1 - t0)
        t_rr.append(t2 - t1)
        t_all.append(t2 - t0)
        truth = set(gt[j, :K].tolist())
        rec.append(len(truth & set(top.tolist())) / K)
        fs_rec.append(len(truth & set(cand.tolist())) / K)
    return Row(
        size, label, nq, float(np.mean(rec)), float(np.mean(fs_rec)), pct(t_all, 50), pct(t_all, 95),
        pct(t_fs, 50), pct(t_rr, 50) if rerank else 0.0, fs.build_s, fs.bytes_per_item, note,
    )  # fmt: skip


def run_brute(size: int, store: VecStore, qs: np.ndarray, gt: np.ndarray, n_queries: int) -> Row:
    """Exact torch MaxSim over the whole corpus per query (float16 upcast in chunks)."""
    nq = min(len(qs), n_queries)
    ts, rec = [], []
    for j in range(nq):
        t0 = time.perf_counter()
        s = maxsim_ragged(qs[j], store.flat, store.offsets)
        top = topk(s, K)
        ts.append(time.perf_counter() - t0)
        rec.append(len(set(gt[j, :K].tolist()) & set(top.tolist())) / K)
    return Row(size, "brute-force torch MaxSim", nq, float(np.mean(rec)), float("nan"), pct(ts, 50),
               pct(ts, 95), pct(ts, 50), 0.0, 0.0, 0.0, "exact; reads every float16 vector")  # fmt: skip


# ---------------------------------------------------------------------------------- report
def fmt_row(r: Row, lance_flat_p50: float | None) -> list[object]:
    speed = f"{lance_flat_p50 / r.p50:.0f}x" if lance_flat_p50 and r.p50 > 0 else "-"
    return [
        f"{r.size:,}", r.method, r.queries, round(r.recall, 3),
        "-" if math.isnan(r.fs_recall) else round(r.fs_recall, 3),
        round(r.p50, 1), round(r.p95, 1), round(r.fs_p50, 1), round(r.rr_p50, 1), speed,
        "-" if r.build_s is None else round(r.build_s, 1),
        "-" if r.bytes_per_page is None else f"{r.bytes_per_page / 1024:.1f}", r.note,
    ]  # fmt: skip


HEADERS = [
    "pages", "method", "queries", "recall@10", "fs recall", "p50 ms", "p95 ms", "first stage p50",
    "rerank p50", "vs lance flat", "build s", "KiB/page", "note",
]  # fmt: skip


def plaid_breakdown(fs: FirstStageIndex, qs: np.ndarray, n_queries: int = 40) -> dict[str, float]:
    """Median ms of PLAID's steps: S = q @ leaves, inverted-list pass, full centroid interaction."""
    t: dict[str, list[float]] = {"S": [], "lists": [], "full": []}
    for q in qs[:n_queries]:
        t0 = time.perf_counter()
        sims = fs.centroid_scores(q)  # type: ignore[attr-defined]
        t1 = time.perf_counter()
        approx = fs.pruned_scores(sims)  # type: ignore[attr-defined]
        cand = topk(approx, fs.n_full)  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        fs.full_scores(sims, cand)  # type: ignore[attr-defined]
        t3 = time.perf_counter()
        for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            t[k].append(v)
    return {k: float(np.median(v)) * 1000 for k, v in t.items()}


SCANS = ("binary", "pooled", "muvera", "brute-force", "lance flat")  # first stages that read every page


def extrapolation(rows: list[Row], sizes: list[int]) -> str:
    """1M pages on paper, from the largest measured size (same vectors per page, 10x the pages)."""
    raw16 = 1_000_000 * FULL_TOKENS * 128 * 2
    big_n = max(sizes)
    f = 1_000_000 / big_n
    lines = [
        "### Extrapolation to 1M pages (on paper)",
        "",
        (
            f"- Raw multi-vectors at 1,030 x 128: {raw16 / 1e9:.0f} GB float16, {2 * raw16 / 1e9:.0f} GB "
            f"float32 (the ~500 GB of the seed article); token-pooled by 3: {raw16 / 3 / 1e9:.0f} GB float16. "
            "It cannot sit in RAM: the rerank reads ~200 pages per query from the memory-mapped store "
            "(17.6 MB at 344 x 128 float16), i.e. SSD reads (a few ms on NVMe; a cold read of this VM's "
            "disk cost ~360 ms per query at 100k)."
        ),
    ]
    big = [r for r in rows if r.size == big_n]
    for r in big:
        if r.bytes_per_page:
            gb = r.bytes_per_page * 1_000_000 / 1e9
            lines.append(f"- {r.method}: {r.bytes_per_page / 1024:.1f} KiB/page -> ~{gb:.1f} GB of first-stage "
                         f"structures at 1M pages.")  # fmt: skip
    for r in big:
        if r.method.startswith(SCANS) and r.fs_p50 > 0:
            lines.append(f"- {r.method}: reads every page, so ~{f:.0f}x: {r.fs_p50:,.0f} ms -> "
                         f"~{r.fs_p50 * f:,.0f} ms first stage at 1M on the same 2 cores.")  # fmt: skip
    plaid = next((r for r in big if r.method == "plaid" and r.extra.get("breakdown")), None)
    if plaid:
        b = plaid.extra["breakdown"]
        proj = b["S"] + b["full"] + f * b["lists"]
        lines.append(
            f"- plaid: at {big_n:,} pages S = q @ leaves {b['S']:.1f} ms, inverted-list pass {b['lists']:.1f} ms, "
            f"full centroid interaction of {plaid.extra.get('n_full', 400)} pages {b['full']:.1f} ms "
            f"(medians). With K capped at 65,536 leaves, S and the full pass stay put and the "
            f"list pass grows with the pages (~{f:.0f}x): ~{proj:,.0f} ms first stage at 1M, plus "
            f"{20 * 4 * 1_000_000 / 1e6:.0f} MB of per-query score buffer. Growing K with sqrt(tokens) "
            "(PLAID's rule, ~262k leaves) would trade a 4x larger S for ~2.5x shorter lists."
        )
    return "\n".join(lines)


def render(rows: list[Row], sizes: list[int], notes: list[str], args: argparse.Namespace) -> str:
    body = [
        (
            f"Synthetic ColPali-shaped corpus (bench/synth.py: topic model, {FULL_TOKENS} x 128 unit float16 "
            f"vectors/page; sizes >= {args.pool_from:,} token-pooled by 3 to 344 vectors/page), "
            f"{args.queries} queries of 20 tokens. recall@10: two-stage top-10 (first stage top-"
            f"{args.candidates} -> exact MaxSim rerank) vs brute-force MaxSim over the whole corpus; fs recall: "
            f"share of the true top-10 inside the first stage's {args.candidates} candidates. Latency excludes "
            "query encoding; 2 shared CPU cores, torch CPU, noisy. "
            + ("Cold page cache." if args.cold else "The store is read into the page cache before timing.")
        ),
        "",
    ]
    for size in sizes:
        lp = next((r.p50 for r in rows if r.size == size and r.method.startswith("lance flat")), None)
        body.append(table(HEADERS, [fmt_row(r, lp) for r in rows if r.size == size]))
        body.append("")
    body += [f"- {n}" for n in notes]
    body.append("")
    body.append(extrapolation(rows, sizes))
    return "\n".join(body)


def report_only(args: argparse.Namespace) -> None:
    """Rebuild the markdown from ``search_results.json`` (no timing reruns), e.g. after a wording fix.

    A PLAID row saved without its step breakdown gets one measured now (noted in the text).
    """
    saved = json.loads((args.cache / "search_results.json").read_text())
    rows = [Row(**r) for r in saved["rows"]]
    sizes, notes = saved["sizes"], list(saved["notes"])
    for r in rows:
        if r.method == "plaid" and r.size == max(sizes) and "breakdown" not in r.extra:
            spec = synth.SynthSpec(n_pages=r.size, pool=3 if r.size >= args.pool_from else 1)
            _, qs, _ = synth.load(spec, args.queries, cache=args.cache)
            fs = get_index(args.cache / spec.key, VecStore.open(args.cache / spec.key / "store"), "plaid",
                           STRATEGY_PARAMS["plaid"], False)  # fmt: skip
            r.extra["breakdown"] = plaid_breakdown(fs, qs)
            r.extra["n_full"] = fs.n_full  # type: ignore[attr-defined]
            notes.append(f"PLAID step timings at {r.size:,} pages measured when re-rendering, not in the run "
                         f"(load average {os.getloadavg()[0]:.1f}).")  # fmt: skip
    md = render(rows, sizes, notes, args)
    print(md)
    if not args.no_write:
        print(f"\nwrote {write_section('Search', md)}")


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated page counts")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="2,000 pages, 30 queries, no LanceDB IVF")
    ap.add_argument("--strategies", default=",".join(STRATEGY_PARAMS))
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--pool-from", type=int, default=50_000, help="sizes >= this are pooled by 3")
    ap.add_argument("--brute-queries", type=int, default=5)
    ap.add_argument("--slow-queries", type=int, default=20, help="queries for methods slower than 1 s/query")
    ap.add_argument("--lance-flat-queries", type=int, default=3)
    ap.add_argument("--lance-ivf-queries", type=int, default=20)
    ap.add_argument("--lance-max-size", type=int, default=100_000, help="skip LanceDB above this size")
    ap.add_argument("--lance-ivf-max-size", type=int, default=10_000, help="skip the IVF_PQ build above this")
    ap.add_argument(
        "--lance-partitions", type=int, default=256, help="IVF partitions (build time grows fast)"
    )
    ap.add_argument("--no-lance-ivf", action="store_true")
    ap.add_argument("--rebuild", action="store_true", help="rebuild cached first-stage indexes")
    ap.add_argument("--cold", action="store_true", help="do not pre-read the store into the page cache")
    ap.add_argument("--cache", type=Path, default=synth.CACHE)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument("--report-only", action="store_true", help="re-render the last run's saved figures")
    args = ap.parse_args(argv)
    if args.report_only:
        report_only(args)
        return
    if args.quick:
        args.sizes, args.queries, args.no_lance_ivf = "2000", min(args.queries, 30), True
    sizes = [int(s) for s in args.sizes.split(",") if s]
    strategies = [s for s in args.strategies.split(",") if s]

    import torch

    print(
        f"torch threads: {torch.get_num_threads()}; disk free: {shutil.disk_usage(args.cache.parent).free / 1e9:.0f} GB"
    )
    rows: list[Row] = []
    notes: list[str] = []
    for size in sizes:
        pool = 3 if size >= args.pool_from else 1
        spec = synth.SynthSpec(n_pages=size, pool=pool)
        print(f"\n== {size:,} pages, {spec.vectors_per_page} vectors/page (pool {pool}) ==", flush=True)
        store, qs, _targets = synth.load(spec, args.queries, cache=args.cache)
        root = args.cache / spec.key
        gt, _ = ground_truth(root, store, qs)
        size_rows: list[Row] = []
        if not args.cold:
            # read the store once so that every method's rerank finds it in the page cache (else
            # whichever runs first pays the disk reads: ~360 ms per query at 100k on this VM)
            t0 = time.perf_counter()
            for s in range(0, store.n_vectors, 1 << 22):
                float(store.flat[s : s + (1 << 22), 0].sum())  # touches every page of the rows
            print(f"  store read into the page cache in {time.perf_counter() - t0:.0f}s", flush=True)

        for name in strategies:
            params = STRATEGY_PARAMS.get(name, {})
            fs = get_index(root, store, name, params, args.rebuild)
            if SEARCH_PARAMS.get(name):
                fs = fs.with_params(**SEARCH_PARAMS[name])  # type: ignore[attr-defined]
            r = run_two_stage(size, name, fs, store, qs, gt, args.candidates, slow_queries=args.slow_queries)
            if name == "plaid":
                r.extra["breakdown"] = plaid_breakdown(fs, qs)
                r.extra["n_full"] = fs.n_full  # type: ignore[attr-defined]
            size_rows.append(r)
            print(f"  {name}: recall@10 {r.recall:.3f} (fs {r.fs_recall:.3f}), p50 {r.p50:.0f} ms "
                  f"(fs {r.fs_p50:.0f} + rerank {r.rr_p50:.0f}), p95 {r.p95:.0f} ms", flush=True)  # fmt: skip
            del fs
            gc.collect()

        r = run_brute(size, store, qs, gt, args.brute_queries)
        size_rows.append(r)
        print(f"  brute force: p50 {r.p50:.0f} ms over {r.queries} queries", flush=True)

        if size <= args.lance_max_size:
            lf = get_index(root, store, "lance", {"index": "none"}, args.rebuild)
            r = run_two_stage(size, "lance flat (native MaxSim, no rerank)", lf, store, qs, gt, K,
                              n_queries=args.lance_flat_queries, rerank=False, warmup=1)  # fmt: skip
            r.note = f"{r.queries} queries (slow); KiB/page = whole table"
            size_rows.append(r)
            print(
                f"  lance flat: recall {r.recall:.3f}, p50 {r.p50:.0f} ms over {r.queries} queries",
                flush=True,
            )
            # a full copy of the corpus (2.6 GB at 10k, 8.8 GB at 100k) that rebuilds in minutes:
            # do not keep it in the cache
            shutil.rmtree(lf.dir, ignore_errors=True)
            del lf
            if not args.no_lance_ivf and size <= args.lance_ivf_max_size:
                ivf = {"index": "ivf_pq", "num_partitions": args.lance_partitions}
                li = get_index(root, store, "lance", ivf, args.rebuild)
                r = run_two_stage(size, "lance IVF_PQ (native, no rerank)", li, store, qs, gt, K,
                                  n_queries=args.lance_ivf_queries, rerank=False)  # fmt: skip
                r.note = f"{args.lance_partitions} partitions; KiB/page = index only"
                size_rows.append(r)
                r = run_two_stage(size, "lance IVF_PQ -> MaxSim rerank", li, store, qs, gt, args.candidates,
                                  n_queries=args.lance_ivf_queries)  # fmt: skip
                size_rows.append(r)
                print(f"  lance ivf_pq: recall {r.recall:.3f} (two-stage), p50 {r.p50:.0f} ms", flush=True)
            elif not args.no_lance_ivf:
                notes.append(f"LanceDB IVF_PQ not built at {size:,} pages (--lance-ivf-max-size).")
        else:
            notes.append(
                f"LanceDB baselines skipped at {size:,} pages (--lance-max-size {args.lance_max_size:,})."
            )
        notes.append(f"{size:,} pages: load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
                     "(1/5/15 min) at the end of the run on 2 cores shared with other jobs.")  # fmt: skip
        lance_p50 = next((r.p50 for r in size_rows if r.method.startswith("lance flat")), None)
        for r in size_rows:
            if lance_p50:
                r.extra["speedup"] = lance_p50 / r.p50
        rows += size_rows
        print(table(HEADERS, [fmt_row(r, lance_p50) for r in size_rows]), flush=True)

    md = render(rows, sizes, notes, args)
    print("\n" + md)
    results = {"rows": [r.__dict__ for r in rows], "notes": notes, "sizes": sizes}
    (args.cache / "search_results.json").write_text(json.dumps(results, indent=1, default=str))
    if not args.no_write:
        print(f"\nwrote {write_section('Search', md)}")


if __name__ == "__main__":
    main()

"""Two-stage search over the published index at 100k synthetic ColPali-shaped pages.

On the LanceDB items table of ``bench/synth.py`` (344 x 128 float16 per page after token
pooling by 3; the only copy of the vectors), one index version with every first stage
(plaid, binary, pooled, muvera) and ``residual2`` rerank codes; the ``residual4`` and ``int8``
codes are encoded by this script through the same codec code into segment files beside it.
For each first stage and each rerank-vector codec: recall@10 against exact MaxSim over all
pages (brute force), p50/p95 with a warm page cache and, for the codecs, with the page cache of
every vector file dropped before each query (posix_fadvise DONTNEED, memory maps unmapped);
bytes per page of every structure; baselines in the same run: torch brute-force MaxSim and
LanceDB's native flat multivector search over the same table.

    uv run python bench/search.py                 # 100k pages (the table is shared with incremental.py)
    uv run python bench/search.py --pages 5000 --no-write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import synth
from _index import (
    K,
    VectorEmbedder,
    drop_cache,
    files_under,
    ground_truth,
    load_avg,
    pct,
    recall,
    two_stage,
)
from _report import table, write_section

from mmrag_assets.config import load_config
from mmrag_assets.lib.index.first_stage import EncodeBatch, Part
from mmrag_assets.lib.index.publish import IndexLocation, params_from_config, publish
from mmrag_assets.lib.index.rerank_vectors import Compressed
from mmrag_assets.lib.index.segment import SegmentWriter, open_segment
from mmrag_assets.lib.index.vectors import Ragged, TableVectors, iter_item_vectors
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged, topk
from mmrag_assets.lib.search.index_reader import IndexReader
from mmrag_assets.lib.store import manifest as mf
from mmrag_assets.lib.store import table as lx

TABLE = "items__synthbench"
CACHE = synth.CACHE
STRATEGIES = ["plaid", "binary", "pooled", "muvera"]
EXTRA_CODECS = ["residual4", "int8"]


def say(msg: str) -> None:
    print(msg, flush=True)


def build_codec(view: Any, codec: str, out: Path) -> Any:
    """Rerank codes of another codec for every segment of ``view`` (same per-token leaf codes),
    written like a publish writes them; returns the vector source over them."""
    parts = []
    for p, seg in zip(view.parts("rerank"), view.segments, strict=True):
        d = out / codec / seg.id
        if not (d / "segment.json").exists():
            (out / codec).mkdir(parents=True, exist_ok=True)
            tv = TableVectors(view.table, view.table_version, view.rowaddr[p.base : p.base + p.n_items])
            w = SegmentWriter(out / codec, codebook=view.codebook.id, segment_id=seg.id)
            strat = Compressed(codec=codec)
            for s in range(0, p.n_items, 512):
                idx = np.arange(s, min(s + 512, p.n_items))
                _, raw = tv.take_raw(idx)
                codes = p.fields["codes"].take(idx)
                vecs = Ragged(np.asarray(raw.flat, dtype=np.float32), raw.offsets)
                w.add(
                    seg.items.slice(s, len(idx)),
                    {"rerank": strat.encode(EncodeBatch(codes, vecs, view.codebook))},
                )
            w.close()
        s2 = open_segment(d)
        parts.append(Part(p.base, p.n_items, s2.fields["rerank"], {}))
    return Compressed(codec=codec).open(view.codebook, parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--cold-queries", type=int, default=30)
    ap.add_argument("--brute-queries", type=int, default=3)
    ap.add_argument("--lance-queries", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    n = args.pages
    spec = synth.SynthSpec(n_pages=n, pool=3)
    db_dir = args.cache / "lancedb"
    say(f"== {n:,} pages; load {load_avg()}")
    tbl = synth.generate(spec, db_dir, TABLE)
    base_file = db_dir / f"{TABLE}.{spec.key}.base_version"
    if not base_file.exists():
        base_file.write_text(str(tbl.version))
    base_v = int(base_file.read_text())
    if tbl.version != base_v:
        tbl.checkout(base_v)
        tbl.restore()
    qs, _ = synth.queries(spec, args.queries, args.cache)
    gt_ids, _ = ground_truth(
        tbl, qs, args.cache / f"gt_{spec.key}_{args.queries}.npz", version=base_v, say=say
    )
    emb = VectorEmbedder(spec.dim, f"synthsearch__{spec.key}", qs[:24])
    cfg = load_config(
        ["corpus.root=unused", "storage.root=unused", f"search.prebuild=[{','.join(STRATEGIES)}]"],
        resolve_paths=False,
    )
    params = params_from_config(cfg, codec="residual2", gc_grace_s=1e9)
    loc = IndexLocation.of(args.cache / "index-search", emb.version_key)
    res = publish(loc, tbl, emb, params, allowed_doc_ids=None, progress=say)
    say(f"index: {res.action} in {res.seconds:.0f}s {res.timings}")
    import lancedb

    reader = IndexReader(loc, emb, lancedb.connect(str(db_dir)), follow=False)
    view = reader.view()
    m = mf.read_manifest(loc)
    exact = TableVectors(view.table, view.table_version, view.rowaddr)
    lance_files = lx.data_files(view.table, view.table_version)  # the pinned version's data files only
    n = view.n_alive
    vec_bytes = lx.storage_bytes(view.table, view.table_version) / n
    rows: list[list[Any]] = []
    notes: list[str] = []

    # first stages, exact float16 rerank from LanceDB, warm
    seg_bytes = {s: sum(seg.strategy_bytes(s) for seg in view.segments) / n for s in [*STRATEGIES, "rerank"]}
    for name in STRATEGIES:
        t = two_stage(
            view,
            qs,
            gt_ids,
            first_stage=name,
            vectors=exact,
            max_queries=args.queries if name == "plaid" else 30,
        )
        rows.append([name, "float16 (LanceDB)", "warm", t.queries, round(t.recall, 3), round(t.fs_recall, 3), round(t.p50, 1),
                     round(t.p95, 1), round(t.fs_p50, 1), round(t.rr_p50, 1), f"{seg_bytes[name] / 1024:.1f}"])  # fmt: skip
        say(f"  {name}: recall {t.recall:.3f} p50 {t.p50:.0f} ms")

    # rerank-vector codecs behind plaid: warm and cold
    sources = {"float16 (LanceDB)": exact, "residual2": view.vectors}
    for codec in EXTRA_CODECS:
        t0 = time.perf_counter()
        sources[codec] = build_codec(view, codec, args.cache / "index-search-codecs")
        notes.append(
            f"{codec} codes for {n:,} pages encoded in {time.perf_counter() - t0:.0f}s (segment files beside the index)."
        )
    codec_bytes = {"float16 (LanceDB)": vec_bytes, "residual2": seg_bytes["rerank"]}
    codec_bytes |= {c: sources[c].nbytes / n for c in EXTRA_CODECS}
    codec_files = {
        "float16 (LanceDB)": lance_files,
        "residual2": files_under(*[s.dir / "rerank" for s in view.segments]),
    }
    codec_files |= {c: files_under(args.cache / "index-search-codecs" / c) for c in EXTRA_CODECS}
    for label, src in sources.items():
        variants = [("", None)] if label.startswith("float16") else [("", None), (" + exact top 20", exact)]
        for suffix, top in variants:
            for cache in ("warm", "cold"):
                files = codec_files[label] + (lance_files if top is not None else [])
                maps = [r.flat for p in getattr(src, "parts", []) for r in p.fields.values()]
                before = (lambda f=files, mp=maps: drop_cache(f, mp)) if cache == "cold" else None
                nq = args.queries if cache == "warm" else args.cold_queries
                t = two_stage(
                    view, qs, gt_ids, vectors=src, exact_top=top, before_each=before, max_queries=nq
                )
                rows.append(["plaid", label + suffix, cache, t.queries, round(t.recall, 3), round(t.fs_recall, 3), round(t.p50, 1),
                             round(t.p95, 1), round(t.fs_p50, 1), round(t.rr_p50, 1), f"{codec_bytes[label] / 1024:.1f}"])  # fmt: skip
                say(
                    f"  plaid + {label}{suffix} {cache}: recall {t.recall:.3f} p50 {t.p50:.0f} ms (rerank {t.rr_p50:.0f})"
                )

    # baselines: brute force over every page, LanceDB's native flat multivector search
    ts, rec = [], []
    for j in range(args.brute_queries):
        t0 = time.perf_counter()
        best_s, best_i = np.full(K, -np.inf), np.zeros(K, dtype=object)

        for batch, vecs in iter_item_vectors(
            view.table, ["item_id"], batch_rows=1024, version=view.table_version
        ):
            s = maxsim_ragged(qs[j], vecs.flat, vecs.offsets)
            ids = np.array(batch.column("item_id").to_pylist(), dtype=object)
            all_s, all_i = np.concatenate([best_s, s]), np.concatenate([best_i, ids])
            o = topk(all_s, K)
            best_s, best_i = all_s[o], all_i[o]
        ts.append(time.perf_counter() - t0)
        rec.append(recall(list(best_i), list(gt_ids[j])))
    rows.append(["brute-force torch MaxSim (reads every page from LanceDB)", "-", "warm", len(ts), round(float(np.mean(rec)), 3), "-",
                 round(pct(ts, 50), 1), round(pct(ts, 95), 1), "-", "-", "0"])  # fmt: skip
    ts, rec = [], []
    for j in range(args.lance_queries):
        q = qs[j] / np.linalg.norm(qs[j], axis=1, keepdims=True)
        t0 = time.perf_counter()
        hits = (
            view.table.search(q, vector_column_name="vector")
            .bypass_vector_index()
            .select(["item_id"])
            .limit(K)
            .to_list()
        )
        ts.append(time.perf_counter() - t0)
        rec.append(recall([h["item_id"] for h in hits], list(gt_ids[j])))
    rows.append(["LanceDB flat multivector search (native)", "-", "warm", len(ts), round(float(np.mean(rec)), 3), "-",
                 round(pct(ts, 50), 1), round(pct(ts, 95), 1), "-", "-", "0"])  # fmt: skip
    out = {"rows": rows, "notes": notes, "vec_bytes": vec_bytes, "seg_bytes": seg_bytes, "codec_bytes": codec_bytes,
           "manifest_files_bytes": sum(f["size"] for f in m["files"].values()), "load_end": load_avg(), "pages": n}  # fmt: skip
    (args.cache / "search_results.json").write_text(json.dumps(out, indent=1, default=str))
    md = render(out, args)
    print("\n" + md)
    if not args.no_write:
        print(f"\nwrote {write_section('Search', md)}")


HEADERS = ["first stage", "rerank vectors", "page cache", "queries", "recall@10", "fs recall", "p50 ms", "p95 ms",
           "first stage p50", "rerank p50", "KiB/page"]  # fmt: skip


def render(out: dict[str, Any], args: argparse.Namespace) -> str:
    n = out["pages"]
    vb, sb, cb = out["vec_bytes"], out["seg_bytes"], out["codec_bytes"]
    plaid = sb["plaid"]
    lines = [
        (f"{n:,} synthetic ColPali-shaped pages (bench/synth.py; 344 x 128 float16 per page after token pooling by 3) in "
         f"one LanceDB items table; {args.queries} queries of 20 tokens (cold: {args.cold_queries}); recall@10 against exact "
         "MaxSim over every page (brute force). First stage top 200 -> MaxSim rerank -> top 10. *cold*: the page cache of "
         "every file the rerank reads (LanceDB data files, the codec's segment files) dropped before each query with "
         "posix_fadvise(DONTNEED) (memory maps unmapped first); the first-stage structures are in process memory, as in a "
         f"running server. KiB/page: the first stage's (or the rerank vectors') files. 2 shared CPU cores (load at the end "
         f"{out['load_end']})."),
        "",
        table(HEADERS, out["rows"]),
        "",
        *[f"- {x}" for x in out["notes"]],
        "",
        "### Bytes per page and the 1M-page projection (on paper)",
        "",
        (f"- The vectors, once: LanceDB data files {vb / 1024:.1f} KiB/page (float16 344 x 128 = 86 KiB + text and metadata) "
        f"-> {vb * 1e6 / 1e9:.0f} GB at 1M pages (1,030 x 128 unpooled: ~264 GB)."),
        f"- plaid (codes, forward + inverted): {plaid / 1024:.2f} KiB/page -> {plaid * 1e6 / 1e9:.1f} GB at 1M; "
        + "; ".join(f"{s} {sb[s] / 1024:.1f} KiB/page -> {sb[s] * 1e6 / 1e9:.1f} GB" for s in ("binary", "pooled", "muvera")) + ".",
        "- Rerank codes: " + "; ".join(f"{c} {b / 1024:.1f} KiB/page -> {b * 1e6 / 1e9:.1f} GB" for c, b in cb.items() if not c.startswith("float16")) + ".",
        (f"- Default layout (plaid + float16 from LanceDB): {(vb + plaid) / 1024:.1f} KiB/page on disk, "
         f"{vb / (344 * 128 * 2 + 100):.3f}x the float16 multi-vector plus its text, plus the first stage (target <= 1.15x)."),
        "",
        (
            "Per tier, on paper from the measured per-token costs (plaid codes, residual2 codes) and each tier's vectors "
            "per page (BENCHMARKS.md, Embedding; the lite tier is measured in *Real text* below):"
        ),
        "",
        "| tier | vectors/page x dim | float16 in LanceDB | + plaid | + residual2 codes | at 1M pages (default) |",
        "|---|---|---|---|---|---|",
        *[f"| {t} | {n} x 128 | {n * 256 / 1024:.0f} KiB | {plaid / 344 * n / 1024:.1f} KiB | {cb.get('residual2', 0) / 344 * n / 1024:.1f} KiB | "
          f"{(n * 256 + plaid / 344 * n) * 1e6 / 1e9:.0f} GB |"
          for t, n in (("colqwen2_5", 747), ("colpali", 1030), ("colpali, token-pooled by 3 (this benchmark)", 344))],
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()

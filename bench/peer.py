"""Against the strongest peer: fast-plaid (lightonai, Rust PLAID with update()/delete()) on CPU.

On the same LanceDB items tables in the same run: a synthetic ColPali-shaped one (bench/synth.py)
and the lite tier's real-text one (bench/realtext.py, a subset). For each: build time, the
incremental update (one 10-page document in, one out, until search sees it) and p50 search
latency at equal recall@10 against exact MaxSim, as ratios. fast-plaid runs in its own virtual
environment (it pins torch==2.11.0) through ``bench/peer_fastplaid.py``; both get 2 threads.

    uv run python bench/peer.py [--venv DIR]   (default $MMRAG_BENCH_DATA/fastplaid-venv)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import synth
from _index import K, VectorEmbedder, ground_truth, load_avg, pct, recall
from _paths import DATA
from _report import table, write_section

from mmrag_assets.config import load_config
from mmrag_assets.lib.index.publish import IndexLocation, params_from_config, publish
from mmrag_assets.lib.search.index_reader import IndexReader
from mmrag_assets.lib.search.rerank import rerank_maxsim
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.runtime import Runtime

CACHE = synth.CACHE
SETTINGS = [{"n_ivf_probe": p, "n_full_scores": f} for p in (4, 8, 16, 32) for f in (1024, 4096)]


def say(msg: str) -> None:
    print(msg, flush=True)


def ours(view: Any, qs: np.ndarray, truth: list[list[str]]) -> tuple[float, float, list[list[str]]]:
    fs = view.first_stage("plaid")
    mask = view.allowed_mask({})
    ids = view.items["item_id"]
    for q in qs[:2]:
        rerank_maxsim(q, view.vectors, fs.search(q, 200, mask)[0], K)
    lat, tops = [], []
    for q in qs:
        t = time.perf_counter()
        top, _ = rerank_maxsim(q, view.vectors, fs.search(q, 200, mask)[0], K)
        lat.append(time.perf_counter() - t)
        tops.append([ids[i] for i in top])
    return float(np.mean([recall(t, g) for t, g in zip(tops, truth, strict=True)])), pct(lat, 50), tops


def run_peer(args: argparse.Namespace, job: dict[str, Any], work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.json").write_text(json.dumps(job))
    cmd = [
        str(args.venv / "bin" / "python"),
        str(Path(__file__).with_name("peer_fastplaid.py")),
        "--job",
        str(work / "job.json"),
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=args.peer_timeout)
    if r.returncode != 0:
        raise RuntimeError(f"fast-plaid run failed ({time.perf_counter() - t0:.0f}s): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def compare(name: str, tbl: Any, emb: Any, params: Any, qs: np.ndarray, truth: list[list[str]], new_items: list[dict],
            new_payload: list[np.ndarray], victim: str, args: argparse.Namespace, vocab: np.ndarray | None) -> dict[str, Any]:  # fmt: skip
    """Build, search, update: ours then fast-plaid's, on ``tbl`` (restored to its base version after)."""
    base_v = tbl.version
    work = args.cache / f"peer-{name}"
    loc = IndexLocation.of(work / "mmrag", emb.version_key)
    import shutil

    shutil.rmtree(work / "mmrag", ignore_errors=True)
    t0 = time.perf_counter()
    publish(loc, tbl, emb, params, allowed_doc_ids=None)
    build = time.perf_counter() - t0
    import lancedb

    reader = IndexReader(loc, emb, lancedb.connect(str(Path(tbl.to_lance().uri).parent)))
    rec, p50, _ = ours(reader.view(), qs, truth)
    t0 = time.perf_counter()
    lx.upsert_documents(tbl, [new_items[0]["doc_id"]], new_items, new_payload, emb.dim)
    tbl.delete(f"doc_id = '{victim}'")
    publish(loc, tbl, emb, params, allowed_doc_ids=None)
    view = reader.view()
    update = time.perf_counter() - t0
    upd_v = tbl.version
    new_addr = tbl.to_lance().to_table(
        columns=["item_id"], with_row_address=True, filter=f"doc_id = '{new_items[0]['doc_id']}'"
    )
    victim_ids = [i for i in view.items["item_id"][~view.alive].tolist() if i.startswith(victim)]
    width = max(
        len(q) for q in qs
    )  # fast-plaid reads a (Q, Tq, d) array: zero-padded, sliced to each length there
    np.save(
        work / "queries.npy",
        np.stack([np.pad(np.asarray(q, np.float32), ((0, width - len(q)), (0, 0))) for q in qs]),
    )
    np.save(work / "query_lens.npy", np.array([len(q) for q in qs]))
    if vocab is not None:
        np.save(work / "vocab.npy", vocab.astype(np.float16))
    job = {"uri": tbl.to_lance().uri, "version": base_v, "vocab": str(work / "vocab.npy") if vocab is not None else None,
           "queries": str(work / "queries.npy"), "query_lens": str(work / "query_lens.npy"), "index_dir": str(work / "fastplaid"), "settings": SETTINGS,
           "create": {"n_samples_kmeans": args.kmeans_docs, "kmeans_niters": 4, "nbits": args.nbits},
           "update": {"version": upd_v, "rowaddr": new_addr.column("_rowaddr").to_pylist(), "delete": victim_ids}}  # fmt: skip
    say(
        f"  {name}: ours build {build:.0f}s, recall {rec:.3f}, p50 {p50:.0f} ms, update {update:.2f}s; running fast-plaid ..."
    )
    peer = run_peer(args, job, work)
    for s in peer["search"]:
        s["recall"] = float(np.mean([recall(t, g) for t, g in zip(s["top"], truth, strict=True)]))
        del s["top"]
    ok = [s for s in peer["search"] if s["recall"] >= rec - 0.005]
    best = min(ok, key=lambda s: s["p50_ms"]) if ok else max(peer["search"], key=lambda s: s["recall"])
    tbl.checkout(base_v)
    tbl.restore()
    return {"name": name, "ours": {"build_s": build, "recall": rec, "p50_ms": p50, "update_s": update},
            "peer": {k: v for k, v in peer.items() if k != "after_update"}, "peer_best": best, "equal_recall": bool(ok)}  # fmt: skip


def synthetic(args: argparse.Namespace) -> dict[str, Any]:
    spec = synth.SynthSpec(n_pages=args.pages, pool=3)
    tbl = synth.generate(spec, args.cache / "lancedb", f"items__peer{args.pages}")
    qs, targets = synth.queries(spec, args.queries, args.cache)
    gt, _ = ground_truth(
        tbl, qs, args.cache / f"gt_peer_{spec.key}_{args.queries}.npz", version=tbl.version, say=say
    )
    emb = VectorEmbedder(spec.dim, f"peer__{spec.key}", qs[:24])
    plus = dataclasses.replace(spec, n_pages=spec.n_pages + synth.PAGES_PER_DOC)
    pages = range(spec.n_pages, spec.n_pages + synth.PAGES_PER_DOC)
    vecs = synth._page_chunk(synth.World(plus), pages.start, pages.stop)
    from incremental import doc_items

    items = doc_items(plus, pages)
    cfg = load_config(["corpus.root=unused", "storage.root=unused", "dense=none"], resolve_paths=False)
    return compare("synthetic", tbl, emb, params_from_config(cfg, gc_grace_s=3600), qs, [list(g[:K]) for g in gt], items,
                   list(vecs), synth.doc_id(spec, int(targets[0])), args, None)  # fmt: skip


def realtext(args: argparse.Namespace) -> dict[str, Any]:
    import realtext as rt

    data = rt.DATA
    storage = data / f"store{args.real_limit}"
    # dense=none on both tables: fast-plaid has no dense channel, so the build and update times compare the
    # multi-vector indexes alone (mmrag's default also embeds every item's text with MiniLM at publish)
    cfg = load_config([f"corpus.root={data}", f"storage.root={storage}", "model=lite", "dense=none"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks = pq.read_table(data / "chunks.parquet")
    rng = np.random.default_rng(rt.SAMPLE_SEED)
    held = np.sort(rng.choice(chunks.num_rows, 200, replace=False))
    mask = np.ones(chunks.num_rows, dtype=bool)
    mask[held] = False
    indexed = chunks.filter(pa.array(mask)).slice(0, args.real_limit)
    queries = rt.make_queries([chunks.column("text")[int(i)].as_py() for i in held], rng)[: args.queries]
    tbl, emb = rt.build_table(cfg, indexed)
    qv = emb.embed_queries(
        [q for _, q in queries]
    )  # each at its own length (a padded query would weigh its pad)
    loc = IndexLocation.of(storage, emb.version_key)
    publish(loc, tbl, emb, params_from_config(cfg), allowed_doc_ids=None)
    view = IndexReader(loc, emb, lx.connect(Runtime(cfg)), follow=False).view()
    every = np.flatnonzero(view.alive)
    truth = [
        [view.items["item_id"][every[i]] for i in np.argsort(-view.vectors.exact_scores(q, every))[:K]]
        for q in qv
    ]
    tail = chunks.filter(pa.array(mask)).slice(args.real_limit, synth.PAGES_PER_DOC)
    doc = "f" * 16
    items = [{"item_id": f"{doc}:{i + 1}", "doc_id": doc, "source": "new.html", "modality": "page", "page": i + 1, "start_s": None,
              "end_s": None, "text": t, "image_path": None, "thumb_path": None, "ingest_fp": "debdocs"}
             for i, t in enumerate(tail.column("text").to_pylist())]  # fmt: skip
    payload = emb.embed_text_tokens([it["text"] for it in items])
    victim = view.items["doc_id"][0]
    return compare("real text (lite)", tbl, emb, params_from_config(cfg, gc_grace_s=3600), qv, truth, items, payload,
                   victim, args, emb.vocabulary())  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=DATA / "fastplaid-venv")
    ap.add_argument("--pages", type=int, default=10_000)
    ap.add_argument("--real-limit", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument(
        "--kmeans-docs", type=int, default=None, help="fast-plaid n_samples_kmeans (None: its default)"
    )
    ap.add_argument("--nbits", type=int, default=2)
    ap.add_argument("--peer-timeout", type=int, default=4 * 3600)
    ap.add_argument("--only", choices=["synthetic", "realtext"], default=None)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    say(f"load {load_avg()}")
    results = []
    if args.only in (None, "synthetic"):
        results.append(synthetic(args))
    if args.only in (None, "realtext"):
        results.append(realtext(args))
    out = {"results": results, "load_end": load_avg(), "args": {k: str(v) for k, v in vars(args).items()}}
    (args.cache / "peer_results.json").write_text(json.dumps(out, indent=1, default=str))
    md = render(out, args)
    print("\n" + md)
    if not args.no_write:
        print(f"\nwrote {write_section('Against fast-plaid', md)}")


HEADERS = ["index", "items", "build s (ours / fast-plaid)", "build ratio", "update s (ours / fast-plaid)", "update ratio",
           "recall@10 (ours / fast-plaid)", "p50 ms (ours / fast-plaid)", "p50 ratio", "fast-plaid setting"]  # fmt: skip


def render(out: dict[str, Any], args: argparse.Namespace) -> str:
    rows = []
    for r in out["results"]:
        o, p, b = r["ours"], r["peer"], r["peer_best"]
        rows.append([r["name"], f"{p['n_docs']:,}", f"{o['build_s']:.0f} / {p['build_s']:.0f}", f"{p['build_s'] / o['build_s']:.1f}x",
                     f"{o['update_s']:.2f} / {p.get('update_s', float('nan')):.2f}", f"{p.get('update_s', float('nan')) / o['update_s']:.1f}x",
                     f"{o['recall']:.3f} / {b['recall']:.3f}", f"{o['p50_ms']:.0f} / {b['p50_ms']:.0f}", f"{b['p50_ms'] / o['p50_ms']:.2f}x",
                     json.dumps(b["settings"]) + ("" if r["equal_recall"] else " (best recall it reached)")])  # fmt: skip
    return "\n".join([
        (f"fast-plaid {out['results'][0]['peer'].get('fast_plaid', '?')} (torch {out['results'][0]['peer'].get('torch', '?')}, "
         f"CPU, nbits={args.nbits}, 2 threads) and mmrag's index (plaid + exact rerank, no dense channel) on the same LanceDB tables in the same "
         f"run; ratios are fast-plaid / mmrag (> 1: mmrag faster). p50 at equal recall: fast-plaid's fastest setting of "
         f"n_ivf_probe x n_full_scores whose recall@10 (against exact MaxSim) reaches mmrag's. Update: one 10-page document "
         f"added and one deleted, until search sees it. Load at the end {out['load_end']}."),
        "",
        table(HEADERS, rows),
    ])  # fmt: skip


if __name__ == "__main__":
    main()

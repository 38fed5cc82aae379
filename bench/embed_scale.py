"""Parallel embedding on paper: what staging and the one commit cost, and what N GPU workers give.

    uv run python bench/embed_scale.py                     # writes "Parallel embedding (bench/embed_scale.py)"
    uv run python bench/embed_scale.py --no-write --chunk 64 --batches 1,8,32

Measured in one run, with the product's own code (``lib/index/staging.py``) on local disk and on moto's
S3 server on 127.0.0.1 (the storage an embedding worker and the publisher share):

- **stage**: what an embedding worker adds per chunk of pages besides the model: ``Staging.stage`` of
  ``--chunk`` ColPali-shaped pages (344 x 128 float16 vectors per page, the search benchmark's
  token-pooled shape): Lance data files, then the batch record. Runs on each worker, in parallel.
- **commit**: the publisher's ``commit_staged`` of B batches at once (one Lance transaction), for each
  B in ``--batches``; a least-squares line gives its fixed and per-batch cost. Serial: one publisher.

Then, on paper: N workers each embedding at a per-GPU rate r take P/N x (1/r + stage/chunk) seconds,
then the commit of P/chunk batches; throughput is P over their sum. Two per-GPU rates: the ColPali
paper's 0.39 s/page (the reference ``bench/embed_gpu.py`` reports against; no GPU figure measured
here yet) and 15 pages/s (the middle of the 10-20 pages/s the issue quotes for a batched modern GPU).
The publish's search-index build after the commit is serial too (one publisher): it is shown from the
*Incremental index* section's measured full build. And 1M / 100M pages: storage, GPU-hours, replicas,
from the measured bytes per page (*Search*, *Scale-out*) and query cost (*Search*).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import BENCHMARKS, commit, emit, table
from bench.embed_gpu import COLPALI_PAPER_S_PER_PAGE

SECTION = "Parallel embedding (bench/embed_scale.py)"
TOKENS, DIM = 344, 128  # ColPali-shaped page after token pooling by 3 (bench/search.py)
ISSUE_PAGES_PER_S = 15.0  # the issue's 10-20 pages/s for a batched GPU: the middle
WORKERS = (1, 2, 4, 8, 16, 32, 64, 128)
REPLICA_RAM_GIB = (
    64  # one search replica's memory, half of it for the first stage (the rest: page cache, process)
)


def _doc(i: int) -> str:
    return hashlib.sha256(f"bench-doc-{i}".encode()).hexdigest()[:16]


class Store:
    """One storage root (local folder or s3://) with an items table, a staging area and a catalog."""

    def __init__(self, base: Path, remote: bool) -> None:
        import lancedb

        from mmrag_assets.lib.index import staging as st
        from mmrag_assets.lib.store import table as lx
        from mmrag_assets.lib.store.catalog import Catalog
        from mmrag_assets.lib.store.storage import Storage
        from mmrag_assets.roots import RootUri

        base.mkdir(parents=True, exist_ok=True)
        uri = RootUri("s3", "mmrag-bench", "embed") if remote else RootUri("file", "", str(base))
        self.store = Storage(uri, base, allow_http=True)
        self.db = lancedb.connect(
            self.store.url("lancedb"), storage_options=self.store.lance_options() or None
        )
        self.tbl = self.db.create_table("items__bench", schema=lx.schema(DIM))
        self.cat = Catalog(base / "catalog.duckdb")
        self.staging = st.Staging(self.store, self.tbl.name)
        self.schema = self.tbl.schema
        self.next_doc = 0

    def docs(self, n: int) -> list[str]:
        ids = [_doc(self.next_doc + i) for i in range(n)]
        self.next_doc += n
        with self.cat.connect() as con:
            con.executemany(
                "INSERT INTO documents (doc_id, source, kind, sha256, status, fingerprint) VALUES (?, ?, 'pdf', ?, 'ok', 'fp')",
                [[d, f"bench/{d}.pdf", d * 4] for d in ids],
            )
        return ids

    def chunk(self, pages: int, pages_per_doc: int, rng: np.random.Generator):
        """(rows, docs) of one chunk: ``pages`` ColPali-shaped pages of new documents."""
        from mmrag_assets.lib.store import table as lx

        n_docs = max(1, pages // pages_per_doc)
        items, vecs = [], []
        for d in self.docs(n_docs):
            for p in range(1, pages_per_doc + 1):
                items.append({"item_id": f"{d}:{p}", "doc_id": d, "source": f"bench/{d}.pdf", "modality": "page", "page": p,
                              "start_s": None, "end_s": None, "text": f"page {p}", "image_path": None, "thumb_path": None,
                              "ingest_fp": "fp"})  # fmt: skip
                v = rng.standard_normal((TOKENS, DIM), dtype=np.float32)
                vecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        data, _ = lx.prepare_rows(items, vecs, self.schema, DIM)
        docs: dict[str, dict] = {}
        for it in items:
            docs.setdefault(it["doc_id"], {"fp": "fp", "items": []})["items"].append(it["item_id"])
        return data, docs


def measure(
    store: Store, chunk: int, repeats: int, batch_counts: list[int], rng: np.random.Generator
) -> dict:
    from mmrag_assets.lib.index import staging as st

    stage_s = []
    for _ in range(repeats):
        data, docs = store.chunk(chunk, 8, rng)
        t = time.perf_counter()
        store.staging.stage(store.tbl, data, docs, run_id="bench")
        stage_s.append(time.perf_counter() - t)
    full = st.commit_staged(store.tbl, store.staging, store.cat, version_key="bench")  # the chunks above
    commits = []
    for b in batch_counts:
        for _ in range(b):
            data, docs = store.chunk(
                8, 8, rng
            )  # one small document per batch: the commit's cost is per batch
            store.staging.stage(store.tbl, data, docs, run_id="bench")
        t = time.perf_counter()
        res = st.commit_staged(store.tbl, store.staging, store.cat, version_key="bench")
        commits.append((b, time.perf_counter() - t))
        assert res.batches == b, res
    xs, ys = [b for b, _ in commits], [s for _, s in commits]
    slope, intercept = np.polyfit(xs, ys, 1) if len(set(xs)) > 1 else (0.0, ys[0])
    return {
        "stage_s": statistics.median(stage_s), "stage_all": stage_s, "full_commit_s": full.seconds, "full_batches": full.batches,
        "commits": commits, "commit_fixed_s": max(0.0, float(intercept)), "commit_per_batch_s": max(0.0, float(slope)),
        "chunk_bytes": chunk * TOKENS * DIM * 2,
    }  # fmt: skip


def model(pages: float, workers: int, rate: float, chunk: int, m: dict) -> float:
    """Seconds for ``workers`` GPU workers to embed and stage ``pages``, then the one commit."""
    per_worker = pages / workers
    work = per_worker / rate + math.ceil(per_worker / chunk) * m["stage_s"]
    return work + m["commit_fixed_s"] + m["commit_per_batch_s"] * math.ceil(pages / chunk)


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def _find(pattern: str, default: float) -> tuple[float, bool]:
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    hit = re.search(pattern, text)
    return (float(hit.group(1).replace(",", "")), True) if hit else (default, False)


def report(
    res: dict[str, dict], chunk: int, load: tuple[tuple[float, ...], tuple[float, ...]] | None = None
) -> str:
    s3 = res["s3"]
    rates = {
        "paper 0.39 s/page": 1 / COLPALI_PAPER_S_PER_PAGE,
        f"issue {ISSUE_PAGES_PER_S:g} pages/s": ISSUE_PAGES_PER_S,
    }
    build_s, build_found = _find(r"full build \(train [^)]*\) \| 100,000 \| ([\d,.]+) \|", 264.0)
    build_per_page = build_s / 100_000
    images, _ = _find(r"page images ([\d.]+) KiB", 124.9)
    lance_kib, _ = _find(r"lance flat \(native MaxSim, no rerank\): ([\d.]+) KiB/page", 86.3)
    plaid_kib, _ = _find(r"- plaid: ([\d.]+) KiB/page", 1.8)
    fs_1m, _ = _find(r"~(\d+) ms first stage at 1M", 76.0)
    rerank_ms, _ = _find(
        r"\| 100,000 \| plaid \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", 39.1
    )

    lines = [
        (
            f"Commit `{commit()}`. Measured with `lib/index/staging.py` on local disk and on moto's S3 server on 127.0.0.1 "
            f"(in-process, 2 shared cores: the object store's figures are the emulator's, not S3's). A chunk is "
            f"{chunk} ColPali-shaped pages ({TOKENS} x {DIM} float16 per page, {res['local']['chunk_bytes'] / 2**20:.1f} MiB of "
            f"vectors), as `index.write_chunk_items` stages it; commits stage one 8-page document per batch"
            + (
                f". Load average {', '.join(f'{x:.1f}' for x in load[0])} at the start, "
                f"{', '.join(f'{x:.1f}' for x in load[1])} at the end."
                if load
                else "."
            )
        ),
        "",
        table(
            [
                "storage",
                f"stage one chunk s (median of {len(s3['stage_all'])})",
                "stage s/page",
                f"commit of {res['local']['full_batches']} full chunks s",
                "commit fixed s",
                "commit per batch ms",
            ],
            [
                [
                    k,
                    round(r["stage_s"], 3),
                    round(r["stage_s"] / chunk, 5),
                    round(r["full_commit_s"], 3),
                    round(r["commit_fixed_s"], 3),
                    round(r["commit_per_batch_s"] * 1000, 2),
                ]
                for k, r in res.items()
            ],
        ),
        "",
        table(
            ["storage", *[f"commit {b} batches s" for b, _ in s3["commits"]]],
            [[k, *[round(x, 3) for _, x in r["commits"]]] for k, r in res.items()],
        ),
        "",
        "### Embedding throughput against GPU workers (on paper, S3 figures)",
        "",
        (
            f"N workers embed P pages at r pages/s each and stage every chunk: P/N x (1/r + stage/{chunk}); then the "
            f"publisher's one commit of P/{chunk} batches (fixed + per batch, measured above). Speed-up against one worker; "
            f"efficiency = speed-up / N."
        ),
        "",
    ]
    rows = []
    for label, rate in rates.items():
        for pages in (1e6, 1e8):
            one = model(pages, 1, rate, chunk, s3)
            for n in WORKERS:
                t = model(pages, n, rate, chunk, s3)
                commit_s = s3["commit_fixed_s"] + s3["commit_per_batch_s"] * math.ceil(pages / chunk)
                rows.append([label, f"{pages:,.0f}", n, round(pages / t, 1), round(one / t, 1), f"{one / t / n:.0%}",
                             f"{t / 3600:,.1f}", f"{commit_s:,.0f}", f"{t * n / 3600:,.0f}"])  # fmt: skip
    lines += [
        table(
            [
                "per-GPU rate",
                "pages",
                "workers",
                "pages/s",
                "speed-up",
                "efficiency",
                "wall h (embed + commit)",
                "commit s",
                "GPU-hours held",
            ],
            rows,
        ),
        "",
        (
            f"- What does not spread: the commit (one publisher; {s3['commit_per_batch_s'] * 1000:.1f} ms per batch on the emulator: "
            f"{s3['commit_per_batch_s'] * math.ceil(1e6 / chunk):,.0f} s for 1M pages, "
            f"{s3['commit_per_batch_s'] * math.ceil(1e8 / chunk) / 3600:,.1f} h for 100M) and the search-index build after it: "
            f"{build_s:g} s per 100,000 pages measured (*Incremental index*{'' if build_found else ', default'}; 2 cores) -> "
            f"{build_per_page * 1e6 / 3600:,.1f} h at 1M, {build_per_page * 1e8 / 3600:,.0f} h at 100M on one such publisher, "
            "unless it moves to more cores or the index is sharded (below)."
        ),
        "",
        "### 1M and 100M pages on paper",
        "",
    ]
    per_page_kib = images + lance_kib + plaid_kib
    fit_pages = REPLICA_RAM_GIB / 2 * 2**30 / (plaid_kib * 1024)
    # plaid's first stage (Search section, 100k pages): S = q @ leaves and the full interaction of the
    # survivors stay put, the inverted-list pass grows with the pages; the exact rerank of 200 candidates stays put
    fixed_ms, fixed_found = _find(r"S = q @ leaves ([\d.]+) ms", 3.7)
    full_ms, _ = _find(r"full centroid interaction of \d+ pages ([\d.]+) ms", 7.6)
    list_1m = fs_1m - fixed_ms - full_ms  # ms per 1M pages

    def shard_ms(pages_per_shard: float) -> float:
        return fixed_ms + full_ms + list_1m * pages_per_shard / 1e6 + rerank_ms

    paper_rows = []
    for pages, shards in ((1e6, 1), (1e8, math.ceil(1e8 / fit_pages)), (1e8, 100)):
        ms = shard_ms(pages / shards)
        cpu_s = shards * ms / 1000  # every shard answers every query (scatter-gather, exact top-k merge)
        paper_rows.append([
            f"{pages:,.0f}", _bytes(per_page_kib * 1024 * pages), _bytes(images * 1024 * pages),
            _bytes(lance_kib * 1024 * pages), _bytes(plaid_kib * 1024 * pages),
            f"{pages * COLPALI_PAPER_S_PER_PAGE / 3600:,.0f} / {pages / ISSUE_PAGES_PER_S / 3600:,.0f}",
            shards, f"{pages / shards / 1e6:,.1f}M", f"{ms:,.0f}", f"{cpu_s:,.2f}", math.ceil(100 * cpu_s / 16),
        ])  # fmt: skip
    lines += [
        table(
            [
                "pages",
                "storage",
                "page images",
                "LanceDB vectors",
                "first stage (in RAM)",
                "GPU-hours (paper / issue rate)",
                "index shards",
                "pages per shard",
                "query ms (shards in parallel)",
                "CPU s per query",
                "16-core machines for 100 QPS",
            ],
            paper_rows,
        ),
        "",
        (
            f"- Bytes per page: page images {images:g} KiB (*Scale-out*, rendered at the default dpi), the LanceDB float16 "
            f"multi-vectors {lance_kib:g} KiB and the plaid first stage {plaid_kib:g} KiB (*Search*, 100,000 ColPali-shaped pages)."
        ),
        (
            f"- **Where one replica stops fitting:** a replica keeps the first stage in memory (the rerank reads ~200 pages' "
            f"vectors per query from local SSD or the object store). With {REPLICA_RAM_GIB} GiB, half of it for the first stage, "
            f"one replica holds ~{fit_pages / 1e6:,.0f}M pages: below 10M pages one replica fits, so the sharded layout stays on "
            "paper. Past it: shards by document hash (the same hex digits as the ingest shards), every replica serving one shard, "
            "a query scattered to every shard, each returning its exact top-k (exact MaxSim rerank), merged by score: the merge "
            "is exact because the scores are."
        ),
        (
            f"- Query cost per shard: {fixed_ms:g} ms (S = q @ leaves) + {full_ms:g} ms (full interaction of the survivors) + "
            f"the inverted-list pass, {list_1m:.0f} ms per 1M pages (the *Search* section's extrapolation: {fs_1m:g} ms first stage "
            f"at 1M) + {rerank_ms:g} ms rerank, one core each. The list pass grows with the pages whatever the layout, so 100M "
            f"pages cost {paper_rows[1][9]}-{paper_rows[2][9]} CPU-seconds per query: sharding buys latency and memory, not CPU. "
            "These are extrapolations from "
            "100,000 synthetic pages on 2 shared cores"
            f"{'' if fixed_found else ' (defaults: the Search section was not found)'}, not measurements at 1M or 100M."
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    from tests.scale.services import s3_emulator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=512, help="pages per staged chunk (index.write_chunk_items)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    counts = [int(x) for x in args.batches.split(",")]
    res: dict[str, dict] = {}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mmrag-embed-scale-") as tmp, s3_emulator("mmrag-bench") as aws:
        os.environ.update(aws)
        for name in ("local", "s3"):
            rng = np.random.default_rng(0)
            store = Store(Path(tmp) / name, remote=name == "s3")
            t = time.perf_counter()
            res[name] = measure(store, args.chunk, args.repeats, counts, rng)
            print(f"{name}: {time.perf_counter() - t:.0f} s: {res[name]}", flush=True)
    emit(SECTION, report(res, args.chunk, (load0, os.getloadavg())), write=not args.no_write)


if __name__ == "__main__":
    main()

"""Scale-out: the same corpus indexed with 1 worker and with 2, on local disk and on an S3 emulator.

    uv run python bench/scale.py                 # writes the "Scale-out" section of BENCHMARKS.md
    uv run python bench/scale.py --docs 16 --no-write

In one run, on fresh storage each: `mmrag index` (model=lite, catalog=postgres in every
configuration, so only the worker count and the storage root differ) with
``orchestration=local`` (1 worker: one in-process run, the baseline) and
``orchestration=multiprocess orchestration.workers=2`` (2 shard-range runs side by side), each on a
local storage root and on ``s3://`` served by moto's server on 127.0.0.1. Reports documents/s, wall
and CPU seconds and the speed-up against the 1-worker run of the same storage; then the warm search
p50/p95 of the same queries against the local index and against the object store (a replica with
an empty mirror), and, on paper, what 1M pages cost: storage (from this run's bytes per page and the
search benchmark's ColPali-shaped figures), embedding GPU-hours at the throughput
``bench/embed_gpu.py`` measures against (0.39 s/page), and search replicas at the measured QPS.
Needs the Postgres server on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import BENCHMARKS, table, write_section
from bench.embed_gpu import COLPALI_PAPER_S_PER_PAGE
from bench.orchestration import ROOT, WORDS

QUERIES = [f"{a} {b}" for a, b in zip(WORDS[::2], WORDS[1::2], strict=False)][:20]


def make_corpus(root: Path, n: int, pages: int, seed: int = 0) -> None:
    """``n`` text PDFs of ``pages`` pages (rendered at ingest: real per-document work)."""
    import random

    import pymupdf

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        doc = pymupdf.open()
        for p in range(pages):
            page = doc.new_page(width=595, height=842)
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(120, 260)))
            page.insert_textbox(
                pymupdf.Rect(36, 36, 559, 806), f"Document {i} page {p + 1}. {words}", fontsize=10
            )
        doc.save(root / f"doc{i:04d}.pdf")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the command and its children, stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:4])} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), r.stderr


def search_latency(overrides: list[str], env: dict[str, str]) -> dict[str, float]:
    """Warm p50/p95 (ms) of QUERIES in a fresh process (a replica: its own empty mirror)."""
    code = (
        "import json, sys, time\n"
        "from mmrag_assets.config import load_config\n"
        "from mmrag_assets.lib.search.searcher import get_searcher\n"
        "from mmrag_assets.lib.store.runtime import Runtime\n"
        "cfg = load_config(sys.argv[2:])\n"
        "s = get_searcher(Runtime(cfg)); s.search('warm up')\n"
        "ms = []\n"
        "for q in json.loads(sys.argv[1]):\n"
        "    t = time.perf_counter(); s.search(q); ms.append((time.perf_counter() - t) * 1000)\n"
        "print(json.dumps(ms))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, json.dumps(QUERIES), *overrides], capture_output=True,
                       text=True, cwd=ROOT, env=env, check=True)  # fmt: skip
    ms = sorted(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"p50": statistics.median(ms), "p95": ms[int(0.95 * (len(ms) - 1))]}


def storage_per_page(env: dict[str, str]) -> dict[str, float]:
    """Bytes per item of the LanceDB table, the index files and the page images (S3 objects)."""
    code = (
        "import json, sys, boto3\n"
        "s3 = boto3.client('s3')\n"
        "sizes = {'lancedb': 0, 'index': 0, 'pages': 0}\n"
        "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='mmrag-bench', Prefix='s3-2/'):\n"
        "    for o in page.get('Contents', []):\n"
        "        part = o['Key'].split('/')[1]\n"
        "        if part in sizes: sizes[part] += o['Size']\n"
        "print(json.dumps(sizes))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def paper_figures() -> dict[str, float]:
    """The search benchmark's ColPali-shaped bytes per page (BENCHMARKS.md, Search section)."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    out = {}
    for name in ("plaid", "lance flat \\(native MaxSim, no rerank\\)"):
        m = re.search(rf"- {name}: ([\d.]+) KiB/page", text)
        if m:
            out[name.split(" ")[0]] = float(m.group(1)) * 1024
    return out


def main() -> None:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    from tests.scale.services import fresh_database, s3_emulator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    rows, res = [], {}
    with tempfile.TemporaryDirectory(prefix="mmrag-scale-") as tmp, s3_emulator("mmrag-bench") as aws:
        base = Path(tmp)
        make_corpus(base / "corpus", args.docs, args.pages)
        env = {**os.environ, **aws, "MMRAG_FORCE_CPU": "1"}
        configs = {}
        for storage in ("local", "s3"):
            for workers in (1, 2):
                key = f"{storage}-{workers}"
                root = (
                    f"storage.root={base / key}"
                    if storage == "local"
                    else f"storage.root=s3://mmrag-bench/{key}"
                )
                orch = (
                    ["orchestration=local"]
                    if workers == 1
                    else ["orchestration=multiprocess", "orchestration.workers=2"]
                )
                configs[key] = [f"corpus.root={base / 'corpus'}", root, "model=lite", f"storage.cache_dir={base / 'cache'}",
                                "storage.allow_http=true", *orch]  # fmt: skip
        with fresh_database() as d1, fresh_database() as d2, fresh_database() as d3, fresh_database() as d4:
            for (key, ovr), db in zip(configs.items(), (d1, d2, d3, d4), strict=True):
                ovr += ["catalog=postgres", f"catalog.url={db}"]
                wall, cpu, _ = timed([sys.executable, "-m", "mmrag_assets.cli", "index", *ovr], env)
                res[key] = {"wall": wall, "cpu": cpu}
                print(f"{key}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            lat = {
                s: search_latency([*configs[f"{s}-2"], f"storage.cache_dir={base / ('replica-' + s)}"], env)
                for s in ("local", "s3")
            }
            sizes = storage_per_page(env)
    n = args.docs
    pages = args.docs * args.pages
    for storage in ("local", "s3"):
        one = res[f"{storage}-1"]["wall"]
        for workers in (1, 2):
            r = res[f"{storage}-{workers}"]
            rows.append(
                [
                    storage,
                    workers,
                    round(r["wall"], 1),
                    round(r["cpu"], 1),
                    round(n / r["wall"], 3),
                    round(one / r["wall"], 2),
                ]
            )
    qps = 1000.0 / lat["s3"]["p50"]
    per_page = {k: v / pages for k, v in sizes.items()}
    paper = paper_figures()
    gpu_h = 1e6 * COLPALI_PAPER_S_PER_PAGE / 3600
    lines = [
        (
            f"Corpus: {n} text PDFs x {args.pages} pages ({pages} pages), `model=lite`, `catalog=postgres` everywhere; "
            "1 worker = `orchestration=local` (one in-process run, the baseline), 2 workers = "
            "`orchestration=multiprocess orchestration.workers=2`; S3 = moto's server on 127.0.0.1. Speed-up is against the "
            "1-worker run of the same storage, in the same run."
        ),
        "",
        table(["storage", "workers", "wall s", "CPU s", "documents/s", "speed-up"], rows),
        "",
        table(
            ["search (warm, 20 queries, one replica process)", "p50 ms", "p95 ms"],
            [
                ["local disk", round(lat["local"]["p50"], 1), round(lat["local"]["p95"], 1)],
                ["object store (S3 emulator)", round(lat["s3"]["p50"], 1), round(lat["s3"]["p95"], 1)],
            ],
        ),
        "",
        f"Search p50 object store / local disk: {lat['s3']['p50'] / lat['local']['p50']:.2f}x.",
        "",
        "### 1M pages on paper",
        "",
        (
            f"- Stored per page in this run (lite tier, S3): LanceDB {per_page['lancedb'] / 1024:.1f} KiB, index files "
            f"{per_page['index'] / 1024:.1f} KiB, page images {per_page['pages'] / 1024:.1f} KiB -> "
            f"{sum(per_page.values()) * 1e6 / 1e9:.0f} GB at 1M pages."
        ),
    ]
    if paper:
        lines.append(
            f"- ColPali-shaped multi-vectors (bench/search.py): the LanceDB float16 copy {paper.get('lance', 0) / 1024:.1f} KiB/page "
            f"-> {paper.get('lance', 0) * 1e6 / 1e9:.0f} GB, the plaid first stage {paper.get('plaid', 0) / 1024:.1f} KiB/page -> "
            f"{paper.get('plaid', 0) * 1e6 / 1e9:.1f} GB, plus the page images above."
        )
    lines += [
        (
            f"- Embedding at the throughput bench/embed_gpu.py measures against ({COLPALI_PAPER_S_PER_PAGE} s/page on one GPU): "
            f"{gpu_h:,.0f} GPU-hours for 1M pages ({gpu_h / 8:,.0f} h on 8 GPU workers); no GPU figure is recorded here yet."
        ),
        (
            f"- Search replicas: one replica process answered {qps:.1f} queries/s at the object-store p50 (single-threaded, warm); "
            f"100 QPS needs ~{int(-(-100 // qps))} replicas of this size. This index is tiny: at 1M pages the first stage costs "
            "more per query (Search section), so measure replicas on the real index."
        ),
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Scale-out (bench/scale.py)", body)


if __name__ == "__main__":
    main()

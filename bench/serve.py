"""Warm start of `mmrag serve`: the first search after start-up, with and without the warm-up.

    uv run python bench/serve.py [--dir DIR] [--queries 30]

On the sample corpus (lite tier) it starts the real server twice on a free loopback port:
``serve.warm_up=false`` (the baseline: the index is opened at start-up, as before, but the first
search still loads the first stage, the reranker and the torch kernels) and ``serve.warm_up=true``
(the default: one warm-up search before ``/readyz`` turns 200). For each it records the seconds
from process start to ready, the first search's wall time seen by the client, and the p50/p95 of
the following searches; the section "HTTP server (warm start)" of BENCHMARKS.md gets the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _report import table, write_section

QUERIES = [
    "what does inverter error code E04 mean",
    "revenue by region in the third quarter",
    "how do I reset my wireless router",
    "DC isolator commissioning",
    "firmware upgrade never unplug",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(overrides: list[str], warm: bool, n: int) -> dict[str, float]:
    port = _port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmrag_assets.cli",
            "serve",
            "--port",
            str(port),
            *overrides,
            f"serve.warm_up={str(warm).lower()}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"error: mmrag serve exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        ready_s = time.perf_counter() - t0
        lat = []
        with httpx.Client(base_url=url, timeout=120) as c:
            for i in range(n + 1):
                t = time.perf_counter()
                r = c.get("/search", params={"q": QUERIES[i % len(QUERIES)], "k": 5})
                r.raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)
        rest = sorted(lat[1:])
        return {
            "ready_s": ready_s,
            "first_ms": lat[0],
            "p50_ms": statistics.median(rest),
            "p95_ms": rest[int(0.95 * (len(rest) - 1))],
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the sample corpus and its index go (default: a temp dir)",
    )
    ap.add_argument("--queries", type=int, default=30, help="searches after the first one")
    args = ap.parse_args()

    from mmrag_assets.config import load_config
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus
    from mmrag_assets.orchestration.launch import index

    with tempfile.TemporaryDirectory() as tmp:
        base = args.dir or Path(tmp)
        build_sample_corpus(base / "corpus")
        overrides = [f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", "model=lite"]
        index(load_config(overrides))
        cold = run(overrides, False, args.queries)
        warm = run(overrides, True, args.queries)
    rows = [
        [name, r["ready_s"], r["first_ms"], r["p50_ms"], r["p95_ms"]]
        for name, r in (("warm_up=false (baseline)", cold), ("warm_up=true (default)", warm))
    ]
    body = (
        "`bench/serve.py`: the real `mmrag serve` on the sample corpus (lite tier), client-side wall times over\n"
        f"loopback; {args.queries} searches after the first.\n\n"
        + table(
            ["server", "start to /readyz 200 (s)", "first search (ms)", "then p50 (ms)", "then p95 (ms)"],
            rows,
        )
        + f"\n\nFirst search: {cold['first_ms'] / warm['first_ms']:.1f}x faster with the warm-up "
        f"({cold['first_ms']:.0f} ms -> {warm['first_ms']:.0f} ms); readiness comes "
        f"{warm['ready_s'] - cold['ready_s']:.1f} s later, while the server already answers `/healthz` and the page.\n"
    )
    print(body)
    write_section("HTTP server (warm start)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

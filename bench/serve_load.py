"""A running `mmrag serve` under load while a re-index adds and removes documents: 8 clients x 200
requests (a search, then the page image of its first result) on 127.0.0.1 against a real server
process, while `mmrag index` (another process) removes one document and adds two. Reports the
success rate, latency p50/p95 before and during the re-index (the baseline and the figure of the
same run), the server's RSS, and whether any answer that started after the removal was published
still named the removed document. Each client sends at most 3/4 of its requests before the
publish and the rest after it, so both sides are measured on any machine. ``tests/faults/test_serve_under_reindex.py`` runs the same load
and requires 100% success and no such answer (no timing asserts).

    uv run python bench/serve_load.py [--clients 8] [--requests 200] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERIES = ["waggle dance of bees", "basalt volcano", "river delta page 2", "document 4 topic 28", "glacier ice",
           "tidal turbines ocean", "document 7 topic 49"]  # fmt: skip
REMOVED, ADDED = "doc5.pdf", ("doc6.pdf", "doc7.pdf")


@dataclass
class Req:
    kind: str  # search | image
    t0: float
    t1: float
    status: int
    sources: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class LoadResult:
    requests: list[Req]
    published_at: float | None  # when CURRENT switched to the version without the removed document
    reindex_span: tuple[float, float]
    reindex_rc: int
    rss_peak: int
    rss_start: int

    @property
    def ok(self) -> int:
        return sum(r.status == 200 for r in self.requests)

    def stale_after_publish(self) -> list[Req]:
        """Answers that started after the removal was published and still name the removed document."""
        if self.published_at is None:
            return []
        return [r for r in self.requests if r.t0 > self.published_at and REMOVED in r.sources]

    def after_publish(self) -> int:
        return sum(r.t0 > self.published_at for r in self.requests) if self.published_at else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mmrag(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmrag_assets.cli", *args]


def prepare(base: Path, overrides: list[str]) -> None:
    """Six documents indexed; doc6/doc7 staged outside the corpus until the re-index."""
    from tests.faults.conftest import make_corpus

    make_corpus(base / "all", n=8)
    (base / "corpus").mkdir(parents=True)
    for i in range(6):
        shutil.copy(base / "all" / f"doc{i}.pdf", base / "corpus")
    r = subprocess.run(_mmrag("index", *overrides), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"initial index failed: {r.stderr[-2000:]}")


def run_load(base: Path, overrides: list[str], *, clients: int = 8, requests: int = 200) -> LoadResult:
    import httpx
    import psutil

    from mmrag_assets.config import load_config
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.index.publish import location_for

    cfg = load_config(overrides)
    current = location_for(cfg, version_key_for(cfg.model)).current_file
    port = free_port()
    log = open(base / "serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        _mmrag("serve", "--port", str(port), *overrides), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mmrag serve did not start:\n{(base / 'serve.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        proc = psutil.Process(server.pid)
        rss = {"start": proc.memory_info().rss, "peak": proc.memory_info().rss}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    rss["peak"] = max(rss["peak"], proc.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.1)

        out: list[Req] = []
        lock = threading.Lock()
        switched = threading.Event()  # CURRENT names the version without the removed document
        reindexed = threading.Event()
        seen_removed = threading.Event()  # a search answered with the document the re-index removes

        def client(c: int) -> None:
            mine: list[Req] = []
            with httpx.Client(base_url=url, timeout=60) as http:
                for i in range(requests):
                    # at most 3/4 of the requests before the publish: the rest must see the new
                    # version (on a fast machine the clients would otherwise finish first)
                    while i >= requests * 3 // 4 and not (switched.is_set() or reindexed.is_set()):
                        time.sleep(0.05)
                    q = QUERIES[(c + i) % len(QUERIES)]
                    t0 = time.time()
                    try:
                        r = http.post("/search", json={"query": q, "k": 5})
                        body = r.json() if r.status_code == 200 else {}
                        res = body.get("results", [])
                        mine.append(Req("search", t0, time.time(), r.status_code, [x["source"] for x in res]))
                        if REMOVED in mine[-1].sources:
                            seen_removed.set()
                        link = next((x["image_url"] for x in res if x.get("image_url")), None)
                        if link and i % 2 == 0:  # every other search also fetches its first page image
                            t0 = time.time()
                            r = http.get(link)
                            mine.append(Req("image", t0, time.time(), r.status_code))
                    except httpx.HTTPError as e:
                        mine.append(Req("search", t0, time.time(), 0, error=f"{type(e).__name__}: {e}"))
            with lock:
                out.extend(mine)

        published: dict[str, float] = {}
        before = current.read_text()

        def watch() -> None:
            while not done.is_set() and "t" not in published:
                try:
                    if current.read_text() != before:
                        published["t"] = time.time()
                        switched.set()
                except OSError:
                    pass
                time.sleep(0.01)

        threads = [threading.Thread(target=sample), threading.Thread(target=watch)]
        threads += [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        # the clients are running and the removed document has been answered at least once (a fixed
        # 2 s wait was not enough on a machine at load average ~14: no answer came before the re-index)
        seen_removed.wait(timeout=120)
        time.sleep(0.5)
        (cfg.corpus_root / REMOVED).unlink()
        for name in ADDED:
            shutil.copy(base / "all" / name, cfg.corpus_root)
        t_re = time.time()
        re = subprocess.run(_mmrag("index", *overrides), capture_output=True, text=True, check=False)
        span = (t_re, time.time())
        reindexed.set()
        for t in threads[2:]:
            t.join()
        done.set()
        for t in threads[:2]:
            t.join()
        return LoadResult(out, published.get("t"), span, re.returncode, rss["peak"], rss["start"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(xs, q)) if xs else float("nan")


def main() -> None:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    from bench._report import table, write_section
    from tests.faults.conftest import FAST

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        overrides = [f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", *FAST]
        os.environ.setdefault("MMRAG_FORCE_CPU", "1")
        prepare(base, overrides)
        res = run_load(base, overrides, clients=args.clients, requests=args.requests)
    a, b = res.reindex_span
    rows = []
    for name, pick in (
        ("before and after the re-index (baseline)", lambda r: r.t1 < a or r.t0 > b),
        ("during the re-index", lambda r: r.t0 >= a and r.t1 <= b),
        ("all", lambda r: True),
    ):
        sel = [r for r in res.requests if pick(r) and r.kind == "search"]
        ms = [1000 * (r.t1 - r.t0) for r in sel]
        rows.append([name, len(sel), f"{sum(r.status == 200 for r in sel) / max(len(sel), 1):.2%}",
                     f"{_pct(ms, 50):.0f}", f"{_pct(ms, 95):.0f}"])  # fmt: skip
    n, ok = len(res.requests), res.ok
    stale = res.stale_after_publish()
    images = [r for r in res.requests if r.kind == "image"]
    summary = (
        f"{ok}/{n} requests succeeded ({ok / n:.2%}; {sum(r.status == 200 for r in images)}/{len(images)} page images); "
        f"re-index exit {res.reindex_rc} in {b - a:.1f} s; {res.after_publish()} requests started after the removal was "
        f"published, {len(stale)} of them named the removed document; server RSS {res.rss_start / 2**20:,.0f} MiB at "
        f"start, peak {res.rss_peak / 2**20:,.0f} MiB"
    )
    print(summary)
    print(table(["searches", "n", "success", "p50 ms", "p95 ms"], rows))
    if args.no_write:
        return
    body = "\n".join(
        [
            (
                f"`bench/serve_load.py`: a real `mmrag serve` on 127.0.0.1 (lite tier, 6 PDFs of 3 pages), {args.clients} "
                f"client threads x {args.requests} searches (every other one also fetching its first page image), while "
                f"`mmrag index` in another process removes `{REMOVED}` and adds two documents. Latency is per search, "
                "client side; the baseline is the searches that ran outside the re-index in the same run."
            ),
            "",
            table(["searches", "n", "success", "p50 ms", "p95 ms"], rows),
            "",
            f"**{summary}.**",
        ]
    )
    print(f"wrote {write_section('HTTP server under a re-index', body)}")


if __name__ == "__main__":
    main()

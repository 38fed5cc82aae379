"""How long a file dropped into the corpus takes to be served when `mmrag ui` runs (issue 23): the
Dagster daemon's corpus sensor notices it, requests an `index_job` run, the run ingests, embeds and
publishes, and the search index's live version then holds the document.

    uv run python bench/sensor_latency.py [--pages 620] [--repeats 3] [--store DIR] [--no-write]

Corpus: bench/index_speed.py's three real manuals (620 text pages); the dropped file is its added
10-page Doxygen PDF (9 screenshot regions to OCR). The store is built once with `mmrag index` (or
``--store``: a store of that corpus kept from an earlier run, copied, not changed). Then `mmrag ui`
(webserver + daemon, default config: `orchestration.sensor_interval_s`) runs on that store; once its
sensor reports the corpus up to date, each repeat copies the PDF in and polls the live index version
every 0.2 s until it serves one document more (what a search server reads between queries), then
deletes the file and waits until the removal is served too; the OCR cache entries the add wrote
are dropped between repeats (the same screenshots would be cache hits). The phases come from the Dagster
instance's run record: dropped -> run created (sensor tick), -> run started (queue + run process
start), -> published (ingest, contracts, embed, publish). Writes the section "Sensor latency".

``--landing``: when, within the sensor's loop, the file lands. ``after-tick`` (default) copies it the
moment an idle tick is logged, so it waits a whole sensor interval before any tick sees it: the slowest
case. ``random`` waits a uniformly random share of the loop after that tick first (seeded): of
``orchestration.sensor_interval_s`` or of the daemon's own sensor loop (5 s, Dagster's
``MIN_INTERVAL_LOOP_TIME``), whichever is longer, as a file a person or a sync tool drops lands at any
moment of it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import commit, emit, table
from bench.index_speed import OUT, archive, build_corpus

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.2


def served_documents(cfg) -> tuple[int | None, int]:
    """(live index version, documents it serves)."""
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.store import manifest as mf

    loc = mf.location_for(cfg, version_key_for(cfg.model))
    try:
        v = mf.current_version(loc)
        return v, int(mf.read_manifest(loc, v)["n_documents"]) if v else 0
    except (OSError, ValueError, mf.IndexDamaged):  # mid-write: ask again
        return None, -1


def wait_for(pred, timeout_s: float, what: str) -> float:
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout_s:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)
    return time.time()


def up_to_date_ticks(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Sensor corpus_sensor skipped: up to date")


def newest_run(home: Path, job: str, after: float):
    """The newest run of ``job`` created after ``after`` (epoch s): its record, or None."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as inst:
        for rec in inst.get_run_records(dg.RunsFilter(job_name=job), limit=5):
            if rec.create_timestamp.timestamp() >= after - 1:
                return rec
    return None


def step_seconds(home: Path, run_id: str) -> dict[str, float]:
    """Each step's wall seconds in a run (Dagster's step stats), longest first."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as inst:
        stats = inst.get_run_step_stats(run_id)
    out = {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in stats if s.start_time}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def forget_ocr(cfg, since: float) -> int:
    """Drop the OCR cache entries written after ``since`` (epoch s), so that the next repeat's add
    reads its screenshots again as a new file would (re-adding the same pixels hits the cache)."""
    from mmrag_assets.lib.store.catalog import Catalog

    with Catalog(cfg.catalog_url).connect() as con:
        n = con.execute(
            "SELECT count(*) FROM ocr_cache WHERE created_at >= to_timestamp(?)", [since - 1]
        ).fetchone()[0]
        con.execute("DELETE FROM ocr_cache WHERE created_at >= to_timestamp(?)", [since - 1])
    return int(n)


def stop(proc: subprocess.Popen) -> None:
    """`mmrag ui` forwards SIGTERM to `dagster dev`'s process group; whatever is left is killed."""
    import psutil

    groups = {proc.pid}
    with contextlib.suppress(psutil.NoSuchProcess):
        groups |= {os.getpgid(c.pid) for c in psutil.Process(proc.pid).children(recursive=True)}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        pass
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def daemon_loop_s() -> float:
    """How often Dagster's daemon evaluates sensors at most (a constant of its sensor loop; 5 s in 1.13)."""
    try:
        from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME
    except ImportError:  # moved in another Dagster version
        return 5.0
    return float(MIN_INTERVAL_LOOP_TIME)


def session(
    label: str, pkg: Path, args: argparse.Namespace, corpus_src: Path, added: Path, store: Path, port: int
) -> tuple[list[dict], list[float]]:
    """One `mmrag ui` of the package at ``pkg`` on a fresh copy of the corpus and ``store``: ``--repeats``
    drops and deletions; (rows, removal seconds)."""
    from mmrag_assets.config import load_config

    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        tmp_p = Path(tmp)
        corpus, storage = tmp_p / "corpus", tmp_p / "storage"
        shutil.copytree(corpus_src, corpus)
        shutil.copytree(store, storage)
        # a copied store keeps its old paths in Dagster's instance: start a fresh instance
        shutil.rmtree(storage / "dagster", ignore_errors=True)
        overrides = [f"corpus.root={corpus}", f"storage.root={storage}"]
        env = {**os.environ, "MMRAG_CACHE_DIR": str(OUT / "mmrag-cache"), "PYTHONPATH": str(pkg)}
        env.pop("DAGSTER_HOME", None)
        cfg = load_config(overrides)
        _, n0 = served_documents(cfg)
        log = tmp_p / "ui.log"
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background: let ui see Ctrl-C
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a handled signal is SIG_DFL after exec
        with open(log, "w") as fh:
            ui = subprocess.Popen(
                [sys.executable, "-m", "mmrag_assets.cli", "ui", "--port", str(port), *overrides], env=env,
                cwd=pkg, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        rows, removals = [], []
        rng = random.Random(args.seed)
        loop_s = max(float(cfg.orchestration.sensor_interval_s), daemon_loop_s())
        try:
            t_ui = time.time()
            wait_for(lambda: up_to_date_ticks(log) >= 1, 600, "the sensor's first up-to-date tick")
            print(f"{label}: daemon up, sensor idle after {time.time() - t_ui:.0f} s", flush=True)
            for r in range(args.repeats):
                ticks = up_to_date_ticks(log)
                wait_for(lambda ticks=ticks: up_to_date_ticks(log) > ticks, 120, "an idle tick")
                offset = rng.uniform(0, loop_s) if args.landing == "random" else 0.0
                time.sleep(offset)
                t0 = time.time()
                shutil.copy(added, corpus / "added.pdf")
                t1 = wait_for(lambda: served_documents(cfg)[1] == n0 + 1, 900, "the added file to be served")
                rec = newest_run(cfg.dagster_home, "index_job", t0)
                created = rec.create_timestamp.timestamp() if rec else float("nan")
                started = rec.start_time if rec and rec.start_time else float("nan")
                rows.append({"total": t1 - t0, "to_request": created - t0, "to_start": started - created,
                             "to_publish": t1 - started, "load": os.getloadavg()[0], "offset": offset})  # fmt: skip
                print(f"{label} repeat {r + 1}: served {t1 - t0:.1f} s after the drop {rows[-1]}", flush=True)
                wait_for(lambda t0=t0: (x := newest_run(cfg.dagster_home, "index_job", t0)) is not None
                         and x.end_time is not None, 600, "the run to end")  # fmt: skip
                if rec is not None:
                    steps = step_seconds(cfg.dagster_home, rec.dagster_run.run_id)
                    rows[-1]["steps"] = steps
                    print(f"{label} repeat {r + 1}: steps " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()),
                          flush=True)  # fmt: skip
                t2 = time.time()
                (corpus / "added.pdf").unlink()
                t3 = wait_for(lambda: served_documents(cfg)[1] == n0, 900, "the removal to be served")
                removals.append(t3 - t2)
                print(f"{label} repeat {r + 1}: removal served {t3 - t2:.1f} s after the delete", flush=True)
                wait_for(lambda t2=t2: (x := newest_run(cfg.dagster_home, "publish_job", t2)) is None or x.end_time is not None,
                         600, "the removal run to end")  # fmt: skip
                print(f"{label} repeat {r + 1}: {forget_ocr(cfg, t0)} OCR cache entries dropped", flush=True)
        finally:
            stop(ui)
            shutil.copy(log, OUT / f"sensor_latency-ui-{label}.log")  # the daemon's log, for a look
    return rows, removals


def main() -> int:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=620)
    ap.add_argument("--repeats", type=int, default=3, help="drops per `mmrag ui` session")
    ap.add_argument(
        "--rounds", type=int, default=1, help="sessions per version, alternating which goes first"
    )
    ap.add_argument("--baseline", metavar="REV", help="also measure REV, side by side")
    ap.add_argument("--store", type=Path, help="a store of the same corpus built earlier (copied)")
    ap.add_argument("--port", type=int, default=3133)
    ap.add_argument("--landing", choices=("after-tick", "random"), default="after-tick",
                    help="when the file lands in the sensor's loop (see the module docstring)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="--landing random: the offsets' seed")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    corpus_src, added, counts = build_corpus(args.pages)
    load0 = os.getloadavg()
    versions = [(f"this checkout `{commit()}`", ROOT)]
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        tmp_p = Path(tmp)
        if args.baseline:
            versions.insert(0, (f"baseline `{args.baseline}`", archive(args.baseline, tmp_p / "baseline")))
        store = args.store
        if store is None:  # built once by this checkout (the same store for every version)
            store = tmp_p / "store"
            t = time.perf_counter()
            env = {**os.environ, "MMRAG_CACHE_DIR": str(OUT / "mmrag-cache")}
            env.pop("DAGSTER_HOME", None)
            subprocess.run([sys.executable, "-m", "mmrag_assets.cli", "index", f"corpus.root={corpus_src}",
                            f"storage.root={store}"], env=env, cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            print(f"store ready ({time.perf_counter() - t:.0f} s)", flush=True)
        results: dict[str, tuple[list[dict], list[float]]] = {label: ([], []) for label, _ in versions}
        for rnd in range(args.rounds):
            for i, (label, pkg) in enumerate(versions if rnd % 2 == 0 else versions[::-1]):
                rows, removals = session(label, pkg, args, corpus_src, added, store, args.port + i)
                results[label][0].extend(rows)
                results[label][1].extend(removals)
    load1 = os.getloadavg()

    def med(rows: list[dict], k: str) -> float:
        return statistics.median(x[k] for x in rows)

    body_rows = []
    for label, (rows, removals) in results.items():
        body_rows += [[label, i + 1, x["offset"], x["total"], x["to_request"], x["to_start"], x["to_publish"],
                       x["load"]] for i, x in enumerate(rows)]  # fmt: skip
        body_rows.append([label, "median", "", med(rows, "total"), med(rows, "to_request"), med(rows, "to_start"),
                          med(rows, "to_publish"), ""])  # fmt: skip
    removal = "; ".join(f"{label} {statistics.median(r):.1f} s" for label, (_, r) in results.items())
    body = (
        f"`bench/sensor_latency.py --pages {args.pages} --repeats {args.repeats} --rounds {args.rounds}"
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + (f" --landing random --seed {args.seed}" if args.landing == "random" else "")
        + "`: `mmrag ui` (Dagster webserver + daemon, default config of each version) on a\nstore of the "
        f"{sum(counts.values())}-page corpus of bench/index_speed.py (built once, copied for each session); a 10-page PDF "
        "(the next Doxygen pages, 9 screenshot\nregions to OCR) copied into the corpus, then deleted, each "
        "time waited for until the live index version\nserves it (or no longer does); "
        + (
            "each file lands a random share of the sensor loop after an idle tick (the offset column), as a "
            "file dropped at any moment does; "
            if args.landing == "random"
            else "each file lands the moment an idle tick is logged, so it waits a whole sensor interval (the slowest case); "
        )
        + "sessions alternate between "
        "the versions. Phases from the run's record in\nthe Dagster instance. Load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end, on 2 cores shared with other jobs.\n\n"
        + table(
            [
                "version",
                "repeat",
                "landed after the idle tick s",
                "dropped -> served s",
                "-> run requested s",
                "-> run started s",
                "-> published s",
                "load",
            ],
            body_rows,
        )
        + f"\n\nA deleted file stopped being served after (median; a publish-only run): {removal}.\n"
    )
    emit("Sensor latency", body, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

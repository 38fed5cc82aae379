"""Wall time of `mmrag search` from the shell: this checkout against a baseline commit, same run.

    uv run python bench/cli_search.py [--baseline REV] [--runs 7] [--dir DIR]

On the sample corpus (lite tier, indexed once), each round runs the real command line
(`python -m mmrag_assets.cli search ...`, a fresh process: interpreter start, config
composition, imports, index load, query) of this checkout and of ``--baseline`` (its package
extracted with `git archive` into a temp dir and put first on ``PYTHONPATH``, same virtual
environment, same index), alternating, so both see the same machine load. It records the wall
time and peak RSS of each, plus an empty query (rejected) and the heavy modules each process
imported; the section "CLI search (shell wall time)" of BENCHMARKS.md gets the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import table, write_section

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
    "what does error E04 mean",
    "how do I reset my wireless router",
    "revenue by region in the third quarter",
]
HEAVY = ("torch", "lancedb", "dagster", "duckdb", "sklearn")  # pandas comes with lance (0.15 s)
# the commit before the search path stopped importing torch and lancedb
DEFAULT_BASELINE = "ba6d6dd"


def once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one process (run from its version's folder: `-m` puts the working
    directory first on sys.path, before PYTHONPATH and the editable install). CPU time (user + sys)
    is nearly what the command takes on an idle machine (single-threaded apart from BLAS); the wall
    time on these shared cores also counts waiting for cores other jobs hold."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        argv,
        env=env,
        cwd=env["PYTHONPATH"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def peak_rss_mib(argv: list[str], env: dict[str, str]) -> float:
    """Peak RSS of one process (GNU time's %M, KiB)."""
    r = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv],
        env=env,
        cwd=env["PYTHONPATH"],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(r.stderr.strip().splitlines()[-1]) / 1024 if r.returncode == 0 else float("nan")


def imported(argv: list[str], env: dict[str, str]) -> list[str]:
    """Heavy top-level modules the command imported (from `python -X importtime`)."""
    r = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=env,
        cwd=env["PYTHONPATH"],
        capture_output=True,
        text=True,
        check=False,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    return [m for m in HEAVY if m in names]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare against")
    ap.add_argument("--runs", type=int, default=7, help="rounds (each runs both versions once per query)")
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the sample corpus and its index go (default: a temp dir)",
    )
    args = ap.parse_args()

    from mmrag_assets.config import load_config
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus
    from mmrag_assets.orchestration.launch import index

    with tempfile.TemporaryDirectory() as tmp:
        base = args.dir or Path(tmp) / "demo"
        build_sample_corpus(base / "corpus")
        overrides = [f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", "model=lite"]
        index(load_config(overrides))
        old = Path(tmp) / "baseline"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "mmrag_assets", "conf", "data_contracts"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        env_new = {**os.environ, "PYTHONPATH": str(ROOT)}
        env_old = {**os.environ, "PYTHONPATH": str(old)}
        cmd = [sys.executable, "-m", "mmrag_assets.cli", "search"]
        walls: dict[str, list[float]] = {"new": [], "old": []}
        cpus: dict[str, list[float]] = {"new": [], "old": []}
        empty: dict[str, list[float]] = {"new": [], "old": []}
        for _ in range(args.runs):
            for q in QUERIES:
                for name, env in (("old", env_old), ("new", env_new)):
                    wall, cpu = once([*cmd, q, "--k", "5", *overrides], env)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            for name, env in (("old", env_old), ("new", env_new)):
                empty[name].append(once([*cmd, "", *overrides], env)[0])
        versions = (("old", env_old), ("new", env_new))
        rss = {name: peak_rss_mib([*cmd, QUERIES[0], *overrides], env) for name, env in versions}
        heavy = {name: imported([*cmd, QUERIES[0], *overrides], env) for name, env in versions}
    load = os.getloadavg()

    def row(label: str, name: str) -> list[object]:
        w = sorted(walls[name])
        return [label, statistics.median(w), w[int(0.95 * (len(w) - 1))], statistics.median(cpus[name]),
                statistics.median(empty[name]), rss[name],
                ", ".join(heavy[name]) or "none of " + "/".join(HEAVY)]  # fmt: skip

    rows = [row(f"baseline `{args.baseline}`", "old"), row("this checkout", "new")]
    ratio = statistics.median(walls["old"]) / statistics.median(walls["new"])
    cpu_ratio = statistics.median(cpus["old"]) / statistics.median(cpus["new"])
    body = (
        "`bench/cli_search.py`: the real `mmrag search` command line on the sample corpus (lite tier), a fresh\n"
        f"process each time, {args.runs} rounds x {len(QUERIES)} queries per version, the two versions alternating in the\n"
        "same run (same index, same virtual environment). Target (issue 12): at most 2 s wall on the demo corpus.\n\n"
        + table(
            [
                "version",
                "p50 wall (s)",
                "p95 wall (s)",
                "p50 CPU (s)",
                "empty query p50 wall (s)",
                "peak RSS (MiB)",
                "heavy imports",
            ],
            rows,
        )
        + f"\n\n`mmrag search` is {ratio:.1f}x faster than the baseline (wall; {cpu_ratio:.1f}x less CPU). "
        "CPU time (user + sys of the process) is about what the command takes on an idle machine; the wall\n"
        "times here include waiting for cores busy with other jobs. Load average at the end: "
        f"{load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} (1/5/15 min) on 2 cores shared with other jobs.\n"
    )
    print(body)
    write_section("CLI search (shell wall time)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

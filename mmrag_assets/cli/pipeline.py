"""``mmrag ingest``, ``index``, ``status``, ``demo`` and ``ui``: the pipeline through Dagster."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from mmrag_assets.cli._app import command, config_of, emit, exit_code, json_flag, say
from mmrag_assets.config import MmragConfig


def dir_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--dir", default="mmrag-demo", help="where the demo corpus and storage go (default: ./mmrag-demo)"
    )


def ui_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--host", default="127.0.0.1", help="bind address of the Dagster UI (default: 127.0.0.1)")
    sp.add_argument("--port", type=int, default=3000, help="port of the Dagster UI (default: 3000)")


@command("ingest", "run the ingestion assets (manifest, pages, transcripts) as one Dagster run")
def cmd_ingest(args: argparse.Namespace) -> int:
    from mmrag_assets.orchestration.launch import ingest

    cfg = config_of(args)
    summary = ingest(cfg, say, verbose=args.verbose)
    print_summary(cfg, summary)
    return exit_code(summary)


def verify_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--verify", action="store_true",
        help="also check every index file's checksum, scan the whole table and rebuild a damaged catalog",
    )  # fmt: skip


@command(
    "index",
    "run everything up to the published search index (ingest, embed, publish) as one Dagster run",
    verify_flag,
)
def cmd_index(args: argparse.Namespace) -> int:
    from mmrag_assets.orchestration.launch import index

    cfg = config_of(args)
    summary = index(cfg, say, verbose=args.verbose, verify=args.verify)
    print_summary(cfg, summary)
    return exit_code(summary)


@command(
    "status",
    "print what the catalog and the index hold (documents, pages, segments, quarantine, index)",
    json_flag,
)
def cmd_status(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.lib.store.runtime import Runtime

    with Runtime(config_of(args)) as rt:
        st = catalog_status(rt)
    if args.json:
        emit(st)
    else:
        print_status(st)
    return 0


@command("demo", "build the bundled sample corpus, index it, run sample queries", dir_flag)
def cmd_demo(args: argparse.Namespace) -> int:
    from mmrag_assets.cli.search import print_results
    from mmrag_assets.fixtures.sample_corpus import DEMO_QUERIES, build_sample_corpus
    from mmrag_assets.lib.search.searcher import Searcher
    from mmrag_assets.lib.store.runtime import Runtime
    from mmrag_assets.orchestration.launch import index

    base = Path(args.dir).resolve()
    cfg = config_of(args, [f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}"])
    files = build_sample_corpus(cfg.corpus_root)
    say(f"sample corpus: {len(files)} files in {cfg.corpus_root}")
    summary = index(cfg, say, verbose=args.verbose)
    print_summary(cfg, summary)
    with Runtime(cfg) as rt:
        searcher = Searcher(rt)
        for q in DEMO_QUERIES:
            print()
            print_results(searcher.search(q, k=3).to_json())
    print(
        f'\nnext: mmrag search "your question" corpus.root={cfg.corpus.root} storage.root={cfg.storage.root}'
    )
    return exit_code(summary)


@command(
    "ui", "start the Dagster UI and daemon (dagster dev) on the same instance and config as the CLI", ui_flags
)
def cmd_ui(args: argparse.Namespace) -> int:
    from mmrag_assets.orchestration.instance import open_instance

    cfg = config_of(args)
    with open_instance(cfg) as instance:  # created (and swept) before the webserver and daemon start
        home = instance.root_directory
    env = {**os.environ, "DAGSTER_HOME": str(home), "MMRAG_OVERRIDES": json.dumps(cfg.overrides)}
    workspace = Path(__file__).resolve().parents[2] / "workspace.yaml"
    argv = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(workspace),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    say(f"DAGSTER_HOME={home}\n{' '.join(argv)}")
    # its own session: on SIGINT/SIGTERM the whole group (webserver, daemon, code servers) is stopped
    proc = subprocess.Popen(argv, env=env, start_new_session=True)

    def stop(signum: int, _frame: Any) -> None:
        os.killpg(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        rc = proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return 0 if rc in (0, -signal.SIGTERM, 128 + signal.SIGTERM) else rc


def print_summary(cfg: MmragConfig, summary: dict[str, Any]) -> None:
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.lib.store.runtime import Runtime

    run = f"run {summary['run_id']}" if summary["run_id"] else "no run needed"
    say(
        f"{run}: {summary['ingested']} documents ingested, {summary['embedded']} embedded"
        + (f", {summary['renamed']} renamed" if summary.get("renamed") else "")
        + f" of {summary['documents']} in {summary['seconds']} s"
    )
    for f in summary.get("failed", []):
        say(f"FAILED {f['source']}: {f['error']} (details: mmrag checks)")
    with Runtime(cfg) as rt:
        print_status(catalog_status(rt))


def print_status(st: dict[str, Any]) -> None:
    from mmrag_assets.lib.ingest.names import printable as p  # sources are escaped; reasons are free text

    docs = ", ".join(f"{n} {k}" for k, n in st["documents"].items())
    print(f"documents: {docs}\npages: {st['pages']}\nsegments: {st['segments']}")
    print(f"quarantined: {len(st['quarantined'])}")
    for q in st["quarantined"]:
        print(f"  {p(q['source'])}: {p(q['reason'] or '')}")
    held = st.get("held_back") or []
    if held:
        print(f"held back by a failed check: {len(held)}")
        for h in held:
            print(f"  {p(h['source'])}: {h['check']} failed")
    moved = st.get("changed_after_scan") or []
    if moved:
        print(f"vanished or changed after the last scan: {len(moved)} (run `mmrag index`)")
        for m in moved:
            print(f"  {p(m['line'])}")
    ix = st.get("index")
    if ix is None:
        print("index: none yet (run `mmrag index`)")
    else:
        pub = ix.get("published")
        print(
            f"index: {ix['table']} (table version {ix['version']}), {ix['rows']} items; "
            + (f"published v{pub['version']}: {pub['items']} items of {pub['documents']} documents" if pub
               else "nothing published")
        )  # fmt: skip
        for problem in ix.get("problems") or []:
            print(f"  {p(problem)}")
    for problem in st.get("problems") or []:
        print(f"damaged: {p(problem)}")

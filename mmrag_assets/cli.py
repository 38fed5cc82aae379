"""The ``mmrag`` command line: subcommand, flags, then Hydra overrides (``key=value``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.errors import MmragError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
HELP: dict[str, str] = {}
EXTRA_ARGS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], ...]] = {}


def command(name: str, help: str, *extra_args: Callable[[argparse.ArgumentParser], None]):
    """Register ``mmrag NAME``; ``extra_args`` add the command's own flags to its parser."""

    def deco(fn):
        COMMANDS[name], HELP[name], EXTRA_ARGS[name] = fn, help, extra_args
        return fn

    return deco


def json_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def search_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("query", help="the question, in words")
    sp.add_argument("--k", type=int, default=None, help="results to return (default: search.k)")
    sp.add_argument("--modality", action="append", help="page, image or segment (repeatable)")
    sp.add_argument("--source", action="append", help="only sources under this prefix (repeatable)")
    json_flag(sp)


def serve_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    sp.add_argument("--port", type=int, default=None, help="port (default: serve.port)")
    sp.add_argument("--allow-public-without-token", action="store_true",
                    help="bind a non-loopback address even without serve.token (anyone on the network can read the corpus)")


def dir_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--dir", default="mmrag-demo", help="where the demo corpus and storage go (default: ./mmrag-demo)")


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cfg(args: argparse.Namespace, defaults: list[str] | None = None) -> MmragConfig:
    overrides = list(args.overrides)
    for d in defaults or []:  # command defaults yield to the user's own overrides
        if not any(o.split("=", 1)[0] == d.split("=", 1)[0] for o in overrides):
            overrides.insert(0, d)
    return load_config(overrides)


@command("ingest", "materialise the ingestion assets (manifest, pages, transcripts) through Dagster")
def cmd_ingest(args: argparse.Namespace) -> int:
    from mmrag_assets.runner import ingest

    cfg = _cfg(args)
    summary = ingest(cfg, progress=_say)
    _print_summary(cfg, summary)
    return _exit_code(summary)


@command("index", "materialise everything up to the LanceDB index and search structures (ingesting first)")
def cmd_index(args: argparse.Namespace) -> int:
    from mmrag_assets.runner import index

    cfg = _cfg(args)
    summary = index(cfg, progress=_say)
    _print_summary(cfg, summary)
    return _exit_code(summary)


@command("search", "search the index: ranked pages, images and moments of audio", search_flags)
def cmd_search(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.search.searcher import search

    cfg = _cfg(args)
    filters = {}
    if args.modality:
        filters["modality"] = args.modality
    if args.source:
        filters["source_prefix"] = args.source
    resp = search(args.query, k=args.k, filters=filters or None, cfg=cfg)
    if args.json:
        _emit(resp.to_json())
    else:
        _print_results(resp.to_json())
    return 0


@command("serve", "start the search page and the HTTP API (/, /search, /readyz, images, media, /docs)", serve_flags)
def cmd_serve(args: argparse.Namespace) -> int:
    from mmrag_assets.api import serve

    serve(_cfg(args), host=args.host, port=args.port, allow_public_without_token=args.allow_public_without_token)
    return 0


@command("status", "print what the catalog holds (documents, pages, segments, quarantine, index)", json_flag)
def cmd_status(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.status import catalog_status

    cfg = _cfg(args)
    st = catalog_status(cfg)
    if args.json:
        _emit(st)
    else:
        _print_status(st)
    return 0


@command("demo", "build the bundled sample corpus, index it, run sample queries", dir_flag)
def cmd_demo(args: argparse.Namespace) -> int:
    from mmrag_assets.fixtures.sample_corpus import DEMO_QUERIES, build_sample_corpus
    from mmrag_assets.lib.search.searcher import search
    from mmrag_assets.runner import index

    base = Path(args.dir).resolve()
    cfg = _cfg(args, [f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}"])
    files = build_sample_corpus(cfg.corpus_root)
    _say(f"sample corpus: {len(files)} files in {cfg.corpus_root}")
    summary = index(cfg, progress=_say)
    _print_summary(cfg, summary)
    for q in DEMO_QUERIES:
        print()
        _print_results(search(q, k=3, cfg=cfg).to_json())
    print(f"\nnext: mmrag search \"your question\" corpus.root={cfg.corpus.root} storage.root={cfg.storage.root}")
    return 0


@command("ui", "start the Dagster UI (dagster dev) on the same instance and config as the CLI")
def cmd_ui(args: argparse.Namespace) -> int:
    from mmrag_assets.runner import dagster_home

    cfg = _cfg(args)
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home(cfg)), "MMRAG_OVERRIDES": json.dumps(cfg.overrides)}
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    argv = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace)]
    _say(f"DAGSTER_HOME={env['DAGSTER_HOME']}\n{' '.join(argv)}")
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def _print_results(resp: dict[str, Any]) -> None:
    print(f"query: {resp['query']}")
    for w in resp["warnings"]:
        print(f"warning: {w}")
    for r in resp["results"]:
        where = f"p.{r['page']}" if r["page"] is not None else f"{r['start_s']:.1f}-{r['end_s']:.1f} s"
        print(f"{r['rank']:>3}. {r['score']:7.3f}  {r['modality']:<8} {r['source']} ({where})")
        if r["snippet"]:
            print(f"       {r['snippet'][:110]}")
    t = resp["timings_ms"]
    print(f"({len(resp['results'])} results, {resp['dropped_below_threshold']} below threshold, {t.get('total_ms', 0):.0f} ms)")


def _exit_code(summary: dict[str, Any]) -> int:
    """Quarantined inputs are expected (exit 0); a document whose run failed (a blocking contract
    check, a bug) is not: exit 1 after every other document was processed."""
    return 1 if summary.get("failed") else 0


def _print_summary(cfg: MmragConfig, summary: dict[str, Any]) -> None:
    from mmrag_assets.lib.status import catalog_status

    _say(f"ingested {summary['ingested']} of {summary['documents']} documents in {summary['seconds']} s")
    for f in summary.get("failed", []):
        _say(f"FAILED {f['source']}: {f['error']} (details: mmrag checks)")
    _print_status(catalog_status(cfg))


def _print_status(st: dict[str, Any]) -> None:
    docs = ", ".join(f"{n} {k}" for k, n in st["documents"].items())
    print(f"documents: {docs}\npages: {st['pages']}\nsegments: {st['segments']}")
    print(f"quarantined: {len(st['quarantined'])}")
    for q in st["quarantined"]:
        print(f"  {q['source']}: {q['reason']}")


def build_parser() -> argparse.ArgumentParser:
    import mmrag_assets.cli_eval  # noqa: F401 - registers `eval`
    import mmrag_assets.cli_quality  # noqa: F401 - registers `checks`, `baseline`

    p = argparse.ArgumentParser(
        prog="mmrag",
        description="Multimodal retrieval: PDFs, images and recordings in one late-interaction index.",
        epilog="Overrides are Hydra key=value pairs, e.g. corpus.root=docs model=colsmol search.k=20",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, fn in COMMANDS.items():
        sp = sub.add_parser(name, help=HELP[name], description=HELP[name])
        for extra in EXTRA_ARGS[name]:
            extra(sp)
        sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
        sp.add_argument("-v", "--verbose", action="store_true", help="show Dagster's own log lines")
        sp.set_defaults(func=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # overrides may also follow the flags
    flags = [e for e in extra if e.startswith("-")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = [*args.overrides, *extra]
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        _say(f"error: {bad[0]!r} is not an override; write key=value (e.g. corpus.root=docs)")
        return 2
    if args.verbose:
        os.environ["MMRAG_DAGSTER_LOG_LEVEL"] = "INFO"
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except MmragError as e:
        _say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m mmrag_assets.cli` runs this file as __main__: use the package module, where the
    # commands of cli_eval / cli_quality register themselves.
    from mmrag_assets.cli import main as _main

    sys.exit(_main())

"""``mmrag search`` and ``mmrag serve``: the search doors (no Dagster import on these paths)."""

from __future__ import annotations

import argparse
from typing import Any

from mmrag_assets.cli._app import command, config_of, emit, json_flag


def search_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("query", help="the question, in words")
    sp.add_argument("--k", type=int, default=None, help="results to return (default: search.k)")
    sp.add_argument("--modality", action="append", help="page, image or segment (repeatable)")
    sp.add_argument("--source", action="append", help="only sources under this prefix (repeatable)")
    json_flag(sp)


def serve_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    sp.add_argument("--port", type=int, default=None, help="port (default: serve.port)")
    sp.add_argument(
        "--allow-public-without-token",
        action="store_true",
        help="bind a non-loopback address even without serve.token (anyone on the network can read the corpus)",
    )


@command("search", "search the index: ranked pages, images and moments of audio", search_flags)
def cmd_search(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.search.searcher import search

    cfg = config_of(args)
    filters = {}
    if args.modality:
        filters["modality"] = args.modality
    if args.source:
        filters["source_prefix"] = args.source
    resp = search(args.query, k=args.k, filters=filters or None, cfg=cfg)
    if args.json:
        emit(resp.to_json())
    else:
        print_results(resp.to_json())
    return 0


@command(
    "serve", "start the search page and the HTTP API (/, /search, /readyz, images, media, /docs)", serve_flags
)
def cmd_serve(args: argparse.Namespace) -> int:
    from mmrag_assets.api import serve

    serve(
        config_of(args),
        host=args.host,
        port=args.port,
        allow_public_without_token=args.allow_public_without_token,
    )
    return 0


def print_results(resp: dict[str, Any]) -> None:
    print(f"query: {resp['query']}")
    for w in resp["warnings"]:
        print(f"warning: {w}")
    for r in resp["results"]:
        where = f"p.{r['page']}" if r["page"] is not None else f"{r['start_s']:.1f}-{r['end_s']:.1f} s"
        print(f"{r['rank']:>3}. {r['score']:7.3f}  {r['modality']:<8} {r['source']} ({where})")
        if r["snippet"]:
            print(f"       {r['snippet'][:110]}")
    t = resp["timings_ms"]
    print(
        f"({len(resp['results'])} results, {resp['dropped_below_threshold']} below threshold, {t.get('total_ms', 0):.0f} ms)"
    )

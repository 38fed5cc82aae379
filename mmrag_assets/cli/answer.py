"""``mmrag ask``: a cited answer from the index (no Dagster import on this path)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mmrag_assets.cli._app import command, config_of, emit, json_flag


def ask_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("question", help="the question, in words")
    sp.add_argument("--modality", action="append", help="page, image or segment (repeatable)")
    sp.add_argument("--source", action="append", help="only sources under this prefix (repeatable)")
    json_flag(sp)


@command(
    "ask",
    "answer a question from the index, with numbered citations of the pages, images and moments it used",
    ask_flags,
)
def cmd_ask(args: argparse.Namespace) -> int:
    from mmrag_assets.lib.answer.pipeline import Answerer
    from mmrag_assets.lib.store.runtime import Runtime

    cfg = config_of(args)
    filters: dict[str, Any] = {}
    if args.modality:
        filters["modality"] = args.modality
    if args.source:
        filters["source_prefix"] = args.source
    rt = Runtime(cfg)  # the process ends with the command: nothing to close before it
    answerer = Answerer(rt)
    final = None
    streamed = False
    for ev in answerer.stream(args.question, filters or None):
        if ev["event"] == "delta" and not args.json:
            sys.stdout.write(ev["text"])  # an LLM's words as they come; the checked answer follows
            sys.stdout.flush()
            streamed = True
        elif ev["event"] == "answer":
            final = ev["answer"]
    assert final is not None
    if args.json:
        emit(final.to_json())
    else:
        if streamed:
            sys.stdout.write("\n\n")
        print_answer(final.to_json(), checked_again=streamed)
    return 0


def print_answer(a: dict[str, Any], checked_again: bool = False) -> None:
    if checked_again:
        print("checked answer:")
    print(a["answer"])
    for w in a["warnings"]:
        print(f"warning: {w}")
    label = "closest results" if a["abstained"] else "sources"
    cited = {c["n"] for c in a["citations"]}
    print(f"\n{label}:")
    for s in a["sources"]:
        if not a["abstained"] and s["n"] not in cited:
            continue
        where = (
            f"p.{s['page']}"
            if s["page"] is not None
            else (f"{s['start_s']:.1f}-{s['end_s']:.1f} s" if s["start_s"] is not None else "")
        )
        print(f"  [{s['n']}] {s['source']} {where} ({s['modality']})")
    t = a["timings_ms"]
    stages = ", ".join(f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in t.items())
    print(f"({a['generator']}, confidence {a['confidence']:.2f}; {stages})")

"""Choose the search knobs on the real-document **dev** split (never on test): one process, one
index, every configuration of a grid evaluated in the mixed ranking a user sees.

    uv run python -m bench.realdocs.tune [--out DIR] [--split dev] \
        --grid "search.weights.lexical=1,2" --grid "search.rrf_k=10,60" [--fixed "k=v ..."]

Prints one row per configuration: hit@10 / MRR@10 overall, per channel and per kind, and the
search p50 in ms. Each ``--grid`` is one Hydra-style key with comma-separated values; the rows are
their product. The index must exist (``bench/realdocs_eval.py`` or ``mmrag index`` builds it).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from bench.realdocs import build
from mmrag_assets.config import load_config
from mmrag_assets.lib.evaluation.evaluate import evaluate
from mmrag_assets.lib.evaluation.experiments import source_kinds
from mmrag_assets.lib.evaluation.query_set import load_query_set
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.store.runtime import Runtime

COLUMNS = [("channel", c) for c in ("page", "scanned", "image", "audio", "video")] + [
    ("kind", k) for k in ("literal", "paraphrase")
]


def cell(m: dict) -> str:
    return f"{m['hit@10']:.2f}/{m['mrr@10']:.2f}" if m and m.get("hit@10") is not None else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=build.default_out())
    ap.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2")
    ap.add_argument("--fixed", default="", metavar='"k=v k=v"')
    args = ap.parse_args(argv)
    if args.split == "test":
        print("warning: tuning on the test split overfits the report", file=sys.stderr)
    qs = load_query_set(args.out / "queries" / f"{args.split}.jsonl")
    base = [f"corpus.root={args.out / 'corpus'}", f"storage.root={args.out / 'storage'}", *args.fixed.split()]
    axes = [[f"{g.split('=', 1)[0]}={v}" for v in g.split("=", 1)[1].split(",")] for g in args.grid] or [[]]
    head = ["overrides", "all", *(f"{t}={v}" for t, v in COLUMNS), "p50 ms"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head), flush=True)
    for combo in itertools.product(*axes):
        ov = [o for o in combo if o]
        cfg = load_config([*base, *ov, "eval.warmup=1"])
        rt = Runtime(cfg)
        rec = evaluate(cfg, get_searcher(rt), qs, kinds=source_kinds(rt), by=["channel", "kind"])
        bt = rec["by_tag"]
        cells = [cell(rec["metrics"]["reranked"])]
        cells += [cell(bt.get(t, {}).get(v, {}).get("mixed", {}).get("reranked", {})) for t, v in COLUMNS]
        p50 = rec["latency_ms"].get("total", {}).get("p50")
        print(f"| {' '.join(ov) or '(defaults)'} | " + " | ".join(cells) + f" | {p50:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

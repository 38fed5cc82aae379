"""Where each channel ranks the answer: a diagnostic of the final fusion on the real-document
**dev** split (never test), and a fast way to compare fusion functions without re-running search.

    uv run python -m bench.realdocs.channels [--out DIR] [--split dev] [--fixed "k=v ..."] [--dump FILE]

For every query it runs the configured search once, keeps the per-channel lists that reach the
final fusion (``maxsim``: calibrated MaxSim, ``lexical``: BM25, ``dense``: cosine; each list's
positions and scores, as ``lib/search/fusion.py`` receives them) with the grade of every listed item,
and prints, per query tag, how often each channel alone holds the answer in its top 10 and top 200
(the fusion cannot lift an answer that no channel lists). ``--dump`` writes the lists as JSON for
``--replay``, which re-fuses them under other weights without touching the index.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.realdocs import build
from mmrag_assets.config import load_config
from mmrag_assets.lib.evaluation.evaluate import grade_of
from mmrag_assets.lib.evaluation.query_set import load_query_set
from mmrag_assets.lib.search import fusion
from mmrag_assets.lib.search.searcher import get_searcher

TAGS = (("channel", ("page", "scanned", "image", "audio", "video")), ("kind", ("literal", "paraphrase")))


def capture(cfg, qs) -> list[dict[str, Any]]:
    """Per query: tags and, per channel, ``[[position, score, grade, modality], ...]`` best first."""
    searcher = get_searcher(cfg)
    seen: dict[str, Any] = {}
    real = fusion.convex

    def spy(lists, weights):  # the lists the final fusion receives
        seen["lists"] = {n: (np.asarray(p).tolist(), np.asarray(s, dtype=np.float64).tolist()) for n, (p, s) in lists.items()}
        return real(lists, weights)

    fusion.convex = spy
    try:
        out = []
        for q in qs.queries:
            seen.clear()
            searcher.search(q.query, k=10)
            view = searcher.view
            chans = {}
            for name, (pos, sc) in seen.get("lists", {}).items():
                rows = []
                for i, s in zip(pos, sc, strict=True):
                    r = view.result(i, 0, 0.0, 0.0).public()
                    rows.append([i, s, grade_of(r, q.relevant), r["modality"]])
                chans[name] = rows
            out.append({"qid": q.qid, "tags": {t: q.tags.get(t) for t, _ in TAGS}, "channels": chans})
        return out
    finally:
        fusion.convex = real


def first_hit(ranking: list[int], grades: dict[int, float]) -> int | None:
    for r, i in enumerate(ranking, 1):
        if grades.get(i, 0.0) > 0:
            return r
    return None


def report_channels(rows: list[dict[str, Any]]) -> str:
    names = sorted({n for r in rows for n in r["channels"]})
    head = ["queries (n)", *(f"{n} @10 / @200" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups["all"].append(r)
        for t, _ in TAGS:
            groups[f"{t}={r['tags'][t]}"].append(r)
    for g in ["all", *(f"{t}={v}" for t, vs in TAGS for v in vs)]:
        sel = groups.get(g, [])
        if not sel:
            continue
        cells = []
        for n in names:
            ranks = []
            for r in sel:
                ch = r["channels"].get(n, [])
                ranks.append(first_hit([x[0] for x in ch], {x[0]: x[2] for x in ch}))
            at10 = sum(1 for x in ranks if x is not None and x <= 10) / len(sel)
            at200 = sum(1 for x in ranks if x is not None) / len(sel)
            cells.append(f"{at10:.2f} / {at200:.2f}")
        lines.append(f"| {g} ({len(sel)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=build.default_out())
    ap.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    ap.add_argument("--fixed", default="", metavar='"k=v k=v"')
    ap.add_argument("--dump", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.split == "test":
        print("warning: diagnosing on the test split overfits the report", file=sys.stderr)
    qs = load_query_set(args.out / "queries" / f"{args.split}.jsonl")
    base = [f"corpus.root={args.out / 'corpus'}", f"storage.root={args.out / 'storage'}", "search.fusion=score", *args.fixed.split()]
    rows = capture(load_config(base), qs)
    if args.dump:
        args.dump.write_text(json.dumps(rows))
    print(report_channels(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

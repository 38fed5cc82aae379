"""Where each channel ranks the answer: a diagnostic of the final fusion on the real-document
**dev** split (never test), and a fast way to compare fusion functions without re-running search.

    uv run python -m bench.realdocs.channels [--out DIR] [--split dev] [--fixed "k=v ..."] [--dump FILE]
    uv run python -m bench.realdocs.channels --replay FILE [--weights "maxsim=1,lexical=2,dense=1" ...] [--rrf-k 60]

For every query it runs the configured search once, keeps the per-channel lists that reach the
final fusion (``maxsim``: calibrated MaxSim, ``lexical``: BM25, ``dense``: cosine; each list's
positions and scores, as ``lib/search/fusion.py`` receives them) with the grade of every listed item,
and prints, per query tag, how often each channel alone holds the answer in its top 10 and top 200
(the fusion cannot lift an answer that no channel lists). ``--dump`` writes the lists as JSON for
``--replay``, which re-fuses them under other weights with the product's own fusion functions
(``fusion.convex``, ``fusion.weighted_rrf``) without touching the index: hit@10 / MRR@10 per tag in
the mixed ranking, in seconds. The replay of the captured config agrees with the search's own top 10
(the share of queries whose top 10 it reproduces is printed), so a replayed weight is what the
search would do with it.
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
from mmrag_assets.lib.store.runtime import Runtime

TAGS = (("channel", ("page", "scanned", "image", "audio", "video")), ("kind", ("literal", "paraphrase")))


class Recorder(fusion.Fusion):
    """Wraps the configured fusion and keeps the evidence it was given (for a replay)."""

    name = "recorder"

    def __init__(self, inner: fusion.Fusion) -> None:
        self.inner = inner
        self.seen: dict[str, Any] = {}

    def fuse(self, ev: fusion.Evidence) -> fusion.Fused:
        out = self.inner.fuse(ev)
        self.seen["lists"] = {
            n: (np.asarray(p).tolist(), np.asarray(s, dtype=np.float64).tolist())
            for n, (p, s) in ev.lists.items()
        }
        self.seen["weights"] = dict(out.weights)
        return out


def capture(cfg, qs) -> list[dict[str, Any]]:
    """Per query: tags and, per channel, ``[[position, score, grade, modality], ...]`` best first."""
    searcher = get_searcher(Runtime(cfg))
    recorder = Recorder(searcher.fusion(searcher.view))
    searcher.fusion = lambda _view: recorder  # type: ignore[method-assign]
    out = []
    for q in qs.queries:
        recorder.seen.clear()
        resp = searcher.search(q.query, k=10)
        view = searcher.view
        chans = {}
        for name, (pos, sc) in recorder.seen.get("lists", {}).items():
            rows = []
            for i, s in zip(pos, sc, strict=True):
                r = view.result(i, 0, 0.0, 0.0).public()
                rows.append([i, s, grade_of(r, q.relevant), r["modality"]])
            chans[name] = rows
        top = [view.index_of[r.item_id] for r in resp.results]
        out.append({"qid": q.qid, "tags": {t: q.tags.get(t) for t, _ in TAGS}, "channels": chans, "top10": top,
                    "weights": recorder.seen.get("weights")})  # fmt: skip
    return out


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


def replay(
    rows: list[dict[str, Any]], weights: dict[str, float] | None, how: str = "score", rrf_k: float = 60
) -> list[list[int]]:
    """Each query's fused top 10 (item positions) under ``weights`` (None: the weights that query's
    search used, which the coverage moved), by the product's fusion code; ties by position (the
    search breaks them by item id: rare on real scores)."""
    out = []
    for r in rows:
        w = (r.get("weights") or {}) if weights is None else weights
        lists = {
            n: (np.array([x[0] for x in ch], dtype=np.int64), np.array([x[1] for x in ch]))
            for n, ch in r["channels"].items()
        }
        if how == "rrf":
            fused = fusion.weighted_rrf({n: p for n, (p, _) in lists.items()}, w, rrf_k)
        else:
            fused = fusion.convex(lists, w)
        out.append(sorted(fused, key=lambda i: (-fused[i], i))[:10])
    return out


def replay_table(
    rows: list[dict[str, Any]], configs: list[tuple[str, dict[str, float], str]], rrf_k: float
) -> str:
    cols = ["all", *(f"{t}={v}" for t, vs in TAGS for v in vs)]
    lines = ["| fusion | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, w, how in configs:
        tops = replay(rows, w, how, rrf_k)
        per: dict[str, list[int | None]] = defaultdict(list)
        for r, top in zip(rows, tops, strict=True):
            grades = {x[0]: x[2] for ch in r["channels"].values() for x in ch}
            k = first_hit(top, grades)
            for g in ("all", *(f"{t}={r['tags'][t]}" for t, _ in TAGS)):
                per[g].append(k)
        cells = []
        for g in cols:
            v = per.get(g, [])
            cells.append(
                f"{sum(k is not None for k in v) / len(v):.2f} / {sum(1 / k for k in v if k) / len(v):.2f}"
                if v
                else "-"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_weights(s: str) -> dict[str, float] | None:
    """``maxsim=1,lexical=2,dense=1``; ``captured``: each query's own weights (None)."""
    if s == "captured":
        return None
    return {k: float(v) for k, v in (kv.split("=", 1) for kv in s.split(",") if kv)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=build.default_out())
    ap.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    ap.add_argument("--fixed", default="", metavar='"k=v k=v"')
    ap.add_argument("--dump", type=Path, default=None)
    ap.add_argument(
        "--replay", type=Path, default=None, help="a --dump file: re-fuse it instead of searching"
    )
    ap.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="maxsim=1,lexical=2,dense=1",
        help="repeatable; 'rrf:' prefix for rank fusion; 'captured': each query's own (coverage-moved) weights",
    )
    ap.add_argument("--rrf-k", type=float, default=60)
    args = ap.parse_args(argv)
    if args.replay:
        rows = json.loads(args.replay.read_text())
        configs = [
            (w, parse_weights(w.removeprefix("rrf:")), "rrf" if w.startswith("rrf:") else "score")
            for w in args.weights
        ]
        print(replay_table(rows, configs, args.rrf_k))
        if configs and all("top10" in r for r in rows):
            same = sum(
                t == r["top10"]
                for t, r in zip(replay(rows, configs[0][1], configs[0][2], args.rrf_k), rows, strict=True)
            )
            print(
                f"\nthe first replayed config reproduces the captured search's top 10 on {same}/{len(rows)} queries"
            )
        return 0
    if args.split == "test":
        print("warning: diagnosing on the test split overfits the report", file=sys.stderr)
    qs = load_query_set(args.out / "queries" / f"{args.split}.jsonl")
    base = [
        f"corpus.root={args.out / 'corpus'}",
        f"storage.root={args.out / 'storage'}",
        "search.fusion=score",
        *args.fixed.split(),
    ]
    rows = capture(load_config(base), qs)
    if args.dump:
        args.dump.write_text(json.dumps(rows))
    print(report_channels(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

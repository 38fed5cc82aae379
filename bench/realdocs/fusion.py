"""The learned fusion on the real-document evaluation: train the shipped model on the **dev**
split, and study it there (never on test).

    uv run python -m bench.realdocs.fusion train [--out DIR]      # writes conf/fusion/lite.json
    uv run python -m bench.realdocs.fusion study [--out DIR] [--dump FILE] [--benchmarks-md]

``train`` is ``mmrag eval --calibrate lite --only fusion`` on the dev queries over the evaluation
corpus (``bench/realdocs/build.py``; indexed first when missing): the one command that reproduces
``conf/fusion/lite.json``. ``study`` collects the dev split's evidence once (``--dump`` caches it)
and prints, from query-grouped cross-validation, hit@10 / MRR@10 per query tag for the configured
fusion and for each model variant, and the per-modality calibration (ECE) of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench._report import commit, emit
from bench.realdocs import build
from mmrag_assets.lib.evaluation import fusion_train as ft
from mmrag_assets.lib.search.learned import FEATURES
from mmrag_assets.lib.store.runtime import Runtime

TAGS = ("channel", "kind", "recording")


def overrides(out: Path) -> list[str]:
    return [f"corpus.root={out / 'corpus'}", f"storage.root={out / 'storage'}"]


def train(out: Path) -> int:
    cmd = [sys.executable, "-m", "mmrag_assets.cli", "eval", "--calibrate", "lite", "--only", "fusion",
           f"queries={out / 'queries' / 'dev.jsonl'}", *overrides(out)]  # fmt: skip
    return subprocess.run(cmd, check=False).returncode


def collect(out: Path, dump: Path | None) -> ft.Dataset:
    if dump is not None and dump.exists():
        z = np.load(dump, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return ft.Dataset(
            z["x"],
            z["y"],
            z["group"],
            z["modality"],
            z["baseline"],
            meta["qids"],
            meta["tags"],
            meta["baseline_name"],
        )
    from mmrag_assets.config import load_config
    from mmrag_assets.lib.evaluation.experiments import open_searcher
    from mmrag_assets.lib.evaluation.query_set import load_query_set

    cfg = load_config([*overrides(out), "search.fusion=score"])
    ds = ft.collect(
        open_searcher(Runtime(cfg)),
        load_query_set(out / "queries" / "dev.jsonl"),
        lambda m: print(m, file=sys.stderr),
    )
    if dump is not None:
        meta = {"qids": ds.qids, "tags": ds.tags, "baseline_name": ds.baseline_name}
        np.savez_compressed(dump, x=ds.x, y=ds.y, group=ds.group, modality=ds.modality.astype(str), baseline=ds.baseline,
                            meta=json.dumps(meta))  # fmt: skip
    return ds


def per_tag(scores: np.ndarray, ds: ft.Dataset) -> dict[str, tuple[float, float]]:
    """hit@10 / MRR@10 per query tag value (and all)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for g, tags in enumerate(ds.tags):
        groups["all"].append(g)
        for t in TAGS:
            if tags.get(t) is not None:
                groups[f"{t}={tags[t]}"].append(g)
    out = {}
    for name, gs in groups.items():
        sel = np.isin(ds.group, gs)
        sub = ft.Dataset(ds.x[sel], ds.y[sel], np.searchsorted(np.array(gs), ds.group[sel]), ds.modality[sel],
                         ds.baseline[sel], [ds.qids[g] for g in gs], [ds.tags[g] for g in gs])  # fmt: skip
        m = ft.ranking_metrics(scores[sel], sub)
        out[f"{name} ({len(gs)})"] = (m["hit@10"], m["mrr@10"])
    return out


def study(ds: ft.Dataset) -> str:
    variants: dict[str, np.ndarray] = {f"configured ({ds.baseline_name})": ds.baseline}
    for c in ft.C_GRID:
        variants[f"logistic C={c}"] = ft.cross_validate(ds, c)
    _, report = ft.fit(ds)
    # what the shipped feature list leaves out, at the chosen C: every feature (the modality, length
    # and query features on their own too)
    variants[f"logistic C={report['C']}, every feature"] = ft.cross_validate(
        ds, report["C"], features=FEATURES
    )
    rows = {name: per_tag(s, ds) for name, s in variants.items()}
    cols = list(next(iter(rows.values())))
    lines = ["| fusion (dev, grouped CV) | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{h:.2f} / {m:.2f}" for h, m in r.values()) + " |")
    best = ft.cross_validate(ds, report["C"])
    before = ft.platt(ds.baseline, ds.y)(ds.baseline)
    cal = {
        "before (one Platt map)": ft.reliability(before, ds.y, ds.modality),
        "learned": ft.reliability(best, ds.y, ds.modality),
    }
    lines += [
        "",
        "| ECE (dev, held out) | " + " | ".join(cal["learned"]) + " |",
        "|" + "---|" * (len(cal["learned"]) + 1),
    ]
    for name, r in cal.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{v['ece']:.4f} (n {v['n']}, {v['positives']} rel.)" for v in r.values())
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # every `mmrag` process of this run a fresh one (MMRAG_WARM=auto would start a server), none left behind
    os.environ.setdefault("MMRAG_WARM", "0")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("train", "study"))
    ap.add_argument("--out", type=Path, default=build.default_out())
    ap.add_argument("--dump", type=Path, default=None, help="study: cache of the collected evidence (.npz)")
    ap.add_argument(
        "--benchmarks-md", action="store_true", help="study: also write its section of BENCHMARKS.md"
    )
    args = ap.parse_args(argv)
    if args.what == "train":
        return train(args.out)
    ds = collect(args.out, args.dump)
    intro = (
        f"`python -m bench.realdocs.fusion study` at {commit()}: the dev split only ({ds.n_queries} queries, "
        f"{len(ds.y)} candidates, {int(ds.y.sum())} relevant), 5-fold cross-validation grouped by query; hit@10 / "
        "MRR@10 of ranking each query's candidates (the configured fusion's own ranking in the first row; "
        "the shipped model reads `MODEL_FEATURES`, the last row every feature). ECE: expected calibration error "
        "of P(relevant) per modality, held out, the score fusion mapped by one Platt scaling against the learned "
        "model. The test split figures are in *Real-document retrieval*."
    )
    emit(
        "Learned fusion (dev, bench/realdocs/fusion.py)", intro + "\n\n" + study(ds), write=args.benchmarks_md
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Comparison of evaluation runs: a terminal table, a Markdown report and a quality-vs-latency plot.

Every function takes the records ``lib.evaluation.evaluate`` returns (or rows read back from the
``experiments`` table, after ``as_record``), each with a ``label`` naming the run in the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmrag_assets.lib.evaluation.evaluate import CHANNELS


@dataclass(frozen=True)
class Column:
    title: str
    get: Callable[[Mapping[str, Any]], float | None]
    better: Literal["max", "min"]
    digits: int = 3


def _m(stage: str, key: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda r: (r.get("metrics", {}).get(stage) or {}).get(key)


def _lat(section: str, stage: str, pct: str = "p50") -> Callable[[Mapping[str, Any]], float | None]:
    return lambda r: ((r.get(section) or {}).get(stage) or {}).get(pct)


COLUMNS: tuple[Column, ...] = (
    Column("nDCG@5", _m("reranked", "ndcg@5"), "max"),
    Column("nDCG@10", _m("reranked", "ndcg@10"), "max"),
    Column("nDCG@10 1st", _m("first_stage", "ndcg@10"), "max"),
    Column("R@10", _m("reranked", "recall@10"), "max"),
    Column("R@100", _m("reranked", "recall@100"), "max"),
    Column("R@100 1st", _m("first_stage", "recall@100"), "max"),
    Column("MRR", _m("reranked", "mrr"), "max"),
    Column("p50 ms", _lat("latency_ms", "total"), "min", 1),
    Column("p95 ms", _lat("latency_ms", "total", "p95"), "min", 1),
    Column("encode p50", _lat("latency_ms", "encode"), "min", 1),
    Column("1st p50", _lat("latency_ms", "first_stage"), "min", 1),
    Column("rerank p50", _lat("latency_ms", "rerank"), "min", 1),
)


def as_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ``experiments`` row (``lib.experiments.load_experiments``) in the shape of a run record."""
    m = dict(row["metrics"])
    stages = {s: m.pop(s) for s in ("first_stage", "reranked") if s in m}
    return {
        **m,
        "metrics": stages,
        "run_id": row["run_id"],
        "created_at": str(row["created_at"]),
        "overrides": row["overrides"],
        "config": row["config"],
        "queries": row["queries"],
    }


def best_rows(runs: Sequence[Mapping[str, Any]], col: Column) -> set[int]:
    vals = [(i, col.get(r)) for i, r in enumerate(runs)]
    vals = [(i, v) for i, v in vals if v is not None and not math.isnan(v)]
    if len(runs) < 2 or not vals:
        return set()
    target = (max if col.better == "max" else min)(v for _, v in vals)
    return {i for i, v in vals if round(v, col.digits) == round(target, col.digits)}


def _cells(runs: Sequence[Mapping[str, Any]], mark: Callable[[str], str]) -> list[list[str]]:
    best = [best_rows(runs, c) for c in COLUMNS]
    rows = []
    for i, r in enumerate(runs):
        row = [str(r.get("label") or r.get("run_id"))]
        for c, b in zip(COLUMNS, best, strict=True):
            v = c.get(r)
            s = "-" if v is None else f"{v:.{c.digits}f}"
            row.append(mark(s) if i in b else s)
        rows.append(row)
    return rows


def text_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Fixed-width comparison; ``*`` marks the best value of each column (ties all marked)."""
    header = ["run", *(c.title for c in COLUMNS)]
    rows = _cells(runs, lambda s: s + "*")
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            x.ljust(w) if j == 0 else x.rjust(w) for j, (x, w) in enumerate(zip(row, widths, strict=True))
        )

    lines = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]
    lines.append(
        "* best in column (quality: highest; latency: lowest). 1st: first stage alone, before the reranker."
    )
    return "\n".join(lines)


def markdown_table(runs: Sequence[Mapping[str, Any]]) -> str:
    header = ["run", *(c.title for c in COLUMNS)]
    rows = _cells(runs, lambda s: f"**{s}**")
    out = ["| " + " | ".join(header) + " |", "|" + "|".join([":--", *["--:"] * len(COLUMNS)]) + "|"]
    out += ["| " + " | ".join([r[0].replace("|", "\\|"), *r[1:]]) + " |" for r in rows]
    return "\n".join(out)


def channel_table(runs: Sequence[Mapping[str, Any]], key: str = "ndcg@10") -> str:
    """Markdown: ``key`` after reranking per channel (page, image, segment) and run."""
    out = ["| run | " + " | ".join(f"{ch} {key}" for ch in CHANNELS) + " |", "|:--|" + "--:|" * len(CHANNELS)]
    for r in runs:
        cells = []
        for ch in CHANNELS:
            agg = ((r.get("by_channel") or {}).get(ch) or {}).get("reranked") or {}
            v = agg.get(key)
            cells.append("-" if v is None else f"{v:.3f} (n={agg.get('n_queries_evaluated', 0)})")
        out.append(f"| {r.get('label') or r.get('run_id')} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot_quality_latency(
    runs: Sequence[Mapping[str, Any]], path: str | Path, *, metric: str = "ndcg@10"
) -> Path:
    """PNG: ``metric`` against median total latency, one colour per run; a hollow marker for
    the first stage alone, a filled one after reranking, and a bar out to the p95 latency."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = plt.get_cmap("tab10")
    xs: list[float] = []
    for i, r in enumerate(runs):
        c = colours(i % 10)
        fx, fy = _lat("first_stage_latency_ms", "total")(r), _m("first_stage", metric)(r)
        x, y, x95 = (
            _lat("latency_ms", "total")(r),
            _m("reranked", metric)(r),
            _lat("latency_ms", "total", "p95")(r),
        )
        if fx is not None and fy is not None:
            ax.scatter([fx], [fy], s=50, facecolors="none", edgecolors=[c], zorder=3)
            xs.append(fx)
            if x is not None and y is not None:
                ax.annotate(
                    "", xy=(x, y), xytext=(fx, fy), arrowprops={"arrowstyle": "->", "color": c, "alpha": 0.6}
                )
        if x is not None and y is not None:
            if x95 is not None and x95 > x:
                ax.plot([x, x95], [y, y], color=c, alpha=0.5, lw=2)
            ax.scatter([x], [y], s=60, color=c, zorder=4, label=str(r.get("label") or r.get("run_id")))
            xs.append(x)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("search latency per query, ms (median; bar to p95)")
    ax.set_ylabel(f"{metric} (hollow: first stage alone; filled: reranked)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Retrieval quality against latency ({len(runs)} configs)")
    if runs:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summary_lines(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line each: the best quality, the fastest, and runs that need a look."""
    out = []
    by = {c.title: c for c in COLUMNS}
    for title, what in (("nDCG@10", "best nDCG@10"), ("p50 ms", "fastest (p50)")):
        idx = best_rows(runs, by[title])
        if idx:
            names = ", ".join(str(runs[i].get("label")) for i in sorted(idx))
            out.append(f"{what}: {names} ({by[title].get(runs[min(idx)]):.{by[title].digits}f})")
    for r in runs:
        if r.get("n_failed"):
            out.append(f"{r.get('label')}: {r['n_failed']} queries failed (see per_query in DuckDB)")
        if r.get("sources_not_in_corpus"):
            out.append(
                f"{r.get('label')}: judged sources not in the corpus: {', '.join(r['sources_not_in_corpus'])}"
            )
    return out


def write_report(
    runs: Sequence[Mapping[str, Any]],
    report_dir: str | Path,
    name: str,
    *,
    fixed: Sequence[str] = (),
) -> tuple[Path, Path]:
    """``<report_dir>/<name>.md`` and ``<name>.png``; returns both paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    png = plot_quality_latency(runs, report_dir / f"{name}.png")
    first = runs[0] if runs else {}
    lines = [
        f"# Retrieval experiment {name}",
        "",
        f"- query set: `{first.get('queries')}` (sha256 {first.get('queries_sha256')}, {first.get('n_queries')} queries)",
        f"- fixed overrides: `{' '.join(fixed) or '(none)'}`",
        "- runs: " + ", ".join(f"`{r.get('run_id')}`" for r in runs) + " (DuckDB table `experiments`)",
        "",
        *[f"- {s}" for s in summary_lines(runs)],
        "",
        "## Metrics and latency",
        "",
        markdown_table(runs),
        "",
        (
            "Bold: best in column (quality highest, latency lowest). *1st*: the first stage alone (BM25-fused "
            "when `search.lexical`), before the exact reranker. Latency in ms per query, measured in-process."
        ),
        "",
        f"![quality against latency]({png.name})",
        "",
        "## By channel (after reranking)",
        "",
        channel_table(runs),
        "",
    ]
    md = report_dir / f"{name}.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return md, png

"""Answers to a set of questions (the ``answers`` asset): one catalog row per question and the
batch's figures (how many were answered, abstained or failed, citations, per-stage latency)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmrag_assets.errors import MmragError

STAGES = ("retrieve_ms", "rerank_ms", "evidence_ms", "generate_ms", "total_ms")


@dataclass
class BatchAnswers:
    rows: list[dict[str, Any]] = field(default_factory=list)  # the catalog's ``answers`` rows
    errors: list[dict[str, str]] = field(default_factory=list)  # {"qid", "question", "error"}
    timings: dict[str, list[float]] = field(default_factory=dict)  # stage -> ms per answered question

    def summary(self) -> dict[str, Any]:
        """Counts and per-stage p50 / p95 in ms (only the stages that ran)."""
        answered = [r for r in self.rows if not r["abstained"]]
        out: dict[str, Any] = {
            "questions": len(self.rows) + len(self.errors),
            "answered": len(answered),
            "abstained": len(self.rows) - len(answered),
            "failed": len(self.errors),
            "citations": sum(r["n_citations"] for r in self.rows),
            "dropped_citations": sum(r["n_dropped"] for r in self.rows),
        }
        for stage in STAGES:
            ms = self.timings.get(stage)
            if ms:
                name = stage.removesuffix("_ms")
                out[f"{name}_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
                out[f"{name}_p95_ms"] = round(float(np.percentile(ms, 95)), 2)
        return out


def answer_all(answerer: Any, questions: Iterable[tuple[str, str]], run_id: str) -> BatchAnswers:
    """``answerer.answer`` for each ``(qid, question)``; a question that fails (empty, too long, a
    generator error) is recorded with its error and the batch goes on."""
    out = BatchAnswers()
    for qid, q in questions:
        try:
            a = answerer.answer(q)
        except (MmragError, OSError, ValueError, RuntimeError) as e:  # one bad question, not the batch
            out.errors.append({"qid": qid, "question": q, "error": f"{type(e).__name__}: {e}"})
            continue
        for stage, ms in a.timings_ms.items():
            out.timings.setdefault(stage, []).append(float(ms))
        out.rows.append(row_of(a, qid, run_id))
    return out


def row_of(a: Any, qid: str, run_id: str) -> dict[str, Any]:
    """An ``Answer`` as a catalog row (lists and dicts as JSON text)."""
    return {
        "run_id": run_id,
        "qid": qid,
        "question": a.question,
        "answer": a.text,
        "abstained": bool(a.abstained),
        "generator": a.generator,
        "confidence": float(a.confidence),
        "n_citations": len(a.citations),
        "n_dropped": len(a.dropped_citations),
        "citations": json.dumps([c.public() for c in a.citations]),
        "sources": json.dumps([s.public() for s in a.sources]),
        "timings_ms": json.dumps(a.timings_ms),
        "warnings": json.dumps(a.warnings),
    }


def preview_md(rows: Sequence[dict[str, Any]], limit: int = 10, width: int = 160) -> str:
    """The first ``limit`` answers as a Markdown table (Dagster metadata)."""

    def cell(s: str) -> str:
        s = " ".join(str(s).split()).replace("|", "\\|")
        return s if len(s) <= width else s[: width - 1] + "…"

    lines = ["| qid | question | answer | cites |", "|---|---|---|---|"]
    for r in rows[:limit]:
        cites = ", ".join(
            f"[{c['n']}] {c['source']}" + (f" p.{c['page']}" if c["page"] is not None else "")
            for c in json.loads(r["citations"])
        )
        lines.append(
            f"| {cell(r['qid'])} | {cell(r['question'])} | {cell(r['answer'])} | {cell(cites) or '-'} |"
        )
    if len(rows) > limit:
        lines.append(f"| ... | {len(rows) - limit} more in the catalog table `answers` | | |")
    return "\n".join(lines)

"""Retrieval metrics for evaluation runs (pure Python).

Policies, fixed here so that numbers are comparable between runs:

- **Gain**: graded relevance, gain = 2**grade - 1, discount 1 / log2(rank + 1) (ranks 1-based).
  A judgement without ``grade`` has grade 1; grade 0 means "judged not relevant".
- **Ties**: results that carry a ``score`` are ordered by score descending, ties broken by
  ``item_id`` ascending (then by the remaining location fields), so the metric does not depend on
  the order an engine happened to return tied results in. Results without a score keep their order.
- **Credit once**: each judgement is credited to at most one result, the highest-ranked one that
  matches it. Overlapping transcript windows (30 s windows with 5 s overlap) would otherwise find the
  same judged passage twice, counting it twice in DCG and pushing recall above 1. A later result that
  only matches already-credited judgements has gain 0, like a duplicate.
- **No relevant judgements**: ``ndcg_at_k``, ``recall_at_k`` and ``mrr`` return 0.0 (they must return a
  number), but ``evaluate_query`` marks the query ``has_relevant=False`` and ``aggregate`` leaves it out
  of the means and counts it in ``n_queries_without_relevant``: a query nobody judged relevant says
  nothing about the system.
- **Matching** (``is_relevant``): same ``source``; if the judgement names a ``page``, the same page; if it
  names an interval, the result's interval overlaps it by more than ``min_overlap_s`` (closed
  intervals; touching ends do not count), or a point result (video keyframe) lies inside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEFAULT_KS = (5, 10, 100)


def dcg_at_k(grades: Sequence[float], k: int) -> float:
    return sum((2.0**g - 1.0) / math.log2(i + 2) for i, g in enumerate(grades[:k]) if g > 0)


def ndcg_at_k(ranked_grades: Sequence[float], ideal_grades: Sequence[float], k: int) -> float:
    """DCG@k of the ranking over DCG@k of ``ideal_grades`` sorted best first; 0.0 when nothing is relevant."""
    _check_k(k)
    ideal = dcg_at_k(sorted(ideal_grades, reverse=True), k)
    return dcg_at_k(ranked_grades, k) / ideal if ideal > 0 else 0.0


def recall_at_k(ranked_grades: Sequence[float], n_relevant: int, k: int) -> float:
    """Share of the ``n_relevant`` judgements found in the top k (grades already credited once)."""
    _check_k(k)
    if n_relevant <= 0:
        return 0.0
    return min(1.0, sum(1 for g in ranked_grades[:k] if g > 0) / n_relevant)


def mrr(ranked_grades: Sequence[float], k: int | None = None) -> float:
    """Reciprocal rank of the first relevant result (within the top k if given); 0.0 if none."""
    for i, g in enumerate(ranked_grades[:k] if k is not None else ranked_grades):
        if g > 0:
            return 1.0 / (i + 1)
    return 0.0


def is_relevant(
    result: Mapping[str, Any], judgement: Mapping[str, Any], *, min_overlap_s: float = 0.0
) -> float:
    """The judgement's grade when ``result`` matches it, else 0.0 (see the module docstring)."""
    if result.get("source") != judgement.get("source"):
        return 0.0
    if judgement.get("page") is not None and (
        result.get("page") is None or int(result["page"]) != int(judgement["page"])
    ):
        return 0.0
    j_start, j_end = _interval(judgement)
    if j_start is not None:
        r_start, r_end = _interval(result)
        if r_start is None or not _overlaps(r_start, r_end, j_start, j_end, min_overlap_s):
            return 0.0
    return float(judgement.get("grade", 1.0))


def rank_results(results: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Results in evaluation order: by score descending, ties by item id (see the tie policy)."""
    results = list(results)
    if not results or any(r.get("score") is None for r in results):
        return results
    return sorted(results, key=lambda r: (-float(r["score"]), _tie_key(r)))


def credited_grades(
    results: Sequence[Mapping[str, Any]], relevant: Sequence[Mapping[str, Any]], *, min_overlap_s: float = 0.0
) -> list[float]:
    """Grade of each ranked result, each judgement credited to its highest-ranked match only."""
    open_ = [j for j in relevant if float(j.get("grade", 1.0)) > 0]
    grades: list[float] = []
    for r in results:
        matches = [(is_relevant(r, j, min_overlap_s=min_overlap_s), i) for i, j in enumerate(open_)]
        matches = [(g, i) for g, i in matches if g > 0]
        if not matches:
            grades.append(0.0)
            continue
        g, i = max(matches, key=lambda m: (m[0], -m[1]))  # best grade; the earlier judgement on a tie
        grades.append(g)
        open_.pop(i)
    return grades


def evaluate_query(
    results: Sequence[Mapping[str, Any]],
    relevant: Sequence[Mapping[str, Any]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    min_overlap_s: float = 0.0,
) -> dict[str, Any]:
    """nDCG@k, recall@k, hit@k (a relevant result in the top k: 1 or 0) and MRR@k for each k, and
    MRR over the whole ranking, of one query's results against its judgements."""
    ranked = rank_results(results)
    grades = credited_grades(ranked, relevant, min_overlap_s=min_overlap_s)
    ideal = [float(j.get("grade", 1.0)) for j in relevant if float(j.get("grade", 1.0)) > 0]
    out: dict[str, Any] = {
        "n_results": len(ranked),
        "n_relevant": len(ideal),
        "has_relevant": bool(ideal),
        "mrr": mrr(grades),
    }
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(grades, ideal, k)
        out[f"recall@{k}"] = recall_at_k(grades, len(ideal), k)
        out[f"hit@{k}"] = float(any(g > 0 for g in grades[:k])) if ideal else 0.0
        out[f"mrr@{k}"] = mrr(grades, k)
    return out


def aggregate(per_query: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every metric over the queries that have relevant judgements (None when there are none)."""
    judged = [q for q in per_query if q.get("has_relevant")]
    keys = [k for k in (per_query[0] if per_query else {}) if k == "mrr" or "@" in k]
    out: dict[str, Any] = {
        "n_queries": len(per_query),
        "n_queries_evaluated": len(judged),
        "n_queries_without_relevant": len(per_query) - len(judged),
    }
    for key in keys:
        out[key] = sum(float(q[key]) for q in judged) / len(judged) if judged else None
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _interval(d: Mapping[str, Any]) -> tuple[float | None, float | None]:
    start = d.get("start_s")
    if start is None:
        start = d.get("t_s")  # video keyframes carry a time point
    end = d.get("end_s")
    if start is None:
        return None, None
    return float(start), float(end) if end is not None else float(start)


def _overlaps(a0: float, a1: float | None, b0: float, b1: float | None, min_overlap_s: float) -> bool:
    a1 = a0 if a1 is None else a1
    b1 = b0 if b1 is None else b1
    overlap = min(a1, b1) - max(a0, b0)
    if a0 == a1 or b0 == b1:  # a point: inside the other closed interval
        return overlap >= 0
    return overlap > min_overlap_s


def _tie_key(r: Mapping[str, Any]) -> tuple[str, str, float, float]:
    page = r.get("page")
    start = r.get("start_s")
    return (
        str(r.get("item_id") or ""),
        str(r.get("source") or ""),
        float(page) if page is not None else -1.0,
        float(start) if start is not None else -1.0,
    )

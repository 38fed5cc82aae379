"""One evaluation run: every labelled query through the real search path, scored twice.

- **first_stage**: the candidate ranking before the exact reranker (``reranker="none"`` with the
  configured first stage, fused with BM25 when ``search.lexical``): what recall the candidate
  generator leaves for the reranker to work with. No thresholds apply (its scores are not calibrated).
- **reranked**: the configured search exactly as users get it (thresholds applied unless
  ``eval.apply_thresholds=false``).

Both rankings are cut at ``max(eval.ks)`` results and scored by ``lib/metrics.py`` (its policies on
gains, ties, credit-once and unjudged queries hold here). Per-channel figures restrict the ranking to
one modality and the judgements to those that modality can satisfy (see ``judgement_channels``);
latency percentiles come from the reranked searches, after ``eval.warmup`` unmeasured ones.

``by`` (``mmrag eval --by TAG``) breaks the metrics down by the values of query tags (see
``query_set``): for each value, the **mixed** ranking a user sees (every modality competing, the
same figures as ``metrics``) and the **restricted** view (the ranking cut to the modalities that
can satisfy the query's judgements, the per-channel view), for both stages.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

import numpy as np

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError
from mmrag_assets.lib.evaluation.metrics import aggregate, evaluate_query, is_relevant
from mmrag_assets.lib.evaluation.query_set import LabelledQuery, QuerySet
from mmrag_assets.lib.ingest.sniff import EXTENSIONS

CHANNELS = ("page", "image", "segment")
STAGES = ("encode", "first_stage", "lexical", "dense", "rerank", "total")
HEADLINE = ("ndcg@5", "ndcg@10", "recall@10", "recall@100", "mrr")  # the figures tables show
TOP_STORED = 10  # results kept per query in the experiments table
_KEYFRAME = re.compile(r":k(\d+)$")  # video keyframe item ids end in :k<t_ms>


class SearcherLike(Protocol):
    def search(self, query: str, k: int | None = ..., filters: Any = ..., **kw: Any) -> Any: ...


def new_run_id() -> str:
    """Sortable and readable: ``20260101-120000-3f9a1c``."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- judging


def judgeable(result: Mapping[str, Any]) -> dict[str, Any]:
    """A search result as ``metrics.is_relevant`` reads it. Keyframes carry their time only in
    their item id (``{doc_id}:k{t_ms}``); it becomes ``t_s`` so time-span judgements match them."""
    r = dict(result)
    if r.get("start_s") is None and r.get("modality") == "image":
        m = _KEYFRAME.search(str(r.get("item_id") or ""))
        if m:
            r["t_s"] = int(m.group(1)) / 1000.0
    return r


def judgement_channels(judgement: Mapping[str, Any], kinds: Mapping[str, str]) -> set[str]:
    """The modalities whose items can satisfy a judgement, from the source's kind (the catalog
    manifest; the extension when the source is not in the corpus)."""
    src = str(judgement["source"])
    kind = kinds.get(src) or EXTENSIONS.get(PurePosixPath(src).suffix.lower().lstrip("."), "")
    if kind == "pdf":
        return {"page"}
    if kind == "image":
        return {"image"}
    if kind == "audio":
        return {"segment"}
    if kind == "video":  # a page number names a keyframe; a span matches windows and keyframes
        return {"image"} if judgement.get("page") is not None else {"segment", "image"}
    return set(CHANNELS)


def score_ranking(
    results: Sequence[Mapping[str, Any]], relevant: Sequence[Mapping[str, Any]], ks: Sequence[int]
) -> dict[str, Any]:
    return evaluate_query([judgeable(r) for r in results], relevant, ks)


def grade_of(result: Mapping[str, Any], relevant: Sequence[Mapping[str, Any]]) -> float:
    r = judgeable(result)
    return max((is_relevant(r, j) for j in relevant), default=0.0)


# ---------------------------------------------------------------- summaries


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "mean": None}
    a = np.asarray(values, dtype=float)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "mean": round(float(a.mean()), 2),
    }


def latency_summary(timings: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """p50/p95/mean per stage (``encode``, ``first_stage``, ``lexical``, ``rerank``, ``total``) in ms."""
    return {s: percentiles([t[f"{s}_ms"] for t in timings if f"{s}_ms" in t]) for s in STAGES}


def channel_breakdown(
    per_query: Sequence[Mapping[str, Any]], kinds: Mapping[str, str], ks: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Per channel: each query's ranking restricted to that modality, judged against the
    judgements that modality can satisfy; queries with none are not counted."""
    out: dict[str, dict[str, Any]] = {}
    for ch in CHANNELS:
        stages: dict[str, list[dict[str, Any]]] = {"first_stage": [], "reranked": []}
        for q in per_query:
            rel = [j for j in q["relevant"] if ch in judgement_channels(j, kinds)]
            if not rel:
                continue
            for stage, scored in stages.items():
                ranked = [r for r in q["_rankings"][stage] if r.get("modality") == ch]
                scored.append(score_ranking(ranked, rel, ks))
        out[ch] = {stage: aggregate(v) if v else {"n_queries": 0} for stage, v in stages.items()}
    return out


MISSING_TAG = "(none)"  # the group of queries that do not carry the tag


def restricted(
    ranking: Sequence[Mapping[str, Any]], relevant: Sequence[Mapping[str, Any]], kinds: Mapping[str, str]
) -> list[Mapping[str, Any]]:
    """``ranking`` cut to the modalities whose items can satisfy one of the judgements."""
    allowed = set().union(*(judgement_channels(j, kinds) for j in relevant)) if relevant else set(CHANNELS)
    return [r for r in ranking if r.get("modality") in allowed]


def tag_breakdown(
    per_query: Sequence[Mapping[str, Any]], by: Sequence[str], kinds: Mapping[str, str], ks: Sequence[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{tag: {value: {"n_queries", "mixed": {stage: metrics}, "restricted": {stage: metrics}}}}``.
    A query with a list tag counts in each of its values; one without the tag in ``(none)``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for tag in by:
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for q in per_query:
            for value in q["tags_str"].get(tag) or (MISSING_TAG,):
                groups.setdefault(value, []).append(q)
        out[tag] = {}
        for value in sorted(groups):
            qs = groups[value]
            out[tag][value] = {
                "n_queries": len(qs),
                "mixed": {s: aggregate([q[s] for q in qs]) for s in ("first_stage", "reranked")},
                "restricted": {
                    s: aggregate(
                        [
                            score_ranking(
                                restricted(q["_rankings"][s], q["relevant"], kinds), q["relevant"], ks
                            )
                            for q in qs
                        ]
                    )
                    for s in ("first_stage", "reranked")
                },
            }
    return out


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in HEADLINE}


# ---------------------------------------------------------------- the run


def evaluate(
    cfg: MmragConfig,
    searcher: SearcherLike,
    query_set: QuerySet,
    *,
    kinds: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    by: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every query of ``query_set`` through ``searcher`` (a ``lib.search.Searcher``) and
    return the experiment record: metrics, per-channel metrics, the breakdown by the tags in ``by``,
    latency, per-query results."""
    ks = sorted({int(k) for k in cfg.eval.ks})
    if not ks or ks[0] < 1:
        raise MmragError(f"eval.ks={cfg.eval.ks} must be positive integers")
    k = min(ks[-1], cfg.search.max_k)
    kinds = dict(kinds or {})
    say = progress or (lambda _m: None)
    run_id, started = new_run_id(), datetime.now(UTC)
    for q in query_set.queries[: max(0, cfg.eval.warmup)]:  # load lazy structures, fill caches
        _search(searcher, q.query, k, cfg.eval.apply_thresholds, rerank=True)
    per_query: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, q in enumerate(query_set.queries, 1):
        per_query.append(_evaluate_one(q, searcher, k, ks, cfg.eval.apply_thresholds))
        if i % 10 == 0 or i == len(query_set):
            say(f"  {i}/{len(query_set)} queries ({time.perf_counter() - t0:.1f} s)")
    metrics = {s: aggregate([q[s] for q in per_query]) for s in ("first_stage", "reranked")}
    ok = [q for q in per_query if not q["error"]]
    missing = sorted(query_set.sources - set(kinds)) if kinds else []
    record = {
        "run_id": run_id,
        "created_at": started.isoformat(timespec="seconds"),
        "queries": str(query_set.path),
        "queries_sha256": query_set.sha256,
        "n_queries": len(per_query),
        "n_failed": len(per_query) - len(ok),
        "k": k,
        "metrics": metrics,
        "by_channel": channel_breakdown(per_query, kinds, ks),
        "by_tag": tag_breakdown(per_query, list(dict.fromkeys(by)), kinds, ks),
        "latency_ms": latency_summary([q["timings_ms"] for q in ok]),
        "first_stage_latency_ms": latency_summary([q["first_stage_timings_ms"] for q in ok]),
        "sources_not_in_corpus": missing,
        "seconds": round(time.perf_counter() - t0, 2),
        "overrides": list(cfg.overrides),
        "config": cfg.to_dict(),
    }
    for q in per_query:
        del q["_rankings"], q["tags_str"]
    record["per_query"] = per_query
    return record


def _search(searcher: SearcherLike, query: str, k: int, apply_thresholds: bool, *, rerank: bool) -> Any:
    """The search as served (``rerank``: ``apply_thresholds`` as ``eval.apply_thresholds`` says) or its first stage."""
    if rerank:
        return searcher.search(query, k=k, apply_thresholds=apply_thresholds)
    return searcher.search(query, k=k, reranker="none", apply_thresholds=False)


def _evaluate_one(
    q: LabelledQuery, searcher: SearcherLike, k: int, ks: Sequence[int], apply_thresholds: bool
) -> dict[str, Any]:
    rankings: dict[str, list[dict[str, Any]]] = {"first_stage": [], "reranked": []}
    timings: dict[str, dict[str, float]] = {"first_stage": {}, "reranked": {}}
    error, dropped = None, 0
    try:
        for stage in ("first_stage", "reranked"):
            resp = _search(searcher, q.query, k, apply_thresholds, rerank=stage == "reranked")
            rankings[stage] = [r.public() if hasattr(r, "public") else dict(r) for r in resp.results]
            timings[stage] = dict(resp.timings_ms)
            dropped = int(getattr(resp, "dropped_below_threshold", 0))
    except MmragError as e:  # a query the engine rejects scores zero and is reported
        error = str(e)
    top = [
        {
            key: r.get(key)
            for key in ("rank", "score", "modality", "source", "page", "start_s", "end_s", "item_id")
        }
        | {"grade": grade_of(r, q.relevant)}
        for r in rankings["reranked"][:TOP_STORED]
    ]
    return {
        "qid": q.qid,
        "query": q.query,
        "relevant": [dict(j) for j in q.relevant],
        "tags": {t: list(v) if isinstance(v, tuple) else v for t, v in q.tags.items()},
        "tags_str": {t: q.tag_values(t) for t in q.tags},
        "first_stage": score_ranking(rankings["first_stage"], q.relevant, ks),
        "reranked": score_ranking(rankings["reranked"], q.relevant, ks),
        "timings_ms": timings["reranked"],
        "first_stage_timings_ms": timings["first_stage"],
        "dropped_below_threshold": dropped,
        "top": top,
        "error": error,
        "_rankings": rankings,
    }


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The printed object: everything but the per-query results (those live in DuckDB)."""
    return {k: v for k, v in record.items() if k != "per_query"}

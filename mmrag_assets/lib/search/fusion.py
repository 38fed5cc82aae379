"""The final ranking: each channel's evidence after the rerank, fused, so that no channel's order
overwrites another's. A fusion is a small class (:class:`Fusion`) with one method,
``fuse(evidence) -> Fused``; ``search.fusion`` picks one (``searcher.make_fusion``): ``learned``
(``learned.py``: a probability of relevance from every candidate's evidence), ``score`` (convex
combination), ``rrf`` (weighted reciprocal rank fusion) or ``none`` (the rerank's order).

Channels (each a ranking of item positions, best first):
- ``maxsim``: the late-interaction channel, ranked by the calibrated (per-modality z-scored) exact
  MaxSim of the rerank; with ``search.reranker=none`` the first stage's order stands in for it;
- ``lexical``: BM25 over the items' text (text layers, OCR text, transcripts);
- ``dense``: one sentence-embedding vector per item (``dense`` config group), when configured.

Weighted reciprocal rank fusion (Cormack et al. 2009, with per-channel weights):

    fused(i) = sum over channels c that rank i of  w_c / (rrf_k + rank_c(i))

Ranks, not raw scores, are fused: BM25 scores, MaxSim z-scores and cosines live on different
scales, move with the query length, and BM25 is not comparable across queries, while a rank is
the same kind of evidence in every channel. The weights and ``rrf_k`` live in ``conf/search/``;
they were chosen on the real-document dev split (BENCHMARKS.md), never on the test queries.
Ties are broken by the item id (the evaluation's tie policy), so the order is deterministic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mmrag_assets.lib.search.channels import Hits

if TYPE_CHECKING:
    from mmrag_assets.config import SearchConfig
    from mmrag_assets.lib.search.channels import LateInteraction, Query

CHANNELS = ("maxsim", "lexical", "dense")


@dataclass
class Evidence:
    """Everything known about one query's candidates when the final order is made."""

    query: Query
    late: LateInteraction  # every candidate's MaxSim (raw, calibrated) and the MaxSim ranking
    # channel -> (positions, scores) best first, over the candidates only: "maxsim" (calibrated
    # MaxSim, thresholds applied), "lexical" (BM25), "dense" (cosine of the best window)
    lists: dict[str, tuple[np.ndarray, np.ndarray]]
    ranks: dict[str, dict[int, int]]  # candidate channel -> position -> 1-based rank in its own list
    coverage: float | None  # the best candidate's query-length-normalised MaxSim (lite tier), else None


@dataclass
class Fused:
    """A fusion's output: the final score of every item it keeps, and why."""

    scores: dict[int, float]
    weights: dict[str, float] = field(default_factory=dict)  # the per-channel weights it used (reported)
    why: dict[int, dict[str, float]] = field(
        default_factory=dict
    )  # position -> each part's share of its score
    extra: dict[str, Any] = field(default_factory=dict)  # what a response reports about the fusion


class Fusion(ABC):
    """Combines the channels' evidence of one query into its final scores (higher is better)."""

    name: ClassVar[str]

    @abstractmethod
    def fuse(self, ev: Evidence) -> Fused: ...


class _Weighted(Fusion):
    """Per-channel weights that move with the query's coverage (:func:`coverage_weights`)."""

    def __init__(self, s: SearchConfig) -> None:
        self.weights = dict(s.weights)
        cw = s.coverage_weights
        self.semantic, self.low, self.high, self.rrf_k = dict(cw.semantic), cw.low, cw.high, s.rrf_k

    def weights_for(self, ev: Evidence) -> dict[str, float]:
        return coverage_weights(self.weights, self.semantic, ev.coverage, self.low, self.high)


class ScoreFusion(_Weighted):
    """``search.fusion=score``: :func:`convex` of min-max normalised channel scores."""

    name = "score"

    def fuse(self, ev: Evidence) -> Fused:
        w = self.weights_for(ev)
        why: dict[int, dict[str, float]] = {}
        scores = convex(ev.lists, w, parts=why)
        return Fused(scores, w, why)


class RRFFusion(_Weighted):
    """``search.fusion=rrf``: :func:`weighted_rrf` of the channels' rankings."""

    name = "rrf"

    def fuse(self, ev: Evidence) -> Fused:
        w = self.weights_for(ev)
        why: dict[int, dict[str, float]] = {}
        scores = weighted_rrf({n: pos for n, (pos, _) in ev.lists.items()}, w, self.rrf_k, parts=why)
        return Fused(scores, w, why)


class RerankOrder(Fusion):
    """``search.fusion=none``: the MaxSim ranking alone (calibrated scores, thresholds applied)."""

    name = "none"

    def fuse(self, ev: Evidence) -> Fused:
        late = ev.late
        scores = {i: late.calibrated[i] for i in late.order.tolist()}
        return Fused(scores, {"maxsim": 1.0}, {i: {"maxsim": v} for i, v in scores.items()})


def weighted_rrf(
    rankings: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    rrf_k: float,
    parts: dict[int, dict[str, float]] | None = None,
) -> dict[int, float]:
    """``{item position: fused score}`` over every item any weighted channel ranks.

    ``rankings``: channel name -> (n_c,) int item positions, best first (a position listed twice
    counts at its best rank). A channel with weight 0 or missing from ``weights`` is ignored.
    ``parts``, when given, receives each item's per-channel terms.
    """
    if rrf_k < 0:
        raise ValueError(f"rrf_k must be >= 0, got {rrf_k}")
    fused: dict[int, float] = {}
    for name, ranking in rankings.items():
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        seen: set[int] = set()
        for r, i in enumerate(np.asarray(ranking, dtype=np.int64).tolist(), 1):
            if i in seen:
                continue
            seen.add(i)
            fused[i] = fused.get(i, 0.0) + w / (rrf_k + r)
            if parts is not None:
                parts.setdefault(i, {})[name] = w / (rrf_k + r)
    return fused


def candidates(rankings: Mapping[str, Hits], rrf_k: int, n: int) -> Hits:
    """The items the reranker scores: one channel's ranking as it is, several fused by reciprocal
    rank fusion with unit weights (``fusion.weighted_rrf``), ties by position, cut at ``n``; the
    scores are what ``search.reranker=none`` keeps."""
    if len(rankings) == 1:
        return next(iter(rankings.values()))
    fused = weighted_rrf({c: h.positions for c, h in rankings.items()}, dict.fromkeys(rankings, 1.0), rrf_k)
    order = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return Hits(
        np.array([i for i, _ in order], dtype=np.int64), np.array([v for _, v in order], dtype=np.float32)
    )


def convex(
    lists: Mapping[str, tuple[np.ndarray, np.ndarray]],
    weights: Mapping[str, float],
    parts: dict[int, dict[str, float]] | None = None,
) -> dict[int, float]:
    """``{item position: fused score}``: a convex combination of min-max normalised scores
    (``parts``, when given, receives each item's per-channel terms).

        fused(i) = sum over channels c of  w_c * (s_c(i) - min_c) / (max_c - min_c)

    over each channel's own list for this query (an item a channel does not list gets 0 there;
    a list whose scores are all equal gives 1 to each of its items). Unlike RRF it keeps how far
    ahead a channel's best items are: a BM25 score far above the rest outweighs a dense channel
    whose top cosines are all alike (Bruch et al., "An Analysis of Fusion Functions for Hybrid
    Retrieval", 2023, found a tuned convex combination ahead of RRF).
    """
    fused: dict[int, float] = {}
    for name, (pos, sc) in lists.items():
        w = float(weights.get(name, 0.0))
        if w <= 0 or not len(pos):
            continue
        sc = np.asarray(sc, dtype=np.float64)
        lo, hi = float(sc.min()), float(sc.max())
        norm = (sc - lo) / (hi - lo) if hi > lo else np.ones_like(sc)
        seen: set[int] = set()
        for i, v in zip(np.asarray(pos, dtype=np.int64).tolist(), norm.tolist(), strict=True):
            if i in seen:
                continue
            seen.add(i)
            fused[i] = fused.get(i, 0.0) + w * v
            if parts is not None:
                parts.setdefault(i, {})[name] = w * v
    return fused


def coverage_weights(
    weights: Mapping[str, float],
    semantic: Mapping[str, float],
    coverage: float | None,
    low: float,
    high: float,
) -> dict[str, float]:
    """The final fusion's weights for one query, from how much of it the best candidate holds.

    ``coverage`` is the best candidate's query-length-normalised MaxSim over static token vectors
    (the lite tier): 1.0 when some item holds every query word, ~0.5-0.8 for a paraphrase that
    shares few words with any item. Exact-word channels (BM25, token MaxSim) are what finds the
    former and little help on the latter, where the dense channel is the evidence: at or above
    ``high`` the weights stand as configured, at or below ``low`` each is multiplied by its
    ``semantic`` factor, linearly between. ``None`` (a trained tier, whose MaxSim is no coverage;
    reranker=none) keeps the weights. On the real-document dev split the best candidate's
    coverage was >= 0.85 for 35 of 40 literal queries (1.0 for 24) and <= 0.82 for all 23 paraphrases (<= 0.7 for 17).
    """
    if coverage is None:
        return dict(weights)
    lam = min(max((coverage - low) / (high - low), 0.0), 1.0)
    return {c: float(w) * (lam + (1.0 - lam) * float(semantic.get(c, 1.0))) for c, w in weights.items()}


def ranks(ranking: np.ndarray) -> dict[int, int]:
    """1-based rank of every position in a ranking (its first occurrence)."""
    out: dict[int, int] = {}
    for r, i in enumerate(np.asarray(ranking, dtype=np.int64).tolist(), 1):
        out.setdefault(i, r)
    return out


__all__ = [
    "CHANNELS",
    "Evidence",
    "Fused",
    "Fusion",
    "RRFFusion",
    "RerankOrder",
    "ScoreFusion",
    "candidates",
    "convex",
    "coverage_weights",
    "ranks",
    "weighted_rrf",
]

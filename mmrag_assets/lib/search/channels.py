"""Search channels: each turns one query into a ranking of item positions with scores.

A channel is a small class with one method, ``search(q) -> Hits``; the searcher runs the
configured channels, takes the union of their rankings as the candidates (reciprocal rank fusion
with unit weights, cut at ``search.candidates``), scores every candidate by exact MaxSim
(:class:`LateInteraction`) and hands all of it to a fusion (``fusion.py``) as :class:`Evidence`.

- :class:`FirstStage`: the token-level first stage of the index (plaid, binary, pooled, muvera);
  its ranking approximates MaxSim.
- :class:`Lexical`: BM25 over the items' text (text layers, OCR text, transcripts), from the
  LanceDB table at the version's pinned table version.
- :class:`Dense`: one sentence-encoder vector per text window (``dense`` config group), an item
  scored by its best window; its query encoding is the slowest step of a query, so it runs on a
  worker thread (:meth:`Dense.submit`) while the token-level channels run on the caller's.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from mmrag_assets.lib.search.index_reader import IndexView


@dataclass
class Hits:
    """One channel's ranking for one query, best first."""

    positions: np.ndarray  # (n,) int64 item positions in the view
    scores: np.ndarray | None  # (n,) float32 channel scores (higher is better); None: order only
    ms: float = 0.0  # what the channel cost

    @classmethod
    def empty(cls) -> Hits:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


@dataclass
class Query:
    """What every channel of one query reads."""

    text: str
    view: IndexView  # one index version for the whole query
    mask: np.ndarray | None  # (n_items,) bool: published and matching the filters; None: all
    n: int  # how many items each channel lists
    vectors: np.ndarray | None = None  # (Tq, dim) float32 query token vectors (idf-weighted on the lite tier)


class Channel(ABC):
    """A source of candidates: ``search`` ranks the view's items for one query."""

    name: ClassVar[str]

    @abstractmethod
    def search(self, q: Query) -> Hits: ...


class FirstStage(Channel):
    """The index's token-level first stage (``search.first_stage``); ``knobs`` are its query-time
    parameters from the config (plaid's nprobe...), which replace the ones it was built with."""

    name = "first_stage"

    def __init__(self, strategy: str, knobs: Mapping[str, Any] | None = None) -> None:
        self.strategy, self.knobs = strategy, dict(knobs) if knobs is not None else None

    def search(self, q: Query) -> Hits:
        t = time.perf_counter()
        fs = q.view.first_stage(self.strategy, self.knobs)  # a name outside the built set is a QueryError
        idx, scores = fs.search(q.vectors, q.n, q.mask)
        return Hits(np.asarray(idx, dtype=np.int64), scores, _ms(t))


class Lexical(Channel):
    """BM25 over the items' text at the version's pinned table version."""

    name = "lexical"

    def search(self, q: Query) -> Hits:
        t = time.perf_counter()
        idx, scores = q.view.lexical(q.text, q.n, q.mask)
        return Hits(idx, scores, _ms(t))


class Dense(Channel):
    """Sentence-encoder windows: an item's score is the cosine of its best window to the query."""

    name = "dense"

    def search(self, q: Query) -> Hits:
        t = time.perf_counter()
        dense = q.view.first_stage("dense")
        idx, scores = dense.search(dense.encode_query(q.text), q.n, q.mask)
        return Hits(np.asarray(idx, dtype=np.int64), scores, _ms(t))

    def submit(self, pool: ThreadPoolExecutor, q: Query) -> Future[Hits]:
        """Run on ``pool``: a sentence encoder's forward pass (~12-17 ms of numpy on 2 cores, mostly
        matrix products that release the GIL) beside the token-level channels, so the query waits
        for the slower of the two, not their sum."""
        return pool.submit(self.search, q)


@dataclass
class LateInteraction:
    """Exact MaxSim of every candidate (``search.reranker``), normalised by the query's length and
    calibrated per modality (z-scores of the index's calibration); a candidate whose calibrated
    score is below its modality's threshold leaves the MaxSim ranking (``below``)."""

    raw: dict[int, float] = field(
        default_factory=dict
    )  # position -> MaxSim / query tokens (idf-weighted mean)
    calibrated: dict[int, float] = field(default_factory=dict)  # position -> z-score against its modality
    below: set[int] = field(default_factory=set)
    order: np.ndarray = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )  # the MaxSim ranking, best first
    scores: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float32))  # its calibrated scores

    @classmethod
    def score(
        cls,
        q: Query,
        cand: Hits,
        reranker: str,
        thresholds: Mapping[str, float] | None,
        first_stage: Hits,
        k: int,
    ) -> LateInteraction:
        """``cand``: the candidates (scores: what ``reranker=none`` keeps); ``thresholds``: per
        ``text_<modality>``, None to keep every candidate; ``k``: results the query asked for."""
        from mmrag_assets.lib.search.rerank import get_reranker

        view = q.view
        rr = get_reranker(reranker)
        idx, scores = rr.rerank(q.vectors, view.vectors, cand.positions, len(cand.positions), cand.scores)
        if view.rescore and reranker == "maxsim" and len(idx):
            # compressed rerank vectors ranked the candidates; the top get exact scores from LanceDB
            n_top = min(len(idx), max(view.rescore, k))
            top, exact = rr.rerank(q.vectors, view.exact_vectors, idx[:n_top], n_top, None)
            idx, scores = np.concatenate([top, idx[n_top:]]), np.concatenate([exact, scores[n_top:]])
        out = cls()
        n_q = len(q.vectors)
        for i, raw in zip(idx.tolist(), scores.tolist(), strict=True):
            if reranker != "maxsim":
                out.raw[i] = out.calibrated[i] = raw
                continue
            raw_n = raw / n_q
            cal = view.calibrate(raw_n, view.modality[i])
            out.raw[i], out.calibrated[i] = raw_n, cal
            if thresholds is not None and cal < thresholds.get(f"text_{view.modality[i]}", -math.inf):
                out.below.add(i)
        ids = view.items["item_id"]
        if reranker == "maxsim":  # calibrated MaxSim (per-modality z-scores), ties by id
            late = sorted(
                (i for i in out.calibrated if i not in out.below), key=lambda i: (-out.calibrated[i], ids[i])
            )
            late_scores = [out.calibrated[i] for i in late]
        else:  # reranker=none: the first stage's order (its candidates' order already holds BM25's)
            fs_idx = first_stage.positions.tolist()
            fs_sc = (
                (-np.arange(len(fs_idx))).tolist()
                if first_stage.scores is None
                else first_stage.scores.tolist()
            )
            by_pos = dict(zip(fs_idx, fs_sc, strict=True))
            late = [i for i in fs_idx if i in out.calibrated]
            late_scores = [by_pos[i] for i in late]
        out.order = np.array(late, dtype=np.int64)
        out.scores = np.array(late_scores, dtype=np.float32)
        return out


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


__all__ = ["Channel", "Dense", "FirstStage", "Hits", "LateInteraction", "Lexical", "Query"]

"""Training the learned fusion (``lib/search/learned.py``) on labelled queries.

1. :func:`collect` searches every query once and keeps, for every candidate the final fusion sees,
   its feature row (``learned.candidate_features``), whether it is relevant (the evaluation's own
   ``grade_of``), its modality and the query it belongs to, plus the score the configured fusion
   gave it (the "before" of the calibration report).
2. :func:`fit` chooses the regularisation of a scikit-learn ``LogisticRegression`` by
   cross-validation grouped by query (no query's candidates in both folds), on the ranking the
   user sees (MRR@10 of the held-out folds), then fits it on every query.
3. :func:`reliability` measures calibration per modality: expected calibration error and the
   reliability curve of P(relevant | score), for the model's probabilities and for the configured
   fusion's score mapped to a probability by one Platt scaling shared by every modality (what a
   single global calibration can do).

Only the dev split of an evaluation set may train a model that is then reported on its test split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mmrag_assets.lib.evaluation.evaluate import grade_of
from mmrag_assets.lib.evaluation.query_set import QuerySet
from mmrag_assets.lib.search.fusion import Evidence, Fused, Fusion, ScoreFusion
from mmrag_assets.lib.search.learned import FEATURES, MODEL_FEATURES, FusionModel, candidate_features

C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # inverse L2 strengths tried (grouped CV)
FOLDS = 5
CAL_BINS = 10


@dataclass
class Dataset:
    """One row per (query, candidate)."""

    x: np.ndarray  # (N, F) float64 features, columns in FEATURES order
    y: np.ndarray  # (N,) int 0/1 relevant
    group: np.ndarray  # (N,) int query number
    modality: np.ndarray  # (N,) str
    baseline: np.ndarray  # (N,) float the configured fusion's score (0 where it dropped the item)
    qids: list[str] = field(default_factory=list)  # per query number
    tags: list[dict[str, Any]] = field(default_factory=list)  # per query number
    baseline_name: str = ""

    @property
    def n_queries(self) -> int:
        return len(self.qids)

    def sha256(self) -> str:
        h = hashlib.sha256()
        for a in (self.x, self.y, self.group):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


class _Collector(Fusion):
    """Wraps the configured fusion: keeps each query's features, answers as the wrapped one does."""

    name = "collector"

    def __init__(self, inner: Fusion, score: ScoreFusion) -> None:
        self.inner, self.score = inner, score  # score: the per-query weights of the fuse_* features
        self.last: tuple[np.ndarray, np.ndarray, Fused, Evidence] | None = None

    def fuse(self, ev: Evidence) -> Fused:
        out = self.inner.fuse(ev)
        pos, x, _ = candidate_features(ev, self.score.weights_for(ev))
        self.last = (pos, x, out, ev)
        return out


def collect(searcher: Any, query_set: QuerySet, progress: Callable[[str], None] | None = None) -> Dataset:
    """Search each query of ``query_set`` once with ``searcher`` (its configured fusion ranks; every
    candidate of the final fusion becomes a row)."""
    inner = searcher.fusion(searcher.view)
    col = _Collector(inner, ScoreFusion(searcher.cfg.search))
    searcher.fusion = lambda _view: col
    xs, ys, gs, ms, bs, qids, tags = [], [], [], [], [], [], []
    for n, q in enumerate(query_set.queries):
        col.last = None
        searcher.search(q.query, k=10, apply_thresholds=True)
        if col.last is None:
            continue
        pos, x, fused, ev = col.last
        view = ev.query.view
        y = [1 if grade_of(view.result(i, 0, 0.0, 0.0).public(), q.relevant) > 0 else 0 for i in pos.tolist()]
        xs.append(x)
        ys.append(np.asarray(y, dtype=np.int64))
        gs.append(np.full(len(pos), len(qids), dtype=np.int64))
        ms.append(view.modality[pos])
        bs.append(np.array([fused.scores.get(i, 0.0) for i in pos.tolist()], dtype=np.float64))
        qids.append(q.qid)
        tags.append(dict(q.tags))
        if progress and ((n + 1) % 20 == 0 or n + 1 == len(query_set)):
            progress(f"  {n + 1}/{len(query_set)} queries searched")
    if not xs:
        from mmrag_assets.errors import MmragError

        raise MmragError("no query returned candidates: is the index empty?")
    return Dataset(
        np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), np.concatenate(ms), np.concatenate(bs),
        qids, tags, getattr(inner, "name", ""),
    )  # fmt: skip


def ranking_metrics(scores: np.ndarray, ds: Dataset, k: int = 10) -> dict[str, float]:
    """hit@k and MRR@k of ranking each query's candidates by ``scores`` (ties: first listed)."""
    hits, rr = [], []
    for g in range(ds.n_queries):
        sel = np.flatnonzero(ds.group == g)
        order = sel[np.argsort(-scores[sel], kind="stable")][:k]
        rel = np.flatnonzero(ds.y[order] > 0)
        hits.append(1.0 if len(rel) else 0.0)
        rr.append(1.0 / (rel[0] + 1) if len(rel) else 0.0)
    return (
        {"hit@10": float(np.mean(hits)), "mrr@10": float(np.mean(rr))}
        if hits
        else {"hit@10": 0.0, "mrr@10": 0.0}
    )


def _lr(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def columns(ds: Dataset, features: Sequence[str]) -> np.ndarray:
    """``ds.x`` cut to ``features`` (names of :data:`FEATURES`), in that order."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}")
    return ds.x[:, [FEATURES.index(f) for f in features]]


def cross_validate(
    ds: Dataset, c: float, folds: int = FOLDS, features: Sequence[str] = MODEL_FEATURES
) -> np.ndarray:
    """Held-out P(relevant) of every row from a model over ``features``: folds grouped by query."""
    from sklearn.model_selection import GroupKFold

    x = columns(ds, features)
    out = np.zeros(len(ds.y), dtype=np.float64)
    n = min(folds, ds.n_queries)
    for tr, te in GroupKFold(n_splits=n).split(x, ds.y, ds.group):
        if ds.y[tr].min() == ds.y[tr].max():  # a fold without a positive (or a negative) teaches nothing
            out[te] = ds.y[tr].mean()
            continue
        out[te] = _lr(c).fit(x[tr], ds.y[tr]).predict_proba(x[te])[:, 1]
    return out


def fit(
    ds: Dataset, grid: Sequence[float] = C_GRID, features: Sequence[str] = MODEL_FEATURES
) -> tuple[FusionModel, dict[str, Any]]:
    """The model over ``features`` (C chosen by grouped CV on MRR@10, then hit@10, then the smaller
    C) and the CV report."""
    if ds.y.sum() == 0:
        from mmrag_assets.errors import MmragError

        raise MmragError("no candidate of any query is relevant: the labels do not match this index")
    cv: dict[float, dict[str, float]] = {}
    for c in grid:
        cv[c] = ranking_metrics(cross_validate(ds, c, features=features), ds)
    best = max(grid, key=lambda c: (round(cv[c]["mrr@10"], 4), round(cv[c]["hit@10"], 4), -c))
    pipe = _lr(best).fit(columns(ds, features), ds.y)
    scaler, lr = pipe[0], pipe[-1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = FusionModel(
        list(features), scaler.mean_.astype(np.float64), scale.astype(np.float64), lr.coef_[0].astype(np.float64),
        float(lr.intercept_[0]),
    )  # fmt: skip
    report = {
        "C": best,
        "cv": {str(c): {k: round(v, 4) for k, v in m.items()} for c, m in cv.items()},
        "cv_baseline": {k: round(v, 4) for k, v in ranking_metrics(ds.baseline, ds).items()},
        "baseline": ds.baseline_name,
    }
    return model, report


def train(
    searcher: Any,
    query_set: QuerySet,
    *,
    name: str,
    tier: Mapping[str, Any],
    command: str,
    progress: Callable[[str], None] | None = None,
) -> tuple[FusionModel, dict[str, Any], Dataset]:
    """collect + fit, with what it was trained on recorded in the model."""
    ds = collect(searcher, query_set, progress)
    model, report = fit(ds)
    model.tier = dict(tier)
    model.trained = {
        "name": name, "queries": query_set.path.name, "queries_sha256": query_set.sha256, "rows_sha256": ds.sha256(),
        "n_queries": ds.n_queries, "n_rows": len(ds.y), "positives": int(ds.y.sum()), "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "command": command, **report,
    }  # fmt: skip
    return model, report, ds


# ---------------------------------------------------------------- calibration per modality


def platt(scores: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """One logistic map score -> P(relevant), fitted on every modality at once."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=2000).fit(scores.reshape(-1, 1), y)
    return lambda s: lr.predict_proba(np.asarray(s, dtype=np.float64).reshape(-1, 1))[:, 1]


def reliability(
    p: np.ndarray, y: np.ndarray, modality: np.ndarray, bins: int = CAL_BINS
) -> dict[str, dict[str, Any]]:
    """Per modality (and ``all``): expected calibration error (equal-width bins, weighted by their
    counts), the reliability curve (mean predicted vs observed frequency per non-empty bin) and counts."""
    out: dict[str, dict[str, Any]] = {}
    for m in ["all", *sorted(set(modality.tolist()))]:
        sel = np.ones(len(y), dtype=bool) if m == "all" else modality == m
        pm, ym = p[sel], y[sel]
        if not len(pm):
            continue
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(pm, edges[1:-1]), 0, bins - 1)
        ece, curve = 0.0, []
        for b in range(bins):
            inb = which == b
            if not inb.any():
                continue
            conf, freq = float(pm[inb].mean()), float(ym[inb].mean())
            ece += inb.sum() / len(pm) * abs(conf - freq)
            curve.append([round(conf, 4), round(freq, 4), int(inb.sum())])
        out[m] = {"ece": round(ece, 4), "n": len(pm), "positives": int(ym.sum()), "curve": curve}
    return out


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))) if len(y) else math.nan


__all__ = [
    "Dataset",
    "collect",
    "columns",
    "cross_validate",
    "fit",
    "platt",
    "ranking_metrics",
    "reliability",
    "train",
]

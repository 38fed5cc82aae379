"""Learned fusion (``search.fusion=learned``): each candidate's evidence -> P(relevant).

The same idea in two modalities lands in different regions of every channel's score space: a
transcript window of 80 spoken words and a manual page of 600 written ones get BM25 scores,
MaxSim coverages and cosines on different scales, so one global set of fusion weights ranks
spoken answers below pages that merely share words. Here a logistic regression (scikit-learn,
trained by ``lib/evaluation/fusion_train.py`` on labelled queries: ``mmrag eval --calibrate``)
reads, per candidate, the score fusion's term of each channel (its share of
``search.fusion=score``'s score), the same terms again for transcript windows and for images (the
per-modality-pair calibration learned, not assumed), and the dense evidence where the query's
words are missing (:data:`MODEL_FEATURES`; :func:`candidate_features` computes more, for study),
and outputs a probability of relevance:

    P(relevant | x) = 1 / (1 + exp(-(b + sum_j w_j (x_j - mean_j) / scale_j)))

The model is a JSON file (no pickle: a model file is data, never code) holding the feature list,
the standardisation, the weights, and what it was trained on (query-set hash, tier, metrics). Each
result's ``why`` lists the largest terms ``w_j (x_j - mean_j) / scale_j`` of its log-odds. A model
trained for another tier (its MaxSim scores mean something else) is not used: the search falls
back to ``search.fusion=score`` and says so in the response.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.search.fusion import CHANNELS, Evidence, Fused, Fusion, ScoreFusion, convex

if TYPE_CHECKING:
    from mmrag_assets.config import SearchConfig

FORMAT = "mmrag-fusion/1"
WHY_TERMS = 8  # the largest contributions a result reports
_QUESTION_WORDS = frozenset(
    [
        "how",
        "why",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "can",
        "could",
        "does",
        "do",
        "is",
        "are",
        "should",
    ]
)


def _first(pos: np.ndarray, scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(positions sorted, their 1-based ranks, their scores)`` of a ranking, each position at its
    first listing (a position listed twice counts at its best rank, as in ``fusion.convex``)."""
    pos = np.asarray(pos, dtype=np.int64)
    keys, first = np.unique(pos, return_index=True)
    sc = np.zeros(len(pos)) if scores is None else np.asarray(scores, dtype=np.float64)
    return keys, first + 1.0, sc[first]


def _lookup(cand: np.ndarray, keys: np.ndarray, values: np.ndarray, missing: float) -> np.ndarray:
    """``values`` of each candidate found in ``keys`` (sorted, unique), ``missing`` for the others."""
    if not len(keys):
        return np.full(len(cand), missing)
    at = np.clip(np.searchsorted(keys, cand), 0, len(keys) - 1)
    return np.where(keys[at] == cand, values[at], missing)


def _convex_terms(
    lists: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float], cand: np.ndarray
) -> dict[str, np.ndarray]:
    """Each channel's term of :func:`fusion.convex` for every candidate (0 where the channel does not
    list it): the parts that sum to ``search.fusion=score``'s score, from the same function."""
    parts: dict[int, dict[str, float]] = {}
    convex(lists, weights, parts=parts)
    at = cand.tolist()
    return {c: np.array([parts.get(i, {}).get(c, 0.0) for i in at]) for c in CHANNELS}


def _by_position(values: Mapping[int, float], cand: np.ndarray, missing: float = 0.0) -> np.ndarray:
    return np.fromiter((values.get(i, missing) for i in cand.tolist()), dtype=np.float64, count=len(cand))


def _inv_ranks(ranks: np.ndarray) -> np.ndarray:
    """1 / log2(1 + rank): 1 for the first, 0.5 for the third, 0 when not listed (inf; a DCG discount)."""
    listed = np.isfinite(ranks)
    return np.where(listed, 1.0 / np.log2(1.0 + np.where(listed, ranks, 1.0)), 0.0)


def candidate_features(
    ev: Evidence, weights: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(positions (n,), X (n, len(FEATURES)), FEATURES)`` for every candidate any list of ``ev``
    holds, in first-listing order. ``weights``: the score fusion's per-channel weights for this query
    (``ScoreFusion.weights_for``), which the ``fuse_*`` features carry (default: 1 each)."""
    view, late, lists = ev.query.view, ev.late, ev.lists
    listed = [np.asarray(p, dtype=np.int64) for p, _ in lists.values()]
    allpos = np.concatenate(listed) if listed else np.zeros(0, dtype=np.int64)
    uniq, first = np.unique(allpos, return_index=True)
    cand = uniq[np.argsort(first, kind="stable")]
    n = len(cand)
    if not n:
        return cand, np.zeros((0, len(FEATURES))), list(FEATURES)
    inf = math.inf
    rank_of, score_of = {}, {}
    for name, (p, s) in lists.items():
        keys, rk, sc = _first(p, s)
        rank_of[name], score_of[name] = _lookup(cand, keys, rk, inf), _lookup(cand, keys, sc, math.nan)
    unlisted = np.full(n, inf)
    bm25 = np.nan_to_num(score_of["lexical"], nan=0.0) if "lexical" in lists else np.zeros(n)
    bmax = float(np.max(lists["lexical"][1])) if "lexical" in lists and len(lists["lexical"][1]) else 0.0
    dscores = np.asarray(lists["dense"][1], dtype=np.float64) if "dense" in lists else np.zeros(0)
    d_raw = score_of["dense"] if "dense" in lists else np.full(n, math.nan)
    dmax = float(dscores.max()) if len(dscores) else 0.0
    d_floor = (
        float(dscores.min()) - dmax - 0.05 if len(dscores) else -0.3
    )  # an item the dense channel did not list: below its last
    d_gap = np.where(np.isnan(d_raw), d_floor, d_raw - dmax)
    raw = _by_position(late.raw, cand)
    cov = ev.coverage if ev.coverage is not None else float(raw.max())
    uncov = 1.0 - min(cov, 1.0)
    words = ev.query.text.lower().split()
    q_tokens = 0 if ev.query.vectors is None else len(ev.query.vectors)
    q_len = math.log1p(q_tokens or len(words))
    question = float(bool(words) and (words[0] in _QUESTION_WORDS or ev.query.text.rstrip().endswith("?")))
    mod = view.modality[cand]
    seg, img = (mod == "segment").astype(np.float64), (mod == "image").astype(np.float64)
    at = cand.tolist()
    rec = np.array([not _missing(view.items["start_s"][i]) for i in at], dtype=np.float64)
    n_tok = view.items.get("n_tokens")
    length = np.array(
        [0.0 if n_tok is None or _missing(n_tok[i]) else math.log1p(float(n_tok[i])) for i in at]
    )
    b = bm25 / bmax if bmax > 0 else np.zeros(n)
    nb_b, nb_d = np.zeros(n), np.full(n, d_floor)
    nb = getattr(view, "neighbours", None)
    if nb is not None:  # the best BM25 / dense evidence of the item before or after (neighbouring context)
        b_of = dict(zip(at, b.tolist(), strict=True))
        d_of = {i: g for i, g, r in zip(at, d_gap.tolist(), d_raw.tolist(), strict=True) if not math.isnan(r)}
        around = [[int(j) for j in row if j >= 0] for row in nb[cand]]
        nb_b = np.array([max((b_of.get(j, 0.0) for j in row), default=0.0) for row in around])
        nb_d = np.array([max((d_of.get(j, d_floor) for j in row), default=d_floor) for row in around])
    gap = raw - cov
    cols = {
        "maxsim_cov": raw,
        "maxsim_gap": gap,
        "maxsim_z": _by_position(late.calibrated, cand),
        "maxsim_rank": _inv_ranks(rank_of.get("maxsim", unlisted)),
        "bm25": b,
        "bm25_log": np.log1p(bm25),
        "bm25_rank": _inv_ranks(rank_of.get("lexical", unlisted)),
        "dense_gap": d_gap,
        "dense_rank": _inv_ranks(rank_of.get("dense", unlisted)),
        "first_stage_rank": _inv_ranks(_by_position(ev.ranks.get("first_stage", {}), cand, inf)),
        "nb_bm25": nb_b,
        "nb_dense": nb_d,
        "is_segment": seg,
        "is_image": img,
        "is_recording": rec,
        "log_len": length,
        "query_cov": np.full(n, cov),
        "query_len": np.full(n, q_len),
        "question": np.full(n, question),
        "bm25_x_cov": b * cov,
        "dense_x_uncov": d_gap * uncov,
        "segment_x_bm25": seg * b,
        "segment_x_dense": seg * d_gap,
        "segment_x_gap": seg * gap,
        "segment_x_len": seg * length,
        "image_x_bm25": img * b,
        "image_x_dense": img * d_gap,
        "image_x_gap": img * gap,
    }
    terms = _convex_terms(lists, dict.fromkeys(CHANNELS, 1.0) if weights is None else weights, cand)
    for c, v in terms.items():
        cols[f"fuse_{c}"], cols[f"segment_x_fuse_{c}"], cols[f"image_x_fuse_{c}"] = v, seg * v, img * v
    cols["fuse_dense_x_uncov"] = terms["dense"] * uncov
    cols["segment_x_fuse_dense_x_uncov"] = seg * terms["dense"] * uncov
    return cand, np.column_stack([cols[f] for f in FEATURES]), list(FEATURES)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


FEATURES = (
    "maxsim_cov", "maxsim_gap", "maxsim_z", "maxsim_rank", "bm25", "bm25_log", "bm25_rank", "dense_gap",
    "dense_rank", "first_stage_rank", "nb_bm25", "nb_dense", "is_segment", "is_image", "is_recording",
    "log_len", "query_cov", "query_len", "question", "bm25_x_cov", "dense_x_uncov", "segment_x_bm25",
    "segment_x_dense", "segment_x_gap", "segment_x_len", "image_x_bm25", "image_x_dense", "image_x_gap",
    "fuse_maxsim", "segment_x_fuse_maxsim", "image_x_fuse_maxsim", "fuse_lexical", "segment_x_fuse_lexical",
    "image_x_fuse_lexical", "fuse_dense", "segment_x_fuse_dense", "image_x_fuse_dense", "fuse_dense_x_uncov",
    "segment_x_fuse_dense_x_uncov",
)  # fmt: skip
# What a trained model reads (fusion_train.fit's default): the score fusion's convex terms
# (fuse_*, which sum to search.fusion=score's score), each again for transcript windows and for
# images, and the dense evidence where the query's words are missing (1 - coverage). Left out on
# purpose: the modality, length and query features on their own (is_segment, log_len, query_cov...):
# on the real-document dev split a model reading every feature learned each modality's base rate
# (a transcript window is relevant more often per candidate than a page) and flooded page questions
# with windows; these terms can only re-weigh evidence some channel found (BENCHMARKS.md).
MODEL_FEATURES = (
    "fuse_maxsim", "segment_x_fuse_maxsim", "image_x_fuse_maxsim", "fuse_lexical", "segment_x_fuse_lexical",
    "image_x_fuse_lexical", "fuse_dense", "segment_x_fuse_dense", "image_x_fuse_dense", "fuse_dense_x_uncov",
    "segment_x_fuse_dense_x_uncov", "dense_x_uncov",
)  # fmt: skip


@dataclass
class FusionModel:
    """A logistic model over :data:`FEATURES` (standardised), as written by ``fusion_train.py``."""

    features: list[str]
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (F,) weights of the standardised features
    intercept: float
    tier: dict[str, Any] = field(default_factory=dict)  # {"arch", "dim", ...} of the index it was trained on
    trained: dict[str, Any] = field(default_factory=dict)  # query set, hash, counts, metrics, command

    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits (n,), terms (n, F)): each feature's term of each row's log-odds."""
        z = (x - self.mean) / self.scale
        terms = z * self.coef
        return terms.sum(axis=1) + self.intercept, terms

    def proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(x)[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "kind": "logistic", "features": self.features, "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
            "tier": self.tier, "trained": self.trained,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "fusion model") -> FusionModel:
        if d.get("format") != FORMAT or d.get("kind") != "logistic":
            raise ConfigError(f"{where}: not an {FORMAT} logistic model (format={d.get('format')!r})")
        feats = list(d["features"])
        unknown = [f for f in feats if f not in FEATURES]
        if unknown:
            raise ConfigError(
                f"{where}: unknown features {unknown}; retrain it with `mmrag eval --calibrate`"
            )
        arrs = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(feats),) for a in arrs) or not all(np.isfinite(a).all() for a in arrs):
            raise ConfigError(f"{where}: mean/scale/coef must be {len(feats)} finite numbers each")
        if (arrs[1] <= 0).any():
            raise ConfigError(f"{where}: every scale must be > 0")
        return cls(
            feats, *arrs, float(d["intercept"]), dict(d.get("tier") or {}), dict(d.get("trained") or {})
        )

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def model_path(name: str, conf_dir: Path | None = None) -> Path:
    """``search.fusion_model``: a name in ``conf/fusion/`` (``lite`` -> conf/fusion/lite.json) or a path."""
    p = Path(name)
    if p.suffix == ".json" or len(p.parts) > 1:
        return p
    if conf_dir is None:
        from mmrag_assets.config import conf_dir as _conf_dir

        conf_dir = _conf_dir()
    return conf_dir / "fusion" / f"{name}.json"


def check_writable(path: Path) -> Path:
    """``path`` may be (over)written with a trained model: absent, or a model file itself."""
    if path.exists():
        try:
            fmt = json.loads(path.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != FORMAT:
            raise ConfigError(f"{path} exists and is not an {FORMAT} model: pick another name")
    return path


_MODELS: dict[tuple[str, int], FusionModel] = {}


def load_model(name: str) -> FusionModel:
    """The model ``name`` names (read once per file version)."""
    p = model_path(name)
    try:
        stamp = p.stat().st_mtime_ns
    except OSError:
        raise ConfigError(
            f"fusion model {p} does not exist: train one with `mmrag eval --calibrate NAME queries=PATH`, "
            "or use search.fusion=score"
        ) from None
    key = (str(p), stamp)
    if key not in _MODELS:
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"fusion model {p}: {e}") from None
        _MODELS[key] = FusionModel.from_json(d, str(p))
    return _MODELS[key]


class LearnedFusion(Fusion):
    """``search.fusion=learned``: the final score is the model's P(relevant)."""

    name = "learned"

    def __init__(self, model: FusionModel, score: ScoreFusion | None = None) -> None:
        self.model = model
        self.score = score  # its per-query weights make the fuse_* features (None: 1 per channel)

    @classmethod
    def for_search(cls, s: SearchConfig, view: Any, model: FusionModel | None = None) -> Fusion:
        """The learned fusion of ``search.fusion_model``, or :class:`ScoreFusion` when the model was
        trained on another tier (whose scores mean something else): the response says which."""
        model = model or load_model(s.fusion_model)
        arch = model.tier.get("arch")
        have = getattr(getattr(view, "codebook", None), "kind", None)
        mismatch = arch is not None and view is not None and ((arch == "lite") != (have == "vocab"))
        if mismatch:
            return _Fallback(
                s, f"fusion model {s.fusion_model} was trained on the {arch} tier: score fusion used"
            )
        return cls(model, ScoreFusion(s))

    def fuse(self, ev: Evidence) -> Fused:
        w = self.score.weights_for(ev) if self.score is not None else None
        pos, x, names = candidate_features(ev, w)
        if not len(pos):
            return Fused({}, w or {}, {}, {"model": self.model.trained.get("name")})
        if names != self.model.features:
            x = x[:, [names.index(f) for f in self.model.features]]
        logit, terms = self.model.logits(x)
        p = 1.0 / (1.0 + np.exp(-logit))
        feats = self.model.features
        why = {}
        for r, i in enumerate(pos.tolist()):
            top = np.argsort(-np.abs(terms[r]))[:WHY_TERMS]
            why[i] = {feats[j]: float(terms[r, j]) for j in top} | {"bias": self.model.intercept}
        return Fused(
            dict(zip(pos.tolist(), p.tolist(), strict=True)), w or {}, why,
            {"model": self.model.trained.get("name"), "trained_on": self.model.trained.get("queries_sha256")},
        )  # fmt: skip


class _Fallback(ScoreFusion):
    def __init__(self, s: SearchConfig, warning: str) -> None:
        super().__init__(s)
        self.warning = warning

    def fuse(self, ev: Evidence) -> Fused:
        out = super().fuse(ev)
        out.extra["fallback"] = self.warning
        return out


__all__ = [
    "FEATURES",
    "MODEL_FEATURES",
    "FusionModel",
    "LearnedFusion",
    "candidate_features",
    "check_writable",
    "load_model",
    "model_path",
]

"""Learned fusion (``search.fusion=learned``): each candidate's evidence -> P(relevant).

The same idea in two modalities lands in different regions of every channel's score space: a
transcript window of 80 spoken words and a manual page of 600 written ones get BM25 scores,
MaxSim coverages and cosines on different scales, so one global set of fusion weights ranks
spoken answers below pages that merely share words. Here a logistic regression (scikit-learn,
trained by ``lib/evaluation/fusion_train.py`` on labelled queries: ``mmrag eval --calibrate``)
reads, per candidate, its channels' scores and ranks, how much of the query it and the best
candidate hold, its modality and whether it is part of a recording, its length, the query's
length and form, and per-modality interactions of the channel scores (per-modality-pair
calibration learned, not assumed), and outputs a probability of relevance:

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.search.fusion import Evidence, Fused, Fusion, ScoreFusion

if TYPE_CHECKING:
    from mmrag_assets.config import SearchConfig

FORMAT = "mmrag-fusion/1"
WHY_TERMS = 8  # the largest contributions a result reports
_QUESTION_WORDS = frozenset(["how", "why", "what", "when", "where", "which", "who", "whom", "whose", "can", "could", "does", "do", "is", "are", "should"])


def _inv_rank(r: int | None) -> float:
    """1 / log2(1 + rank): 1 for the first, 0.5 for the third, 0 when not listed (a DCG discount)."""
    return 0.0 if r is None else 1.0 / math.log2(1.0 + r)


def candidate_features(ev: Evidence) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(positions (n,), X (n, F), feature names)`` for every candidate any list of ``ev`` holds."""
    view, late = ev.query.view, ev.late
    lists = ev.lists
    pos = list(dict.fromkeys(int(i) for p, _ in lists.values() for i in p.tolist()))  # first listing order
    ranks = {n: {int(i): r for r, i in enumerate(p.tolist(), 1)} for n, (p, _) in lists.items()}
    score = {n: dict(zip(map(int, p.tolist()), np.asarray(s, dtype=np.float64).tolist(), strict=True)) for n, (p, s) in lists.items()}
    bm25 = score.get("lexical", {})
    bmax = max(bm25.values(), default=0.0)
    dense = score.get("dense", {})
    dmax = max(dense.values(), default=0.0)
    dmin = min(dense.values(), default=0.0)
    raws = [late.raw.get(i, 0.0) for i in pos]
    cov = ev.coverage if ev.coverage is not None else max(raws, default=0.0)
    words = ev.query.text.lower().split()
    q_tokens = 0 if ev.query.vectors is None else len(ev.query.vectors)
    q_len = math.log1p(q_tokens or len(words))
    question = float(bool(words) and (words[0] in _QUESTION_WORDS or ev.query.text.rstrip().endswith("?")))
    n_tok = view.items.get("n_tokens")
    nb = getattr(view, "neighbours", None)
    d_floor = dmin - dmax - 0.05 if dense else -0.3  # a window the dense channel did not list: below its last
    rows = []
    for i, raw in zip(pos, raws, strict=True):
        m = view.modality[i]
        seg, img = float(m == "segment"), float(m == "image")
        rec = float(not _missing(view.items["start_s"][i]))  # a transcript window or a video keyframe
        b = bm25.get(i, 0.0) / bmax if bmax > 0 else 0.0
        d_gap = (dense[i] - dmax) if i in dense else d_floor
        around = [int(j) for j in nb[i] if j >= 0] if nb is not None else []
        nb_b = max((bm25.get(j, 0.0) for j in around), default=0.0) / bmax if bmax > 0 else 0.0
        nb_d = max((dense[j] - dmax if j in dense else d_floor for j in around), default=d_floor)
        gap = raw - cov
        length = math.log1p(float(n_tok[i])) if n_tok is not None and not _missing(n_tok[i]) else 0.0
        f = {
            "maxsim_cov": raw,
            "maxsim_gap": gap,
            "maxsim_z": late.calibrated.get(i, 0.0),
            "maxsim_rank": _inv_rank(ranks.get("maxsim", {}).get(i)),
            "bm25": b,
            "bm25_log": math.log1p(bm25.get(i, 0.0)),
            "bm25_rank": _inv_rank(ranks.get("lexical", {}).get(i)),
            "dense_gap": d_gap,
            "dense_rank": _inv_rank(ranks.get("dense", {}).get(i)),
            "first_stage_rank": _inv_rank(ev.ranks.get("first_stage", {}).get(i)),
            "nb_bm25": nb_b,  # the best BM25 of the item before or after it (neighbouring context)
            "nb_dense": nb_d,
            "is_segment": seg,
            "is_image": img,
            "is_recording": rec,
            "log_len": length,
            "query_cov": cov,
            "query_len": q_len,
            "question": question,
            "bm25_x_cov": b * cov,
            "dense_x_uncov": d_gap * (1.0 - min(cov, 1.0)),
            "segment_x_bm25": seg * b,
            "segment_x_dense": seg * d_gap,
            "segment_x_gap": seg * gap,
            "segment_x_len": seg * length,
            "image_x_bm25": img * b,
            "image_x_dense": img * d_gap,
            "image_x_gap": img * gap,
        }
        rows.append(list(f.values()))
    names = list(f.keys()) if rows else list(FEATURES)
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return np.asarray(pos, dtype=np.int64), x, names


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


FEATURES = (
    "maxsim_cov", "maxsim_gap", "maxsim_z", "maxsim_rank", "bm25", "bm25_log", "bm25_rank", "dense_gap",
    "dense_rank", "first_stage_rank", "nb_bm25", "nb_dense", "is_segment", "is_image", "is_recording",
    "log_len", "query_cov", "query_len", "question", "bm25_x_cov", "dense_x_uncov", "segment_x_bm25",
    "segment_x_dense", "segment_x_gap", "segment_x_len", "image_x_bm25", "image_x_dense", "image_x_gap",
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
            raise ConfigError(f"{where}: unknown features {unknown}; retrain it with `mmrag eval --calibrate`")
        arrs = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(feats),) for a in arrs) or not all(np.isfinite(a).all() for a in arrs):
            raise ConfigError(f"{where}: mean/scale/coef must be {len(feats)} finite numbers each")
        if (arrs[1] <= 0).any():
            raise ConfigError(f"{where}: every scale must be > 0")
        return cls(feats, *arrs, float(d["intercept"]), dict(d.get("tier") or {}), dict(d.get("trained") or {}))

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
        from mmrag_assets.config import CONF_DIR as conf_dir
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

    def __init__(self, model: FusionModel) -> None:
        self.model = model

    @classmethod
    def for_search(cls, s: SearchConfig, view: Any, model: FusionModel | None = None) -> Fusion:
        """The learned fusion of ``search.fusion_model``, or :class:`ScoreFusion` when the model was
        trained on another tier (whose scores mean something else): the response says which."""
        model = model or load_model(s.fusion_model)
        arch = model.tier.get("arch")
        have = getattr(getattr(view, "codebook", None), "kind", None)
        mismatch = arch is not None and view is not None and ((arch == "lite") != (have == "vocab"))
        if mismatch:
            return _Fallback(s, f"fusion model {s.fusion_model} was trained on the {arch} tier: score fusion used")
        return cls(model)

    def fuse(self, ev: Evidence) -> Fused:
        pos, x, names = candidate_features(ev)
        if not len(pos):
            return Fused({}, {}, {}, {"model": self.model.trained.get("name")})
        if names != self.model.features:
            idx = [names.index(f) for f in self.model.features]
            x = x[:, idx]
        logit, terms = self.model.logits(x)
        p = 1.0 / (1.0 + np.exp(-logit))
        feats = self.model.features
        why = {}
        for r, i in enumerate(pos.tolist()):
            top = np.argsort(-np.abs(terms[r]))[:WHY_TERMS]
            why[i] = {feats[j]: float(terms[r, j]) for j in top} | {"bias": self.model.intercept}
        return Fused(
            dict(zip(pos.tolist(), p.tolist(), strict=True)), {}, why,
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


__all__ = ["FEATURES", "FusionModel", "LearnedFusion", "candidate_features", "check_writable", "load_model", "model_path"]

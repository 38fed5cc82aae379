"""Embedding drift between a stored baseline and a new batch of items (numpy/scipy; matplotlib plots).

Items are summarised by their mean-pooled vector (one (d,) row per page/image/segment), the norm
the caller chose to track and their token count. ``Baseline.from_items`` freezes a reference;
``compare`` scores a batch against it with six two-sample statistics (``two_sample.py``), each
mapped to a severity by ``DriftThresholds``:

- ``centroid_shift``: 1 - cos between the mean *directions* (rows L2-normalised first, so a few
  large-norm items cannot steer it); permutation p-value.
- ``mmd2``: unbiased MMD^2 with an RBF kernel, bandwidth by the median heuristic; permutation p-value.
- ``domain_auc``: out-of-fold ROC AUC of a logistic regression told to separate baseline sample from
  batch (stratified k-fold); 0.5 means indistinguishable; Mann-Whitney p-value on the OOF scores.
- ``ks_norms`` / ``ks_tokens``: two-sample Kolmogorov-Smirnov statistic D with its p-value.
- ``variance_ratio``: |log2(total variance batch / baseline)|; catches collapse (blank pages);
  permutation p-value.

A metric alarms only when its effect size crosses the level *and* its p-value is below ``alpha``.
Effect sizes alone false-alarm on small batches (the centroid of 30 items wobbles by ~0.04), and
p-values alone false-alarm on a few percent of healthy batches per metric and flag negligible
shifts in large ones.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.quality import two_sample as ts

Severity = Literal["OK", "WARN", "ERROR"]
_RANK: dict[str, int] = {"OK": 0, "WARN": 1, "ERROR": 2}
QUANTILES = np.linspace(0.0, 1.0, 21)  # stored summaries of the norm and token-count distributions
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Level:
    """A metric warns at ``warn`` and errors at ``error`` (both inclusive; higher is worse)."""

    warn: float
    error: float

    def severity(self, value: float) -> Severity:
        return "ERROR" if value >= self.error else "WARN" if value >= self.warn else "OK"


@dataclass(frozen=True)
class DriftThresholds:
    """Warn/error levels per metric and the gates; the values live in ``conf/checks/`` (thresholds)."""

    centroid_shift: Level
    mmd2: Level
    domain_auc: Level
    ks_norms: Level
    ks_tokens: Level
    variance_ratio: Level  # |log2 ratio|
    alpha: float  # a metric may alarm only when its p-value is below this
    min_items: int  # fewer batch (or baseline) items: "insufficient data", severity OK

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Mapping[str, float]] | None, base: DriftThresholds | None = None
    ) -> DriftThresholds:
        """From ``checks.thresholds.<block>``: ``{metric: {warn, error}, "gates": {alpha, min_items}}``.

        Without ``base`` every metric and both gates must be given; with it, ``values`` overrides
        ``base`` key by key (a per-modality block over the default block)."""
        levels = {f.name for f in dataclasses.fields(cls) if f.type in ("Level", Level)}
        kwargs: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
        for k in levels & set(kwargs):
            kwargs[k] = Level(**kwargs[k])
        for key, spec in (values or {}).items():
            spec = dict(spec)
            if key == "gates":
                unknown = set(spec) - {"alpha", "min_items"}
                kwargs.update({k: (int(v) if k == "min_items" else float(v)) for k, v in spec.items()})
            elif key in levels:
                unknown = set(spec) - {"warn", "error"}
                cur = kwargs.get(key)
                if cur is None and not {"warn", "error"} <= set(spec):
                    raise ConfigError(f"drift threshold {key} needs both warn and error")
                kwargs[key] = Level(
                    float(spec.get("warn", cur.warn if cur else 0)),
                    float(spec.get("error", cur.error if cur else 0)),
                )
                if kwargs[key].warn > kwargs[key].error:
                    raise ConfigError(
                        f"drift threshold {key}: warn {kwargs[key].warn} > error {kwargs[key].error}"
                    )
            else:
                raise ConfigError(f"unknown drift threshold {key!r}; known: {sorted(levels | {'gates'})}")
            if unknown:
                raise ConfigError(f"unknown key(s) {sorted(unknown)} under drift threshold {key!r}")
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(kwargs))
        if missing:
            raise ConfigError(f"drift thresholds lack {missing}: set them in checks.thresholds.default")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, dict[str, float]]:
        out = {k: dataclasses.asdict(v) for k, v in vars(self).items() if isinstance(v, Level)}
        return {**out, "gates": {"alpha": self.alpha, "min_items": self.min_items}}


@dataclass
class ItemSample:
    """Per-item summaries: pooled (n, d) float32, norms (n,), tokens (n,)."""

    pooled: np.ndarray
    norms: np.ndarray
    tokens: np.ndarray

    @classmethod
    def of(cls, pooled: Any, norms: Any, tokens: Any) -> ItemSample:
        p = np.asarray(pooled, dtype=np.float32)
        if p.ndim != 2:
            raise ValueError(f"pooled vectors must be (n, d), got shape {p.shape}")
        n = np.asarray(norms, dtype=np.float64).reshape(-1)
        t = np.asarray(tokens, dtype=np.float64).reshape(-1)
        if not len(p) == len(n) == len(t):
            raise ValueError(
                f"pooled ({len(p)}), norms ({len(n)}) and tokens ({len(t)}) must have one row per item"
            )
        return cls(p, n, t)

    def __len__(self) -> int:
        return len(self.pooled)

    def take(self, idx: np.ndarray) -> ItemSample:
        return ItemSample(self.pooled[idx], self.norms[idx], self.tokens[idx])


@dataclass
class Baseline:
    n_items: int
    dim: int
    centroid: np.ndarray  # (d,) mean of L2-normalised pooled vectors
    dim_mean: np.ndarray  # (d,) per-dimension mean of the raw pooled vectors
    dim_var: np.ndarray  # (d,) per-dimension variance
    norm_quantiles: np.ndarray  # (21,) at QUANTILES
    token_quantiles: np.ndarray  # (21,)
    sample: ItemSample  # fixed random subset used by the two-sample tests
    seed: int

    @classmethod
    def from_items(
        cls, pooled: Any, norms: Any, tokens_per_item: Any, *, sample_size: int, seed: int
    ) -> Baseline:
        items = ItemSample.of(pooled, norms, tokens_per_item)
        keep = np.isfinite(items.pooled).all(axis=1) & np.isfinite(items.norms) & np.isfinite(items.tokens)
        items = items.take(np.flatnonzero(keep))
        if len(items) == 0:
            raise ValueError("a drift baseline needs at least one item with finite values")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(items), size=min(sample_size, len(items)), replace=False))
        p64 = items.pooled.astype(np.float64)
        return cls(
            n_items=len(items),
            dim=items.pooled.shape[1],
            centroid=ts.unit_rows(items.pooled).mean(axis=0),
            dim_mean=p64.mean(axis=0),
            dim_var=p64.var(axis=0),
            norm_quantiles=np.quantile(items.norms, QUANTILES),
            token_quantiles=np.quantile(items.tokens, QUANTILES),
            sample=items.take(idx),
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, exact (arrays as base64 little-endian bytes)."""
        arrays = {
            k: getattr(self, k)
            for k in ("centroid", "dim_mean", "dim_var", "norm_quantiles", "token_quantiles")
        }
        arrays.update(
            sample_pooled=self.sample.pooled, sample_norms=self.sample.norms, sample_tokens=self.sample.tokens
        )
        return {
            "schema": SCHEMA_VERSION,
            "n_items": self.n_items,
            "dim": self.dim,
            "seed": self.seed,
            **{k: _enc(v) for k, v in arrays.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Baseline:
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(
                f"drift baseline schema {d.get('schema')!r} != {SCHEMA_VERSION}: rebuild the baseline"
            )
        a = {k: _dec(v) for k, v in d.items() if isinstance(v, dict)}
        return cls(
            n_items=int(d["n_items"]),
            dim=int(d["dim"]),
            seed=int(d["seed"]),
            centroid=a["centroid"],
            dim_mean=a["dim_mean"],
            dim_var=a["dim_var"],
            norm_quantiles=a["norm_quantiles"],
            token_quantiles=a["token_quantiles"],
            sample=ItemSample(a["sample_pooled"], a["sample_norms"], a["sample_tokens"]),
        )


@dataclass
class MetricResult:
    value: float
    severity: Severity
    p_value: float | None = None
    note: str = ""


@dataclass
class DriftReport:
    severity: Severity
    metrics: dict[str, MetricResult]
    n_baseline: int  # baseline sample size used by the two-sample tests
    n_batch: int
    insufficient_data: bool = False
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def alarms(self) -> dict[str, Severity]:
        return {k: m.severity for k, m in self.metrics.items() if m.severity != "OK"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        parts = [
            f"{k}={m.value:.3g}"
            + (f" (p={m.p_value:.3g})" if m.p_value is not None else "")
            + f" {m.severity}"
            for k, m in self.metrics.items()
        ]
        return f"drift {self.severity} [{self.n_batch} vs {self.n_baseline}]: " + "; ".join(
            parts + self.notes
        )


def compare(
    baseline: Baseline,
    batch_pooled: Any,
    batch_norms: Any,
    batch_tokens: Any,
    *,
    thresholds: DriftThresholds,
    permutations: int,
    seed: int,
    folds: int = 5,
    regularization: float = 0.1,
    blas_threads: int | None = 1,
) -> DriftReport:
    """Score a batch against ``baseline``; ``regularization`` is the logistic regression's C.

    ``blas_threads`` caps BLAS/OpenMP threads while comparing: the matrices are small (~512 x d), and
    on a busy machine multi-threaded BLAS made the classifier 10x slower. None leaves them alone.
    """
    if (permutations + 1) * thresholds.alpha <= 1.0:  # the smallest permutation p-value is 1/(P+1)
        raise ConfigError(
            f"permutations={permutations} can never give p < alpha={thresholds.alpha}: "
            f"use at least {int(np.floor(1.0 / thresholds.alpha))}"
        )
    with _blas_threads(blas_threads):
        return _compare(
            baseline,
            ItemSample.of(batch_pooled, batch_norms, batch_tokens),
            thresholds,
            permutations,
            seed,
            folds,
            regularization,
        )


def _compare(
    baseline: Baseline,
    batch: ItemSample,
    thresholds: DriftThresholds,
    permutations: int,
    seed: int,
    folds: int,
    regularization: float,
) -> DriftReport:
    t0 = time.perf_counter()
    notes: list[str] = []
    if batch.pooled.shape[1] != baseline.dim and len(batch):
        notes.append(f"batch dim {batch.pooled.shape[1]} != baseline dim {baseline.dim}: different model?")
        return DriftReport(
            "ERROR", {}, len(baseline.sample), len(batch), False, notes, time.perf_counter() - t0
        )
    finite = np.isfinite(batch.pooled).all(axis=1) & np.isfinite(batch.norms) & np.isfinite(batch.tokens)
    if not finite.all():
        notes.append(
            f"{int((~finite).sum())} batch item(s) with non-finite values left out (see data contracts)"
        )
        batch = batch.take(np.flatnonzero(finite))
    base = baseline.sample
    if min(len(batch), len(base)) < thresholds.min_items:
        notes.append(
            f"insufficient data: {len(batch)} batch / {len(base)} baseline items "
            f"(< {thresholds.min_items}); drift not assessed"
        )
        return DriftReport("OK", {}, len(base), len(batch), True, notes, time.perf_counter() - t0)

    rng = np.random.default_rng(seed)
    sub = batch.take(np.sort(rng.choice(len(batch), size=min(len(batch), len(base)), replace=False)))
    z = np.vstack([base.pooled, sub.pooled])  # (m + n, d): baseline sample, then batch (sub)sample
    member = ts.permutation_splits(len(base), len(sub), permutations, rng)
    t = thresholds
    metrics: dict[str, MetricResult] = {}
    # Values use everything known (full baseline summary, whole batch); p-values the sampled split.
    shift = 1.0 - ts.cosine(baseline.centroid, ts.unit_rows(batch.pooled).mean(axis=0))
    p_shift = ts.permutation_p(ts.centroid_shift_stats(z, member))
    metrics["centroid_shift"] = _gated(shift, p_shift, t.centroid_shift, t.alpha)
    mmd = ts.mmd2_stats(z, member)
    metrics["mmd2"] = _gated(float(mmd[0]), ts.permutation_p(mmd), t.mmd2, t.alpha)
    auc, p_auc = ts.domain_classifier(
        base.pooled, sub.pooled, folds=folds, regularization=regularization, seed=seed
    )
    metrics["domain_auc"] = _gated(auc, p_auc, t.domain_auc, t.alpha)
    for name, a, b in (("ks_norms", base.norms, batch.norms), ("ks_tokens", base.tokens, batch.tokens)):
        metrics[name] = _gated(*ts.ks_2samp(a, b), getattr(t, name), t.alpha)
    var_b = float(batch.pooled.astype(np.float64).var(axis=0).sum())
    ratio = abs(float(np.log2(max(var_b, 1e-300) / max(float(baseline.dim_var.sum()), 1e-300))))
    p_var = ts.permutation_p(ts.log2_variance_ratio_stats(z, member))
    metrics["variance_ratio"] = _gated(ratio, p_var, t.variance_ratio, t.alpha)
    overall = max((m.severity for m in metrics.values()), key=_RANK.__getitem__)
    return DriftReport(overall, metrics, len(base), len(batch), False, notes, time.perf_counter() - t0)


def modality_gap(query_vecs: Any, item_vecs_by_modality: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Distance between the query centroid and each modality's item centroid (rows L2-normalised first).

    ``centroid_distance`` is the Euclidean distance between mean unit vectors (0: no gap, up to 2);
    ``cosine`` the cosine of the two mean directions. Modalities with no items are left out.
    """
    q = ts.unit_rows(np.asarray(query_vecs, dtype=np.float32)).mean(axis=0)
    out: dict[str, dict[str, float]] = {}
    for modality, vecs in item_vecs_by_modality.items():
        v = np.asarray(vecs, dtype=np.float32)
        if v.ndim != 2 or len(v) == 0:
            continue
        c = ts.unit_rows(v).mean(axis=0)
        out[modality] = {"centroid_distance": float(np.linalg.norm(q - c)), "cosine": ts.cosine(q, c)}
    return out


def drift_plot(baseline_sample: ItemSample, batch: ItemSample, report: DriftReport, path: str | Path) -> Path:
    """PNG: 2-D PCA of baseline sample vs batch, and histograms of norms and token counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(13, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_pca, ax_norm, ax_tok = fig.subplots(1, 3)
    base = baseline_sample.pooled.astype(np.float64)
    if len(base) >= 2 and base.shape[1] >= 2:
        center = base.mean(axis=0)
        with _blas_threads(
            1
        ):  # (n, d) of a few hundred rows: 2 BLAS threads on busy cores took 0.6-1.8 s, 1 thread 0.05 s
            axes = np.linalg.svd(base - center, full_matrices=False)[2][:2].T  # (d, 2) top principal axes
        pb = (base - center) @ axes
        ax_pca.scatter(pb[:, 0], pb[:, 1], s=6, alpha=0.5, label=f"baseline ({len(base)})")
        if len(batch) and batch.pooled.shape[1] == base.shape[1]:
            pn = (batch.pooled.astype(np.float64) - center) @ axes
            ax_pca.scatter(pn[:, 0], pn[:, 1], s=6, alpha=0.5, label=f"batch ({len(batch)})")
        ax_pca.legend(loc="best", fontsize=8)
    ax_pca.set_title("PCA of pooled vectors (fit on baseline)", fontsize=9)
    for ax, name, a, b in (
        (ax_norm, "norms", baseline_sample.norms, batch.norms),
        (ax_tok, "tokens", baseline_sample.tokens, batch.tokens),
    ):
        both = np.r_[a, b]
        bins = np.histogram_bin_edges(both, bins=30) if len(both) and np.ptp(both) > 0 else 10
        ax.hist(a, bins=bins, alpha=0.5, density=True, label="baseline")
        ax.hist(b, bins=bins, alpha=0.5, density=True, label="batch")
        m = report.metrics.get(f"ks_{name}")
        ax.set_title(f"{name}" + (f": KS D={m.value:.2f} ({m.severity})" if m else ""), fontsize=9)
        ax.legend(loc="best", fontsize=8)
    shown = {k: v for k, v in report.metrics.items() if not k.startswith("ks_")}
    detail = ", ".join(f"{k}={m.value:.3f}" for k, m in shown.items()) or "; ".join(report.notes)
    fig.suptitle(f"Drift: {report.severity} — {detail}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


_controller: list[Any] = []


def _blas_threads(limit: int | None) -> Any:
    """Context manager capping BLAS/OpenMP threads (the controller scan of loaded libraries is cached)."""
    import contextlib

    if limit is None:
        return contextlib.nullcontext()
    if not _controller:
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=limit)


def _gated(value: float, p: float, level: Level, alpha: float) -> MetricResult:
    if p >= alpha:
        return MetricResult(value, "OK", p, f"not significant (p >= {alpha})")
    return MetricResult(value, level.severity(value), p)


def _enc(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    return {
        "dtype": a.dtype.newbyteorder("<").str,
        "shape": list(a.shape),
        "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii"),
    }


def _dec(d: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()

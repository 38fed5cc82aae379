"""Drift detector: no false alarms on resampled healthy data, ERROR on the failures we care about.

The synthetic population mimics mean-pooled late-interaction vectors: items live in a low-dimensional
latent space (clusters = topics/layouts), a "model" is a random projection plus a shared offset (the
anisotropy real encoders have), pooled norms depend on the item (token coherence), and page-image
items carry ~600-800 tokens while text items carry ~40-200.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.quality.drift import (
    Baseline,
    DriftThresholds,
    ItemSample,
    Level,
    compare,
    drift_plot,
    modality_gap,
)
from mmrag_assets.lib.quality.monitor import thresholds_for
from mmrag_assets.lib.quality.two_sample import auc_mann_whitney, mmd2_permutation

LATENT, DIM, N_POP = 24, 128, 3000
SAMPLE, BATCH, PERMUTATIONS = 256, 256, 100


@dataclass
class Population:
    latent: np.ndarray  # (n, LATENT)
    tokens: np.ndarray  # (n,)


def make_population(n: int, *, seed: int, kind: str = "page") -> Population:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, LATENT)) * 1.2
    weights = rng.dirichlet(np.full(10, 2.0))
    z = centers[rng.choice(10, size=n, p=weights)] + rng.normal(size=(n, LATENT))
    if kind == "page":
        tokens = np.clip(np.round(rng.normal(720, 45, size=n)), 400, 1030)
    else:
        tokens = np.clip(np.round(rng.lognormal(np.log(80), 0.4, size=n)), 5, 400)
    return Population(z, tokens)


def embed(pop: Population, *, model_seed: int = 7, noise_seed: int = 11) -> ItemSample:
    r = np.random.default_rng(model_seed)
    w = r.normal(size=(LATENT, DIM)) / np.sqrt(LATENT)  # (LATENT, DIM)
    offset = r.normal(size=DIM) * 0.8  # shared direction: real encoders are anisotropic
    noise = np.random.default_rng(noise_seed).normal(size=(len(pop.latent), DIM)) * 0.3
    u = pop.latent @ w + offset + noise
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    norms = 0.55 + 0.15 * np.tanh(pop.latent[:, 0] / 2)  # pooled norm follows item content
    pooled = (u * norms[:, None]).astype(np.float32)
    return ItemSample(pooled, np.linalg.norm(pooled, axis=1), pop.tokens.astype(np.float64))


PAGES = make_population(N_POP, seed=1)
EMB = embed(PAGES)
THRESHOLDS = thresholds_for(
    load_config(["corpus.root=unused", "storage.root=unused"], resolve_paths=False).checks.thresholds, "page"
)


def split_baseline(seed: int, emb: ItemSample = EMB) -> tuple[Baseline, np.ndarray]:
    """Baseline from a random half of the population; returns the other half's indices."""
    perm = np.random.default_rng(seed).permutation(len(emb))
    half = len(emb) // 2
    ref = emb.take(perm[:half])
    return Baseline.from_items(ref.pooled, ref.norms, ref.tokens, sample_size=SAMPLE, seed=seed), perm[half:]


def run(baseline: Baseline, batch: ItemSample, seed: int = 0):
    return compare(
        baseline,
        batch.pooled,
        batch.norms,
        batch.tokens,
        thresholds=THRESHOLDS,
        permutations=PERMUTATIONS,
        seed=seed,
    )


@pytest.mark.slow  # ~5 s: 100 drift checks, each with its permutation tests
def test_no_false_alarm_on_resampled_population() -> None:
    severities = []
    for trial in range(100):
        baseline, rest = split_baseline(trial)
        idx = np.random.default_rng(1000 + trial).choice(rest, size=BATCH, replace=False)
        severities.append(run(baseline, EMB.take(idx), seed=trial).severity)
    assert severities.count("ERROR") <= 5, severities
    assert severities.count("OK") >= 90, severities  # warnings are noise too: keep them rare


@pytest.fixture(scope="module")
def baseline_and_rest() -> tuple[Baseline, np.ndarray]:
    return split_baseline(123)


def _batch_idx(rest: np.ndarray, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).choice(rest, size=BATCH, replace=False)


def test_switched_model_is_error(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, rest = baseline_and_rest
    other = embed(Population(PAGES.latent[rest], PAGES.tokens[rest]), model_seed=99)
    report = run(baseline, other.take(np.arange(BATCH)))
    assert report.severity == "ERROR", report.summary()
    assert report.metrics["domain_auc"].severity == "ERROR"


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_blank_or_noise_images_are_error(baseline_and_rest: tuple[Baseline, np.ndarray], kind: str) -> None:
    baseline, rest = baseline_and_rest
    rng = np.random.default_rng(3)
    tokens = PAGES.tokens[_batch_idx(rest)]  # same token counts: only the vectors tell
    if kind == "blank":  # every blank page embeds to (almost) the same vector
        base_vec = EMB.pooled[rest[0]]
        pooled = base_vec + rng.normal(size=(BATCH, DIM)).astype(np.float32) * 0.005
    else:  # isotropic noise at the usual norm
        pooled = rng.normal(size=(BATCH, DIM)).astype(np.float32)
        pooled *= 0.55 / np.linalg.norm(pooled, axis=1, keepdims=True)
    report = compare(
        baseline,
        pooled,
        np.linalg.norm(pooled, axis=1),
        tokens,
        thresholds=THRESHOLDS,
        permutations=PERMUTATIONS,
        seed=0,
    )
    assert report.severity == "ERROR", report.summary()


def test_rotated_space_is_error(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, rest = baseline_and_rest
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(DIM, DIM)))  # random orthogonal (DIM, DIM)
    batch = EMB.take(_batch_idx(rest))
    rotated = (batch.pooled @ q).astype(np.float32)
    report = run(baseline, ItemSample(rotated, np.linalg.norm(rotated, axis=1), batch.tokens))
    assert report.severity == "ERROR", report.summary()
    assert report.metrics["ks_norms"].severity == "OK"  # a rotation keeps norms: the vectors must tell


def test_shuffled_dimensions_are_error(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, rest = baseline_and_rest
    batch = EMB.take(_batch_idx(rest))
    perm = np.random.default_rng(6).permutation(DIM)
    report = run(baseline, ItemSample(batch.pooled[:, perm], batch.norms, batch.tokens))
    assert report.severity == "ERROR", report.summary()


def test_text_batch_where_pages_expected_is_error(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, _ = baseline_and_rest
    text = embed(make_population(BATCH, seed=2, kind="text"), noise_seed=12)  # other clusters, ~80 tokens
    report = run(baseline, text)
    assert report.severity == "ERROR", report.summary()
    assert report.metrics["ks_tokens"].severity == "ERROR"


def test_small_batch_is_insufficient_not_alarm(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, _ = baseline_and_rest
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(10, DIM)).astype(np.float32)  # would be an ERROR with enough items
    report = compare(
        baseline, noise, np.ones(10), np.ones(10), thresholds=THRESHOLDS, permutations=PERMUTATIONS, seed=0
    )
    assert report.insufficient_data and report.severity == "OK" and report.metrics == {}
    assert "insufficient data" in report.notes[0]
    strict = DriftThresholds.from_mapping({"gates": {"min_items": 5}}, base=THRESHOLDS)
    assert (
        compare(
            baseline, noise, np.ones(10), np.ones(10), thresholds=strict, permutations=PERMUTATIONS, seed=0
        ).insufficient_data
        is False
    )


def test_dimension_mismatch_is_error(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, _ = baseline_and_rest
    report = compare(
        baseline,
        np.zeros((50, 64)),
        np.ones(50),
        np.ones(50),
        thresholds=THRESHOLDS,
        permutations=PERMUTATIONS,
        seed=0,
    )
    assert report.severity == "ERROR" and "dim" in report.notes[0]


def test_nonfinite_rows_are_left_out_with_a_note(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, rest = baseline_and_rest
    batch = EMB.take(_batch_idx(rest))
    pooled = batch.pooled.copy()
    pooled[:3, 0] = np.nan
    report = run(baseline, ItemSample(pooled, batch.norms, batch.tokens))
    assert report.n_batch == BATCH - 3 and "non-finite" in report.notes[0]
    assert report.severity != "ERROR"


def test_baseline_round_trips_through_json(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, rest = baseline_and_rest
    restored = Baseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert restored.n_items == baseline.n_items == N_POP // 2 and restored.dim == DIM
    np.testing.assert_array_equal(restored.sample.pooled, baseline.sample.pooled)
    np.testing.assert_array_equal(restored.centroid, baseline.centroid)
    np.testing.assert_array_equal(restored.token_quantiles, baseline.token_quantiles)
    batch = EMB.take(_batch_idx(rest))
    assert run(restored, batch).to_dict() | {"elapsed_s": 0} == run(baseline, batch).to_dict() | {
        "elapsed_s": 0
    }
    assert len(baseline.sample) == SAMPLE and baseline.sample.pooled.dtype == np.float32


def test_mmd_permutation_matches_direct_computation() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(20, 5)) + 0.5
    z = np.vstack([x, y])
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    k = np.exp(-d2 / np.median(d2[np.triu_indices(50, 1)]))
    kxx, kyy, kxy = k[:30, :30], k[30:, 30:], k[:30, 30:]
    expected = (kxx.sum() - 30) / (30 * 29) + (kyy.sum() - 20) / (20 * 19) - 2 * kxy.mean()
    value, p = mmd2_permutation(x, y, permutations=200, rng=np.random.default_rng(1))
    assert value == pytest.approx(expected, rel=1e-9)
    assert p < 0.05
    _, p_same = mmd2_permutation(x[:15], x[15:], permutations=200, rng=np.random.default_rng(1))
    assert p_same > 0.05


def test_thresholds_from_config() -> None:
    t = DriftThresholds.from_mapping(
        {"domain_auc": {"error": 0.9}, "gates": {"alpha": 0.05}}, base=THRESHOLDS
    )
    assert t.domain_auc == Level(THRESHOLDS.domain_auc.warn, 0.9) and t.alpha == 0.05
    assert DriftThresholds.from_mapping(t.to_dict()) == t
    with pytest.raises(ConfigError, match="unknown drift threshold"):
        DriftThresholds.from_mapping({"auc": {"warn": 0.6}}, base=THRESHOLDS)
    with pytest.raises(ConfigError, match="unknown key"):
        DriftThresholds.from_mapping({"mmd2": {"warning": 0.6}}, base=THRESHOLDS)
    with pytest.raises(ConfigError, match="warn"):
        DriftThresholds.from_mapping({"mmd2": {"warn": 0.9, "error": 0.1}}, base=THRESHOLDS)


def test_modality_gap() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(40, 16)) + np.eye(16)[0] * 3
    gap = modality_gap(
        q,
        {
            "page": rng.normal(size=(50, 16)) + np.eye(16)[0] * 3,
            "segment": rng.normal(size=(50, 16)) + np.eye(16)[1] * 3,
            "image": np.zeros((0, 16)),
        },
    )
    assert set(gap) == {"page", "segment"}
    assert gap["page"]["centroid_distance"] < gap["segment"]["centroid_distance"]
    assert gap["page"]["cosine"] > 0.9 > gap["segment"]["cosine"]
    same = modality_gap(q, {"page": q})
    assert same["page"]["centroid_distance"] == pytest.approx(0.0, abs=1e-6)
    assert same["page"]["cosine"] == pytest.approx(1.0)


def test_plot_is_written(tmp_path: Path, baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    baseline, _ = baseline_and_rest
    text = embed(make_population(BATCH, seed=2, kind="text"))
    report = run(baseline, text)
    out = drift_plot(baseline.sample, text, report, tmp_path / "plots" / "drift.png")
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    small = compare(
        baseline,
        text.pooled[:5],
        text.norms[:5],
        text.tokens[:5],
        thresholds=THRESHOLDS,
        permutations=PERMUTATIONS,
        seed=0,
    )
    assert drift_plot(baseline.sample, text.take(np.arange(5)), small, tmp_path / "small.png").exists()


def test_mann_whitney_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=300) > 0).astype(float)
    scores = np.round(x[:, 0], 1)  # rounded: many ties
    auc, p = auc_mann_whitney(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores)) and p < 1e-6


def test_small_batch_statistics_are_gated(baseline_and_rest: tuple[Baseline, np.ndarray]) -> None:
    # 30 healthy items: the centroid alone wobbles past the WARN level, the permutation gate keeps it OK.
    baseline, rest = baseline_and_rest
    report = run(baseline, EMB.take(_batch_idx(rest)[:30]))
    assert report.metrics["centroid_shift"].value > THRESHOLDS.centroid_shift.warn
    assert report.metrics["centroid_shift"].severity == "OK", report.summary()


def test_too_few_permutations_for_alpha_is_a_config_error(
    baseline_and_rest: tuple[Baseline, np.ndarray],
) -> None:
    baseline, rest = baseline_and_rest
    batch = EMB.take(_batch_idx(rest))
    with pytest.raises(ConfigError, match="at least 100"):
        compare(
            baseline, batch.pooled, batch.norms, batch.tokens, thresholds=THRESHOLDS, permutations=99, seed=0
        )

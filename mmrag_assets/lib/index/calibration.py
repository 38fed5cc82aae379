"""Per-modality score calibration of a published version (query-length-normalised MaxSim).

Raw MaxSim differs by modality (an image page has ~1,000 patch tokens, a transcript window
~60 text tokens), so the searcher turns scores into z-scores against their own modality's
background distribution (probe queries against a sample of the modality's items) before
per-modality-pair thresholds apply. A publish recalibrates only when the policy says so
(a retrain, a new modality, or a modality whose item count moved by ``recalibrate_share``):
the background of 100k pages does not move when ten are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_PROBES = 24
PROBE_WORDS = 6


def probe_queries(
    snippets: Sequence[str], given: Sequence[str], rng: np.random.Generator, n: int = DEFAULT_PROBES
) -> list[str]:
    """The configured probe set, else short word windows sampled from the indexed snippets."""
    if given:
        return list(given)
    texts = [t for t in snippets if t and len(t.split()) >= 4]
    probes = []
    for t in rng.choice(len(texts), size=min(n, len(texts)), replace=False) if texts else []:
        words = texts[t].split()
        s = int(rng.integers(0, max(1, len(words) - PROBE_WORDS)))
        probes.append(" ".join(words[s : s + PROBE_WORDS]))
    return probes or ["document"]


def calibrate(
    queries: Sequence[np.ndarray],
    source: Any,
    modality: np.ndarray,
    alive: np.ndarray,
    *,
    max_items: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Score distribution per modality of ``queries`` (each (Tq, d)) over up to ``max_items``
    alive items of each modality, read from ``source`` (a VectorSource at the pinned version)."""
    from mmrag_assets.lib.scoring.maxsim import maxsim_ragged

    rng = np.random.default_rng(seed)
    qs = [q for q in queries if len(q)]
    out: dict[str, Any] = {"probes": len(qs), "modalities": {}}
    for m in sorted(set(modality[alive].tolist())):
        idx = np.flatnonzero((modality == m) & alive)
        if len(idx) > max_items:
            idx = np.sort(rng.choice(idx, max_items, replace=False))
        if hasattr(source, "exact_scores"):
            scores = np.concatenate([source.exact_scores(q, idx) / len(q) for q in qs])
        else:
            flat, off = source.gather_ragged(idx)
            per = maxsim_ragged(list(qs), flat, off)  # (items, queries)
            scores = (per / np.array([len(q) for q in qs])[None, :]).T.reshape(-1)
        out["modalities"][m] = {
            "n_items": len(idx), "n_alive": int(((modality == m) & alive).sum()),
            "mean": float(scores.mean()), "std": float(max(scores.std(), 1e-6)),
            "p50": float(np.quantile(scores, 0.5)), "p90": float(np.quantile(scores, 0.9)),
            "p99": float(np.quantile(scores, 0.99)),
        }  # fmt: skip
    return out


def needs_recalibration(
    previous: dict[str, Any] | None, modality: np.ndarray, alive: np.ndarray, share: float
) -> str | None:
    """Why the calibration must be redone, or None to keep ``previous``."""
    if not previous or not previous.get("modalities"):
        return "no calibration yet"
    now = {m: int(((modality == m) & alive).sum()) for m in set(modality[alive].tolist())}
    was = {m: int(c.get("n_alive", c["n_items"])) for m, c in previous["modalities"].items()}
    if set(now) != set(was):
        return f"modalities changed ({sorted(was)} -> {sorted(now)})"
    for m, n in now.items():
        if abs(n - was[m]) > share * max(was[m], 1):
            return f"{m}: {was[m]} -> {n} items (over {share:.0%})"
    return None

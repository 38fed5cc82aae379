"""Propose per-modality-pair search thresholds from a labelled query set, and write them as a
``conf/search/<name>.yaml`` option that ``search=<name>`` selects.

Every query is searched with thresholds off (``apply_thresholds=False``, ``search.candidates``
results). Results that match a judgement are the *relevant hits* of their modality pair
(``text_page``, ``text_image``, ``text_segment``); the proposed threshold is the highest calibrated
score that still keeps ``keep`` (``eval.calibration_keep``, 95 %) of them, rounded down to 3 decimals.
A pair with no relevant hit keeps the base option's threshold; a threshold can only be as good as
the query set behind it, so the written file says which set, model and share it came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmrag_assets.config import MmragConfig, SearchConfig
from mmrag_assets.errors import ConfigError, MmragError
from mmrag_assets.lib.evaluation.evaluate import SearcherLike, grade_of
from mmrag_assets.lib.evaluation.query_set import QuerySet

PAIRS = {"page": "text_page", "image": "text_image", "segment": "text_segment"}
MARKER = "# Written by `mmrag calibrate"  # files without it are never overwritten
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def collect_scores(
    search: SearchConfig,
    searcher: SearcherLike,
    query_set: QuerySet,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """``{pair: {"relevant": [...], "other": [...]}}`` calibrated scores of every result (the
    ``search.candidates`` deepest results of each query, at least ``search.k``)."""
    k = min(max(search.candidates, search.k), search.max_k)
    out: dict[str, dict[str, list[float]]] = {p: {"relevant": [], "other": []} for p in PAIRS.values()}
    for i, q in enumerate(query_set.queries, 1):
        resp = searcher.search(q.query, k=k, apply_thresholds=False)
        for r in resp.results:
            d = r.public() if hasattr(r, "public") else dict(r)
            pair = PAIRS.get(d["modality"])
            # thresholds cut the calibrated MaxSim, not the fused score (which is a rank fusion)
            cal = getattr(r, "calibrated", None) if hasattr(r, "public") else d.get("calibrated")
            if pair:
                out[pair]["relevant" if grade_of(d, q.relevant) > 0 else "other"].append(
                    float(d["score"] if cal is None else cal)
                )
        if progress and (i % 10 == 0 or i == len(query_set)):
            progress(f"  {i}/{len(query_set)} queries")
    return out


def threshold_for(scores: Sequence[float], keep: float) -> float:
    """The highest threshold (3 decimals, rounded down) with ``score >= threshold`` for at least
    ``keep`` of ``scores``."""
    if not scores:
        raise ValueError("no scores")
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} must be within (0, 1]")
    s = sorted(scores)
    drop = math.floor((1 - keep) * len(s) + 1e-9)  # how many of the lowest may fall below
    return math.floor(s[drop] * 1000) / 1000


def propose(
    scores: Mapping[str, Mapping[str, Sequence[float]]], keep: float, current: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """Per pair: the proposed threshold and what it does on this query set."""
    out: dict[str, dict[str, Any]] = {}
    for pair in PAIRS.values():
        rel, other = list(scores[pair]["relevant"]), list(scores[pair]["other"])
        if rel:
            t, source = threshold_for(rel, keep), "calibrated"
        else:
            t, source = float(current.get(pair, 0.0)), "kept: no relevant hit of this pair"
        out[pair] = {
            "threshold": t,
            "source": source,
            "relevant_hits": len(rel),
            "other_hits": len(other),
            "kept_relevant": round(sum(s >= t for s in rel) / len(rel), 3) if rel else None,
            "dropped_other": round(sum(s < t for s in other) / len(other), 3) if other else None,
            "current": current.get(pair),
        }
    return out


def base_option(cfg: MmragConfig, name: str, conf_dir: Path) -> str:
    """The ``search`` option the calibrated file extends: the one in use (``search=X`` among the
    overrides, else ``default``); recalibrating ``X`` itself keeps X's own base."""
    chosen = "default"
    for o in cfg.overrides:
        key, _, val = o.partition("=")
        if key.lstrip("+~") == "search" and val:
            chosen = val
    if chosen == name:
        existing = conf_dir / "search" / f"{name}.yaml"
        m = (
            re.search(r"^defaults:\s*\n\s*-\s*(\S+)", existing.read_text(), re.MULTILINE)
            if existing.exists()
            else None
        )
        chosen = m.group(1) if m else "default"
    return chosen


def check_name(name: str, conf_dir: Path) -> Path:
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"threshold set name {name!r}: use letters, digits, '_' or '-' (it becomes conf/search/{name}.yaml)"
        )
    if name == "default":
        raise ConfigError(
            "refusing to overwrite conf/search/default.yaml: pick another name, e.g. calibrated"
        )
    path = conf_dir / "search" / f"{name}.yaml"
    if path.exists() and not path.read_text(encoding="utf-8").startswith(MARKER):
        raise ConfigError(f"{path} exists and was not written by `mmrag calibrate`: pick another name")
    return path


def render_yaml(
    name: str,
    base: str,
    proposal: Mapping[str, Mapping[str, Any]],
    *,
    keep: float,
    provenance: str,
    fusion_model: str | None = None,
) -> str:
    lines = [
        f"{MARKER} {name}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; re-run it rather than editing.",
        f"# Thresholds on calibrated scores that keep {keep:.0%} of the relevant hits of each modality pair.",
        f"# {provenance}",
        f"# Use: `search={name}` (everything else comes from search/{base}).",
        "defaults:",
        f"  - {base}",
        "  - _self_",
        "",
    ]
    if fusion_model:
        lines += [
            "fusion: learned",
            f"fusion_model: {fusion_model}    # conf/fusion/{fusion_model}.json, trained on the same queries",
            "",
        ]
    lines += [
        "thresholds:",
    ]
    for pair, p in proposal.items():
        if p["relevant_hits"]:
            note = f"{p['relevant_hits']} relevant hits, drops {p['dropped_other'] or 0:.0%} of the others"
        else:
            note = f"{p['source']} ({base})"
        lines.append(f"  {pair}: {p['threshold']!r}    # {note}")
    return "\n".join(lines) + "\n"


def write_threshold_option(
    cfg: MmragConfig,
    name: str,
    proposal: Mapping[str, Mapping[str, Any]],
    *,
    keep: float,
    provenance: str,
    fusion_model: str | None = None,
) -> Path:
    """Write ``<CONF_DIR>/search/<name>.yaml`` and check that ``search=<name>`` composes to
    exactly the proposed thresholds (a file that does not compose is put back as it was)."""
    from mmrag_assets import config

    conf_dir = config.conf_dir()  # read at call time: tests point it at a copy
    path = check_name(name, conf_dir)
    base = base_option(cfg, name, conf_dir)
    if not (conf_dir / "search" / f"{base}.yaml").exists():
        raise ConfigError(f"base search option {base!r} has no conf/search/{base}.yaml")
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    path.write_text(
        render_yaml(name, base, proposal, keep=keep, provenance=provenance, fusion_model=fusion_model),
        encoding="utf-8",
    )
    rest = [o for o in cfg.overrides if o.partition("=")[0].lstrip("+~") != "search"]
    try:
        got = config.load_config([*rest, f"search={name}"], resolve_paths=False).search.thresholds
        want = {pair: p["threshold"] for pair, p in proposal.items()}
        if any(abs(float(got[k]) - float(v)) > 1e-9 for k, v in want.items()):
            raise MmragError(f"search={name} composed thresholds {dict(got)}, expected {want}")
    except MmragError:
        if previous is None:
            path.unlink()
        else:
            path.write_text(previous, encoding="utf-8")
        raise
    return path

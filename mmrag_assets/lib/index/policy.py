"""What a publish does with the changes it finds: append a delta, compact, retrain, re-encode.

- **delta**: the new and changed items are encoded against the existing codebook into one new
  segment; removed and changed items are tombstoned. Nothing else is touched.
- **compact**: more than ``max_segments`` segments, or tombstones over ``max_tombstone_share``
  of the positions: segments are merged (only the deltas, or everything when tombstones are
  the reason), dropping tombstoned items. Codes are concatenated, no vector is read.
- **retrain**: the items encoded since the codebook was trained exceed ``retrain_delta_share``
  of the items it was trained on, or the new tokens' mean quantisation error exceeds the
  training sample's by ``retrain_error_factor``: a new codebook is trained and every item
  re-encoded into one base segment. Never for the lite tier (its codebook is the vocabulary).
- **reencode**: the strategies or the codec changed: every item is encoded again with the
  existing codebook (the codebook file is kept).
- **initial**: no version or no codebook yet.

The decision and its reason are returned by the publish (and shown as Dagster metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["none", "initial", "delta", "compact", "retrain", "reencode"]


@dataclass
class Policy:
    """``index.policy`` in conf/ (the values live there)."""

    max_segments: int
    max_tombstone_share: float
    retrain_delta_share: float
    retrain_error_factor: float
    min_error_tokens: int  # fewer new tokens than this say nothing reliable about the error
    recalibrate_share: float


@dataclass
class Decision:
    action: Action
    reason: str
    compact: Literal["none", "deltas", "all"] = "none"
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "compact": self.compact, **self.metrics}


def retrain_reason(
    policy: Policy,
    *,
    vocab: bool,
    trained_items: int,
    encoded_since: int,
    new_error: float | None,
    new_tokens: int,
    train_error: float,
) -> str | None:
    """Why the codebook must be retrained after encoding a delta, or None."""
    if vocab:
        return None
    share = encoded_since / max(trained_items, 1)
    if share > policy.retrain_delta_share:
        return (f"{encoded_since:,} items encoded since the codebook was trained on {trained_items:,} "
                f"({share:.0%} > retrain_delta_share {policy.retrain_delta_share:.0%})")  # fmt: skip
    if new_error is not None and new_tokens >= policy.min_error_tokens and train_error > 0:
        ratio = new_error / train_error
        if ratio > policy.retrain_error_factor:
            return (f"new tokens' quantisation error {new_error:.4f} is {ratio:.2f}x the codebook's "
                    f"{train_error:.4f} (> retrain_error_factor {policy.retrain_error_factor})")  # fmt: skip
    return None


def compaction(policy: Policy, *, n_segments: int, n_positions: int, n_dead: int) -> tuple[str, str] | None:
    """(scope, reason) when segments should be merged, else None."""
    if n_positions and n_dead / n_positions > policy.max_tombstone_share:
        return "all", (f"{n_dead:,} of {n_positions:,} positions are tombstones "
                       f"(> max_tombstone_share {policy.max_tombstone_share:.0%})")  # fmt: skip
    if n_segments > policy.max_segments:
        return "deltas", f"{n_segments} segments (> max_segments {policy.max_segments})"
    return None

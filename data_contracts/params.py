"""Thresholds shared by every data contract; the values come from configuration, never from the suites."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmrag_assets.errors import ConfigError


@dataclass(frozen=True)
class ContractParams:
    """Every number and allowed set the suites check against (frozen: suites are cached per value)."""

    # configured (conf/checks/ contracts, plus the model tier's dim): no defaults here
    dim: int  # embedding dimension of the model tier (ModelConfig.dim)
    min_tokens: int  # fewest vectors one embedded item may hold
    max_tokens: int  # most vectors one embedded item may hold (ModelConfig.doc_max_tokens or more)
    max_text_chars: int  # longest text of one page, segment or embedded item
    duration_tolerance_s: float  # a segment may end this far past the recording's duration
    max_offending_ids: int  # ids listed per failed expectation; `count` always holds the total
    # facts of the catalog schema, not knobs
    doc_id_regex: str = r"^[0-9a-f]{16}$"  # doc_id is sha256[:16] of the content
    sha256_regex: str = r"^[0-9a-f]{64}$"
    doc_kinds: tuple[str, ...] = ("pdf", "image", "audio", "video", "office", "text")
    doc_statuses: tuple[str, ...] = ("ok", "partial", "quarantined")
    page_modalities: tuple[str, ...] = ("page", "image")
    embedding_modalities: tuple[str, ...] = ("page", "image", "segment")

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ConfigError(f"contract dim must be positive, got {self.dim}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ConfigError(
                "contract token bounds need 0 <= min_tokens <= max_tokens, "
                f"got [{self.min_tokens}, {self.max_tokens}]"
            )
        if self.max_text_chars <= 0 or self.max_offending_ids <= 0 or self.duration_tolerance_s < 0:
            raise ConfigError("max_text_chars and max_offending_ids must be > 0, duration_tolerance_s >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None, **overrides: Any) -> ContractParams:
        """Build from a config mapping (lists become tuples); unknown keys raise ``ConfigError``."""
        merged = {**(values or {}), **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(f"unknown data-contract parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in merged.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

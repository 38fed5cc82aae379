"""What a search returns: one :class:`SearchResult` per item, in a :class:`SearchResponse`. Their own
module, so the index reader (which builds results) and the searcher (which ranks them) both import
it and not each other."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SearchResult:
    rank: int
    score: float  # the final ranking's score: the fusion's (search.fusion), e.g. P(relevant) with learned
    raw_score: float  # MaxSim / number of query tokens (idf-weighted mean with search.idf)
    modality: str
    source: str  # relative to corpus.root
    page: int | None  # 1-based; None for audio
    start_s: float | None  # seconds; None for pages and images
    end_s: float | None
    snippet: str
    item_id: str
    doc_id: str
    image_path: str | None = None  # relative to storage.root
    calibrated: float | None = None  # MaxSim z-score against the item's modality (what thresholds cut)
    # why it matched: {"first_stage": {"name", "rank"}, "lexical": {"rank"} | None, "maxsim": raw_score,
    # "calibrated": its z-score}
    # (ranks are 1-based positions in that channel's candidate list, None when it did not list the item)
    channels: dict[str, Any] = field(default_factory=dict)
    # the final fusion's reasons: each part's share of ``score`` (a channel's weighted term; with
    # search.fusion=learned each feature's contribution to the log-odds of relevance)
    why: dict[str, float] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The result's fields as the catalog's ``search_results`` rows hold them."""
        d = asdict(self)
        return {k: d[k] for k in ("rank", "score", "modality", "source", "page", "start_s", "end_s", "snippet", "item_id")}


@dataclass
class SearchResponse:
    query: str
    results: list[SearchResult]
    timings_ms: dict[str, float]
    dropped_below_threshold: int = 0
    warnings: list[str] = field(default_factory=list)
    first_stage: str = ""
    reranker: str = ""
    candidates: int = 0
    index: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)  # {"method", "coverage", "weights"}: the final fusion's inputs

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [{**r.public(), "channels": r.channels, "why": r.why} for r in self.results],
            "timings_ms": self.timings_ms,
            "dropped_below_threshold": self.dropped_below_threshold,
            "warnings": self.warnings,
            "first_stage": self.first_stage,
            "reranker": self.reranker,
            "candidates": self.candidates,
            "index": self.index,
            "fusion": self.fusion,
        }

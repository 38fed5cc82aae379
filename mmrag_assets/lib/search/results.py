"""What a search returns: one :class:`SearchResult` per item, in a :class:`SearchResponse`. Their own
module, so the index reader (which builds results) and the searcher (which ranks them) both import
it and not each other; and the full text of results' items (:func:`item_texts`: a result carries
only a snippet), which the answers and the multimodal reranker read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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
        return {
            k: d[k]
            for k in ("rank", "score", "modality", "source", "page", "start_s", "end_s", "snippet", "item_id")
        }


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
    fusion: dict[str, Any] = field(
        default_factory=dict
    )  # {"method", "coverage", "weights"}: the final fusion's inputs

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


def item_texts(view: Any, positions: list[int]) -> list[str]:
    """The full ``text`` of the items at these positions of an index version, read from the LanceDB
    table at the version's pinned table version by row address (one take for all of them)."""
    if not positions:
        return []
    addr = np.asarray(view.rowaddr, dtype=np.int64)[np.asarray(positions, dtype=np.int64)]
    if (addr < 0).any():
        return ["" for _ in positions]
    uniq = sorted(set(addr.tolist()))
    t = view.dataset._take_rows(uniq, columns=["text", "_rowaddr"])
    by_addr = dict(zip(t.column("_rowaddr").to_pylist(), t.column("text").to_pylist(), strict=True))
    return [str(by_addr.get(a) or "") for a in addr.tolist()]

"""Two-stage search: a token-level first stage (plus an optional BM25 channel fused by
reciprocal rank fusion), then exact MaxSim over the stored float16 multi-vectors, normalised
by query length and calibrated per modality pair before thresholds apply."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import NotFound, QueryError

MODALITIES = ("page", "image", "segment")
FILTER_KEYS = ("modality", "source_prefix", "doc_id")
SNIPPET_CHARS = 240


@dataclass
class SearchResult:
    rank: int
    score: float  # calibrated (z-score against the item's modality background)
    raw_score: float  # MaxSim / number of query tokens
    modality: str
    source: str  # relative to corpus.root
    page: int | None  # 1-based; None for audio
    start_s: float | None  # seconds; None for pages and images
    end_s: float | None
    snippet: str
    item_id: str
    doc_id: str
    image_path: str | None = None  # relative to storage.root
    # why it matched: {"first_stage": {"name", "rank"}, "lexical": {"rank"} | None, "maxsim": raw_score}
    # (ranks are 1-based positions in that channel's candidate list, None when it did not list the item)
    channels: dict[str, Any] = field(default_factory=dict)

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

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [{**r.public(), "channels": r.channels} for r in self.results],
            "timings_ms": self.timings_ms,
            "dropped_below_threshold": self.dropped_below_threshold,
            "warnings": self.warnings,
            "first_stage": self.first_stage,
            "reranker": self.reranker,
            "candidates": self.candidates,
            "index": self.index,
        }


def validate_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    """Normalise filters to lists of strings; unknown keys or modalities are a ``QueryError``."""
    out: dict[str, list[str]] = {}
    for key, value in (filters or {}).items():
        if key not in FILTER_KEYS:
            raise QueryError(f"unknown filter {key!r}; use one of {', '.join(FILTER_KEYS)}", "filters")
        values = [value] if isinstance(value, str) else list(value or [])
        if not values or not all(isinstance(v, str) for v in values):
            raise QueryError(f"filter {key!r} needs a string or a list of strings", "filters")
        if key == "modality":
            bad = [v for v in values if v not in MODALITIES]
            if bad:
                raise QueryError(f"unknown modality {bad[0]!r}; use one of {', '.join(MODALITIES)}", "filters")
        out[key] = values
    return out


class Searcher:
    """Loads the embedder, the LanceDB table and its sidecar once; ``search`` is thread-safe."""

    def __init__(self, cfg: MmragConfig):
        import pyarrow.parquet as pq

        from mmrag_assets.lib.index import table as lx
        from mmrag_assets.lib.index.embedding import load_embedder
        from mmrag_assets.lib.index.sidecar import current_dir, read_meta
        from mmrag_assets.lib.index.vecstore import VecStore

        self.cfg = cfg
        self.embedder = load_embedder(cfg.model, cfg.models_dir)
        self.table = lx.open_table(cfg, self.embedder.version_key, self.embedder.dim, create=False)
        d = current_dir(cfg, self.table.name)
        if d is None:
            raise NotFound(f"index {self.table.name} has no search structures yet: run `mmrag index` with the same overrides")
        self.dir = d
        self.meta = read_meta(d)
        self.store = VecStore.open(d / "store")
        items = pq.read_table(d / "items.parquet").to_pydict()
        self.items = items
        self.item_ids = items["item_id"]
        self.index_of = {iid: i for i, iid in enumerate(self.item_ids)}
        self.modality = np.array(items["modality"])
        self.source = np.array(items["source"], dtype=object)
        self.doc_id = np.array(items["doc_id"])
        self.calibration = json.loads((d / "calibration.json").read_text())["modalities"]
        self._first_stages: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ---- helpers ----
    def first_stage(self, name: str):
        from mmrag_assets.lib.index.first_stage import load_first_stage

        with self._lock:
            if name not in self._first_stages:
                # a name from the built set, never an arbitrary string joined into a path
                if name not in self.meta["strategies"]:
                    raise QueryError(
                        f"first stage {name!r} was not built for this index (built: {', '.join(self.meta['strategies'])}); "
                        f"add it to search.prebuild and run `mmrag index`",
                        "first_stage",
                    )
                self._first_stages[name] = load_first_stage(self.dir / "first_stage" / name)
            return self._first_stages[name]

    def allowed_mask(self, filters: dict[str, list[str]]) -> np.ndarray | None:
        if not filters:
            return None
        mask = np.ones(len(self.item_ids), dtype=bool)
        if "modality" in filters:
            mask &= np.isin(self.modality, filters["modality"])
        if "doc_id" in filters:
            mask &= np.isin(self.doc_id, filters["doc_id"])
        if "source_prefix" in filters:
            prefixes = tuple(filters["source_prefix"])
            mask &= np.fromiter((s.startswith(prefixes) for s in self.source), dtype=bool, count=len(self.source))
        return mask

    def lexical(self, query: str, n: int, mask: np.ndarray | None) -> np.ndarray:
        """BM25 over the text column (LanceDB full-text index), as item indices, best first."""
        try:
            rows = self.table.search(query, query_type="fts").select(["item_id", "_score"]).limit(n * 4 if mask is not None else n).to_list()
        except Exception:  # noqa: BLE001 - no FTS index yet or a query the tokenizer rejects
            return np.empty(0, dtype=np.int64)
        idx = [self.index_of[r["item_id"]] for r in rows if r["item_id"] in self.index_of]
        if mask is not None:
            idx = [i for i in idx if mask[i]]
        return np.array(idx[:n], dtype=np.int64)

    def calibrate(self, raw: float, modality: str) -> float:
        c = self.calibration.get(modality)
        return (raw - c["mean"]) / c["std"] if c else raw

    # ---- the search ----
    def search(
        self,
        query: str,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        *,
        first_stage: str | None = None,
        reranker: str | None = None,
        lexical: bool | None = None,
        apply_thresholds: bool = True,
    ) -> SearchResponse:
        from mmrag_assets.lib.search.rerank import get_reranker

        s = self.cfg.search
        t_all = time.perf_counter()
        if not isinstance(query, str) or not query.strip():
            raise QueryError("query is empty: ask a question in words")
        if len(query) > s.max_query_chars:
            raise QueryError(f"query is {len(query):,} characters, over search.max_query_chars={s.max_query_chars:,}")
        k = s.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= s.max_k):
            raise QueryError(f"k={k!r} must be an integer within 1..{s.max_k}", "k")
        fl = validate_filters(filters)
        fs_name, rr_name = first_stage or s.first_stage, reranker or s.reranker
        use_lex = s.lexical if lexical is None else lexical
        warnings: list[str] = []
        timings: dict[str, float] = {}

        t = time.perf_counter()
        q = self.embedder.embed_queries([query])[0]  # (Tq, dim)
        timings["encode_ms"] = _ms(t)
        if self.embedder.token_counts([query])[0] > self.embedder.query_max_tokens:
            warnings.append(f"query truncated to the model's query limit of {self.embedder.query_max_tokens} tokens")
        if len(q) == 0:
            raise QueryError("query has no tokens the model can embed")
        mask = self.allowed_mask(fl)
        n_cand = max(s.candidates, k)

        t = time.perf_counter()
        fs = self.first_stage(fs_name)
        cand, approx = fs.search(q, n_cand, mask)
        timings["first_stage_ms"] = _ms(t)
        fs_rank = {i: r for r, i in enumerate(np.asarray(cand).tolist(), 1)}
        lex_rank: dict[int, int] | None = None
        if use_lex:
            t = time.perf_counter()
            lex = self.lexical(query, n_cand, mask)
            lex_rank = {i: r for r, i in enumerate(lex.tolist(), 1)}
            cand, approx = rrf([cand, lex], s.rrf_k, n_cand)
            timings["lexical_ms"] = _ms(t)

        t = time.perf_counter()
        rr = get_reranker(rr_name)
        idx, scores = rr.rerank(q, self.store, cand, len(cand), approx)
        timings["rerank_ms"] = _ms(t)

        results, dropped = [], 0
        for i, raw in zip(idx.tolist(), scores.tolist(), strict=True):
            raw_n = raw / len(q) if rr_name == "maxsim" else raw
            m = self.modality[i]
            score = self.calibrate(raw_n, m) if rr_name == "maxsim" else raw_n
            if apply_thresholds and rr_name == "maxsim" and score < s.thresholds.get(f"text_{m}", -math.inf):
                dropped += 1
                continue
            res = self._result(i, len(results) + 1, score, raw_n)
            res.channels = {
                "first_stage": {"name": fs_name, "rank": fs_rank.get(i)},
                "lexical": None if lex_rank is None else {"rank": lex_rank.get(i)},
                "maxsim": res.raw_score if rr_name == "maxsim" else None,
            }
            results.append(res)
        results.sort(key=lambda r: (-r.score, r.item_id))
        for rank, r in enumerate(results, 1):
            r.rank = rank
        timings["total_ms"] = _ms(t_all)
        return SearchResponse(
            query=query, results=results[:k], timings_ms=timings, dropped_below_threshold=dropped,
            warnings=warnings, first_stage=fs_name, reranker=rr_name, candidates=len(cand),
            index={"table": self.table.name, "version": self.meta["table_version"]},
        )

    def _result(self, i: int, rank: int, score: float, raw: float) -> SearchResult:
        it = self.items
        text = (it["text"][i] or "").strip().replace("\n", " ")
        return SearchResult(
            rank=rank, score=round(float(score), 4), raw_score=round(float(raw), 4), modality=it["modality"][i],
            source=it["source"][i], page=it["page"][i] if it["modality"][i] != "segment" else None,
            start_s=it["start_s"][i], end_s=it["end_s"][i],
            snippet=text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else ""),
            item_id=it["item_id"][i], doc_id=it["doc_id"][i], image_path=it["image_path"][i],
        )

    def image_path(self, item_id: str, thumb: bool = False) -> Path:
        """The stored page image (or thumbnail) of an item; never a path outside the storage root."""
        if item_id not in self.index_of:
            raise NotFound(f"unknown item id {item_id!r}")
        i = self.index_of[item_id]
        rel = self.items["thumb_path" if thumb else "image_path"][i]
        if not rel:
            raise NotFound(f"item {item_id!r} ({self.items['modality'][i]}) has no image")
        root = self.cfg.storage_root.resolve()
        p = (root / rel).resolve()
        if root not in p.parents:
            raise NotFound(f"item {item_id!r} points outside the storage root")
        return p


    def media_path(self, item_id: str) -> Path:
        """The source recording (audio or video) of a time-based item, for the HTTP media
        endpoint; never a path outside the corpus root."""
        if item_id not in self.index_of:
            raise NotFound(f"unknown item id {item_id!r}")
        i = self.index_of[item_id]
        if self.items["start_s"][i] is None:
            raise NotFound(f"item {item_id!r} ({self.items['modality'][i]}) is not part of a recording")
        root = self.cfg.corpus_root.resolve()
        p = (root / self.items["source"][i]).resolve()
        if root not in p.parents:
            raise NotFound(f"item {item_id!r} points outside the corpus root")
        if not p.is_file():
            raise NotFound(f"the recording of item {item_id!r} is no longer in the corpus")
        return p


def rrf(rankings: list[np.ndarray], k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion of rankings of item indices -> (fused indices, fused scores)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for r, i in enumerate(np.asarray(ranking).tolist()):
            score[i] = score.get(i, 0.0) + 1.0 / (k + r + 1)
    items = sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return np.array([i for i, _ in items], dtype=np.int64), np.array([v for _, v in items], dtype=np.float32)


def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """(qid, query) pairs from a text file (one query a line) or JSON Lines (``qid``, ``query``)."""
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"queries file {p} does not exist")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            obj = json.loads(line)
            out.append((str(obj.get("qid", n)), str(obj["query"])))
        else:
            out.append((str(n), line))
    return out


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


_SEARCHERS: dict[tuple, Searcher] = {}
_SEARCHERS_LOCK = threading.Lock()


def get_searcher(cfg: MmragConfig) -> Searcher:
    """One searcher per (storage, model, sidecar version) per process."""
    import dataclasses

    from mmrag_assets.lib.index.sidecar import current_dir

    key = (cfg.storage.root, dataclasses.astuple(cfg.model))  # the model's whole identity, dim and path included
    with _SEARCHERS_LOCK:
        s = _SEARCHERS.get(key)
        if s is None or s.dir != current_dir(cfg, s.table.name):
            s = _SEARCHERS[key] = Searcher(cfg)
        s.cfg = cfg  # search knobs (k, thresholds...) may differ between calls
        return s


def search(query: str, k: int | None = None, filters: dict[str, Any] | None = None, *, cfg: MmragConfig | None = None, overrides: list[str] | None = None) -> SearchResponse:
    """Python entry point: ``search("how do I reset the router", k=5, filters={"modality": "segment"})``."""
    from mmrag_assets.config import load_config

    cfg = cfg or load_config(overrides or [])
    return get_searcher(cfg).search(query, k=k, filters=filters)

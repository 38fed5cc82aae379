"""A query end to end: the channels (``channels.py``: the token-level first stage, BM25, the dense
windows) each rank the items; their union is the candidates (reciprocal rank fusion); exact MaxSim
scores every candidate (from the LanceDB table at the version's pinned table version, or the lite
tier's vocabulary), normalised by query length (idf-weighted for the lite tier) and calibrated per
modality before thresholds apply; a fusion (``fusion.py``, ``learned.py``: ``search.fusion``)
turns all of that evidence into the final order, so no channel's order overwrites another's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.config import MmragConfig, SearchConfig
from mmrag_assets.errors import MmragError, NotFound, QueryError
from mmrag_assets.lib.search import fusion
from mmrag_assets.lib.search.channels import (
    Dense,
    FirstStage,
    Hits,
    LateInteraction,
    Lexical,
    Query,
)
from mmrag_assets.lib.search.fusion import Evidence, Fusion, RerankOrder, RRFFusion, ScoreFusion, candidates
from mmrag_assets.lib.search.index_reader import IndexReader, IndexView
from mmrag_assets.lib.search.learned import LearnedFusion
from mmrag_assets.lib.search.results import SearchResponse
from mmrag_assets.lib.search.term_weights import weight_query
from mmrag_assets.lib.store.runtime import Runtime

MODALITIES = ("page", "image", "segment")
FILTER_KEYS = ("modality", "source_prefix", "doc_id")


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
                raise QueryError(
                    f"unknown modality {bad[0]!r}; use one of {', '.join(MODALITIES)}", "filters"
                )
        out[key] = values
    return out


def make_fusion(s: SearchConfig, view: Any = None, model: Any = None) -> Fusion:
    """The fusion ``search.fusion`` names; ``learned`` reads its model (``learned.py``)."""
    if s.fusion == "learned":
        return LearnedFusion.for_search(s, view, model)
    fusions: dict[str, type[Fusion]] = {"score": ScoreFusion, "rrf": RRFFusion, "none": RerankOrder}
    cls = fusions.get(s.fusion)
    if cls is None:
        raise ValueError(f"unknown fusion {s.fusion!r}; use learned, score, rrf or none")
    return cls() if cls is RerankOrder else cls(s)  # type: ignore[call-arg]


class Searcher:
    """Answers queries from the live version of one index; cheap to make (the heavy state is the
    shared :class:`~mmrag_assets.lib.search.index_reader.IndexReader`), bound to one config's
    search knobs. ``search`` is thread-safe; each query uses one version from start to end."""

    def __init__(self, rt: Runtime, reader: IndexReader | None = None) -> None:
        self.rt = rt
        self.cfg = rt.cfg
        self.reader = reader or IndexReader.for_runtime(rt)

    # ---- what callers read ----
    @property
    def embedder(self):
        return self.reader.embedder

    @property
    def view(self) -> IndexView:
        return self.reader.view()

    @property
    def table(self):
        return self.view.table

    @property
    def meta(self) -> dict[str, Any]:
        return self.view.meta

    @property
    def n_items(self) -> int:
        return self.view.n_alive

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
        try:
            with contextlib.ExitStack() as stack:
                return self._search(query, k, filters, first_stage=first_stage, reranker=reranker, lexical=lexical,
                                    apply_thresholds=apply_thresholds, stack=stack)  # fmt: skip
        except MmragError:
            raise
        except Exception as e:  # a damaged store: say what is damaged and how to repair it, not a traceback
            from mmrag_assets.lib.store.manifest import IndexDamaged
            from mmrag_assets.lib.store.verify import diagnose

            found = diagnose(self.rt, self.embedder.version_key)
            if found:
                raise IndexDamaged(found) from e
            raise

    def _search(
        self,
        query: str,
        k: int | None,
        filters: dict[str, Any] | None,
        *,
        first_stage: str | None,
        reranker: str | None,
        lexical: bool | None,
        apply_thresholds: bool,
        stack: contextlib.ExitStack,
    ) -> SearchResponse:
        s = self.cfg.search
        t_all = time.perf_counter()
        check_query(query, s.max_query_chars)
        k = s.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= s.max_k):
            raise QueryError(f"k={k!r} must be an integer within 1..{s.max_k}", "k")
        fl = validate_filters(filters)
        fs_name, rr_name = first_stage or s.first_stage, reranker or s.reranker
        if fs_name == "dense":
            raise QueryError("dense is a channel fused after the rerank, not a first stage", "first_stage")
        use_lex = s.lexical if lexical is None else lexical
        view = self.reader.view()  # one version for the whole query, even if a newer one lands
        warnings: list[str] = list(view.warnings)
        timings: dict[str, float] = {}
        q = Query(query, view, view.allowed_mask(fl), max(s.candidates, k))

        dense_job = None
        if view.has_dense and float(s.weights.get("dense", 0.0)) > 0:
            stack.enter_context(_one_blas_thread())
            dense_job = Dense().submit(self.pool(), q)

        t = time.perf_counter()
        vec = self.embedder.embed_queries([query])[0]  # (Tq, dim)
        timings["encode_ms"] = _ms(t)
        if self.embedder.token_counts([query])[0] > self.embedder.query_max_tokens:
            warnings.append(
                f"query truncated to the model's query limit of {self.embedder.query_max_tokens} tokens"
            )
        if len(vec) == 0:
            raise QueryError("query has no tokens the model can embed")
        if s.idf and view.idf is not None:  # rare tokens count more than "the" (term_weights.py)
            vec = weight_query(
                vec, self.embedder.token_ids([query], self.embedder.query_max_tokens)[0], view.idf
            )
        q.vectors = vec

        # candidate channels, each a ranking of item positions
        known = {f.name for f in dataclasses.fields(self.cfg.index.strategies)}
        knobs = dataclasses.asdict(getattr(self.cfg.index.strategies, fs_name)) if fs_name in known else None
        hits: dict[str, Hits] = {"first_stage": FirstStage(fs_name, knobs).search(q)}
        timings["first_stage_ms"] = hits["first_stage"].ms
        if use_lex:
            hits["lexical"] = Lexical().search(q)
            timings["lexical_ms"] = hits["lexical"].ms
        if dense_job is not None:
            t = time.perf_counter()
            hits["dense"] = dense_job.result()
            timings["dense_ms"] = hits["dense"].ms
            timings["dense_wait_ms"] = _ms(t)  # what the query waited for it after its own channels
        cand = candidates(hits, s.rrf_k, q.n)

        t = time.perf_counter()
        late_name = "maxsim" if rr_name == "mllm" else rr_name  # the LLM reads the fused top, after MaxSim
        thresholds = s.thresholds if apply_thresholds and late_name == "maxsim" else None
        late = LateInteraction.score(q, cand, late_name, thresholds, hits["first_stage"], k)
        timings["rerank_ms"] = _ms(t)

        # the final fusion sees the candidates only: MaxSim's ranking (thresholds cut it: an item
        # below its modality's threshold stays when another channel lists it, alone it is dropped)
        lists = {"maxsim": (late.order, late.scores)}
        for name in ("lexical", "dense"):
            if name in hits:
                h = hits[name]
                keep = np.array([i in late.calibrated for i in h.positions.tolist()], dtype=bool)
                lists[name] = (
                    (h.positions[keep], h.scores[keep]) if len(h.positions) else (h.positions, h.scores)
                )
        # how much of the query the best candidate holds (static token vectors: 1.0 = every word)
        coverage = (
            max(late.raw.values()) if late_name == "maxsim" and view.idf is not None and late.raw else None
        )
        ev = Evidence(q, late, lists, {n: fusion.ranks(h.positions) for n, h in hits.items()}, coverage)
        t = time.perf_counter()
        fused = self.fusion(view).fuse(ev)
        timings["fusion_ms"] = _ms(t)
        final = fused.scores
        results = []
        for i in final:
            res = view.result(i, 0, final[i], late.raw[i])
            res.calibrated = round(float(late.calibrated[i]), 4)
            res.channels = {
                "first_stage": {"name": fs_name, "rank": ev.ranks["first_stage"].get(i)},
                "lexical": {"rank": ev.ranks["lexical"].get(i)} if "lexical" in ev.ranks else None,
                "maxsim": res.raw_score if late_name == "maxsim" else None,
                "calibrated": res.calibrated if late_name == "maxsim" else None,
                "dense": {"rank": ev.ranks["dense"].get(i)} if "dense" in ev.ranks else None,
            }
            res.why = {c: round(float(v), 4) for c, v in fused.why.get(i, {}).items()}
            results.append(res)
        results.sort(key=lambda r: (-r.score, r.item_id))
        for rank, r in enumerate(results, 1):
            r.rank = rank
        if rr_name == "mllm":  # a vision-language model's P(relevant) for the top (rerank config group)
            results, probs, info = self.mllm().rerank_results(query, results, view, self.rt.storage_root)
            timings["mllm_ms"] = info["ms"]
            for r in results:
                if r.item_id in probs:
                    r.why["mllm"] = round(float(probs[r.item_id]), 4)
        timings["total_ms"] = _ms(t_all)
        return SearchResponse(
            query=query, results=results[:k], timings_ms=timings, dropped_below_threshold=len(late.calibrated) - len(final),
            warnings=warnings, first_stage=fs_name, reranker=rr_name, candidates=len(cand.positions),
            index={"table": view.table_name, "version": view.table_version, "index_version": view.version},
            fusion={"method": s.fusion, "coverage": None if coverage is None else round(coverage, 4),
                    "weights": {c: round(w, 4) for c, w in fused.weights.items()}, **fused.extra},
        )  # fmt: skip

    def mllm(self) -> Any:
        """The multimodal LLM reranker of the ``rerank`` group (``lib/search/rerank_mllm.py``): its
        weights load once per runtime, from local directories only."""
        from mmrag_assets.lib.search.rerank_mllm import MllmReranker

        rerank = self.cfg.rerank
        return self.rt.handles.get(
            ("mllm", dataclasses.astuple(rerank)), lambda: MllmReranker.from_config(rerank)
        )

    def pool(self) -> ThreadPoolExecutor:
        """Worker threads for channels that run beside the token-level ones (shared by every searcher
        of the runtime: an HTTP server's concurrent queries queue here instead of adding threads). A
        forked child (a run worker) makes its own: the parent's threads do not exist there."""
        workers = max(2, min(8, os.cpu_count() or 2))
        return self.rt.handles.get(
            ("dense-pool", os.getpid()),
            lambda: ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmrag-dense"),
        )

    def fusion(self, view: IndexView) -> Fusion:
        """The configured fusion (``search.fusion``) for ``view``."""
        return make_fusion(self.cfg.search, view)

    def image_path(self, item_id: str, thumb: bool = False) -> Path:
        """The stored page image (or thumbnail) of an item; never a path outside the storage root."""
        view = self.view
        try:
            p = view.image_path(item_id, self.rt.storage_root, thumb=thumb)
        except NotFound:
            # a result of the version just replaced (the client searched a moment before the
            # switch): its files outlive it by storage.gc_grace_s, so its links keep working
            prev = self.reader.previous
            if prev is None or prev is view:
                raise
            p = prev.image_path(item_id, self.rt.storage_root, thumb=thumb)
        store = self.rt.storage  # an object-store root: downloaded into the mirror once
        if not store.remote:
            return p
        from mmrag_assets.lib.store.ocr_boxes import boxes_path

        root = self.rt.storage_root.resolve()
        if not thumb:  # the OCR word boxes stored beside the page image, when it has them
            store.fetch(boxes_path(p).relative_to(root).as_posix())
        return store.fetch(p.relative_to(root).as_posix())

    def media_path(self, item_id: str) -> Path:
        """The source recording (audio or video) of a time-based item, for the HTTP media
        endpoint; never a path outside the corpus root."""
        return self.view.media_path(item_id, self.rt.corpus_root)


def check_query(query: Any, max_chars: int) -> None:
    """A query worth loading an index for: words, within ``search.max_query_chars``. Whitespace and
    invisible format characters (Unicode ``Cf``: zero-width spaces, the BOM) alone are empty."""
    if not isinstance(query, str) or all(c.isspace() or unicodedata.category(c) == "Cf" for c in query):
        raise QueryError("query is empty: ask a question in words")
    if len(query) > max_chars:
        raise QueryError(f"query is {len(query):,} characters, over search.max_query_chars={max_chars:,}")


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


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMIT: Any = None


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread while searches with a dense channel run (reference-counted across
    concurrent searches; the process's own setting comes back after the last one). Every product
    here is small (a query of ~10 tokens against 384x1536 weights, a few hundred candidates), so
    a second BLAS thread buys nothing and, beside the dense worker thread, spins against it: on the
    real-document dev split the search p50 was 46.5 ms with the dense channel on a worker thread
    and two BLAS threads, 36.7 ms sequential, and 26.8 ms on a worker thread with one BLAS thread
    (20.7-23.2 ms without the dense channel), measured on the quiet 2-core machine."""
    global _BLAS_USERS, _BLAS_LIMIT
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            from threadpoolctl import threadpool_limits

            _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0 and _BLAS_LIMIT is not None:
                _BLAS_LIMIT.restore_original_limits()
                _BLAS_LIMIT = None


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def get_searcher(rt: Runtime) -> Searcher:
    """A searcher over ``rt``'s index: the index reader is the runtime's (loaded once, shared by every
    searcher of the runtime); its knobs are the runtime's config."""
    return Searcher(rt)


def search(
    query: str,
    k: int | None = None,
    filters: dict[str, Any] | None = None,
    *,
    runtime: Runtime | None = None,
    cfg: MmragConfig | None = None,
    overrides: list[str] | None = None,
) -> SearchResponse:
    """Python entry point: ``search("how do I reset the router", k=5, filters={"modality": "segment"})``.
    Pass ``runtime`` (``Runtime(load_config([...]))``) to keep the index loaded between calls; without
    one, the index is opened for this query and released after it."""
    from mmrag_assets.config import load_config

    if runtime is not None:
        check_query(query, runtime.cfg.search.max_query_chars)
        return get_searcher(runtime).search(query, k=k, filters=filters)
    cfg = cfg or load_config(overrides or [])
    check_query(query, cfg.search.max_query_chars)  # before the index and the encoder load
    with Runtime(cfg) as rt:
        return get_searcher(rt).search(query, k=k, filters=filters)

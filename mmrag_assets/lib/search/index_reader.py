"""Loading published index versions for queries, and picking up newer ones between queries.

An :class:`IndexView` is one published version, loaded: the item metadata of its segments, the
tombstone mask, the first stages (opened on first use), the calibration, the LanceDB table
checked out at the pinned table version (lexical channel) and the vector source the reranker
reads (that table by row address, the lite tier's vocabulary, or compressed codes).

An :class:`IndexReader` serves the live version of one index. ``view()`` reads ``CURRENT`` (one
small file) and, when a newer version was published, loads it (segments already loaded are
reused: they never change) and swaps it in; a query keeps the view it started with. Readers are
shared per index identity: storage root plus the full model config (arch, model id, revision,
path, pooling, dim...), never a subset of it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.errors import MmragError, NotFound, QueryError
from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.first_stage import Part, Searchable, get_strategy
from mmrag_assets.lib.index.first_stage.base import item_of_rows
from mmrag_assets.lib.index.rerank_vectors import Compressed, VocabVectors
from mmrag_assets.lib.index.segment import Segment, open_segment
from mmrag_assets.lib.index.vectors import TableVectors
from mmrag_assets.lib.ingest.names import source_path
from mmrag_assets.lib.search.results import SearchResult
from mmrag_assets.lib.search.term_weights import idf
from mmrag_assets.lib.store import manifest as mf
from mmrag_assets.lib.store.items import SEGMENT_ORDER
from mmrag_assets.lib.store.manifest import IndexLocation
from mmrag_assets.lib.store.runtime import Runtime

log = logging.getLogger(__name__)
# the segments' item columns a search reads (item_fp is for publishes): lib/store/items.py
COLUMNS = tuple(c for c in SEGMENT_ORDER if c != "item_fp")


class IndexView:
    """One published version of an index, ready for queries."""

    def __init__(
        self, loc: IndexLocation, version: int, db: Any, embedder: Any, cache: dict[str, Segment]
    ) -> None:
        self.loc = loc
        self.version = int(version)
        self.manifest = mf.read_manifest(loc, version)
        m = self.manifest
        state = mf.read_state(loc, version)
        self.alive: np.ndarray = state["alive"]
        self.rowaddr: np.ndarray = state["rowaddr"]
        self.segments = [cache.get(s["id"]) or open_segment(loc.segments / s["id"]) for s in m["segments"]]
        for seg in self.segments:
            cache[seg.id] = seg
        self.codebook = Codebook.load(loc.codebooks, m["codebook"], vocab=embedder.vocabulary())
        self.table_name = m["table"]
        self.table_version = int(m["table_version"])
        self._db = db
        # the Lance dataset at the pinned version (the lexical channel sees exactly the pinned rows),
        # opened with `lance` itself: `import lancedb` costs ~1.9 s (its namespace client builds
        # pydantic schemas) against ~0.35 s for `lance`, most of a shell `mmrag search`
        self.dataset = _open_dataset(db, self.table_name, self.table_version)
        self._table: Any = None
        cols = {c: [] for c in COLUMNS}
        for seg in self.segments:
            for c in COLUMNS:
                cols[c].append(seg.column(c))
        self.items = {c: (np.concatenate(v) if v else np.zeros(0, dtype=object)) for c, v in cols.items()}
        self.modality = self.items["modality"].astype(str)
        self.source = self.items["source"].astype(object)
        self.doc_id = self.items["doc_id"].astype(str)
        pos = np.flatnonzero(self.alive)
        self.index_of = dict(zip(self.items["item_id"][pos].tolist(), pos.tolist(), strict=True))
        self.n_alive = len(pos)
        self.calibration = (m.get("calibration") or {}).get("modalities", {})
        self.strategies = sorted(n for n in m["strategies"] if n != "dense")  # first stages
        self.has_dense = "dense" in m["strategies"]  # the dense channel's vectors are in the segments
        self._first_stages: dict[tuple[str, str], Searchable] = {}
        self._lock = threading.Lock()
        self.warnings: list[str] = []
        self.vectors = self._source(m)  # what the reranker reads
        self.rescore = int(m.get("rescore", 0))  # compressed rerank vectors: exact scores for the top
        self.exact_vectors = (
            TableVectors(
                self.dataset, self.table_version, self.rowaddr, max_norm=float(m.get("max_norm", 1.0))
            )
            if self.rescore
            else self.vectors
        )
        self.idf = self._idf()  # (K,) query-token weights of the lite tier; None for trained codebooks

    def _idf(self) -> np.ndarray | None:
        """idf of every vocabulary id over the alive items of this version (lite tier only).

        Counted from plaid's forward lists (each item's unique token ids) at load rather than
        stored at publish: the counts follow the tombstones of exactly this version, and one
        bincount over every item's unique ids is ~40 ms per million ids."""
        if self.codebook.kind != "vocab":
            return None
        k = self.codebook.n_centroids
        df = np.zeros(k, dtype=np.int64)
        for p in self.parts("plaid"):
            fwd = p.fields["codes"]
            own = item_of_rows(fwd) + p.base
            df += np.bincount(np.asarray(fwd.flat).astype(np.int64)[self.alive[own]], minlength=k)
        return idf(df, self.n_alive)

    @property
    def neighbours(self) -> np.ndarray:
        """(n_items, 2) int64: the positions of the previous and next item of the same document
        (the page before/after, the transcript window or keyframe before/after in time), -1 at an
        end; what a result's neighbouring context is read from. Computed on first use."""
        nb = self.__dict__.get("_neighbours")
        if nb is None:
            n = len(self.modality)
            nb = np.full((n, 2), -1, dtype=np.int64)
            if n:
                page = np.array([np.nan if _missing(x) else float(x) for x in self.items["page"]])
                start = np.array([np.nan if _missing(x) else float(x) for x in self.items["start_s"]])
                when = np.where(np.isnan(start), page, start)  # time for recordings, else the page number
                kind = (self.modality == "segment").astype(
                    np.int64
                )  # windows next to windows, frames to frames
                order = np.lexsort((when, kind, self.doc_id))
                same = (self.doc_id[order][1:] == self.doc_id[order][:-1]) & (
                    kind[order][1:] == kind[order][:-1]
                )
                same &= self.alive[order][1:] & self.alive[order][:-1]
                nb[order[1:][same], 0] = order[:-1][same]
                nb[order[:-1][same], 1] = order[1:][same]
            self.__dict__["_neighbours"] = nb
        return nb

    # ---------------------------------------------------------------- pieces
    def parts(self, name: str) -> list[Part]:
        out, base = [], 0
        for s in self.segments:
            out.append(Part(base, s.n_items, s.fields.get(name, {}), s.derived.get(name, {})))
            base += s.n_items
        return out

    def first_stage(self, name: str, search_params: dict[str, Any] | None = None) -> Searchable:
        """The first stage ``name`` over this version's segments; ``search_params`` (query-time
        knobs such as plaid's nprobe, from the caller's config) replace the ones it was built with."""
        spec = self.manifest["strategies"].get(name)
        if spec is None:
            raise QueryError(
                f"first stage {name!r} was not built for this index (built: {', '.join(self.strategies)}); "
                "add it to search.prebuild and run `mmrag index`",
                "first_stage",
            )
        params = dict(spec["params"])
        strategy = get_strategy(name, **params)
        params |= {k: v for k, v in (search_params or {}).items() if k in strategy.search_params}
        key = (name, json.dumps(params, sort_keys=True))
        with self._lock:
            if key not in self._first_stages:
                self._first_stages[key] = get_strategy(name, **params).open(self.codebook, self.parts(name))
            return self._first_stages[key]

    def _source(self, m: dict[str, Any]) -> Any:
        if self.codebook.kind == "vocab":
            return VocabVectors(self.first_stage("plaid"))  # type: ignore[arg-type]
        if m.get("codec", "none") != "none":
            return Compressed(codec=m["codec"]).open(self.codebook, self.parts("rerank"))
        return TableVectors(
            self.dataset, self.table_version, self.rowaddr, max_norm=float(m.get("max_norm", 1.0))
        )

    @property
    def table(self) -> Any:
        """The LanceDB table checked out at the pinned version (opened on first use)."""
        if self._table is None:
            db = self._db
            if isinstance(db, (str, Path)):
                import lancedb

                db = lancedb.connect(str(db))
            elif hasattr(db, "storage_options"):  # lib/store/storage.RemoteTables: an object-store root
                import lancedb

                db = lancedb.connect(db.uri, storage_options=db.storage_options)
            tbl = db.open_table(self.table_name)
            tbl.checkout(self.table_version)
            self._table = tbl
        return self._table

    @property
    def meta(self) -> dict[str, Any]:
        """The manifest's summary (``table_version``, ``strategies``, counts)."""
        m = self.manifest
        return {"table": self.table_name, "table_version": self.table_version, "version": self.version,
                "strategies": self.strategies, "items": self.n_alive, "documents": m["n_documents"],
                "segments": len(self.segments), "codec": m.get("codec", "none")}  # fmt: skip

    # ---------------------------------------------------------------- per query
    def allowed_mask(self, filters: dict[str, list[str]]) -> np.ndarray | None:
        """Published, not tombstoned, matching the filters (None: every position qualifies)."""
        if not filters and self.alive.all():
            return None
        mask = self.alive.copy()
        if "modality" in filters:
            mask &= np.isin(self.modality, filters["modality"])
        if "doc_id" in filters:
            mask &= np.isin(self.doc_id, filters["doc_id"])
        if "source_prefix" in filters:
            prefixes = tuple(filters["source_prefix"])
            mask &= np.fromiter(
                (s.startswith(prefixes) for s in self.source), dtype=bool, count=len(self.source)
            )
        return mask

    def lexical(self, query: str, n: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """BM25 over the text column at the pinned table version: (item positions, BM25 scores),
        best first; rows the version does not publish (staged, removed) are skipped."""
        try:
            # the Lance dataset itself, not the LanceDB table: `import lancedb` is ~1.1-1.9 s of a shell search
            rows = self.dataset.to_table(
                full_text_query=query, columns=["item_id", "_score"], limit=n * 4
            ).to_pylist()
        except Exception:  # noqa: BLE001 - no FTS index yet or a query the tokenizer rejects
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        # BM25 ties (short texts sharing their words) broken by item id, not by row order: a table
        # whose rows were rewritten (a repair, a compaction) ranks exactly as before
        rows = sorted(rows, key=lambda r: (-float(r["_score"]), r["item_id"]))
        hits = [
            (self.index_of[r["item_id"]], float(r["_score"])) for r in rows if r["item_id"] in self.index_of
        ]
        if mask is not None:
            hits = [h for h in hits if mask[h[0]]]
        hits = hits[:n]
        return np.array([i for i, _ in hits], dtype=np.int64), np.array(
            [v for _, v in hits], dtype=np.float32
        )

    def calibrate(self, raw: float, modality: str) -> float:
        c = self.calibration.get(modality)
        return (raw - c["mean"]) / c["std"] if c else raw

    def result(self, i: int, rank: int, score: float, raw: float):
        it = self.items
        page = it["page"][i]
        return SearchResult(
            rank=rank, score=round(float(score), 6), raw_score=round(float(raw), 4), modality=str(it["modality"][i]),
            source=str(it["source"][i]), page=None if it["modality"][i] == "segment" or _missing(page) else int(page),
            start_s=_opt_float(it["start_s"][i]), end_s=_opt_float(it["end_s"][i]), snippet=str(it["snippet"][i] or ""),
            item_id=str(it["item_id"][i]), doc_id=str(it["doc_id"][i]), image_path=it["image_path"][i],
        )  # fmt: skip

    def image_path(self, item_id: str, storage_root: Path, thumb: bool = False) -> Path:
        if item_id not in self.index_of:
            raise NotFound(f"unknown item id {item_id!r}")
        i = self.index_of[item_id]
        rel = self.items["thumb_path" if thumb else "image_path"][i]
        if not rel:
            raise NotFound(f"item {item_id!r} ({self.modality[i]}) has no image")
        root = storage_root.resolve()
        p = (root / rel).resolve()
        if root not in p.parents:
            raise NotFound(f"item {item_id!r} points outside the storage root")
        return p

    def media_path(self, item_id: str, corpus_root: Path) -> Path:
        if item_id not in self.index_of:
            raise NotFound(f"unknown item id {item_id!r}")
        i = self.index_of[item_id]
        if _missing(self.items["start_s"][i]):
            raise NotFound(f"item {item_id!r} ({self.modality[i]}) is not part of a recording")
        root = corpus_root.resolve()
        p = source_path(root, str(self.items["source"][i])).resolve()  # an escaped name (lib/ingest/names.py)
        if root not in p.parents:
            raise NotFound(f"item {item_id!r} points outside the corpus root")
        if not p.is_file():
            raise NotFound(f"the recording of item {item_id!r} is no longer in the corpus")
        return p


def _open_dataset(db: Any, name: str, version: int) -> Any:
    """``name`` at ``version`` from a LanceDB connection or the directory (URI) that holds its tables."""
    import lance

    root = str(db) if isinstance(db, (str, Path)) else str(db.uri)
    opts = (
        getattr(db, "storage_options", None) or None
    )  # an object-store root (lib/store/storage.RemoteTables)
    return lance.dataset(f"{root.rstrip('/')}/{name}.lance", version=version, storage_options=opts)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _opt_float(x: Any) -> float | None:
    return None if _missing(x) else float(x)


class IndexReader:
    """The live version of one index; ``follow=False`` (or ``version=N``) pins one version."""

    def __init__(
        self, loc: IndexLocation, embedder: Any, db: Any, *, version: int | None = None, follow: bool = True
    ) -> None:
        self.loc = loc
        self.embedder = embedder
        self.db = db
        self.follow = follow and version is None
        self._cache: dict[str, Segment] = {}
        self._lock = threading.Lock()
        v = version if version is not None else mf.current_version(loc)
        if v is None:
            raise NotFound(
                f"index {loc.version_key} has no published version under {loc.storage_root}: run `mmrag index` with the same overrides"
            )
        self._view = IndexView(loc, v, db, embedder, self._cache)
        self.previous: IndexView | None = (
            None  # the version the live one replaced, for links of results served from it
        )
        self.refresh_error: str | None = None
        self.store: Any = None  # lib/store/storage.Storage of an object-store root: follow its CURRENT
        self.refresh_s = 0.0
        self._checked = time.monotonic()

    @classmethod
    def for_runtime(cls, rt: Runtime) -> IndexReader:
        """The runtime's reader of its index (``lib/store/runtime.Runtime``): opened on first use and
        kept by the runtime, so every searcher built from it shares the loaded segments."""
        return rt.handles.get("index_reader", lambda: cls._open(rt))

    @classmethod
    def _open(cls, rt: Runtime) -> IndexReader:
        from mmrag_assets.lib.index.embedding import embedder_of
        from mmrag_assets.lib.store.storage import pull_index
        from mmrag_assets.lib.store.verify import diagnose

        cfg = rt.cfg
        embedder = embedder_of(rt)
        store = rt.storage
        if not (store.exists("lancedb") if store.remote else rt.lancedb_dir.exists()):
            raise NotFound(f"no index under {cfg.storage.root}: run `mmrag index` first")
        pull_index(store, embedder.version_key)  # an object-store root: mirror the live version
        loc = IndexLocation.of(rt.storage_root, embedder.version_key)
        db = store.tables() if store.remote else rt.lancedb_dir
        if not store.remote:
            found = diagnose(rt, embedder.version_key)  # cheap: stats, no checksums
            if found:
                raise mf.IndexDamaged(found)
        try:
            r = cls(loc, embedder, db)
        except MmragError:
            raise
        except Exception as e:  # a damaged store: one line saying what and how to repair it
            found = None if store.remote else diagnose(rt, embedder.version_key)
            if found:
                raise mf.IndexDamaged(found) from e
            raise
        if store.remote:
            r.store, r.refresh_s = store, float(cfg.storage.refresh_s)
        return r

    def view(self) -> IndexView:
        """The current view; with ``follow``, a newer published version is loaded first."""
        if not self.follow:
            return self._view
        if self.store is not None:  # an object store: read its CURRENT at most every refresh_s
            if time.monotonic() - self._checked < self.refresh_s:
                return self._view
            self._checked = time.monotonic()
            try:
                from mmrag_assets.lib.store.storage import pull_index, remote_version

                if remote_version(self.store, self.loc.version_key) != self._view.version:
                    pull_index(self.store, self.loc.version_key)
            except Exception as e:  # noqa: BLE001 - keep answering from the version we have
                self.refresh_error = f"could not read the object store: {e}"
                return self._view
        try:
            v = mf.current_version(self.loc)
        except mf.IndexDamaged as e:
            self.refresh_error = str(e)
            return self._view
        if v is None or v == self._view.version:
            return self._view
        with self._lock:
            if v != self._view.version:
                try:
                    self.previous, self._view = (
                        self._view,
                        IndexView(self.loc, v, self.db, self.embedder, self._cache),
                    )
                    live = {s.id for s in self._view.segments} | {s.id for s in self.previous.segments}
                    for k in [k for k in self._cache if k not in live]:  # segments of older versions
                        del self._cache[k]
                    self.refresh_error = None
                except Exception as e:  # noqa: BLE001 - keep answering from the version we have
                    self.refresh_error = f"could not load index version v{v}: {e}"
                    log.warning(self.refresh_error)
            return self._view

"""Publish a new version of the search index from the LanceDB items table (pure lib, no Dagster).

>>> loc = IndexLocation.of(cfg.storage_root, embedder.version_key)
>>> res = publish(loc, table, embedder, params_from_config(cfg), allowed_doc_ids=passed_docs)
>>> res.action, res.reason, res.version                         # "delta", "3 new, 1 removed", 7
>>> verify(loc).ok                                              # checksums of every file of v7

A version holds exactly the items of ``allowed_doc_ids`` (the documents whose blocking checks
passed; ``None``: every document) present in the table at the version it pins: rows of other
documents may sit in the table, staged, and are never served. Only items that are new or
changed since the live version (by item id and content fingerprint) are read and encoded; the
policy (``policy.py``) decides on compaction and retraining. See ``manifest.py`` for the layout.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mmrag_assets.lib.index.calibration import calibrate, needs_recalibration, probe_queries
from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.encode import Encoder, IndexParams, Progress, params_from_config, train_codebook
from mmrag_assets.lib.index.first_stage import Part
from mmrag_assets.lib.index.policy import Decision, compaction, retrain_reason
from mmrag_assets.lib.index.rerank_vectors import VocabVectors
from mmrag_assets.lib.index.segment import Segment, open_segment
from mmrag_assets.lib.index.vectors import TableVectors
from mmrag_assets.lib.store import manifest as mf
from mmrag_assets.lib.store.manifest import REBUILD, IndexLocation, is_published, location_for, publisher_lock
from mmrag_assets.lib.store.table import compact_table, ensure_table_indexes, storage_bytes

__all__ = [
    "IndexLocation",
    "IndexParams",
    "PublishResult",
    "is_published",
    "location_for",
    "params_from_config",
    "publish",
    "verify",
]
verify = mf.verify


@dataclass
class PublishResult:
    changed: bool  # a new version was published
    version: int | None  # the live version after the call
    previous: int | None
    table_version: int  # the pinned LanceDB table version
    action: str  # none | initial | delta | compact | retrain | reencode
    reason: str
    items: int = 0  # items served by the live version
    documents: int = 0
    added: int = 0  # items encoded into a new segment by this publish (all of them on a full build)
    removed: int = 0  # items tombstoned (or dropped by a full build)
    not_allowed: int = 0  # table rows of documents outside allowed_doc_ids (staged, not served)
    duplicates: int = 0  # repeated item ids in the table (one row of each is served)
    segments: int = 0
    tombstones: int = 0
    recalibrated: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    index_bytes: int = 0  # every file of the live version
    table_bytes: int = 0  # data files of the LanceDB table (the only copy of the vectors)
    gc: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    published_at: float | None = None  # when the live version was published

    @property
    def bytes_per_item(self) -> float:
        return (self.index_bytes + self.table_bytes) / max(self.items, 1)

    def as_metadata(self) -> dict[str, Any]:
        d = asdict(self)
        d["bytes_per_item"] = round(self.bytes_per_item, 1)
        return d


@dataclass
class _State:
    """What a publish produces: the new version's segments, tombstone mask and codebook."""

    segments: list[Segment]
    alive: np.ndarray
    codebook: Codebook
    added: int  # items encoded by this publish
    removed: int  # items tombstoned (or dropped by a full build)


@dataclass
class _Live:
    """The live version as the publish sees it."""

    manifest: dict[str, Any]
    segments: list[Segment]
    codebook: Codebook
    alive: np.ndarray
    ids: pd.Index  # item id of every position
    fps: np.ndarray  # item_fp of every position

    def current(self) -> pd.Series:
        """item_fp by item id of the alive positions."""
        pos = np.flatnonzero(self.alive)
        return pd.Series(self.fps[pos], index=self.ids[pos])


def publish(
    location: IndexLocation,
    table: Any,
    embedder: Any,
    params: IndexParams,
    *,
    allowed_doc_ids: Collection[str] | None,
    progress: Progress | None = None,
) -> PublishResult:
    """Publish what changed in ``table`` since the live version (see the module docstring)."""
    say = progress or (lambda _m: None)
    t_all = time.perf_counter()
    with publisher_lock(location, timeout_s=params.lock_timeout_s, say=say):
        run = _Run(location, table, embedder, params, say, allowed_doc_ids)
        decision = run.plan()
        base = {"table_version": run.tv, "not_allowed": run.not_allowed, "duplicates": run.dups,
                "previous": run.live and run.live.manifest["version"]}  # fmt: skip
        meta = decision.as_dict() | run.maintenance
        if decision.action == "none":
            m = run.live.manifest if run.live else None
            return PublishResult(
                changed=False, version=m and m["version"], action="none", reason=decision.reason,
                items=int(m["n_alive"]) if m else 0, documents=int(m["n_documents"]) if m else 0,
                segments=len(m["segments"]) if m else 0, tombstones=int(m["n_items"] - m["n_alive"]) if m else 0,
                seconds=time.perf_counter() - t_all, timings=run.tm, decision=meta, index_bytes=_version_bytes(m),
                published_at=m and m["published_at"], **base,
            )  # fmt: skip
        st = run.apply(decision)
        final, recal, gc = run.write(decision, st)
        return PublishResult(
            changed=True, version=final["version"], action=decision.action, reason=decision.reason,
            items=int(st.alive.sum()), documents=int(final["n_documents"]), added=st.added, removed=st.removed,
            segments=len(st.segments), tombstones=int((~st.alive).sum()), recalibrated=recal,
            seconds=time.perf_counter() - t_all, timings={k: round(v, 3) for k, v in run.tm.items()},
            index_bytes=_version_bytes(final), table_bytes=storage_bytes(table, run.tv), gc=gc,
            decision=decision.as_dict() | run.maintenance, published_at=final["published_at"], **base,
        )  # fmt: skip


class _Run:
    """One publish: the live version, the pinned table version and what the table holds there."""

    def __init__(self, loc: IndexLocation, table: Any, embedder: Any, params: IndexParams, say: Progress,
                 allowed: Collection[str] | None) -> None:  # fmt: skip
        t = time.perf_counter()
        self.loc, self.table, self.embedder, self.params, self.say = loc, table, embedder, params, say
        self.tm: dict[str, float] = {}
        self.vocab = embedder.vocabulary()
        # a repair asked for a rebuild (lib/store/verify.py): the live version is not trusted, not patched
        self.rebuild = (loc.root / REBUILD).exists()
        self.replaced = mf.current_version(loc) if self.rebuild and loc.current_file.exists() else None
        self.live = None if self.rebuild else _load_live(loc, self.vocab)
        table.checkout_latest()  # a handle does not see other handles' writes until it is refreshed
        # the table's own upkeep before its version is pinned: small fragments merged, then indexes
        compacted = compact_table(
            table, max_small_fragments=params.table_small_fragments, target_rows=params.table_target_rows
        )
        self.maintenance = {"table_compaction": compacted,
                            "table_indexes": ensure_table_indexes(table, max_unindexed=params.max_unindexed)}  # fmt: skip
        ds = table.to_lance()
        self.tv = int(ds.version)  # the pinned table version
        self.want, self.not_allowed, self.dups = _scan(ds, allowed)
        self.strategies = params.build_strategies()
        self.codec = params.codec if self.vocab is None else "none"  # lite: exact from its vocabulary
        self.tm["scan_s"] = time.perf_counter() - t

    # ---------------------------------------------------------------- deciding
    def plan(self) -> Decision:
        live, want, p = self.live, self.want, self.params
        if live is None:
            if not len(want):
                return Decision("none", "nothing to publish: no rows of allowed documents")
            why = "rebuild of a damaged version" if self.rebuild else "first build"
            return Decision("initial", f"{why} ({len(want):,} items)")
        if p.force in ("retrain", "reencode") and len(want):
            action = "reencode" if p.force == "reencode" or self.vocab is not None else "retrain"
            return Decision(action, f"{action} forced")  # type: ignore[arg-type]
        m = live.manifest
        old = {n: s["build_key"] for n, s in m["strategies"].items()}
        new = {n: s.build_key for n, s in self.strategies.items()}
        if old != new or m.get("codec", "none") != self.codec:
            return Decision(
                "reencode",
                f"first stages or codec changed ({sorted(old)}, {m.get('codec')} -> {sorted(new)}, {self.codec})",
            )
        cur = live.current()
        common = cur.index.intersection(want.index)
        changed = int((cur[common].to_numpy() != want.loc[common, "item_fp"].to_numpy()).sum())
        n_new = len(want.index.difference(cur.index))
        n_gone = len(cur.index.difference(want.index))
        if not (changed or n_new or n_gone):
            tc = self.maintenance["table_compaction"]
            if tc["compacted"]:  # rows moved: a version on the compacted table lets the old fragments go
                return Decision("delta", f"{len(cur):,} items, nothing new, changed or removed; the table was compacted "
                                         f"({tc['fragments']:,} -> {tc['fragments_after']:,} fragments): row addresses refreshed")  # fmt: skip
            return Decision("none", f"up to date: {len(cur):,} items, nothing new, changed or removed")
        return Decision("delta", f"{n_new:,} new, {changed:,} changed, {n_gone:,} removed items",
                        metrics={"new": n_new, "changed": changed, "gone": n_gone})  # fmt: skip

    # ---------------------------------------------------------------- building
    def apply(self, d: Decision) -> _State:
        self.loc.segments.mkdir(parents=True, exist_ok=True)
        self.loc.codebooks.mkdir(parents=True, exist_ok=True)
        return self.delta(d) if d.action == "delta" else self.full(d)

    def delta(self, d: Decision) -> _State:
        """New and changed items into one delta segment, the old rows of changed and removed items
        tombstoned; then the policy's retrain and compaction checks."""
        t = time.perf_counter()
        live, want, p = self.live, self.want, self.params
        assert live is not None
        pos = np.flatnonzero(live.alive)
        same = live.current().reindex(want.index).to_numpy() == want["item_fp"].to_numpy()
        todo = want.index[~same]  # new or changed
        gone = pos[~live.ids[pos].isin(want.index[same])]  # removed or changed
        alive = live.alive.copy()
        alive[gone] = False
        segments = list(live.segments)
        enc = Encoder(live.codebook, self.strategies, self.codec)
        since = int(live.manifest.get("encoded_since_train", 0)) + len(todo)
        if len(todo):
            self.say(f"encoding {len(todo):,} new or changed items")
            done = enc.encode(self.table, self.tv, want.loc[todo, "_rowaddr"].to_numpy(), self.loc.segments,
                              batch_items=p.batch_items, progress=self.say)  # fmt: skip
            self.tm["encode_s"] = done.seconds
            cb = live.codebook
            d.metrics |= {
                "new_tokens": done.tokens,
                "new_error": done.mean_error,
                "train_error": cb.train_error,
            }
            why = retrain_reason(
                p.policy, vocab=self.vocab is not None, trained_items=int(cb.stats.get("trained_items", 1)),
                encoded_since=since, new_error=done.mean_error, new_tokens=done.tokens, train_error=cb.train_error,
            )  # fmt: skip
            if why:  # the delta segment is left for GC: nothing references it
                d.action, d.reason = "retrain", f"{d.reason}; retrain: {why}"
                return self.full(d)
            segments.append(done.segment)
            alive = np.concatenate([alive, np.ones(done.segment.n_items, dtype=bool)])
        d.metrics["encoded_since_train"] = since
        comp = compaction(
            p.policy, n_segments=len(segments), n_positions=len(alive), n_dead=int((~alive).sum())
        )
        if comp:
            scope, why = comp
            t_m = time.perf_counter()
            first = 1 if scope == "deltas" else 0
            sizes = np.cumsum([0] + [s.n_items for s in segments])
            keep = [alive[sizes[i] : sizes[i + 1]] for i in range(first, len(segments))]
            merged = enc.merge(segments[first:], keep, self.loc.segments)
            segments = [*segments[:first], merged]
            alive = np.concatenate([alive[: sizes[first]], np.ones(merged.n_items, dtype=bool)])
            d.action, d.compact, d.reason = "compact", scope, f"{d.reason}; compacted {scope}: {why}"
            self.tm["merge_s"] = time.perf_counter() - t_m
        self.tm["delta_s"] = time.perf_counter() - t
        return _State(segments, alive, live.codebook, len(todo), len(gone))

    def full(self, d: Decision) -> _State:
        """Every wanted item into one base segment (initial build, retrain, re-encode)."""
        t = time.perf_counter()
        live, want, p = self.live, self.want, self.params
        rowaddr = want["_rowaddr"].to_numpy()
        if self.vocab is not None:
            codebook = Codebook.vocab(self.vocab)
        elif d.action == "reencode" and live is not None:
            codebook = live.codebook
        else:
            codebook = train_codebook(
                self.table, self.tv, rowaddr, want["n_tokens"].to_numpy(), p, progress=self.say
            )
            self.tm["train_s"] = time.perf_counter() - t
        if not (self.loc.codebooks / codebook.id).exists():
            codebook.save(self.loc.codebooks)
        codebook.stats.setdefault("trained_items", len(want))
        self.say(f"encoding all {len(want):,} items ({d.action})")
        done = Encoder(codebook, self.strategies, self.codec).encode(
            self.table, self.tv, rowaddr, self.loc.segments, batch_items=p.batch_items, progress=self.say
        )
        self.tm["encode_s"] = done.seconds
        kept = int(live.manifest.get("encoded_since_train", 0)) if d.action == "reencode" and live else 0
        d.metrics |= {"encoded_since_train": kept, "tokens": done.tokens, "mean_error": done.mean_error}
        removed = int(live.alive.sum()) if live else 0
        return _State(
            [done.segment], np.ones(done.segment.n_items, dtype=bool), codebook, done.segment.n_items, removed
        )

    # ---------------------------------------------------------------- publishing
    def write(self, d: Decision, st: _State) -> tuple[dict[str, Any], bool, dict[str, Any]]:
        """Calibrate, write the version (table tag, state, manifest, then CURRENT), collect garbage."""
        rowaddr = _rowaddr(st.segments, st.alive, self.want)
        t = time.perf_counter()
        calib, recal = self.calibration(d, st, rowaddr)
        self.tm["calibrate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        live = self.live
        version = max([*mf.list_versions(self.loc), live.manifest["version"] if live else 0]) + 1
        docs = (
            np.unique(_column(st.segments, "doc_id")[st.alive].astype(str))
            if st.alive.any()
            else np.zeros(0, "<U16")
        )
        m = self.manifest(version, d, st, calib, len(docs))
        mf.tag_table_version(self.table, version, self.tv)  # before CURRENT: LanceDB's cleanup must keep it
        mf.write_version(self.loc, m, {"alive": st.alive, "rowaddr": rowaddr, "docs": docs})
        (self.loc.root / REBUILD).unlink(missing_ok=True)
        self.tm["write_s"] = time.perf_counter() - t
        t = time.perf_counter()
        gc = mf.collect_garbage(self.loc, grace_s=self.params.gc_grace_s, table=self.table)
        self.tm["gc_s"] = time.perf_counter() - t
        return mf.read_manifest(self.loc, version), recal, gc

    def calibration(self, d: Decision, st: _State, rowaddr: np.ndarray) -> tuple[dict[str, Any] | None, bool]:
        p = self.params
        modality = _column(st.segments, "modality").astype(str)
        prev = self.live.manifest.get("calibration") if self.live else None
        full = d.action in ("initial", "retrain", "reencode")
        why = (
            "full build"
            if full
            else needs_recalibration(prev, modality, st.alive, p.policy.recalibrate_share)
        )
        if not why:
            return prev, False
        d.metrics["recalibrated"] = why
        if st.codebook.kind == "vocab":
            source: Any = VocabVectors(
                self.strategies["plaid"].open(st.codebook, _parts(st.segments, "plaid"))
            )  # type: ignore[arg-type]
        else:
            source = TableVectors(self.table, self.tv, rowaddr)
        rng = np.random.default_rng(p.seed)
        snippets = _column(st.segments, "snippet")[st.alive].tolist() if st.alive.any() else []
        qs = self.embedder.embed_queries(probe_queries(snippets, p.probe_queries, rng))
        return calibrate(qs, source, modality, st.alive, max_items=p.calibration_items, seed=p.seed), True

    def manifest(
        self, version: int, d: Decision, st: _State, calib: dict[str, Any] | None, n_docs: int
    ) -> dict[str, Any]:
        loc, cb, live = self.loc, st.codebook, self.live
        files: dict[str, Any] = mf.with_meta_file(
            f"codebooks/{cb.id}", loc.codebooks / cb.id, "codebook.json", cb.files
        )
        for s in st.segments:
            files |= mf.with_meta_file(f"segments/{s.id}", s.dir, "segment.json", s.files)
        return {
            "version": version, "version_key": loc.version_key, "table": self.table.name, "table_version": self.tv,
            "lance_tag": mf.tag_name(version), "codebook": cb.id, "codebook_kind": cb.kind,
            "segments": [{"id": s.id, "n_items": s.n_items} for s in st.segments], "n_items": len(st.alive),
            "n_alive": int(st.alive.sum()), "n_documents": n_docs, "dim": cb.dim,
            "strategies": {n: {"build_key": s.build_key, "params": s.params} for n, s in self.strategies.items()},
            "codec": self.codec, "rescore": self.params.rescore if self.codec != "none" else 0, "calibration": calib,
            "files": files, "published_at": time.time(), "parent": live.manifest["version"] if live else self.replaced,
            "publish": d.as_dict(), "encoded_since_train": int(d.metrics.get("encoded_since_train", 0)),
            "added": st.added, "max_norm": max([float(s.meta.get("max_norm", 1.0)) for s in st.segments] or [1.0]),
        }  # fmt: skip


# ---------------------------------------------------------------- helpers
def _load_live(loc: IndexLocation, vocab: np.ndarray | None) -> _Live | None:
    """The live version, or None before the first publish (or when its codebook cannot be used:
    a changed vocabulary or a damaged codebook means a full build)."""
    v = mf.current_version(loc)
    if v is None:
        return None
    m = mf.read_manifest(loc, v)
    segs = [open_segment(loc.segments / s["id"]) for s in m["segments"]]
    try:
        cb = Codebook.load(loc.codebooks, m["codebook"], vocab=vocab)
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    alive = mf.read_state(loc, v)["alive"]
    ids = pd.Index(_column(segs, "item_id").astype(object))
    return _Live(m, segs, cb, alive, ids, _column(segs, "item_fp").astype(object))


def _scan(ds: Any, allowed: Collection[str] | None) -> tuple[pd.DataFrame, int, int]:
    """item_id -> (item_fp, rowaddr, n_tokens) of the allowed documents' rows at this version."""
    df = ds.to_table(columns=["item_id", "doc_id", "item_fp", "n_tokens"], with_row_address=True).to_pandas()
    n = len(df)
    if allowed is not None:
        df = df[df["doc_id"].isin(set(allowed))]
    not_allowed = n - len(df)
    df = df.sort_values("_rowaddr").drop_duplicates("item_id", keep="last")  # a repeated id: its latest row
    return df.set_index("item_id"), int(not_allowed), int(n - not_allowed - len(df))


def _column(segments: list[Segment], name: str) -> np.ndarray:
    cols = [s.column(name) for s in segments]
    return np.concatenate(cols) if cols else np.zeros(0, dtype=object)


def _rowaddr(segments: list[Segment], alive: np.ndarray, want: pd.DataFrame) -> np.ndarray:
    """The row address at the pinned table version of every alive position (-1: tombstoned)."""
    ids = pd.Index(_column(segments, "item_id").astype(object))
    addr = want["_rowaddr"].reindex(ids).to_numpy()
    out = np.where(alive, np.nan_to_num(addr.astype(np.float64), nan=-1), -1).astype(np.int64)
    if (out[alive] < 0).any():
        raise mf.IndexDamaged("an alive item has no row in the pinned table version")
    return out


def _parts(segments: list[Segment], name: str) -> list[Part]:
    parts, base = [], 0
    for s in segments:
        parts.append(Part(base, s.n_items, s.fields.get(name, {}), s.derived.get(name, {})))
        base += s.n_items
    return parts


def _version_bytes(m: dict[str, Any] | None) -> int:
    return int(sum(f["size"] for f in m["files"].values())) if m else 0

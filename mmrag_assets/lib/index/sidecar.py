"""The search sidecar of one LanceDB table version: what query time needs, precomputed.

``<lancedb>/<table>.search/v<version>/`` holds the float16 multi-vectors as a memory-mapped
ragged store (the exact reranker reads it), the item metadata (parquet), every prebuilt
first-stage structure, and the per-modality score calibration. ``CURRENT`` names the live
version; a rebuild writes a new directory and then switches the pointer, so a running server
never reads a half-written sidecar.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrag_assets.config import MmragConfig

META_COLUMNS = ["item_id", "doc_id", "source", "modality", "page", "start_s", "end_s", "text", "image_path", "thumb_path", "n_tokens"]
PROBES_PER_MODALITY = 12
CALIBRATION_ITEMS = 3000


def sidecar_root(cfg: MmragConfig, table_name: str) -> Path:
    return cfg.lancedb_dir / f"{table_name}.search"


def current_dir(cfg: MmragConfig, table_name: str) -> Path | None:
    root = sidecar_root(cfg, table_name)
    pointer = root / "CURRENT"
    if not pointer.exists():
        return None
    d = root / pointer.read_text().strip()
    return d if (d / "meta.json").exists() else None


def read_meta(d: Path) -> dict[str, Any]:
    return json.loads((d / "meta.json").read_text())


def published_key(doc_ids: set[str] | None) -> str:
    """Short hash of a published document set (``all``: every row of the table)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(doc_ids)).encode()).hexdigest()[:16] if doc_ids is not None else "all"


def is_current(cfg: MmragConfig, table_name: str, doc_ids: set[str]) -> bool:
    """Whether the live version already publishes exactly ``doc_ids`` (nothing to publish)."""
    d = current_dir(cfg, table_name)
    return d is not None and read_meta(d).get("allowed") == published_key(doc_ids)


def build_sidecar(
    cfg: MmragConfig, tbl, embedder, *, allowed_doc_ids: set[str] | None = None, force: bool = False
) -> dict[str, Any]:
    """Refresh the table's full-text and scalar indexes, then (re)build the sidecar for the
    resulting table version from the rows of ``allowed_doc_ids`` only (the documents whose blocking
    checks passed; None: every row); a no-op (nothing written, version unchanged) when up to date."""
    allowed_key = published_key(allowed_doc_ids)
    from mmrag_assets.lib.index.first_stage import build_first_stage
    from mmrag_assets.lib.index.table import ensure_table_indexes
    from mmrag_assets.lib.index.vecstore import VecStore

    strategies = list(cfg.search.prebuild)
    cur = current_dir(cfg, tbl.name)
    if cur is not None and not force:
        meta = read_meta(cur)
        if (
            meta["table_version"] == int(tbl.version)
            and set(strategies) <= set(meta["strategies"])
            and meta.get("allowed") == allowed_key
        ):
            return {**meta, "rebuilt": False}
    t0 = time.perf_counter()
    ensure_table_indexes(tbl)  # moves the table version: the sidecar records the version after it
    version = int(tbl.version)
    root = sidecar_root(cfg, tbl.name)
    out = root / f"v{version}-{allowed_key}"  # a new directory per published state: readers keep theirs
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    meta_cols: dict[str, list] = {c: [] for c in META_COLUMNS}
    with VecStore.writer(out / "store", dim=embedder.dim) as w:
        for batch in _sorted_batches(tbl, allowed_doc_ids):
            vec = batch.column("vector")
            flat = vec.values.values.to_numpy(zero_copy_only=False).reshape(-1, embedder.dim)  # (sum n, dim) f16
            offs = vec.offsets.to_numpy()
            ids = batch.column("item_id").to_pylist()
            w.add_batch(ids, [flat[offs[i] - offs[0] : offs[i + 1] - offs[0]] for i in range(len(ids))])
            for c in META_COLUMNS:
                meta_cols[c].extend(batch.column(c).to_pylist())
    store = VecStore.open(out / "store")
    pq.write_table(pa.table(meta_cols), out / "items.parquet")
    built = {}
    for name in strategies:
        if store.n_items == 0:
            break
        t = time.perf_counter()
        fs = build_first_stage(name, store, out / "first_stage" / name)
        built[name] = {"seconds": round(time.perf_counter() - t, 3), "bytes_per_item": int(fs.nbytes / max(1, store.n_items))}
    calibration = calibrate(embedder, store, meta_cols, cfg.checks.probe_queries)
    (out / "calibration.json").write_text(json.dumps(calibration, indent=1))
    meta = {
        "table": tbl.name, "table_version": version, "items": store.n_items, "vectors": store.n_vectors,
        "dim": embedder.dim, "version_key": embedder.version_key, "strategies": sorted(built),
        "build": built, "seconds": round(time.perf_counter() - t0, 2), "built_at": time.time(),
        "allowed": allowed_key, "documents": len({*meta_cols["doc_id"]}),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    tmp = root / "CURRENT.tmp"
    tmp.write_text(out.name)
    tmp.replace(root / "CURRENT")  # atomic switch
    for old in root.glob("v*"):
        if old != out and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return {**meta, "rebuilt": True}


def _sorted_batches(tbl, allowed_doc_ids: set[str] | None = None, batch_rows: int = 256):
    """Rows of the table (of the allowed documents) ordered by item id, as record batches of bounded size."""
    ds = tbl.to_lance()
    head = ds.to_table(columns=["item_id", "doc_id"])
    ids = np.array(head.column("item_id").to_pylist(), dtype=object)
    order = np.argsort(ids, kind="stable")
    if allowed_doc_ids is not None:
        docs = np.array(head.column("doc_id").to_pylist(), dtype=object)
        order = order[np.isin(docs[order], list(allowed_doc_ids))]
    cols = [*META_COLUMNS, "vector"]
    for i in range(0, len(order), batch_rows):
        t = ds.take(order[i : i + batch_rows].tolist(), columns=cols)
        t = t.take(pa.array(np.argsort(np.array(t.column("item_id").to_pylist(), dtype=object), kind="stable")))
        yield from t.combine_chunks().to_batches()


def probe_queries(meta: dict[str, list], given: list[str], rng: np.random.Generator) -> list[str]:
    """The configured probe set, else short word windows sampled from the indexed texts."""
    if given:
        return list(given)
    texts = [t for t in meta["text"] if t and len(t.split()) >= 4]
    probes = []
    for t in rng.choice(len(texts), size=min(24, len(texts)), replace=False) if texts else []:
        words = texts[t].split()
        s = int(rng.integers(0, max(1, len(words) - 6)))
        probes.append(" ".join(words[s : s + 6]))
    return probes or ["document"]


def calibrate(embedder, store, meta: dict[str, list], given: list[str], seed: int = 0) -> dict[str, Any]:
    """Per-modality distribution of query-length-normalised MaxSim scores of probe queries.

    Raw MaxSim differs by modality (an image page has ~1,000 patch tokens, a transcript window
    ~60 text tokens), so scores are turned into z-scores against their own modality's background
    before per-modality-pair thresholds apply.
    """
    from mmrag_assets.lib.search.rerank import maxsim_ragged

    rng = np.random.default_rng(seed)
    probes = probe_queries(meta, given, rng)
    qs = embedder.embed_queries(probes)
    modality = np.array(meta["modality"])
    out: dict[str, Any] = {"probes": len(probes), "modalities": {}}
    for m in sorted(set(modality.tolist())):
        idx = np.flatnonzero(modality == m)
        if len(idx) > CALIBRATION_ITEMS:
            idx = np.sort(rng.choice(idx, CALIBRATION_ITEMS, replace=False))
        flat, off = store.gather_ragged(idx)
        scores = np.concatenate([maxsim_ragged(q, flat, off) / max(1, len(q)) for q in qs if len(q)])
        out["modalities"][m] = {
            "n_items": int(len(idx)), "mean": float(scores.mean()), "std": float(max(scores.std(), 1e-6)),
            "p50": float(np.quantile(scores, 0.5)), "p90": float(np.quantile(scores, 0.9)),
            "p99": float(np.quantile(scores, 0.99)),
        }
    return out

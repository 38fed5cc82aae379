"""LanceDB index: one table per embedding version, upserted per document by item id.

A page's multi-vector is the union of its image-patch vectors and its text-layer token vectors
(visual tiers), so MaxSim takes the best match from either view and every modality lives in
one space. The lite tier has text vectors only: images without a text layer get no row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmrag_assets.config import MmragConfig

TABLE_PREFIX = "items__"


def table_name(version_key: str) -> str:
    return TABLE_PREFIX + version_key


def schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("modality", pa.string()),  # page | image | segment
            pa.field("page", pa.int32()),  # 1-based; NULL for segments
            pa.field("start_s", pa.float64()),  # segments only
            pa.field("end_s", pa.float64()),
            pa.field("text", pa.string()),
            pa.field("n_tokens", pa.int32()),
            pa.field("vector", pa.list_(pa.list_(pa.float16(), dim))),  # (n_tokens, dim) unit rows
            pa.field("image_path", pa.string()),  # relative to storage.root
            pa.field("thumb_path", pa.string()),
            pa.field("ingest_fp", pa.string()),  # fingerprint of the ingest config that made the item
        ]
    )


def connect(cfg: MmragConfig):
    import lancedb

    cfg.lancedb_dir.mkdir(parents=True, exist_ok=True)
    return lancedb.connect(str(cfg.lancedb_dir))


def list_item_tables(db) -> list[str]:
    names = db.list_tables()
    names = getattr(names, "tables", names)
    return sorted(n for n in names if n.startswith(TABLE_PREFIX))


def open_table(cfg: MmragConfig, version_key: str, dim: int, *, create: bool = True):
    db = connect(cfg)
    name = table_name(version_key)
    if name in list_item_tables(db):
        return db.open_table(name)
    if not create:
        from mmrag_assets.errors import NotFound

        raise NotFound(f"index table {name} does not exist yet: run `mmrag index` with the same model overrides")
    return db.create_table(name, schema=schema(dim), exist_ok=True)


@dataclass
class EmbedOutcome:
    written: int = 0
    deleted: int = 0
    skipped_no_vectors: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    bytes_written: int = 0


def documents_items(catalog, doc_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The retrievable items (pages/images and transcript windows) of many documents, in 3 queries."""
    if not doc_ids:
        return {}
    docs = {
        d["doc_id"]: d
        for d in catalog.query(
            "SELECT doc_id, source, fingerprint FROM documents "
            "WHERE status <> 'quarantined' AND doc_id IN (SELECT unnest(?))",
            [list(doc_ids)],
        )
    }
    out: dict[str, list[dict[str, Any]]] = {d: [] for d in docs}
    for p in catalog.query(
        "SELECT item_id, doc_id, page, modality, image_path, thumb_path, text FROM pages "
        "WHERE doc_id IN (SELECT unnest(?)) ORDER BY doc_id, page",
        [list(docs)],
    ):
        d = docs[p["doc_id"]]
        out[p["doc_id"]].append({**p, "source": d["source"], "ingest_fp": d["fingerprint"], "start_s": None, "end_s": None})
    for sg in catalog.query(
        "SELECT item_id, doc_id, start_s, end_s, text FROM segments "
        "WHERE doc_id IN (SELECT unnest(?)) ORDER BY doc_id, start_s",
        [list(docs)],
    ):
        d = docs[sg["doc_id"]]
        out[sg["doc_id"]].append(
            {**sg, "source": d["source"], "ingest_fp": d["fingerprint"], "modality": "segment", "page": None,
             "image_path": None, "thumb_path": None}
        )
    return out


def table_state(tbl, shards: set[str] | None = None) -> dict[str, dict[str, str]]:
    """doc_id -> {item_id: ingest fingerprint} of the rows in the table (of some shards), one scan."""
    q = tbl.search().select(["doc_id", "item_id", "ingest_fp"]).limit(None)
    if shards is not None:
        q = q.where(" OR ".join(f"doc_id LIKE '{_hex(s)}%'" for s in sorted(shards)) or "false")
    t = q.to_arrow()
    out: dict[str, dict[str, str]] = {}
    for d, i, f in zip(
        t.column("doc_id").to_pylist(), t.column("item_id").to_pylist(), t.column("ingest_fp").to_pylist(), strict=True
    ):
        out.setdefault(d, {})[i] = f
    return out


def embeddable(item: dict[str, Any], embedder) -> bool:
    """The lite tier has no image path: an image without a text layer gets no vectors."""
    return bool((item["text"] or "").strip()) or bool(item["image_path"] and embedder.supports_images)


def embed_items(embedder, items: list[dict[str, Any]], storage_root: Path) -> list[np.ndarray | None]:
    """Multi-vectors for items (None where the tier has nothing to embed)."""
    vecs: list[np.ndarray | None] = [None] * len(items)
    img_idx = [i for i, it in enumerate(items) if it["image_path"] and embedder.supports_images]
    txt_idx = [i for i, it in enumerate(items) if (it["text"] or "").strip()]
    if img_idx:
        for i, v in zip(img_idx, embedder.embed_images([storage_root / items[i]["image_path"] for i in img_idx]), strict=True):
            vecs[i] = v
    if txt_idx:
        for i, v in zip(txt_idx, embedder.embed_texts([items[i]["text"] for i in txt_idx]), strict=True):
            if v is None or len(v) == 0:
                continue
            vecs[i] = v if vecs[i] is None else np.concatenate([vecs[i], v], axis=0)  # (n_img + n_txt, dim)
    return vecs


def upsert_documents(
    tbl, doc_ids: list[str], items: list[dict[str, Any]], vecs: list[np.ndarray | None], dim: int
) -> EmbedOutcome:
    """Make the table hold exactly ``items`` for the documents ``doc_ids``, in one commit: rows are
    upserted by item id, rows of those documents not among ``items`` are deleted. Items without
    vectors are skipped; NaN/inf or wrong-dim vectors become quarantine records instead of rows."""
    out = EmbedOutcome()
    rows = []
    for it, v in zip(items, vecs, strict=True):
        if v is None or len(v) == 0:
            out.skipped_no_vectors += 1
            continue
        if not np.isfinite(v).all():
            bad = int((~np.isfinite(v)).any(axis=1).sum())
            out.quarantined.append(
                {"source": it["source"], "doc_id": it["doc_id"], "stage": "embed",
                 "reason": f"item {it['item_id']}: {bad} of {len(v)} token vectors are NaN or infinite"}
            )
            continue
        if v.shape[1] != dim:
            out.quarantined.append(
                {"source": it["source"], "doc_id": it["doc_id"], "stage": "embed",
                 "reason": f"item {it['item_id']}: vector dim {v.shape[1]} != model dim {dim}"}
            )
            continue
        v16 = v.astype(np.float16)
        out.tokens.append(len(v16))
        out.bytes_written += v16.nbytes
        rows.append({**{k: it.get(k) for k in schema(dim).names if k not in ("vector", "n_tokens")}, "n_tokens": len(v16), "vector": v16})
    if not doc_ids:
        return out
    where = f"doc_id IN ({', '.join(repr(_hex(d)) for d in doc_ids)})"
    before = tbl.count_rows(where)
    if rows:
        (
            tbl.merge_insert("item_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(where)
            .execute(_to_arrow(rows, dim))
        )
    elif before:
        tbl.delete(where)
    out.written = len(rows)
    out.deleted = max(0, before - len(rows))
    return out


def _to_arrow(rows: list[dict[str, Any]], dim: int) -> pa.Table:
    sch = schema(dim)
    cols = {}
    for f in sch:
        if f.name == "vector":
            flat = np.concatenate([r["vector"].reshape(-1) for r in rows])
            lens = np.array([len(r["vector"]) for r in rows])
            inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float16()), dim)
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
            cols[f.name] = pa.ListArray.from_arrays(pa.array(offsets), inner).cast(f.type)
        else:
            cols[f.name] = pa.array([r.get(f.name) for r in rows], type=f.type)
    return pa.table(cols, schema=sch)


def delete_documents(cfg: MmragConfig, doc_ids: list[str]) -> int:
    """Remove the rows of documents that left the corpus from every embedding-version table."""
    if not doc_ids or not cfg.lancedb_dir.exists():
        return 0
    db = connect(cfg)
    ids = ", ".join(f"'{_hex(d)}'" for d in doc_ids)
    n = 0
    for name in list_item_tables(db):
        tbl = db.open_table(name)
        k = tbl.count_rows(f"doc_id IN ({ids})")
        if k:
            tbl.delete(f"doc_id IN ({ids})")
            n += k
    return n


def _hex(s: str) -> str:
    """Document ids are hex content keys; anything else never reaches a LanceDB filter string."""
    if not all(c in "0123456789abcdef" for c in s):
        raise ValueError(f"not a document id: {s!r}")
    return s


def table_stats(tbl) -> dict[str, Any]:
    n = tbl.count_rows()
    ds = tbl.to_lance()
    size = sum(f.stat().st_size for f in Path(ds.uri).rglob("*.lance") if f.is_file()) if n else 0
    return {"table": tbl.name, "version": int(tbl.version), "rows": int(n), "bytes_per_item": int(size / n) if n else 0}


def ensure_table_indexes(tbl) -> None:
    """BM25 full-text index on ``text``; BITMAP on ``modality``; BTREE on ``doc_id``."""
    if tbl.count_rows() == 0:
        return
    from lancedb.index import FTS, Bitmap, BTree

    tbl.create_index("text", config=FTS(), replace=True)
    tbl.create_index("modality", config=Bitmap(), replace=True)
    tbl.create_index("doc_id", config=BTree(), replace=True)


ANALYTICS_SQL = """
SELECT modality,
       count(*)                                   AS items,
       avg(n_tokens)                              AS tokens_per_item,
       avg(n_tokens) * {dim} * 2                  AS vector_bytes_per_item,
       count(DISTINCT doc_id)                     AS documents
FROM ds GROUP BY modality ORDER BY modality
"""


def analytics(tbl, dim: int) -> list[dict[str, Any]]:
    """Counts by modality, tokens and vector bytes per item: DuckDB straight over the Lance dataset."""
    import duckdb

    # DuckDB's Arrow scan has no float16 type, so it gets a projected Lance scanner (the vector
    # column never leaves Lance); n_tokens already says how many vectors each item holds.
    ds = tbl.to_lance().scanner(columns=["item_id", "doc_id", "modality", "page", "n_tokens"]).to_reader()  # noqa: F841
    con = duckdb.connect()
    try:
        cur = con.execute(ANALYTICS_SQL.format(dim=int(dim)))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()

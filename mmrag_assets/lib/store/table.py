"""LanceDB items table: one per embedding version, upserted per document by item id.

A page's multi-vector is the union of its image-patch vectors and its text-layer token vectors
(visual tiers), so MaxSim takes the best match from either view and every modality lives in
one space. The lite tier has text vectors only: images without a text layer get no row, and
its rows hold token ids (``tokens``), not vectors, because its token vectors are a fixed lookup
table (see ``vectors.py``, the one reader of both forms). The table is the only copy of the
vectors: the search index (``lib/index/publish.py``) stores codes and reads vectors from here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mmrag_assets.lib.store.items import DIM_KEY, VOCAB_SIZES, schema, storage_of, vocab_size

if TYPE_CHECKING:
    from mmrag_assets.lib.store.runtime import Runtime

TABLE_PREFIX = "items__"
FP_CHARS = 16  # hex digits of an item's content fingerprint


def table_name(version_key: str) -> str:
    return TABLE_PREFIX + version_key


def embedder_schema(embedder) -> pa.Schema:
    vocab = embedder.vocabulary()
    if vocab is None:
        return schema(embedder.dim)
    return schema(embedder.dim, vocab=embedder.arch, vocab_size=len(vocab))


def connect(rt: Runtime):
    """The LanceDB database of ``storage.root``: a local folder, or the object store itself (every
    worker and search replica opens the same tables)."""
    import lancedb

    store = rt.storage
    if not store.remote:
        rt.lancedb_dir.mkdir(parents=True, exist_ok=True)
        return lancedb.connect(str(rt.lancedb_dir))
    store.ensure_bucket()
    return lancedb.connect(store.url("lancedb"), storage_options=store.lance_options())


def has_tables(rt: Runtime) -> bool:
    """Any LanceDB table exists under ``storage.root`` (without creating the local folder)."""
    if not rt.storage_remote:
        return rt.lancedb_dir.exists()
    return bool(list_item_tables(connect(rt)))


def list_item_tables(db) -> list[str]:
    names = db.list_tables()
    names = getattr(names, "tables", names)
    return sorted(n for n in names if n.startswith(TABLE_PREFIX))


def open_table(rt: Runtime, version_key: str, dim: int | pa.Schema, *, create: bool = True):
    """The table of ``version_key``; created with ``dim`` (a vector table) or a given schema."""
    db = connect(rt)
    name = table_name(version_key)
    if name in list_item_tables(db):
        return db.open_table(name)
    if not create:
        from mmrag_assets.errors import NotFound

        raise NotFound(
            f"index table {name} does not exist yet: run `mmrag index` with the same model overrides"
        )
    sch = dim if isinstance(dim, pa.Schema) else schema(dim)
    return db.create_table(name, schema=sch, exist_ok=True)


def model_schema(model_cfg: Any) -> pa.Schema:
    """The table schema of a model config, without loading the model (the lite tier: token ids)."""
    if model_cfg.arch == "lite":
        return schema(model_cfg.dim, vocab="lite", vocab_size=VOCAB_SIZES["lite"])
    return schema(model_cfg.dim)


def open_config_table(rt: Runtime, *, create: bool = True):
    """The table of the runtime's embedding version, created with the right storage form if missing."""
    return open_table(rt, rt.version_key, model_schema(rt.cfg.model), create=create)


def open_embedder_table(rt: Runtime, embedder, *, create: bool = True):
    """The table of ``embedder``'s embedding version (a token table for the lite tier)."""
    return open_table(rt, embedder.version_key, embedder_schema(embedder), create=create)


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
        out[p["doc_id"]].append(
            {**p, "source": d["source"], "ingest_fp": d["fingerprint"], "start_s": None, "end_s": None}
        )
    for sg in catalog.query(
        "SELECT item_id, doc_id, start_s, end_s, text FROM segments "
        "WHERE doc_id IN (SELECT unnest(?)) ORDER BY doc_id, start_s",
        [list(docs)],
    ):
        d = docs[sg["doc_id"]]
        out[sg["doc_id"]].append(
            {
                **sg,
                "source": d["source"],
                "ingest_fp": d["fingerprint"],
                "modality": "segment",
                "page": None,
                "image_path": None,
                "thumb_path": None,
            }
        )
    return out


@dataclass
class TableState:
    """What the table holds per document (of some shards): one scan, see :func:`table_state`."""

    fps: dict[str, dict[str, str]]  # doc_id -> {item_id: ingest fingerprint}
    sources: dict[str, set[str]]  # doc_id -> the source names its rows carry (one, unless mid-rename)


def table_state(tbl, shards: set[str] | None = None) -> TableState:
    """The rows' ingest fingerprints and source names by document (of some shards), one scan."""
    q = tbl.search().select(["doc_id", "item_id", "ingest_fp", "source"]).limit(None)
    if shards is not None:
        q = q.where(" OR ".join(f"doc_id LIKE '{_hex(s)}%'" for s in sorted(shards)) or "false")
    t = q.to_arrow()
    out = TableState({}, {})
    for d, i, f, src in zip(
        t.column("doc_id").to_pylist(),
        t.column("item_id").to_pylist(),
        t.column("ingest_fp").to_pylist(),
        t.column("source").to_pylist(),
        strict=True,
    ):
        out.fps.setdefault(d, {})[i] = f
        out.sources.setdefault(d, set()).add(src)
    return out


def duplicate_rows(tbl):
    """(item_id, _rowaddr) of every row but the newest of each repeated item id (a DataFrame)."""
    t = tbl.to_lance().to_table(
        columns=["item_id"], with_row_address=True
    )  # one string column and the addresses
    df = t.to_pandas().sort_values("_rowaddr")
    return df[df.duplicated("item_id", keep="last")]  # a row address grows with the fragment: keep the newest


def repair_duplicates(tbl) -> list[str]:
    """Delete all but the newest row of every item id the table holds more than once, in one
    commit; returns the repaired item ids. Writes are upserts by item id, so a repeated id means two
    writers raced (or a store from before the writer pools): left alone, the per-document staleness
    check (:func:`table_state`, a dict per item id) would collapse the copies and never rewrite them."""
    extra = duplicate_rows(tbl)
    if not len(extra):
        return []
    tbl.to_lance().delete(f"_rowaddr IN ({', '.join(str(int(a)) for a in extra['_rowaddr'])})")
    tbl.checkout_latest()
    return sorted(set(extra["item_id"]))


def embeddable(item: dict[str, Any], embedder) -> bool:
    """The lite tier has no image path: an image without a text layer gets no vectors."""
    return bool((item["text"] or "").strip()) or bool(item["image_path"] and embedder.supports_images)


def embed_items(
    embedder, items: list[dict[str, Any]], storage_root: Path, store: Any = None
) -> list[np.ndarray | None]:
    """Multi-vectors for items (None where the tier has nothing to embed); token ids (n,) for a
    tier with a vocabulary (lite), which then has no image path. With ``store`` (an object-store
    root), page images another worker rendered are downloaded into the local mirror first."""
    vecs: list[np.ndarray | None] = [None] * len(items)
    if embedder.vocabulary() is not None:
        txt = [i for i, it in enumerate(items) if (it["text"] or "").strip()]
        for i, ids in zip(txt, embedder.embed_text_tokens([items[i]["text"] for i in txt]), strict=True):
            vecs[i] = ids if len(ids) else None
        return vecs
    img_idx = [i for i, it in enumerate(items) if it["image_path"] and embedder.supports_images]
    fetch = store.fetch if store is not None else (lambda rel: storage_root / rel)
    txt_idx = [i for i, it in enumerate(items) if (it["text"] or "").strip()]
    if img_idx:
        for i, v in zip(
            img_idx,
            embedder.embed_images([fetch(items[i]["image_path"]) for i in img_idx]),
            strict=True,
        ):
            vecs[i] = v
    if txt_idx:
        for i, v in zip(txt_idx, embedder.embed_texts([items[i]["text"] for i in txt_idx]), strict=True):
            if v is None or len(v) == 0:
                continue
            vecs[i] = v if vecs[i] is None else np.concatenate([vecs[i], v], axis=0)  # (n_img + n_txt, dim)
    return vecs


def prepare_rows(
    items: list[dict[str, Any]], vecs: list[np.ndarray | None], sch: pa.Schema, dim: int
) -> tuple[pa.Table | None, EmbedOutcome]:
    """The table rows of ``items`` (None when there are none) and what became of each: items without
    vectors are skipped; NaN/inf or wrong-dim vectors (token ids outside the vocabulary, for a token
    table) become quarantine records instead of rows. Every row gets its ``item_fp``."""
    out = EmbedOutcome()
    tokens = storage_of(sch) == "tokens"
    vocab_n = vocab_size(sch) if tokens else 0
    rows = []
    for it, v in zip(items, vecs, strict=True):
        if v is None or len(v) == 0:
            out.skipped_no_vectors += 1
            continue
        if tokens:
            v = np.asarray(v)
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or v.max() >= vocab_n:
                out.quarantined.append(
                    {"source": it["source"], "doc_id": it["doc_id"], "stage": "embed",
                     "reason": f"item {it['item_id']}: token ids are not ids of the {vocab_n:,}-token vocabulary"}
                )  # fmt: skip
                continue
            ids = v.astype(sch.field("tokens").type.value_type.to_pandas_dtype())
            out.tokens.append(len(ids))
            out.bytes_written += ids.nbytes
            rows.append(
                {**_meta(it, sch), "n_tokens": len(ids), "tokens": ids, "item_fp": item_fingerprint(it, ids)}
            )
            continue
        if not np.isfinite(v).all():
            bad = int((~np.isfinite(v)).any(axis=1).sum())
            out.quarantined.append(
                {"source": it["source"], "doc_id": it["doc_id"], "stage": "embed",
                 "reason": f"item {it['item_id']}: {bad} of {len(v)} token vectors are NaN or infinite"}
            )  # fmt: skip
            continue
        if v.shape[1] != dim:
            out.quarantined.append(
                {"source": it["source"], "doc_id": it["doc_id"], "stage": "embed",
                 "reason": f"item {it['item_id']}: vector dim {v.shape[1]} != model dim {dim}"}
            )  # fmt: skip
            continue
        v16 = v.astype(np.float16)
        out.tokens.append(len(v16))
        out.bytes_written += v16.nbytes
        rows.append(
            {**_meta(it, sch), "n_tokens": len(v16), "vector": v16, "item_fp": item_fingerprint(it, v16)}
        )
    out.written = len(rows)
    return (_to_arrow(rows, sch) if rows else None), out


def upsert_documents(
    tbl, doc_ids: list[str], items: list[dict[str, Any]], vecs: list[np.ndarray | None], dim: int
) -> EmbedOutcome:
    """Make the table hold exactly ``items`` for the documents ``doc_ids``, in one commit: rows are
    upserted by item id, rows of those documents not among ``items`` are deleted (rows as
    :func:`prepare_rows` makes them). The embedding step stages its rows instead
    (``lib/index/staging.py``); this direct write serves benchmarks and tests."""
    data, out = prepare_rows(items, vecs, tbl.schema, dim)
    if not doc_ids:
        return out
    where = doc_filter(doc_ids)
    before = tbl.count_rows(where)
    if data is not None:
        (
            tbl.merge_insert("item_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(where)
            .execute(data)
        )
    elif before:
        tbl.delete(where)
    out.deleted = max(0, before - out.written)
    return out


_PAYLOAD = ("vector", "tokens", "n_tokens", "item_fp")


def _meta(item: dict[str, Any], sch: pa.Schema) -> dict[str, Any]:
    return {k: item.get(k) for k in sch.names if k not in _PAYLOAD}


def item_fingerprint(item: dict[str, Any], payload: np.ndarray) -> str:
    """Hash of everything a published item shows: metadata, text and its vectors or token ids."""
    h = hashlib.sha256()
    for k in (
        "item_id",
        "doc_id",
        "source",
        "modality",
        "page",
        "start_s",
        "end_s",
        "text",
        "image_path",
        "thumb_path",
        "ingest_fp",
    ):
        h.update(f"{k}={item.get(k)!r}\0".encode())
    h.update(str(payload.dtype).encode() + str(payload.shape).encode())
    h.update(np.ascontiguousarray(payload).tobytes())
    return h.hexdigest()[:FP_CHARS]


def _to_arrow(rows: list[dict[str, Any]], sch: pa.Schema) -> pa.Table:
    dim = int(sch.metadata[DIM_KEY])
    cols = {}
    for f in sch:
        if f.name == "tokens":
            flat = np.concatenate([r["tokens"] for r in rows])
            offsets = np.concatenate([[0], np.cumsum([len(r["tokens"]) for r in rows])]).astype(np.int32)
            cols[f.name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=f.type.value_type))
        elif f.name == "vector":
            flat = np.concatenate([r["vector"].reshape(-1) for r in rows])
            lens = np.array([len(r["vector"]) for r in rows])
            inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float16()), dim)
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
            cols[f.name] = pa.ListArray.from_arrays(pa.array(offsets), inner).cast(f.type)
        else:
            cols[f.name] = pa.array([r.get(f.name) for r in rows], type=f.type)
    return pa.table(cols, schema=sch)


def delete_documents(rt: Runtime, doc_ids: list[str]) -> int:
    """Remove the rows of documents that left the corpus from every embedding-version table."""
    if not doc_ids or not has_tables(rt):
        return 0
    db = connect(rt)
    where = doc_filter(doc_ids)
    n = 0
    for name in list_item_tables(db):
        tbl = db.open_table(name)
        k = tbl.count_rows(where)
        if k:
            tbl.delete(where)
            n += k
    return n


def doc_filter(doc_ids: Sequence[str]) -> str:
    """The LanceDB filter that selects the rows of ``doc_ids``."""
    return f"doc_id IN ({', '.join(repr(_hex(d)) for d in doc_ids)})"


def _hex(s: str) -> str:
    """Document ids are hex content keys; anything else never reaches a LanceDB filter string."""
    if not all(c in "0123456789abcdef" for c in s):
        raise ValueError(f"not a document id: {s!r}")
    return s


def storage_bytes(tbl, version: int | None = None) -> int:
    """Bytes on disk of the data files of the table's current (or given) version; files that only
    older versions still use are not counted."""
    ds = tbl.to_lance() if hasattr(tbl, "to_lance") else tbl
    if _remote(ds.uri):
        return _remote_bytes(ds, version)
    return int(sum(f.stat().st_size for f in data_files(tbl, version)))


def _remote(uri: str) -> bool:
    return "://" in str(uri)


def _remote_bytes(ds, version: int | None) -> int:
    """Bytes of a version's data files in an object store (Lance records each file's size)."""
    if version is not None and ds.version != version:
        ds = ds.checkout_version(version)
    total = 0
    for fr in ds.get_fragments():
        for f in fr.metadata.files:
            total += int(getattr(f, "file_size_bytes", 0) or 0)
    return total


def data_files(tbl, version: int | None = None) -> list[Path]:
    """The data files of the table's current (or given) version."""
    ds = tbl.to_lance() if hasattr(tbl, "to_lance") else tbl
    if version is not None and ds.version != version:
        import lance

        ds = lance.dataset(ds.uri, version=version)
    root = Path(ds.uri) / "data"
    files = {root / f.path for fr in ds.get_fragments() for f in fr.metadata.files}
    return sorted(p for p in files if p.exists())


def table_stats(tbl) -> dict[str, Any]:
    n = tbl.count_rows()
    ds = tbl.to_lance()
    if _remote(ds.uri):
        size = _remote_bytes(ds, None) if n else 0
    else:
        size = sum(f.stat().st_size for f in Path(ds.uri).rglob("*.lance") if f.is_file()) if n else 0
    return {
        "table": tbl.name,
        "version": int(tbl.version),
        "rows": int(n),
        "bytes_per_item": int(size / n) if n else 0,
    }


INDEXED_COLUMNS = ("text", "modality", "doc_id")


def ensure_table_indexes(tbl, *, max_unindexed: int = 10_000) -> dict[str, Any]:
    """BM25 full-text index on ``text``; BITMAP on ``modality``; BTREE on ``doc_id``.

    Created when missing; otherwise brought up to date incrementally (``optimize_indices``, which
    indexes only the rows added since) once more than ``max_unindexed`` rows are unindexed: until
    then LanceDB answers from the index plus a flat pass over the new rows, so results are complete
    either way. Returns what it did.
    """
    if tbl.count_rows() == 0:
        return {"created": [], "optimized": False}
    from lancedb.index import FTS, Bitmap, BTree

    have = {next(iter(ix.columns)): ix for ix in tbl.list_indices()}
    created = []
    for col, cfg in (("text", FTS()), ("modality", Bitmap()), ("doc_id", BTree())):
        if col not in have:
            tbl.create_index(col, config=cfg, replace=True)
            created.append(col)
    optimized = False
    if not created:
        unindexed = max(
            int(getattr(tbl.index_stats(ix.name), "num_unindexed_rows", 0) or 0) for ix in have.values()
        )
        if unindexed > max_unindexed:
            tbl.to_lance().optimize.optimize_indices()
            tbl.checkout_latest()
            optimized = True
    return {"created": created, "optimized": optimized}


def compact_table(tbl, *, max_small_fragments: int, target_rows: int) -> dict[str, Any]:
    """Merge the table's small fragments once more than ``max_small_fragments`` hold fewer than
    ``target_rows`` rows each; deleted rows are dropped on the way (Lance ``compact_files``, which
    remaps the table's indexes instead of rebuilding them). Returns what it did.

    Every ingest commit writes fragments of its own, so a corpus kept up to date by many small runs
    spreads over thousands of them. bench/fragments.py, 2,000 synthetic pages (344 x 128 float16):
    written as 2,000 one-page fragments, a take of 200 rows took 28.8 ms and a publish's scan 255 ms;
    after compaction (1.1 s), 13.0 and 2.2 ms; as 32 fragments, 13.8 and 6.5 ms. Fragments that
    reached ``target_rows`` are not rewritten again unless deletions are materialised in them. Row
    addresses change: the publish that compacts pins the new table version (older index versions
    keep theirs, tagged). A commit conflict with a concurrent writer is reported and the publish goes
    on: the table holds every row as the writer left it (the rewrites that did not conflict may have
    committed); the next publish tries again.
    """
    ds = tbl.to_lance()
    frags = ds.get_fragments()
    small = sum(1 for f in frags if f.physical_rows < target_rows)  # metadata only: no deletion file is read
    out: dict[str, Any] = {"fragments": len(frags), "small_fragments": small, "compacted": False}
    if small <= max_small_fragments:
        return out
    t = time.perf_counter()
    try:
        m = ds.optimize.compact_files(target_rows_per_fragment=target_rows, materialize_deletions=True)
    except OSError as e:  # Lance reports a commit conflict with a concurrent writer as an OSError
        if "conflict" not in str(e).lower():
            raise
        return out | {"skipped": f"a concurrent write won the commit: {e}"[:300]}
    tbl.checkout_latest()
    return out | {"compacted": True, "fragments_after": len(tbl.to_lance().get_fragments()),
                  "fragments_removed": m.fragments_removed, "fragments_added": m.fragments_added,
                  "seconds": round(time.perf_counter() - t, 3)}  # fmt: skip


ANALYTICS_SQL = """
SELECT modality,
       count(*)                                   AS items,
       avg(n_tokens)                              AS tokens_per_item,
       avg(n_tokens) * {bytes_per_token}          AS vector_bytes_per_item,
       count(DISTINCT doc_id)                     AS documents
FROM ds GROUP BY modality ORDER BY modality
"""


def analytics(tbl, dim: int) -> list[dict[str, Any]]:
    """Counts by modality, tokens and stored vector bytes per item (2 x dim per float16 vector, or the
    token id's width for a token table): DuckDB straight over the Lance dataset."""
    import duckdb

    sch = tbl.schema
    per_token = (
        sch.field("tokens").type.value_type.bit_width // 8 if storage_of(sch) == "tokens" else 2 * int(dim)
    )
    # DuckDB's Arrow scan has no float16 type, so it gets a projected Lance scanner (the vector
    # column never leaves Lance); n_tokens already says how many vectors each item holds.
    ds = tbl.to_lance().scanner(columns=["item_id", "doc_id", "modality", "page", "n_tokens"]).to_reader()  # noqa: F841
    con = duckdb.connect()
    try:
        cur = con.execute(ANALYTICS_SQL.format(bytes_per_token=int(per_token)))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()

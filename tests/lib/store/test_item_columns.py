"""The item columns are defined once (lib/store/items.py): a real LanceDB table, the embeddings data
contract's frame of it, an index segment's item metadata and the index reader's columns all agree
with ITEM_COLUMNS, for both storage forms (float16 vectors, the lite tier's token ids)."""

from __future__ import annotations

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from data_contracts import embeddings as contract
from mmrag_assets.lib.index.segment import ITEM_SCHEMA, TABLE_COLUMNS, items_from_table
from mmrag_assets.lib.index.vectors import stored_payloads
from mmrag_assets.lib.quality.frames import embeddings_frame
from mmrag_assets.lib.search import index_reader
from mmrag_assets.lib.store import items as ic
from mmrag_assets.lib.store import table as lx

DIM = 8
DOC = "0123456789abcdef"
ITEMS = [
    {"item_id": f"{DOC}:1", "doc_id": DOC, "source": "a.pdf", "modality": "page", "page": 1, "start_s": None,
     "end_s": None, "text": "a page of words", "image_path": "pages/a/1.png", "thumb_path": None, "ingest_fp": "fp"},
    {"item_id": f"{DOC}:t0", "doc_id": DOC, "source": "a.pdf", "modality": "segment", "page": None,
     "start_s": 0.0, "end_s": 30.0, "text": "spoken words", "image_path": None, "thumb_path": None, "ingest_fp": "fp"},
]  # fmt: skip


def _table(tmp_path, storage: str):
    dim = DIM if storage == "vectors" else 64  # the lite vocabulary comes in 64, 128, 256
    if storage == "vectors":
        sch = ic.schema(DIM)
        rng = np.random.default_rng(0)
        payload = [rng.standard_normal((n, DIM)).astype(np.float32) for n in (3, 2)]  # (n_tokens, dim)
        payload = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in payload]
    else:
        sch = ic.schema(dim, vocab="lite", vocab_size=ic.VOCAB_SIZES["lite"])
        payload = [np.array([5, 17, 31_999]), np.array([2, 3])]  # token ids
    tbl = lancedb.connect(str(tmp_path / "db")).create_table(lx.table_name("t"), schema=sch)
    out = lx.upsert_documents(tbl, [DOC], [dict(it) for it in ITEMS], payload, dim)
    assert out.written == 2
    return tbl


@pytest.mark.parametrize("storage", ["vectors", "tokens"])
def test_table_contract_segment_and_reader_agree(tmp_path, storage: str) -> None:
    tbl = _table(tmp_path, storage)
    payload = "vector" if storage == "vectors" else "tokens"

    # the stored table: the item columns in their order, the multi-vector after VECTORS_AFTER
    names = [c.name for c in ic.ITEM_COLUMNS]
    names.insert(names.index(ic.VECTORS_AFTER) + 1, payload)
    assert tbl.schema.names == names
    for c in ic.ITEM_COLUMNS:
        assert tbl.schema.field(c.name).type == c.type, c.name
    assert ic.storage_of(tbl.schema) == storage

    # the embeddings contract: the frame it validates has exactly its required columns
    frame = embeddings_frame(tbl)
    assert list(frame.columns) == list(contract.REQUIRED_COLUMNS)
    assert len(frame) == 2 and frame["n_tokens"].tolist() == [3, 2]
    assert set(contract.REQUIRED_COLUMNS) - set(contract.STATS_COLUMNS) <= set(names)

    # an index segment's item metadata from the stored rows, and what the index reader reads of it
    seg = items_from_table(tbl.to_arrow().select(TABLE_COLUMNS))
    assert seg.schema == ITEM_SCHEMA == ic.segment_schema()
    assert set(index_reader.COLUMNS) <= set(seg.schema.names)
    for name in index_reader.COLUMNS:
        if name != ic.SNIPPET.name:
            assert seg.schema.field(name).type == ic.BY_NAME[name].type, name


def test_every_item_column_is_placed() -> None:
    """A column added to ITEM_COLUMNS must be placed in the segments (SEGMENT_ORDER) or marked
    segment=False; the contract reads only item columns; names are unique."""
    names = [c.name for c in ic.ITEM_COLUMNS]
    assert len(names) == len(set(names))
    assert set(ic.SEGMENT_ORDER) - {ic.SNIPPET.name} == {c.name for c in ic.ITEM_COLUMNS if c.segment}
    assert set(ic.CONTRACT_COLUMNS) <= set(names)
    assert not set(names) & {"vector", "tokens", ic.SNIPPET.name}


def test_token_table_vocabulary_size_is_the_lite_vocabulary() -> None:
    """prepare_rows bounds token ids by VOCAB_SIZES (no vocabulary load): it is the real table's size."""
    from mmrag_assets.lib.index.embedding.lite import vocabulary

    assert vocabulary(64).shape == (ic.VOCAB_SIZES["lite"], 64)
    sch = ic.schema(64, vocab="lite", vocab_size=ic.VOCAB_SIZES["lite"])
    assert ic.vocab_size(sch) == ic.VOCAB_SIZES["lite"]
    with pytest.raises(ic.VectorsError, match="unknown token vocabulary"):
        ic.vocab_size(
            pa.schema([pa.field("tokens", pa.list_(pa.uint16()))], metadata={ic.VOCAB_KEY: b"other"})
        )


@pytest.mark.parametrize("storage", ["vectors", "tokens"])
def test_stored_payloads_give_back_what_was_written(tmp_path, storage: str) -> None:
    """A renamed document's rows are rewritten from the table's own payloads (lib/index/batch.py):
    they must come back as written, and rows rebuilt from them keep their fingerprints but the name."""
    tbl = _table(tmp_path, storage)
    col = "vector" if storage == "vectors" else "tokens"
    stored = tbl.to_lance().to_table(columns=["item_id", col, "item_fp"]).to_pylist()
    got = stored_payloads(tbl, [DOC, "fedcba9876543210"])
    assert sorted(got) == sorted(it["item_id"] for it in ITEMS)  # a document the table lacks adds nothing
    for row in stored:
        want = np.asarray(row[col])
        assert got[row["item_id"]].shape == want.shape and np.array_equal(got[row["item_id"]], want)
    moved = [{**it, "source": "b/a.pdf"} for it in ITEMS]
    data, out = lx.prepare_rows(moved, [got[it["item_id"]] for it in moved], tbl.schema, DIM)
    assert out.written == 2 and set(data.column("source").to_pylist()) == {"b/a.pdf"}
    # the payload is unchanged, the shown name is not: every item's content fingerprint changes
    assert not set(data.column("item_fp").to_pylist()) & {r["item_fp"] for r in stored}
    state = lx.table_state(tbl)
    assert state.sources == {DOC: {"a.pdf"}} and state.fps == {DOC: {it["item_id"]: "fp" for it in ITEMS}}

"""The items table's columns, defined once.

An item is a page, an image or a transcript segment. Its row in the LanceDB table of one embedding
version (``items__<version key>``) holds the columns of :data:`ITEM_COLUMNS` and its multi-vector:
``vector`` (visual tiers: float16 unit rows, ``(n_tokens, dim)``) or ``tokens`` (the lite tier: ids
into a fixed vocabulary of token vectors), placed after ``n_tokens``; which form a table has is in its
Arrow schema metadata (:data:`STORAGE_KEY`, :data:`VOCAB_KEY`, :data:`DIM_KEY`).

Everything else derives its columns from here: the table's schema (``lib/store/table.py``), the index
segments' item metadata (:data:`SEGMENT_ORDER`, ``lib/index/segment.py``), the index reader
(``lib/search/index_reader.py``) and the embeddings data contract (``data_contracts/embeddings.py``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from mmrag_assets.errors import MmragError

if TYPE_CHECKING:
    from mmrag_assets.config import ModelConfig


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True
    contract: bool = False  # checked by the embeddings data contract, read as stored
    segment: bool = True  # kept in the index segments' item metadata (SEGMENT_ORDER)
    doc: str = ""


# In the table's order (tables on disk have it): the multi-vector column goes after VECTORS_AFTER.
ITEM_COLUMNS: tuple[Column, ...] = (
    Column("item_id", pa.string(), nullable=False, contract=True, doc="the item's content key"),
    Column("doc_id", pa.string(), nullable=False, contract=True),
    Column("source", pa.string(), contract=True, doc="relative to corpus.root"),
    Column("modality", pa.string(), contract=True, doc="page | image | segment"),
    Column("page", pa.int32(), contract=True, doc="1-based; NULL for segments"),
    Column("start_s", pa.float64(), contract=True, doc="segments only"),
    Column("end_s", pa.float64(), contract=True),
    Column("text", pa.string(), contract=True, segment=False, doc="index segments keep a snippet of it"),
    # rows of the multi-vector (the contract measures them on the vectors themselves)
    Column("n_tokens", pa.int32()),
    Column("image_path", pa.string(), doc="relative to storage.root"),
    Column("thumb_path", pa.string()),
    Column(
        "ingest_fp", pa.string(), segment=False, doc="fingerprint of the ingest config that made the item"
    ),
    Column("item_fp", pa.string(), doc="content fingerprint: a publish re-encodes changed items only"),
)
VECTORS_AFTER = "n_tokens"
BY_NAME = {c.name: c for c in ITEM_COLUMNS}
CONTRACT_COLUMNS = tuple(c.name for c in ITEM_COLUMNS if c.contract)  # what the contract reads as stored

SNIPPET = Column("snippet", pa.string(), doc="the start of text: what a search result shows")
# An index segment's item metadata (items.parquet), in the order segments on disk hold it (a merge
# concatenates old segments' tables): the item columns a search serves or a publish compares, and
# a snippet of the text instead of the text.
SEGMENT_ORDER = (
    "item_id", "doc_id", "source", "modality", "page", "start_s", "end_s", "image_path", "thumb_path",
    "n_tokens", "item_fp", "snippet",
)  # fmt: skip


def segment_schema() -> pa.Schema:
    """The segments' item metadata: SEGMENT_ORDER with the item columns' types (all nullable)."""
    by = {**BY_NAME, SNIPPET.name: SNIPPET}
    return pa.schema([pa.field(n, by[n].type) for n in SEGMENT_ORDER])


# ---------------------------------------------------------------- storage forms
Storage = Literal["vectors", "tokens"]
STORAGE_KEY = b"mmrag.storage"
VOCAB_KEY = b"mmrag.vocab"
DIM_KEY = b"mmrag.dim"
# The token vocabularies a token table may name (VOCAB_KEY), by their number of rows: the lite
# tier's is wordllama's l2_supercat table (the Llama-2 tokenizer's vocabulary).
VOCAB_SIZES = {"lite": 32_000}


class VectorsError(MmragError, ValueError):
    """A table whose vectors cannot be read (unknown storage form or vocabulary)."""


def schema(dim: int, *, vocab: str | None = None, vocab_size: int = 0) -> pa.Schema:
    """The items table; ``vocab`` (e.g. ``"lite"``) makes it a token table of that vocabulary."""
    if vocab:
        # wordllama's vocabulary has 32,000 rows: two bytes per token instead of 2 x dim
        tok = pa.uint16() if vocab_size <= 1 << 16 else pa.uint32()
        payload = pa.field("tokens", pa.list_(tok))  # (n_tokens,) ids into the vocabulary
        meta = {STORAGE_KEY: b"tokens", VOCAB_KEY: vocab.encode(), DIM_KEY: str(int(dim)).encode()}
    else:
        payload = pa.field("vector", pa.list_(pa.list_(pa.float16(), dim)))  # (n_tokens, dim) unit rows
        meta = {STORAGE_KEY: b"vectors", DIM_KEY: str(int(dim)).encode()}
    fields = []
    for c in ITEM_COLUMNS:
        fields.append(pa.field(c.name, c.type, nullable=c.nullable))
        if c.name == VECTORS_AFTER:
            fields.append(payload)
    return pa.schema(fields, metadata=meta)


def storage_of(schema: pa.Schema) -> Storage:
    meta = schema.metadata or {}
    if STORAGE_KEY in meta:
        return meta[STORAGE_KEY].decode()  # type: ignore[return-value]
    if "tokens" in schema.names:
        return "tokens"
    if "vector" in schema.names:
        return "vectors"
    raise VectorsError(f"table has neither a 'vector' nor a 'tokens' column: {schema.names}")


def vocab_size(schema: pa.Schema) -> int:
    """Rows of a token table's vocabulary (the token ids it may hold are below it)."""
    key = (schema.metadata or {}).get(VOCAB_KEY, b"").decode()
    if key not in VOCAB_SIZES:
        raise VectorsError(f"unknown token vocabulary {key!r} in the table's schema metadata")
    return VOCAB_SIZES[key]


# ---------------------------------------------------------------- version keys
_MAX_KEY = 64  # longer version keys are shortened and get a hash suffix


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_") or "x"


def make_version_key(arch: str, model_id: str, revision: str, pool_factor: int, dim: int) -> str:
    """Short, table-name-safe key (``[a-z0-9_]``), one per model id + revision + pooling + dim.

    ``colqwen2_5__vidore_colqwen2_5_v0_2__main__p1__d128``. Characters outside ``[a-z0-9]`` fold
    to ``_`` (so ``org/a-b`` and ``org/a.b`` would share a key: hub ids are never that close);
    a key over 64 characters (a 40-hex commit revision, a long id) is shortened and gets the
    first 8 hex digits of the sha256 of the exact inputs, which keeps it unique.
    """
    mid, rev = _slug(model_id), _slug(revision)
    key = f"{_slug(arch)}__{mid}__{rev}__p{int(pool_factor)}__d{int(dim)}"
    if len(key) <= _MAX_KEY:
        return key
    h = hashlib.sha256(f"{arch}\0{model_id}\0{revision}\0{pool_factor}\0{dim}".encode()).hexdigest()[:8]
    return (
        f"{_slug(arch)}__{mid[:20].strip('_')}__{rev[:8].strip('_')}__p{int(pool_factor)}__d{int(dim)}__{h}"
    )


def version_key_for(cfg: ModelConfig) -> str:
    """The embedding version (LanceDB table key) ``cfg`` produces, without loading the model."""
    return make_version_key(cfg.arch, cfg.model_id, cfg.revision, cfg.pool_factor, cfg.dim)

"""The one reader of stored multi-vectors, for both storage forms of the items table.

The LanceDB table ``items__<version_key>`` is the only copy of the vectors. Visual tiers store a
float16 multi-vector column ``vector`` (``list<fixed_size_list<float16, dim>>``). The lite tier's
token vectors are a fixed lookup table (wordllama's vocabulary: equal tokens, equal vectors), so
it stores the token ids (``tokens``: ``list<uint16>``) and the vectors are looked up here. Which
form a table has is recorded in its Arrow schema metadata (``mmrag.storage``, ``mmrag.vocab``: the
items table's columns and storage forms are defined in ``lib/store/items.py``).

- :func:`iter_item_vectors` streams ``(metadata batch, Ragged vectors)`` for either form: drift
  summaries, data contracts, analytics and the index build all read through it.
- :class:`TableVectors` reads the vectors of given items at a pinned table version by row address
  (what the exact reranker and a publish read), never the whole table.
- :class:`Ragged` is the in-memory form: ``flat`` rows back to back plus ``offsets``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from mmrag_assets.lib.store.items import DIM_KEY, VOCAB_KEY, VectorsError, storage_of


@dataclass
class Ragged:
    """Ragged rows: item i owns ``flat[offsets[i]:offsets[i+1]]`` (vectors (n, d) or codes (n,))."""

    flat: np.ndarray  # (sum n_i, ...) rows back to back
    offsets: np.ndarray  # (n_items + 1,) int64

    @classmethod
    def from_list(
        cls, arrays: Sequence[np.ndarray], *, width: int | None = None, dtype: Any = None
    ) -> Ragged:
        arrays = [np.asarray(a) for a in arrays]
        off = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=off[1:])
        if arrays:
            flat = np.concatenate(arrays)
        else:
            flat = np.zeros((0,) if width is None else (0, width), dtype=dtype or np.float32)
        return cls(flat if dtype is None else flat.astype(dtype, copy=False), off)

    @classmethod
    def concat(cls, parts: Sequence[Ragged]) -> Ragged:
        if not parts:
            raise VectorsError("nothing to concatenate")
        flat = np.concatenate([p.flat for p in parts])
        lens = np.concatenate([p.lengths for p in parts])
        off = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        return cls(flat, off)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def dim(self) -> int:
        return int(self.flat.shape[1])

    @property
    def max_norm(self) -> float:
        if self.flat.ndim != 2 or not len(self.flat):
            return 1.0
        return float(np.linalg.norm(self.flat.astype(np.float32), axis=1).max())

    def item(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def take(self, idx: Sequence[int] | np.ndarray) -> Ragged:
        """Items ``idx`` (in that order) as a new Ragged; rows are copied."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lens = ends - starts
        off = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        pos = np.arange(off[-1], dtype=np.int64) - np.repeat(off[:-1] - starts, lens)
        return Ragged(self.flat[pos], off)

    def gather_ragged(self, idxs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reranker's read: ((sum n, d) rows, (len+1,) offsets) of items ``idxs``."""
        r = self.take(idxs)
        return r.flat, r.offsets


class VectorSource(Protocol):
    """What the exact reranker reads candidates' vectors from."""

    @property
    def dim(self) -> int: ...

    @property
    def max_norm(self) -> float: ...

    def gather_ragged(self, idxs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


# ---------------------------------------------------------------- storage forms
def dim_of(schema: pa.Schema) -> int:
    if storage_of(schema) == "vectors":
        return int(schema.field("vector").type.value_type.list_size)
    meta = schema.metadata or {}
    if DIM_KEY not in meta:
        raise VectorsError("a token table must record its vector dim (schema metadata mmrag.dim)")
    return int(meta[DIM_KEY])


def vocabulary(schema: pa.Schema) -> np.ndarray:
    """(vocab, dim) float32 unit rows: the lookup table of a token table."""
    meta = schema.metadata or {}
    key = meta.get(VOCAB_KEY, b"").decode()
    if key == "lite":
        from mmrag_assets.lib.index.embedding.lite import vocabulary as lite_vocabulary

        return lite_vocabulary(dim_of(schema))
    raise VectorsError(f"unknown token vocabulary {key!r} in the table's schema metadata")


class Decoder:
    """Turns a batch's vector (or token) column into Ragged float vectors."""

    def __init__(self, schema: pa.Schema) -> None:
        self.storage = storage_of(schema)
        self.dim = dim_of(schema)
        self.column = "vector" if self.storage == "vectors" else "tokens"
        self._vocab: np.ndarray | None = vocabulary(schema) if self.storage == "tokens" else None

    @property
    def vocab(self) -> np.ndarray | None:
        return self._vocab

    def raw(self, col: pa.Array | pa.ChunkedArray) -> Ragged:
        """The stored form: (sum n, dim) float16 vectors, or (sum n,) token ids."""
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.null_count:
            raise VectorsError("an item has no vectors (NULL): items without vectors are never written")
        offs = col.offsets.to_numpy().astype(np.int64)
        values = col.values
        if self.storage == "vectors":
            flat = values.values.to_numpy(zero_copy_only=False).reshape(-1, self.dim)
        else:
            flat = values.to_numpy(zero_copy_only=False)
        flat = flat[offs[0] : offs[-1]]
        rel = offs - offs[0]
        return Ragged(flat, rel)

    def vectors(self, col: pa.Array | pa.ChunkedArray) -> Ragged:
        """Float vectors: float16 as stored, or float32 vocabulary rows looked up by token id."""
        r = self.raw(col)
        if self._vocab is None:
            return r
        return Ragged(self._vocab[r.flat.astype(np.int64)], r.offsets)


def iter_item_vectors(
    tbl: Any,
    columns: Sequence[str] = ("item_id",),
    *,
    filter: str | None = None,
    batch_rows: int = 256,
    version: int | None = None,
) -> Iterator[tuple[pa.RecordBatch, Ragged]]:
    """``(metadata columns, vectors)`` batch by batch for a LanceDB items table of either form.

    ``tbl`` is a LanceDB table or a Lance dataset; ``version`` reads that table version.
    """
    ds = _dataset(tbl, version)
    dec = Decoder(ds.schema)
    cols = [c for c in columns if c not in ("vector", "tokens")]
    for batch in ds.to_batches(columns=[*cols, dec.column], filter=filter, batch_size=batch_rows):
        yield batch.select(cols), dec.vectors(batch.column(dec.column))


def stored_payloads(tbl: Any, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """item_id -> the stored form (``Decoder.raw``: float16 (n_tokens, dim) vectors or token ids) of
    every row of ``doc_ids``: what a renamed document's rewritten rows carry over (``batch.py``)."""
    from mmrag_assets.lib.store.table import doc_filter

    if not doc_ids:
        return {}
    ds = _dataset(tbl)
    dec = Decoder(ds.schema)
    t = ds.to_table(columns=["item_id", dec.column], filter=doc_filter(doc_ids))
    raw = dec.raw(t.column(dec.column))
    return {item_id: raw.item(k) for k, item_id in enumerate(t.column("item_id").to_pylist())}


def _dataset(tbl: Any, version: int | None = None) -> Any:
    import lance

    ds = tbl.to_lance() if hasattr(tbl, "to_lance") else tbl
    if version is not None and ds.version != version:
        ds = lance.dataset(ds.uri, version=version)
    return ds


class TableVectors:
    """Random access to items' vectors at one pinned table version, by Lance row address.

    ``rowaddr[i]`` is the row address of item position ``i`` at ``version`` (computed when the
    version was published); ``gather_ragged`` takes only the asked rows (a few MB per query).
    """

    def __init__(self, tbl: Any, version: int, rowaddr: np.ndarray, *, max_norm: float = 1.0) -> None:
        self.ds = _dataset(tbl, version)
        self.version = int(version)
        self.rowaddr = np.asarray(rowaddr, dtype=np.int64)
        self.decoder = Decoder(self.ds.schema)
        self._max_norm = float(max_norm)

    @property
    def dim(self) -> int:
        return self.decoder.dim

    @property
    def max_norm(self) -> float:
        return self._max_norm

    def take_raw(
        self, idxs: Sequence[int] | np.ndarray, columns: Sequence[str] = ()
    ) -> tuple[pa.Table, Ragged]:
        """Rows of item positions ``idxs`` in that order: (metadata columns, stored form: float16
        vectors or token ids)."""
        idxs = np.asarray(idxs, dtype=np.int64).reshape(-1)
        addr = self.rowaddr[idxs]
        if (addr < 0).any():
            raise VectorsError("asked for items that this index version does not hold")
        uniq, inv = np.unique(addr, return_inverse=True)  # sorted addresses: read in disk order
        t = self.ds._take_rows(uniq.tolist(), columns=[*columns, self.decoder.column, "_rowaddr"])
        got = t.column("_rowaddr").to_numpy()
        order = np.argsort(got, kind="stable")
        if len(got) != len(uniq) or not np.array_equal(got[order], uniq):
            raise VectorsError(f"table version {self.version} is missing rows this index version references")
        t = t.take(pa.array(order[inv]))
        return t.select(list(columns)), self.decoder.raw(t.column(self.decoder.column))

    def take(self, idxs: Sequence[int] | np.ndarray, columns: Sequence[str] = ()) -> tuple[pa.Table, Ragged]:
        """Like :meth:`take_raw`, with float vectors (vocabulary rows for a token table)."""
        meta, raw = self.take_raw(idxs, columns)
        if self.decoder.vocab is None:
            return meta, raw
        return meta, Ragged(self.decoder.vocab[raw.flat.astype(np.int64)], raw.offsets)

    def gather_ragged(self, idxs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self.take(idxs)[1]
        return r.flat, r.offsets

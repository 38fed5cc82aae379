"""Immutable index segments: a batch of items' metadata and their first-stage codes.

A publish encodes only the items that are new or changed since the last published version into a
new *delta* segment; compaction merges segments (dropping tombstoned items) without touching a
vector; a retrain re-encodes everything into one *base* segment. A segment never changes after it
is written, so a version that references it can be served while newer versions are published.

Layout of ``segments/<id>/``::

    segment.json                id, codebook id, items, strategies, files (size + sha256 each)
    items.parquet               ITEM_COLUMNS, one row per item, in segment order
    <strategy>/<field>.npy      per-item data, rows of all items back to back
    <strategy>/<field>.off.npy  (n_items + 1,) int64 offsets of each item's rows
    <strategy>/<name>.npy       derived arrays (plaid's inverted lists), rebuilt on merge

Per-item fields are ragged (:class:`~mmrag_assets.lib.index.vectors.Ragged`): a merge is a
concatenation of the kept items' rows, whatever the strategy stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrag_assets.errors import MmragError
from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.store.files import atomic_write_json, file_info, fsync_dir, load_array, save_array
from mmrag_assets.lib.store.items import segment_schema

META = "segment.json"
ITEMS = "items.parquet"
SNIPPET_CHARS = 240  # what a result shows; the full text stays in the LanceDB table
ITEM_SCHEMA = segment_schema()  # the item columns segments keep (lib/store/items.py)
ITEM_COLUMNS = ITEM_SCHEMA.names
TABLE_COLUMNS = [c for c in ITEM_COLUMNS if c != "snippet"] + ["text"]  # what a publish reads from LanceDB


class SegmentError(MmragError, ValueError):
    """A segment that is missing, damaged, or inconsistent with its metadata."""


def new_id(prefix: str = "s") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"


def snippet(text: str | None) -> str:
    t = " ".join((text or "").split())
    return t[:SNIPPET_CHARS] + ("…" if len(t) > SNIPPET_CHARS else "")


def items_from_table(t: pa.Table) -> pa.Table:
    """The segment's item metadata from LanceDB rows (TABLE_COLUMNS): ``text`` becomes a snippet."""
    cols = {c: t.column(c) for c in ITEM_COLUMNS if c != "snippet"}
    cols["snippet"] = pa.array([snippet(x) for x in t.column("text").to_pylist()], pa.string())
    return pa.table(cols, schema=ITEM_SCHEMA)


@dataclass
class Segment:
    id: str
    dir: Path
    meta: dict[str, Any]
    items: pa.Table
    fields: dict[str, dict[str, Ragged]] = field(default_factory=dict)  # strategy -> field -> rows
    derived: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # strategy -> name -> array

    @property
    def n_items(self) -> int:
        return self.items.num_rows

    @property
    def codebook(self) -> str:
        return str(self.meta["codebook"])

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.meta["files"]

    @property
    def nbytes(self) -> int:
        return int(sum(f["size"] for f in self.files.values()))

    def strategy_bytes(self, name: str) -> int:
        return int(sum(f["size"] for p, f in self.files.items() if p.startswith(f"{name}/")))

    def column(self, name: str) -> np.ndarray:
        return self.items.column(name).to_numpy(zero_copy_only=False)


class _AppendArray:
    """A .npy file written row batch by row batch; the header (shape) is rewritten at close."""

    HEADER = 128

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.fh.write(b"\0" * self.HEADER)
        self.dtype: np.dtype | None = None
        self.tail: tuple[int, ...] = ()
        self.rows = 0

    def add(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        if self.dtype is None:
            self.dtype, self.tail = a.dtype, a.shape[1:]
        elif a.dtype != self.dtype or a.shape[1:] != self.tail:
            raise SegmentError(f"{self.path.name}: rows {a.dtype}{a.shape[1:]} after {self.dtype}{self.tail}")
        self.fh.write(a.tobytes())
        self.rows += a.shape[0]

    def close(self) -> dict[str, Any]:
        dtype = self.dtype or np.dtype(np.float32)
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.tail),
        }
        body = repr(header).encode("latin1")
        pad = self.HEADER - 10 - len(body) - 1
        if pad < 0:
            raise SegmentError(f"{self.path.name}: header does not fit {self.HEADER} bytes")
        self.fh.seek(0)
        self.fh.write(
            b"\x93NUMPY\x01\x00" + (self.HEADER - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"
        )
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        return file_info(self.path)


class SegmentWriter:
    """Streams items into a new segment: ``add`` batches, then ``close`` (derives, renames, reopens)."""

    def __init__(self, root: Path, *, codebook: str, segment_id: str | None = None) -> None:
        self.root = root
        self.id = segment_id or new_id()
        self.codebook = codebook
        self.tmp = root / f".{self.id}.tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.items: list[pa.Table] = []
        self.values: dict[tuple[str, str], _AppendArray] = {}
        self.offsets: dict[tuple[str, str], list[np.ndarray]] = {}
        self.n = 0

    def add(self, items: pa.Table, fields: dict[str, dict[str, Ragged]]) -> None:
        for strategy, fs in fields.items():
            for name, r in fs.items():
                if len(r) != items.num_rows:
                    raise SegmentError(f"{strategy}/{name} has {len(r)} items, the batch {items.num_rows}")
                key = (strategy, name)
                if key not in self.values:
                    if self.n:
                        raise SegmentError(f"{strategy}/{name} appears after the first batch")
                    self.values[key] = _AppendArray(self.tmp / strategy / f"{name}.npy")
                    self.offsets[key] = [np.zeros(1, dtype=np.int64)]
                base = self.values[key].rows
                self.values[key].add(np.asarray(r.flat)[r.offsets[0] : r.offsets[-1]])
                self.offsets[key].append(base + (r.offsets[1:] - r.offsets[0]))
        self.items.append(items)
        self.n += items.num_rows

    def close(self, derive: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Segment:
        """``derive``: strategy -> callable(fields dict) -> derived arrays, run on the written fields."""
        files: dict[str, dict[str, Any]] = {}
        items = pa.concat_tables(self.items) if self.items else ITEM_SCHEMA.empty_table()
        pq.write_table(
            items, self.tmp / ITEMS, compression="zstd", write_statistics=False
        )  # ~2 KB less per segment
        files[ITEMS] = file_info(self.tmp / ITEMS)
        spec: dict[str, dict[str, list[str]]] = {}
        for (strategy, name), arr in self.values.items():
            files[f"{strategy}/{name}.npy"] = arr.close()
            files[f"{strategy}/{name}.off.npy"] = save_array(
                self.tmp / strategy / f"{name}.off.npy", np.concatenate(self.offsets[(strategy, name)])
            )
            spec.setdefault(strategy, {"fields": [], "derived": []})["fields"].append(name)
        for strategy, fn in (derive or {}).items():
            written = {
                f: Ragged(
                    load_array(self.tmp / strategy / f"{f}.npy", mmap=True),
                    load_array(self.tmp / strategy / f"{f}.off.npy"),
                )
                for f in spec.get(strategy, {}).get("fields", [])
            }
            for name, a in fn(written).items():
                files[f"{strategy}/{name}.npy"] = save_array(self.tmp / strategy / f"{name}.npy", a)
                spec.setdefault(strategy, {"fields": [], "derived": []})["derived"].append(name)
        meta = {"id": self.id, "codebook": self.codebook, "n_items": self.n, "created_at": time.time(),
                "files": files, "strategies": spec, **(extra or {})}  # fmt: skip
        atomic_write_json(self.tmp / META, meta)
        self.tmp.rename(self.root / self.id)
        fsync_dir(self.root)
        return open_segment(self.root / self.id)

    def abort(self) -> None:
        for arr in self.values.values():
            with contextlib.suppress(OSError):
                arr.fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_segment(d: Path, *, in_memory: Sequence[str] = ("plaid",)) -> Segment:
    """Open a segment; strategies named in ``in_memory`` are read into RAM, the rest memory-mapped."""
    if not (d / META).exists():
        raise SegmentError(f"segment {d.name} is missing or incomplete ({META} absent)")
    meta = json.loads((d / META).read_text())
    items = pq.read_table(d / ITEMS)
    if items.num_rows != meta["n_items"]:
        raise SegmentError(
            f"segment {d.name}: {items.num_rows} item rows, its metadata says {meta['n_items']}"
        )
    seg = Segment(meta["id"], d, meta, items)
    for s, spec in meta["strategies"].items():
        mmap = s not in in_memory
        seg.fields[s] = {
            f: Ragged(load_array(d / s / f"{f}.npy", mmap=mmap), load_array(d / s / f"{f}.off.npy"))
            for f in spec["fields"]
        }
        seg.derived[s] = {f: load_array(d / s / f"{f}.npy", mmap=mmap) for f in spec["derived"]}
    return seg

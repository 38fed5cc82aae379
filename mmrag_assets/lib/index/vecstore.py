"""Ragged multi-vector store on disk: what the exact reranker reads, without a LanceDB round trip.

Layout of a store directory::

    flat.npy      float16 (sum n_i, d)   every item's token vectors, item after item (memory-mapped)
    offsets.npy   int64   (n_items + 1,) item i owns rows offsets[i]:offsets[i+1]
    ids.json      [str]   item ids (content keys such as ``{doc_id}:{page}``), position = item index
    meta.json     {"dim", "n_items", "n_vectors", "dtype", "version", "max_norm"}

``flat.npy`` is a plain .npy file, so ``np.load(path, mmap_mode="r")`` opens it anywhere; it is
written with a fixed 128-byte header so that :class:`VecStoreWriter` can stream items whose total
count is only known at the end, without a second pass over the data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from mmrag_assets.errors import MmragError, NotFound

FORMAT_VERSION = 1
_HEADER_LEN = 128  # bytes of the .npy header we write (magic + len + dict, space padded)
_DTYPE = np.dtype("<f2")


class VecStoreError(MmragError, ValueError):
    """A store is malformed, or items given to it have the wrong shape."""


def _npy_header(n_rows: int, dim: int) -> bytes:
    """A version-1.0 .npy header for a C-order float16 (n_rows, dim) array, exactly 128 bytes."""
    body = f"{{'descr': '{_DTYPE.str}', 'fortran_order': False, 'shape': ({n_rows}, {dim}), }}"
    pad = _HEADER_LEN - 10 - len(body) - 1
    if pad < 0:
        raise VecStoreError(f"shape ({n_rows}, {dim}) does not fit a {_HEADER_LEN}-byte .npy header")
    return (
        b"\x93NUMPY\x01\x00" + (_HEADER_LEN - 10).to_bytes(2, "little") + (body + " " * pad + "\n").encode()
    )


class VecStoreWriter:
    """Streams items into a new store; use as a context manager or call :meth:`close`.

    >>> with VecStore.writer(path, dim=128) as w:
    ...     w.add("doc:1", vectors)            # (n_i, d) any float dtype; stored as float16
    """

    def __init__(self, directory: str | Path, dim: int, *, normalize: bool = False) -> None:
        self.dir = Path(directory)
        self.dim = int(dim)
        self.normalize = normalize
        self.dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self.dir / "flat.npy.partial"
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(_npy_header(0, self.dim))
        self._ids: list[str] = []
        self._lengths: list[int] = []
        self._max_norm = 0.0
        self._closed = False

    def add(self, item_id: str, vectors: np.ndarray) -> None:
        self.add_batch([item_id], [vectors])

    def add_batch(self, ids: Sequence[str], arrays: Sequence[np.ndarray] | np.ndarray) -> None:
        """Append items; ``arrays`` is a list of (n_i, d) arrays or one (B, n, d) array."""
        if len(ids) != len(arrays):
            raise VecStoreError(f"{len(ids)} ids but {len(arrays)} arrays")
        for item_id, a in zip(ids, arrays, strict=True):
            a = np.asarray(a)
            if a.ndim != 2 or a.shape[1] != self.dim:
                raise VecStoreError(f"item {item_id!r}: shape {a.shape}, expected (n, {self.dim})")
            if a.shape[0] == 0:
                raise VecStoreError(f"item {item_id!r} has no vectors; drop it before indexing")
            if self.normalize:
                a = a.astype(np.float32, copy=False)
                a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
            with np.errstate(over="ignore"):  # overflow becomes inf, rejected just below
                a16 = np.ascontiguousarray(a, dtype=_DTYPE)
            if not np.isfinite(a16).all():
                raise VecStoreError(f"item {item_id!r} has NaN/inf values (or overflows float16)")
            # the largest row norm bounds float16 rounding errors in the reranker's screen
            self._max_norm = max(self._max_norm, float(np.linalg.norm(a16.astype(np.float32), axis=1).max()))
            self._fh.write(a16.tobytes())
            self._ids.append(str(item_id))
            self._lengths.append(a.shape[0])

    def close(self) -> VecStore:
        if self._closed:
            return VecStore.open(self.dir)
        n_vectors = int(sum(self._lengths))
        self._fh.seek(0)
        self._fh.write(_npy_header(n_vectors, self.dim))
        self._fh.close()
        if len(set(self._ids)) != len(self._ids):
            raise VecStoreError("duplicate item ids; ids must be content keys, unique per item")
        offsets = np.zeros(len(self._lengths) + 1, dtype=np.int64)
        np.cumsum(self._lengths, out=offsets[1:])
        np.save(self.dir / "offsets.npy", offsets)
        (self.dir / "ids.json").write_text(json.dumps(self._ids))
        meta = {
            "dim": self.dim,
            "n_items": len(self._ids),
            "n_vectors": n_vectors,
            "dtype": "float16",
            "version": FORMAT_VERSION,
            "max_norm": self._max_norm,
        }
        (self.dir / "meta.json").write_text(json.dumps(meta))
        os.replace(self._tmp, self.dir / "flat.npy")
        self._closed = True
        return VecStore.open(self.dir)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._fh.close()
            self._tmp.unlink(missing_ok=True)


class VecStore:
    """Read side of a store: memory-mapped, so opening a 100k-page store costs nothing."""

    def __init__(
        self,
        directory: Path,
        flat: np.ndarray,
        offsets: np.ndarray,
        ids: list[str],
        max_norm: float | None = None,
    ) -> None:
        self.dir = directory
        self.flat = flat  # (sum n_i, d) float16, memory-mapped
        self.offsets = offsets  # (n_items + 1,) int64
        self.ids = ids
        self._max_norm = max_norm
        self._index: dict[str, int] | None = None

    # ---------------------------------------------------------------- construction
    @staticmethod
    def writer(directory: str | Path, dim: int, *, normalize: bool = False) -> VecStoreWriter:
        return VecStoreWriter(directory, dim, normalize=normalize)

    @classmethod
    def write(
        cls,
        directory: str | Path,
        ids: Sequence[str],
        arrays: Iterable[np.ndarray],
        *,
        dim: int | None = None,
        normalize: bool = False,
    ) -> VecStore:
        """Write a whole store at once; ``arrays`` may be a generator (items are streamed)."""
        arrays = iter(arrays)
        first = next(arrays, None)
        if first is None:
            raise VecStoreError("no items to write")
        w = cls.writer(directory, dim or np.asarray(first).shape[-1], normalize=normalize)
        ids = list(ids)
        try:
            w.add(ids[0], first)
            for i, a in enumerate(arrays, start=1):
                if i >= len(ids):
                    raise VecStoreError(f"more arrays than ids ({len(ids)})")
                w.add(ids[i], a)
            if len(w._ids) != len(ids):
                raise VecStoreError(f"{len(ids)} ids but {len(w._ids)} arrays")
        except BaseException:
            w.__exit__(RuntimeError, None, None)
            raise
        return w.close()

    @classmethod
    def open(cls, directory: str | Path, *, mmap: bool = True) -> VecStore:
        d = Path(directory)
        if not (d / "meta.json").exists():
            raise NotFound(f"no vector store at {d} (meta.json missing); build it with VecStore.write")
        meta = json.loads((d / "meta.json").read_text())
        if meta.get("version") != FORMAT_VERSION:
            raise VecStoreError(f"store {d} has format {meta.get('version')}, expected {FORMAT_VERSION}")
        flat = np.load(d / "flat.npy", mmap_mode="r" if mmap else None)
        offsets = np.load(d / "offsets.npy")
        ids = json.loads((d / "ids.json").read_text())
        if flat.shape != (meta["n_vectors"], meta["dim"]) or len(offsets) != len(ids) + 1:
            raise VecStoreError(f"store {d} is inconsistent with its meta.json; rebuild it")
        return cls(d, flat, offsets, ids, meta.get("max_norm"))

    # ---------------------------------------------------------------- properties
    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def n_vectors(self) -> int:
        return int(self.flat.shape[0])

    @property
    def dim(self) -> int:
        return int(self.flat.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)  # (n_items,) int64

    @property
    def max_norm(self) -> float:
        """Largest row norm in the store (1.0 for unit vectors); recorded at write time."""
        if self._max_norm is None:  # a store written without it: one pass, then remembered
            step = 1 << 20
            self._max_norm = max(
                (float(np.linalg.norm(self.flat[s : s + step].astype(np.float32), axis=1).max())
                 for s in range(0, self.n_vectors, step)),
                default=0.0,
            )  # fmt: skip
        return self._max_norm

    @property
    def nbytes(self) -> int:
        """Bytes of the vectors and offsets (the on-disk payload, ids excluded)."""
        return int(self.flat.nbytes + self.offsets.nbytes)

    def __len__(self) -> int:
        return self.n_items

    def index_of(self, item_id: str) -> int:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.ids)}
        try:
            return self._index[item_id]
        except KeyError:
            raise NotFound(f"item {item_id!r} is not in the store at {self.dir}") from None

    # ---------------------------------------------------------------- reads
    def get(self, idx: int) -> np.ndarray:
        """(n_i, d) float16 view of one item (memory-mapped; copy it to keep it)."""
        if not -self.n_items <= idx < self.n_items:
            raise NotFound(f"item index {idx} out of range 0..{self.n_items - 1}")
        idx %= self.n_items
        return self.flat[self.offsets[idx] : self.offsets[idx + 1]]

    def gather_ragged(self, idxs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items ``idxs`` concatenated: ((sum n, d) float16 copy, (len(idxs)+1,) int64 offsets).

        Rows are read item by item in offset order (sequential on disk), then put back in the
        order asked for.
        """
        idxs = np.asarray(idxs, dtype=np.int64).reshape(-1)
        if idxs.size and (idxs.min() < 0 or idxs.max() >= self.n_items):
            raise NotFound(f"item indices out of range 0..{self.n_items - 1}")
        starts, ends = self.offsets[idxs], self.offsets[idxs + 1]
        lens = ends - starts
        out_off = np.zeros(len(idxs) + 1, dtype=np.int64)
        np.cumsum(lens, out=out_off[1:])
        out = np.empty((int(out_off[-1]), self.dim), dtype=_DTYPE)
        for j in np.argsort(starts, kind="stable"):
            out[out_off[j] : out_off[j + 1]] = self.flat[starts[j] : ends[j]]
        return out, out_off

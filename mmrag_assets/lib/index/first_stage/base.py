"""The first-stage interface: cheap candidate generation that keeps token-level signal.

Every strategy builds from a :class:`~mmrag_assets.lib.index.vecstore.VecStore` into its own
directory (``first_stage.json`` names the strategy and its parameters, so
:func:`~mmrag_assets.lib.index.first_stage.load_first_stage` can reopen any of them) and answers
``search(q, n, allowed)`` with item indices of the store, best first.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from mmrag_assets.errors import MmragError, NotFound, QueryError
from mmrag_assets.lib.index.vecstore import VecStore
from mmrag_assets.lib.search.rerank import as_query, topk

META = "first_stage.json"


class FirstStageError(MmragError, ValueError):
    """Unknown strategy, bad parameters, or an index that does not match its store."""


class FirstStageIndex(ABC):
    """Base class: subclasses set ``name`` and implement ``_build``, ``_load`` and ``_search``."""

    name: ClassVar[str]

    def __init__(self, directory: Path, params: dict[str, Any], n_items: int, dim: int) -> None:
        self.dir = Path(directory)
        self.params = params
        self.n_items = int(n_items)
        self.dim = int(dim)
        self.build_s: float | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def build(cls, store: VecStore, out_dir: str | Path, **params: Any) -> Self:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        resolved = cls._build(store, out, **params)
        build_s = time.perf_counter() - t0
        meta = {
            "name": cls.name,
            "params": resolved,
            "n_items": store.n_items,
            "dim": store.dim,
            "store": str(store.dir),
            "build_s": build_s,
        }
        (out / META).write_text(json.dumps(meta, indent=1, default=_jsonable))
        index = cls.load(out)
        index.build_s = build_s
        return index

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        meta = read_meta(d)
        if meta["name"] != cls.name:
            raise FirstStageError(f"{d} holds a {meta['name']!r} index, not {cls.name!r}")
        index = cls._load(d, meta)
        index.build_s = meta.get("build_s")
        return index

    @classmethod
    @abstractmethod
    def _build(cls, store: VecStore, out: Path, **params: Any) -> dict[str, Any]:
        """Write the structures under ``out``; return the resolved parameters."""

    @classmethod
    @abstractmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> Self: ...

    # ------------------------------------------------------------------ search
    def search(
        self, q: np.ndarray, n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for query ``q`` (Tq, d): (int64 item indices, float32 approx scores).

        Best first. ``allowed`` is a (n_items,) bool mask; only allowed items are returned
        (fewer than ``n`` when fewer are allowed).
        """
        q = as_query(q, self.dim)
        if n <= 0:
            raise QueryError(f"n must be >= 1, got {n}")
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n_items,):
                raise QueryError(f"allowed mask has shape {allowed.shape}, expected ({self.n_items},)")
            if not allowed.any():
                return np.empty(0, np.int64), np.empty(0, np.float32)
        idx, scores = self._search(q, n, allowed)
        return np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float32)

    @abstractmethod
    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]: ...

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of the first-stage structures (what a deployment must hold besides the store)."""

    @property
    def bytes_per_item(self) -> float:
        return self.nbytes / max(self.n_items, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_items} items, {self.nbytes / 1e6:.1f} MB, {self.params})"


def read_meta(directory: Path) -> dict[str, Any]:
    p = Path(directory) / META
    if not p.exists():
        raise NotFound(f"no first-stage index at {directory} ({META} missing); build one first")
    return json.loads(p.read_text())


def masked_topk(scores: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-n of a dense (n_items,) score array restricted to ``allowed``."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
        n = min(n, int(allowed.sum()))
    idx = topk(scores, n)
    return idx, scores[idx].astype(np.float32)


def csr_rows(ptr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR rows ``idx`` concatenated, and their (len(idx)+1,) offsets."""
    idx = np.asarray(idx, dtype=np.int64)
    starts = ptr[idx]
    lens = ptr[idx + 1] - starts
    off = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    pos = np.arange(off[-1], dtype=np.int64) - np.repeat(off[:-1] - starts, lens)
    return pos, off


def save_array(out: Path, name: str, a: np.ndarray) -> None:
    np.save(out / f"{name}.npy", a)


def load_array(d: Path, name: str, mmap: bool = False) -> np.ndarray:
    return np.load(d / f"{name}.npy", mmap_mode="r" if mmap else None)


def _jsonable(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")

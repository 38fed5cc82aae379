"""The first-stage interface: cheap candidate generation that keeps token-level signal.

A strategy works on segments (``lib/index/segment.py``). At publish time :meth:`Strategy.encode`
turns a batch of items into per-item fields (ragged rows: codes, sign bits, pooled vectors...)
and :meth:`Strategy.derive` builds whatever is computed over a whole segment (plaid's inverted
lists); both are written once into an immutable segment, so adding items never re-encodes the
others and merging segments only concatenates fields. At query time :meth:`Strategy.open`
returns a :class:`Searchable` over all segments of a version, which answers
``search(q, n, allowed)`` with global item positions (segments back to back), best first.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mmrag_assets.errors import MmragError, QueryError
from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.scoring.maxsim import as_query, topk

if TYPE_CHECKING:
    from mmrag_assets.lib.index.codebook import Codebook


class FirstStageError(MmragError, ValueError):
    """Unknown strategy, bad parameters, or structures that do not match the version."""


@dataclass
class EncodeBatch:
    """What a strategy encodes: a batch of items' token vectors and their per-token codes."""

    codes: Ragged  # (sum n_i,) leaf code (or vocabulary id) of every token
    vectors: Ragged | None  # (sum n_i, d) float token vectors; None if no strategy asked for them
    codebook: Codebook
    texts: list[str] | None = None  # the items' texts (the dense channel encodes them)


@dataclass
class Part:
    """One segment as a reader sees it: its items are global positions base .. base + n_items."""

    base: int
    n_items: int
    fields: dict[str, Ragged] = field(default_factory=dict)
    derived: dict[str, np.ndarray] = field(default_factory=dict)


class Strategy(ABC):
    """A first stage; subclasses set ``name`` and the names of the parameters they take."""

    name: ClassVar[str]
    build_params: ClassVar[tuple[str, ...]] = ()  # change one and the structures are re-encoded
    search_params: ClassVar[tuple[str, ...]] = ()  # query-time knobs
    run_params: ClassVar[tuple[str, ...]] = ()  # how to compute, not what is stored (batch sizes)
    needs_vectors: ClassVar[bool] = True  # plaid needs only the codes
    in_memory: ClassVar[bool] = False  # read into RAM at load (else memory-mapped)

    def __init__(self, **params: Any) -> None:
        """Every parameter is required: the values live in ``conf/index/default.yaml``
        (``index.strategies.<name>``), never in code."""
        known = (*self.build_params, *self.search_params, *self.run_params)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise FirstStageError(f"{self.name}: unknown parameters {unknown}; known: {sorted(known)}")
        missing = sorted(set(known) - set(params))
        if missing:
            raise FirstStageError(
                f"{self.name}: missing parameters {missing}: set index.strategies.{self.name}.* in conf/"
            )
        self.params = dict(params)

    layout = 0  # bumped when a strategy stores its fields differently: older segments are re-encoded

    @property
    def build_key(self) -> str:
        """Identity of what is stored: versions whose key differs are re-encoded."""
        key = {k: self.params[k] for k in sorted(self.build_params)}
        if self.layout:  # 0 leaves the keys of every strategy that never changed its layout as they were
            key["layout"] = self.layout
        return json.dumps(key, sort_keys=True)

    @abstractmethod
    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        """Per-item fields of the batch's items (each a Ragged with one entry per item)."""

    def derive(self, fields: dict[str, Ragged], codebook: Codebook) -> dict[str, np.ndarray]:
        """Arrays computed over a whole segment's fields (none by default)."""
        return {}

    @abstractmethod
    def open(self, codebook: Codebook, parts: Sequence[Part]) -> Searchable: ...


class Searchable(ABC):
    """A strategy's structures over every segment of one version."""

    def __init__(self, strategy: Strategy, parts: Sequence[Part], dim: int) -> None:
        self.strategy = strategy
        self.params = strategy.params
        self.parts = list(parts)
        self.n_items = int(sum(p.n_items for p in parts))
        self.dim = int(dim)

    @property
    def name(self) -> str:
        return self.strategy.name

    def search(
        self, q: np.ndarray, n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` item positions for query ``q`` (Tq, d): (int64 positions, float32 approx scores).

        Best first. ``allowed`` is a (n_items,) bool mask (published, not tombstoned, matching the
        filters); only allowed items are returned (fewer than ``n`` when fewer are allowed).
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

    def dense_search(
        self, q: np.ndarray, n: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """For scan strategies: score every part (or only the allowed items when few are allowed)."""
        sparse = allowed is not None and allowed.mean() < 0.25
        scores = np.full(self.n_items, -np.inf, dtype=np.float32)
        for p in self.parts:
            sl = slice(p.base, p.base + p.n_items)
            local = np.flatnonzero(allowed[sl]) if sparse else None  # type: ignore[index]
            if local is not None and not len(local):
                continue
            scores[sl][local if local is not None else slice(None)] = self.score_part(q, p, local)
        return masked_topk(scores, n, allowed)

    def score_part(self, q: np.ndarray, part: Part, local: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes of the structures (what a deployment holds besides the vectors)."""
        total = 0
        for p in self.parts:
            total += sum(r.flat.nbytes + r.offsets.nbytes for r in p.fields.values())
            total += sum(a.nbytes for a in p.derived.values())
        return int(total)

    @property
    def bytes_per_item(self) -> float:
        return self.nbytes / max(self.n_items, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_items} items, {len(self.parts)} segments, {self.params})"


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


def item_of_rows(r: Ragged) -> np.ndarray:
    """(n_rows,) index of the item that owns each row."""
    return np.repeat(np.arange(len(r), dtype=np.int64), r.lengths)

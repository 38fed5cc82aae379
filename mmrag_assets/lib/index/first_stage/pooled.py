"""``pooled``: each item's tokens pooled to ~38 vectors, searched with exact MaxSim (a prefetch).

Qdrant's recipe for ColPali: 1,030 vectors per page -> ~38 (mean of each patch-grid row plus
the special tokens). ``method="rows"`` mean-pools contiguous runs of tokens in raster order
(a row of the patch grid when n_vectors matches the grid), ``method="kmeans"`` runs a few
spherical k-means iterations per item, started from the row pools (groups tokens by content,
not position). The pooled vectors are stored float16 and scanned brute force in torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from mmrag_assets.lib.index.first_stage.base import (
    FirstStageError,
    FirstStageIndex,
    csr_rows,
    load_array,
    masked_topk,
    save_array,
)
from mmrag_assets.lib.index.vecstore import VecStore
from mmrag_assets.lib.search.rerank import maxsim_ragged

ITEMS_PER_BATCH = 512


def pool_rows(x: np.ndarray, m: int) -> np.ndarray:
    """(n, d) -> (min(m, n), d) unit vectors: means of ``m`` contiguous near-equal runs."""
    n = x.shape[0]
    m = min(m, n)
    bounds = (np.arange(m + 1) * n) // m
    p = np.add.reduceat(np.asarray(x, dtype=np.float32), bounds[:-1], axis=0)
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)


def pool_kmeans(x: np.ndarray, m: int, iters: int = 4) -> np.ndarray:
    """(n, d) -> (<=m, d): spherical k-means from the row pools; empty clusters are dropped."""
    import torch

    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    c = torch.from_numpy(pool_rows(x, m))
    for _ in range(iters):
        assign = (xt @ c.T).argmax(1)
        c = torch.zeros_like(c).index_add_(0, assign, xt)
        norms = c.norm(dim=1, keepdim=True)
        keep = norms[:, 0] > 1e-6
        c = c[keep] / norms[keep]
    return c.numpy()


class PooledIndex(FirstStageIndex):
    name = "pooled"

    def __init__(
        self, directory: Path, params: dict[str, Any], flat: np.ndarray, offsets: np.ndarray, dim: int
    ):
        super().__init__(directory, params, len(offsets) - 1, dim)
        self.flat = flat  # (sum m_i, d) float16 pooled vectors
        self.offsets = offsets

    @classmethod
    def _build(
        cls,
        store: VecStore,
        out: Path,
        *,
        n_vectors: int = 38,
        method: Literal["rows", "kmeans"] = "rows",
        kmeans_iters: int = 4,
        **unknown: Any,
    ) -> dict[str, Any]:
        if unknown:
            raise FirstStageError(f"pooled: unknown parameters {sorted(unknown)}")
        if method not in ("rows", "kmeans"):
            raise FirstStageError(f"pooled: method must be 'rows' or 'kmeans', got {method!r}")
        pooled: list[np.ndarray] = []
        for s in range(0, store.n_items, ITEMS_PER_BATCH):
            e = min(s + ITEMS_PER_BATCH, store.n_items)
            block = np.asarray(store.flat[store.offsets[s] : store.offsets[e]], dtype=np.float32)
            base = store.offsets[s]
            for i in range(s, e):
                x = block[store.offsets[i] - base : store.offsets[i + 1] - base]
                p = pool_rows(x, n_vectors) if method == "rows" else pool_kmeans(x, n_vectors, kmeans_iters)
                pooled.append(p.astype(np.float16))
        lens = np.array([len(p) for p in pooled], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        save_array(out, "flat", np.concatenate(pooled))
        save_array(out, "offsets", offsets)
        return {"n_vectors": n_vectors, "method": method, "kmeans_iters": kmeans_iters}

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        return cls(
            directory,
            meta["params"],
            load_array(directory, "flat"),
            load_array(directory, "offsets"),
            meta["dim"],
        )

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None and allowed.mean() < 0.25:
            items = np.flatnonzero(allowed)
            rows, off = csr_rows(self.offsets, items)
            idx, sc = masked_topk(maxsim_ragged(q, self.flat[rows], off), n, None)
            return items[idx], sc
        return masked_topk(maxsim_ragged(q, self.flat, self.offsets), n, allowed)

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes + self.offsets.nbytes)

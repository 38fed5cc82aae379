"""``pooled``: each item's tokens pooled to ~38 vectors, searched with exact MaxSim (a prefetch).

Qdrant's recipe for ColPali: 1,030 vectors per page -> ~38 (mean of each patch-grid row plus
the special tokens). ``method="rows"`` mean-pools contiguous runs of tokens in raster order
(a row of the patch grid when n_vectors matches the grid), ``method="kmeans"`` runs a few
spherical k-means iterations per item, started from the row pools (groups tokens by content,
not position). The pooled vectors are stored float16 and scanned brute force in torch.
Incremental: an item's pooled vectors depend on its own tokens only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mmrag_assets.lib.index.first_stage.base import (
    EncodeBatch,
    FirstStageError,
    Part,
    Searchable,
    Strategy,
    csr_rows,
)
from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged

if TYPE_CHECKING:
    from mmrag_assets.lib.index.codebook import Codebook


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


class Pooled(Strategy):
    name = "pooled"
    build_params = ("n_vectors", "method", "kmeans_iters")

    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        assert batch.vectors is not None
        m, method = int(self.params["n_vectors"]), self.params["method"]
        if method not in ("rows", "kmeans"):
            raise FirstStageError(f"pooled: method must be 'rows' or 'kmeans', got {method!r}")
        v = batch.vectors
        pooled = [
            (
                pool_rows(v.item(i), m)
                if method == "rows"
                else pool_kmeans(v.item(i), m, int(self.params["kmeans_iters"]))
            ).astype(np.float16)
            for i in range(len(v))
        ]
        return {"pooled": Ragged.from_list(pooled, width=v.dim, dtype=np.float16)}

    def open(self, codebook: Codebook, parts: Sequence[Part]) -> PooledReader:
        return PooledReader(self, parts, codebook.dim)


class PooledReader(Searchable):
    def score_part(self, q: np.ndarray, part: Part, local: np.ndarray | None) -> np.ndarray:
        r = part.fields["pooled"]
        if local is None:
            return maxsim_ragged(q, r.flat, r.offsets)
        rows, off = csr_rows(r.offsets, local)
        return maxsim_ragged(q, np.asarray(r.flat)[rows], off)

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.dense_search(q, n, allowed)

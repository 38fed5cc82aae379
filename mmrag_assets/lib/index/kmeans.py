"""Spherical k-means (faiss), flat and two-level, for token codebooks (CPU-sized).

A flat codebook of K centroids costs K dot products per token to assign, which at 34M tokens
and K = 16k is ~140 TFLOP: hours on two cores. The two-level codebook (``k_coarse`` coarse
centroids, each owning a contiguous block of leaves) assigns a token with
k_coarse + probe * (K / k_coarse) dot products instead (768 instead of 65,536 at K = 64k),
at a small quality cost: a token whose best leaf sits under its third-best coarse cell misses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def group_sum(x, assign, k: int):
    """Row sums per group: (k, d) with out[g] = x[assign == g].sum(0) (torch tensors).

    A sparse one-hot matmul: torch's CPU ``index_add_`` is several times slower here.
    """
    import torch

    n = x.shape[0]
    onehot = torch.sparse_coo_tensor(
        torch.stack([assign, torch.arange(n)]),
        torch.ones(n, dtype=x.dtype),
        (k, n),
        is_coalesced=False,
        check_invariants=False,
    )
    return torch.sparse.mm(onehot, x)


def spherical_kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """Unit centroids (k, d) float32 of the unit rows of ``x`` (n, d) float32 (k <= n): faiss's
    spherical k-means (random rows as seeds, ``iters`` Lloyd steps, centroids renormalised).

    Chosen by ``bench/kmeans.py`` (BENCHMARKS.md, "Codebook k-means") over the hand-written torch
    k-means this module held before (kept in the bench as its baseline), scikit-learn's KMeans and
    MiniBatchKMeans and fastkmeans, inside this two-level codebook on 262,144 real token vectors
    (contextual MiniLM tokens and the lite tier's): the same quantisation error (held-out cosine
    0.8676 against 0.8675 at K = 32,768) and recall, 1.75-2.0x less wall time at K = 32,768 and
    1.3-1.4x at K = 8,192 (slower only under oversubscription: OpenMP threads), ~450 MiB more at
    its peak; scikit-learn was 15-20x and fastkmeans 2-4.5x slower than the baseline on CPU.
    faiss subsamples to 256 rows per centroid (its ``max_points_per_centroid``): the coarse level only.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    k = min(k, len(x))
    # min_points_per_centroid=1: a leaf problem has ~4-40 rows per centroid by design; faiss would warn
    km = faiss.Kmeans(x.shape[1], k, niter=iters, spherical=True, seed=seed, min_points_per_centroid=1)
    km.train(x)
    c = np.ascontiguousarray(km.centroids, dtype=np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


# fit(x (n, d) unit float32, k, iters, seed) -> (k, d) unit float32 centroids
KMeansFit = Callable[[np.ndarray, int, int, int], np.ndarray]


@dataclass
class TwoLevelCodebook:
    coarse: np.ndarray  # (k_coarse, d) float32 unit
    leaves: np.ndarray  # (K, d) float32 unit; coarse c owns leaves[ptr[c]:ptr[c+1]]
    ptr: np.ndarray  # (k_coarse + 1,) int64

    @classmethod
    def train(
        cls,
        sample: np.ndarray,
        n_leaves: int,
        k_coarse: int,
        iters: int = 8,
        seed: int = 0,
        fit: KMeansFit | None = None,
    ) -> TwoLevelCodebook:
        """Coarse cells by k-means over ``sample`` (n, d), then each cell's leaves by k-means over its
        members (``fit``: :func:`spherical_kmeans` unless given; cell c is fitted with ``seed + 1 + c``)."""
        fit = fit or spherical_kmeans
        x = np.array(sample, dtype=np.float32)  # a copy: normalised in place
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        coarse = fit(x, min(k_coarse, len(x)), iters, seed)
        assign = _argmax_rows(x, coarse)
        counts = np.bincount(assign, minlength=coarse.shape[0])
        # leaves per coarse cell proportional to its share of the sample (at least one)
        quota = np.maximum(1, np.round(counts / counts.sum() * n_leaves)).astype(np.int64)
        quota = np.minimum(quota, np.maximum(counts, 1))
        order = np.argsort(assign, kind="stable")
        xs = x[order]  # rows grouped by coarse cell
        bounds = np.concatenate([[0], np.cumsum(counts)])
        leaves, ptr = [], [0]
        for c in range(coarse.shape[0]):
            members = xs[bounds[c] : bounds[c + 1]]
            leaf = fit(members, int(quota[c]), iters, seed + 1 + c) if len(members) else coarse[c : c + 1]
            leaves.append(np.asarray(leaf, dtype=np.float32))
            ptr.append(ptr[-1] + len(leaf))
        return cls(
            np.ascontiguousarray(coarse, dtype=np.float32),
            np.concatenate(leaves),
            np.asarray(ptr, dtype=np.int64),
        )

    @property
    def n_leaves(self) -> int:
        return int(self.leaves.shape[0])

    def assign(self, x: np.ndarray, probe: int = 2) -> np.ndarray:
        """Leaf id of each row of ``x`` (n, d): best leaf under the ``probe`` best coarse cells."""
        return self.assign_with_sims(x, probe)[0]

    def assign_with_sims(self, x: np.ndarray, probe: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """(leaf ids (n,) int32, cosine of each row with its leaf (n,) float32; rows taken as unit)."""
        import torch

        # float32: bfloat16 measured no faster here and moved ~20% of tokens to a runner-up leaf
        xt = torch.from_numpy(np.array(x, dtype=np.float32))  # a copy: x may be a read-only memmap
        coarse = torch.from_numpy(self.coarse)
        leaves = torch.from_numpy(self.leaves)
        probe = min(probe, coarse.shape[0])
        n = xt.shape[0]
        top = (xt @ coarse.T).topk(probe, dim=1).indices  # (n, probe)
        best = torch.full((n,), float("-inf"))
        code = torch.zeros(n, dtype=torch.int64)
        for p in range(probe):
            # sort rows by coarse cell so that each cell's rows are one contiguous slice
            cp = top[:, p]
            order = torch.argsort(cp)
            xs = xt[order]
            bounds = np.concatenate([[0], np.cumsum(torch.bincount(cp, minlength=coarse.shape[0]).numpy())])
            s_sorted = torch.empty(n)
            c_sorted = torch.empty(n, dtype=torch.int64)
            for c in np.flatnonzero(np.diff(bounds)):
                lo, hi = int(self.ptr[c]), int(self.ptr[c + 1])
                s, a = (xs[bounds[c] : bounds[c + 1]] @ leaves[lo:hi].T).max(1)
                s_sorted[bounds[c] : bounds[c + 1]] = s
                c_sorted[bounds[c] : bounds[c + 1]] = a + lo
            s_p = torch.empty(n).index_copy_(0, order, s_sorted)
            c_p = torch.empty(n, dtype=torch.int64).index_copy_(0, order, c_sorted)
            better = s_p > best
            best = torch.where(better, s_p, best)
            code = torch.where(better, c_p, code)
        return code.numpy().astype(np.int32), best.numpy().astype(np.float32)


def _argmax_rows(x: np.ndarray, c: np.ndarray, rows: int = 1 << 16) -> np.ndarray:
    """Index of the best row of ``c`` (k, d) for each row of ``x`` (n, d) by dot product: (n,) int64."""
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), rows):
        out[s : s + rows] = (x[s : s + rows] @ c.T).argmax(1)
    return out

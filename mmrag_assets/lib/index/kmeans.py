"""Spherical k-means in torch, flat and two-level, for token codebooks (CPU-sized).

A flat codebook of K centroids costs K dot products per token to assign, which at 34M tokens
and K = 16k is ~140 TFLOP: hours on two cores. The two-level codebook (``k_coarse`` coarse
centroids, each owning a contiguous block of leaves) assigns a token with
k_coarse + probe * (K / k_coarse) dot products instead (768 instead of 65,536 at K = 64k),
at a small quality cost: a token whose best leaf sits under its third-best coarse cell misses it.
"""

from __future__ import annotations

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


def spherical_kmeans(x, k: int, iters: int, gen):
    """Unit centroids (k, d) of the unit rows of ``x`` (n, d) float32 torch tensor."""
    import torch

    n = x.shape[0]
    k = min(k, n)
    c = x[torch.randperm(n, generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = torch.empty(n, dtype=torch.int64)
        for s in range(0, n, 1 << 16):
            assign[s : s + (1 << 16)] = (x[s : s + (1 << 16)] @ c.T).argmax(1)
        sums = group_sum(x, assign, k)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        if empty.any():  # re-seed empty clusters on random points
            sums[empty] = x[torch.randint(0, n, (int(empty.sum()),), generator=gen)]
        c = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return c


@dataclass
class TwoLevelCodebook:
    coarse: np.ndarray  # (k_coarse, d) float32 unit
    leaves: np.ndarray  # (K, d) float32 unit; coarse c owns leaves[ptr[c]:ptr[c+1]]
    ptr: np.ndarray  # (k_coarse + 1,) int64

    @classmethod
    def train(
        cls, sample: np.ndarray, n_leaves: int, k_coarse: int, iters: int = 8, seed: int = 0
    ) -> TwoLevelCodebook:
        import torch

        gen = torch.Generator().manual_seed(seed)
        x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        coarse = spherical_kmeans(x, k_coarse, iters, gen)
        assign = (x @ coarse.T).argmax(1)
        counts = torch.bincount(assign, minlength=coarse.shape[0]).numpy()
        # leaves per coarse cell proportional to its share of the sample (at least one)
        quota = np.maximum(1, np.round(counts / counts.sum() * n_leaves)).astype(np.int64)
        quota = np.minimum(quota, np.maximum(counts, 1))
        order = torch.argsort(assign)
        xs = x[order]  # rows grouped by coarse cell
        bounds = np.concatenate([[0], np.cumsum(counts)])
        leaves, ptr = [], [0]
        for c in range(coarse.shape[0]):
            members = xs[bounds[c] : bounds[c + 1]]
            leaf = spherical_kmeans(members, int(quota[c]), iters, gen) if len(members) else coarse[c : c + 1]
            leaves.append(leaf)
            ptr.append(ptr[-1] + leaf.shape[0])
        return cls(coarse.numpy(), torch.cat(leaves).numpy(), np.asarray(ptr, dtype=np.int64))

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

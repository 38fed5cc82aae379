"""``muvera``: MUVERA fixed-dimensional encodings (FDE) + one dot product per item.

Each repetition r draws ``k_sim`` random hyperplanes (SimHash: 2^k_sim buckets) and a random
+-1 projection d -> ``d_proj``. A document's FDE block for (r, bucket) is the mean of its
projected tokens in that bucket (empty buckets take the token whose bucket is nearest in
Hamming distance); a query's block is the sum. <FDE(q), FDE(d)> approximates MaxSim(q, d), so
the first stage is a single-vector scan of ``reps * 2^k_sim * d_proj`` float16 dims per item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np

from mmrag_assets.lib.index.first_stage.base import (
    FirstStageError,
    FirstStageIndex,
    load_array,
    masked_topk,
)
from mmrag_assets.lib.index.vecstore import VecStore

ITEMS_PER_BATCH = 256


class MuveraIndex(FirstStageIndex):
    name = "muvera"

    def __init__(self, directory: Path, params: dict[str, Any], fde: np.ndarray, dim: int) -> None:
        super().__init__(directory, params, fde.shape[0], dim)
        self.fde = fde  # (n_items, D) float16
        self.k_sim, self.reps, self.d_proj = int(params["k_sim"]), int(params["reps"]), int(params["d_proj"])
        rng = np.random.default_rng(int(params["seed"]))
        self.planes = rng.standard_normal((dim, self.reps * self.k_sim)).astype(np.float32)
        signs = rng.integers(0, 2, (dim, self.reps * self.d_proj)) * 2 - 1
        self.proj = (signs / np.sqrt(self.d_proj)).astype(np.float32)

    @property
    def n_buckets(self) -> int:
        return 1 << self.k_sim

    def _buckets(self, x: np.ndarray) -> np.ndarray:
        bits = (x @ self.planes > 0).reshape(len(x), self.reps, self.k_sim)
        return (bits * (1 << np.arange(self.k_sim))).sum(-1)  # (n, reps)

    def encode(self, tokens: np.ndarray, item_of: np.ndarray, n_items: int, *, query: bool) -> np.ndarray:
        """FDEs of ragged items: tokens (T, d), item_of (T,) -> (n_items, reps * 2^k * d_proj)."""
        import torch

        x = np.asarray(tokens, dtype=np.float32)
        r_, b_, p_ = self.reps, self.n_buckets, self.d_proj
        bucket = self._buckets(x)  # (T, R)
        proj = (x @ self.proj).reshape(len(x), r_, p_)  # (T, R, P)
        slot = (item_of[:, None] * r_ + np.arange(r_)[None, :]) * b_ + bucket  # (T, R)
        sums = torch.zeros((n_items * r_ * b_, p_), dtype=torch.float32)
        sums.index_add_(0, torch.from_numpy(slot.reshape(-1)), torch.from_numpy(proj.reshape(-1, p_)))
        sums = sums.numpy()
        if query:
            return sums.reshape(n_items, -1)
        counts = np.bincount(slot.reshape(-1), minlength=n_items * r_ * b_)
        sums /= np.maximum(counts, 1)[:, None]
        # fill empty buckets with the projection of the item's token nearest in Hamming distance
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            starts = np.searchsorted(item_of, np.arange(n_items))
            ends = np.searchsorted(item_of, np.arange(n_items), side="right")
            for e in empty:
                item, rem = divmod(int(e), r_ * b_)
                r, b = divmod(rem, b_)
                s, t = starts[item], ends[item]
                if s == t:
                    continue
                ham = np.bitwise_count(bucket[s:t, r] ^ b)
                sums[e] = proj[s + int(ham.argmin()), r]
        return sums.reshape(n_items, -1)

    @classmethod
    def _build(
        cls,
        store: VecStore,
        out: Path,
        *,
        k_sim: int = 4,
        reps: int = 20,
        d_proj: int = 16,
        seed: int = 0,
        **unknown: Any,
    ) -> dict[str, Any]:
        if unknown:
            raise FirstStageError(f"muvera: unknown parameters {sorted(unknown)}")
        params = {"k_sim": k_sim, "reps": reps, "d_proj": d_proj, "seed": seed}
        enc = cls(out, params, np.zeros((0, reps * (1 << k_sim) * d_proj), np.float16), store.dim)
        fde = np.lib.format.open_memmap(
            out / "fde.npy", mode="w+", dtype=np.float16, shape=(store.n_items, enc.fde.shape[1])
        )
        for s in range(0, store.n_items, ITEMS_PER_BATCH):
            e = min(s + ITEMS_PER_BATCH, store.n_items)
            off = store.offsets[s : e + 1]
            item_of = np.repeat(np.arange(e - s), np.diff(off))
            fde[s:e] = enc.encode(store.flat[off[0] : off[-1]], item_of, e - s, query=False)
        fde.flush()
        return params

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        return cls(directory, meta["params"], load_array(directory, "fde"), meta["dim"])

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        qf = self.encode(q, np.zeros(len(q), dtype=np.int64), 1, query=True)[0]
        qt = torch.from_numpy(qf.astype(np.float16))
        if allowed is not None and allowed.mean() < 0.25:
            items = np.flatnonzero(allowed)
            s = (torch.from_numpy(self.fde[items]) @ qt).float().numpy()
            idx, sc = masked_topk(s, n, None)
            return items[idx], sc
        s = (torch.from_numpy(self.fde) @ qt).float().numpy()  # float16 scan, f32 accumulate
        return masked_topk(s, n, allowed)

    @property
    def nbytes(self) -> int:
        return int(self.fde.nbytes)

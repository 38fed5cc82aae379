"""``plaid``: PLAID-style centroid interaction over an inverted index of token codes.

Build: a two-level spherical k-means codebook of K leaves over a sample of all doc tokens;
every token gets its nearest leaf; each item keeps the set of its (unique) leaf codes, stored
twice: an inverted index leaf -> items (int32) and a forward index item -> leaves (uint16/32).

Search (no float token vectors are touched):
1. S = q @ leaves.T, (Tq, K): every query token against every leaf (a few MFLOP).
2. Pruned centroid interaction: per query token, visit the best leaves in order, at most
   ``nprobe`` of them and at most ``budget`` x n_items list entries (tokens that match every
   page, such as prompt tokens, hit huge lists: the budget stops them early). An item's score
   for that token is the best visited leaf it owns; unvisited items get the last visited
   leaf's similarity (an upper bound, as in XTR's imputation). Sum over tokens; keep the top
   ``n_full``.
3. Full centroid interaction on those (only when ``n_full`` > n): sum over tokens of the max
   of S over all the item's leaves (forward index); the top ``n`` go to the exact rerank.

Defaults (nprobe 16, budget 0.5, n_full 400 = 2x the usual 200 candidates) were picked on the
synthetic benchmark (bench/search.py), where nprobe 8 already kept every true top-10 page at
100k pages; the margin is for real embeddings, which are less clustered than synthetic ones.

Per item this costs ~6 bytes per unique leaf (4 inverted + 2 forward), a few KB per page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Self

import numpy as np

from mmrag_assets.lib.index.first_stage.base import (
    FirstStageError,
    FirstStageIndex,
    csr_rows,
    load_array,
    masked_topk,
    save_array,
)
from mmrag_assets.lib.index.first_stage.kmeans import TwoLevelCodebook, group_sum
from mmrag_assets.lib.index.vecstore import VecStore

ASSIGN_ROWS = 1 << 18


def auto_centroids(n_tokens: int) -> int:
    """PLAID's rule of thumb 2^floor(log2(16 sqrt(N))), at most 65,536 (uint16 codes, CPU builds)."""
    return int(min(1 << 16, max(16, 2 ** math.floor(math.log2(16 * math.sqrt(max(n_tokens, 1)))))))


class PlaidIndex(FirstStageIndex):
    name = "plaid"

    def __init__(self, directory: Path, params: dict[str, Any], arrays: dict[str, np.ndarray], dim: int):
        import torch

        super().__init__(directory, params, len(arrays["fwd_ptr"]) - 1, dim)
        self.centroids = arrays["centroids"]  # (K, d) float32
        self._centroids_t = torch.from_numpy(self.centroids)
        self.inv_ptr = arrays["inv_ptr"]  # (K+1,) int64
        self.inv_items = arrays["inv_items"]  # (E,) int32, sorted by leaf then item
        self.fwd_ptr = arrays["fwd_ptr"]  # (n_items+1,) int64
        self.fwd_codes = arrays["fwd_codes"]  # (E,) uint16 | int32
        self.inv_len = np.diff(self.inv_ptr)
        self.nprobe = int(params["nprobe"])
        self.budget = float(params["budget"])
        self.n_full = int(params["n_full"])

    # ---------------------------------------------------------------- build
    @classmethod
    def _build(
        cls,
        store: VecStore,
        out: Path,
        *,
        n_centroids: int | None = None,
        k_coarse: int | None = None,
        sample_tokens: int = 1 << 18,
        kmeans_iters: int = 6,
        assign_probe: int = 2,
        nprobe: int = 16,
        budget: float = 0.5,
        n_full: int = 400,
        seed: int = 0,
        **unknown: Any,
    ) -> dict[str, Any]:
        if unknown:
            raise FirstStageError(f"plaid: unknown parameters {sorted(unknown)}")
        n_tok = store.n_vectors
        k = int(n_centroids or auto_centroids(n_tok))
        k = max(1, min(k, n_tok))
        kc = int(k_coarse or max(1, round(math.sqrt(k))))
        rng = np.random.default_rng(seed)
        sample_idx = np.sort(rng.choice(n_tok, min(sample_tokens, n_tok), replace=False))
        book = TwoLevelCodebook.train(store.flat[sample_idx], k, kc, iters=kmeans_iters, seed=seed)
        k = book.n_leaves

        # assign every token; accumulate leaf means (the scoring centroids)
        codes = np.empty(n_tok, dtype=np.int32)
        sums = np.zeros((k, store.dim), dtype=np.float64)
        for s in range(0, n_tok, ASSIGN_ROWS):
            x = np.asarray(store.flat[s : s + ASSIGN_ROWS], dtype=np.float32)
            c = book.assign(x, probe=assign_probe)
            codes[s : s + len(c)] = c
            _add_rows(sums, c, x)
        counts = np.bincount(codes, minlength=k)
        centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], book.leaves)

        # unique (item, leaf) pairs
        item_of = np.repeat(np.arange(store.n_items, dtype=np.int64), store.lengths)
        keys = np.unique(item_of * k + codes)
        del item_of, codes
        fwd_items = keys // k
        fwd_codes = (keys % k).astype(np.uint16 if k <= 1 << 16 else np.int32)
        fwd_ptr = np.zeros(store.n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(fwd_items, minlength=store.n_items), out=fwd_ptr[1:])
        order = np.argsort(fwd_codes, kind="stable")  # items stay sorted inside each leaf
        inv_items = fwd_items[order].astype(np.int32)
        inv_ptr = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.bincount(fwd_codes, minlength=k), out=inv_ptr[1:])
        for name, a in {
            "centroids": centroids.astype(np.float32),
            "inv_ptr": inv_ptr,
            "inv_items": inv_items,
            "fwd_ptr": fwd_ptr,
            "fwd_codes": fwd_codes,
        }.items():
            save_array(out, name, a)
        return {
            "n_centroids": k,
            "k_coarse": kc,
            "sample_tokens": len(sample_idx),
            "kmeans_iters": kmeans_iters,
            "assign_probe": assign_probe,
            "nprobe": nprobe,
            "budget": budget,
            "n_full": n_full,
            "seed": seed,
            "mean_codes_per_item": float(len(keys) / max(store.n_items, 1)),
        }

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        names = ("centroids", "inv_ptr", "inv_items", "fwd_ptr", "fwd_codes")
        return cls(directory, meta["params"], {n: load_array(directory, n) for n in names}, meta["dim"])

    def with_params(self, **params: Any) -> Self:
        """The same index with other search-time parameters (nprobe, budget, n_full)."""
        bad = set(params) - {"nprobe", "budget", "n_full"}
        if bad:
            raise FirstStageError(f"plaid: {sorted(bad)} are build-time parameters; rebuild instead")
        arrays = {
            "centroids": self.centroids,
            "inv_ptr": self.inv_ptr,
            "inv_items": self.inv_items,
            "fwd_ptr": self.fwd_ptr,
            "fwd_codes": self.fwd_codes,
        }
        clone = type(self)(self.dir, self.params | params, arrays, self.dim)
        clone.build_s = self.build_s
        return clone

    # ---------------------------------------------------------------- search
    def centroid_scores(self, q: np.ndarray) -> np.ndarray:
        """S = q @ leaves.T: (Tq, K) float32 (torch: faster than numpy's matmul here)."""
        import torch

        return (torch.from_numpy(q) @ self._centroids_t.T).numpy()

    def probe(self, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``nprobe`` best leaves of each query token, best first: ((Tq, p) ids, (Tq, p) sims)."""
        import torch

        v, i = torch.from_numpy(sims).topk(min(self.nprobe, sims.shape[1]), dim=1, sorted=True)
        return i.numpy(), v.numpy()

    def pruned_scores(self, sims: np.ndarray) -> np.ndarray:
        """Stage 2: approximate scores of every item from the probed inverted lists: (n_items,)."""
        tq = sims.shape[0]
        n = self.n_items
        top, top_sims = self.probe(sims)  # (Tq, p)
        lens = self.inv_len[top]
        # visit leaves while the entries visited before them stay under the budget (>= 1 leaf)
        before = np.cumsum(lens, axis=1) - lens
        visit = before < self.budget * n
        visit[:, 0] = True
        n_visit = visit.sum(1)
        # items that own none of the visited leaves get the last visited leaf's similarity
        impute = top_sims[np.arange(tq), n_visit - 1]  # (Tq,)
        best = np.repeat(impute[:, None], n, axis=1)  # (Tq, n) float32
        t_idx, p_idx = np.nonzero(visit)
        pos, off = csr_rows(self.inv_ptr, top[t_idx, p_idx])
        seg_len = np.diff(off)
        keys = self.inv_items[pos] + np.repeat(t_idx.astype(np.int64) * n, seg_len)  # flat (t, item)
        np.maximum.at(best.reshape(-1), keys, np.repeat(top_sims[t_idx, p_idx], seg_len))
        return best.sum(0)

    def full_scores(self, sims: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Stage 3: exact centroid interaction of ``items`` over all their leaves: (len(items),)."""
        pos, off = csr_rows(self.fwd_ptr, items)
        # gather whole (Tq,) rows of S^T: one 80-byte row per code beats Tq strided column gathers
        vals = np.ascontiguousarray(sims.T)[self.fwd_codes[pos]]  # (total codes, Tq)
        return np.maximum.reduceat(vals, off[:-1], axis=0).sum(1)

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        sims = self.centroid_scores(q)
        n_full = max(self.n_full, n)
        if allowed is not None and allowed.sum() <= n_full:
            cand = np.flatnonzero(allowed)  # few allowed items: score them all fully
        elif n_full >= self.n_items and allowed is None:
            cand = np.arange(self.n_items)
        else:
            approx = self.pruned_scores(sims)
            cand, approx_top = masked_topk(approx, n_full, allowed)
            if n_full == n:  # stage 3 would only reorder the same set; the exact rerank does that
                return cand, approx_top
        idx, sc = masked_topk(self.full_scores(sims, cand), n, None)
        return cand[idx], sc

    @property
    def nbytes(self) -> int:
        return int(
            self.centroids.nbytes
            + self.inv_ptr.nbytes
            + self.inv_items.nbytes
            + self.fwd_ptr.nbytes
            + self.fwd_codes.nbytes
        )


def _add_rows(sums: np.ndarray, codes: np.ndarray, x: np.ndarray) -> None:
    """sums[codes[i]] += x[i] for all i."""
    import torch

    sums += group_sum(torch.from_numpy(x), torch.from_numpy(codes.astype(np.int64)), len(sums)).numpy()

"""``plaid``: PLAID-style centroid interaction over inverted lists of token codes.

Per item a segment keeps the set of its (unique) token codes twice: forward (item -> codes,
uint16 when K <= 65,536) and inverted (code -> items, int32 local positions). The codes come
from the version's codebook (``lib/index/codebook.py``): trained leaves for the visual tiers,
token ids for the lite tier, where a code's centroid is the token's exact vector and the
full centroid interaction below is exact MaxSim.

Search over a version's segments (no float token vector is touched):
1. S = q @ centroids.T, (Tq, K): every query token against every centroid.
2. Pruned centroid interaction: per query token visit the best centroids in order, at most
   ``nprobe`` and at most ``budget`` x n_items list entries (tokens that match every page, such
   as prompt tokens or "the", hit huge lists: the budget stops them early). An item's score for
   that token is the best visited centroid it owns; items that own none get the last visited
   centroid's similarity (an upper bound, as in XTR's imputation). Sum over tokens; keep the
   top ``n_full``. Every segment's lists are visited with the same global decision.
3. Full centroid interaction on those: sum over tokens of the max of S over all the item's
   codes (forward lists); the top ``n`` go on.

Defaults (nprobe 16, budget 0.5, n_full 400 = 2x the usual 200 candidates) were picked on the
synthetic benchmark (bench/search.py), where nprobe 8 already kept every true top-10 page at
100k pages; the margin is for real embeddings, which are less clustered than synthetic ones.
Per item this costs ~6 bytes per unique code (4 inverted + 2 forward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.lib.index.first_stage.base import (
    EncodeBatch,
    Part,
    Searchable,
    Strategy,
    csr_rows,
    item_of_rows,
    masked_topk,
)
from mmrag_assets.lib.index.vectors import Ragged

if TYPE_CHECKING:
    from mmrag_assets.lib.index.codebook import Codebook


class Plaid(Strategy):
    name = "plaid"
    search_params = ("nprobe", "budget", "n_full")
    needs_vectors = False
    in_memory = True

    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        return {"codes": unique_codes(batch.codes, batch.codebook.n_centroids, batch.codebook.code_dtype)}

    def derive(self, fields: dict[str, Ragged], codebook: Codebook) -> dict[str, np.ndarray]:
        """Inverted lists of the codes present in the segment: ``inv_codes`` (sorted), ``inv_ptr``
        (len + 1) and ``inv_items``. Sparse, because a small delta segment uses few of the
        K codes (K = 32,000 for the lite vocabulary: a dense pointer array would cost 256 KB)."""
        fwd = fields["codes"]
        codes = np.asarray(fwd.flat).astype(np.int64)
        order = np.argsort(codes, kind="stable")  # items stay sorted inside each list
        present, counts = np.unique(codes, return_counts=True)
        inv_ptr = np.zeros(len(present) + 1, dtype=np.int32 if len(codes) < 1 << 31 else np.int64)
        np.cumsum(counts, out=inv_ptr[1:])
        return {
            "inv_codes": present.astype(codebook.code_dtype),
            "inv_ptr": inv_ptr,
            "inv_items": item_of_rows(fwd)[order].astype(np.int32),
        }

    def open(self, codebook: Codebook, parts: Sequence[Part]) -> PlaidReader:
        return PlaidReader(self, codebook, parts)


def unique_codes(codes: Ragged, k: int, dtype: np.dtype) -> Ragged:
    """Each item's sorted unique codes (MaxSim ignores repeats): a Ragged of ``dtype``."""
    keys = np.unique(item_of_rows(codes) * k + codes.flat.astype(np.int64))
    items = keys // k
    off = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(items, minlength=len(codes)), out=off[1:])
    return Ragged((keys % k).astype(dtype), off)


class PlaidReader(Searchable):
    def __init__(self, strategy: Plaid, codebook: Codebook, parts: Sequence[Part]) -> None:
        super().__init__(strategy, parts, codebook.dim)
        self.codebook = codebook
        # (d, K) contiguous: q @ ct runs ~1.4x faster than q @ centroids.T (a strided view)
        self._ct = np.ascontiguousarray(np.asarray(codebook.centroids, dtype=np.float32).T)
        self._last: tuple[bytes, np.ndarray] | None = None  # S of the last query (the lite rerank reuses it)
        k = codebook.n_centroids
        self.inv_len = np.zeros(k, dtype=np.int64)
        for p in self.parts:
            self.inv_len[p.derived["inv_codes"].astype(np.int64)] += np.diff(p.derived["inv_ptr"])
        self.bases = np.array([p.base for p in self.parts] + [self.n_items], dtype=np.int64)
        self.nprobe = int(self.params["nprobe"])
        self.budget = float(self.params["budget"])
        self.n_full = int(self.params["n_full"])

    def with_params(self, **params: Any) -> PlaidReader:
        """The same structures with other search-time parameters (nprobe, budget, n_full)."""
        return PlaidReader(Plaid(**{**self.params, **params}), self.codebook, self.parts)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- the three steps
    def centroid_scores(self, q: np.ndarray) -> np.ndarray:
        """S = q @ centroids.T: (Tq, K) float32. numpy, not torch: the same BLAS GEMM (measured
        (20, 256) @ (256, 32,000): 16.5 ms numpy vs 17.0 ms torch; (20, 128) @ (128, 65,536): 16.1 vs
        24.3 ms, 2 loaded cores), and the query path then never imports torch (~1.4-2.9 s).
        The last query's S is kept: the lite tier's exact rerank asks again for the same query."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        key = q.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        sims = q @ self._ct
        self._last = (key, sims)
        return sims

    def probe(self, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``nprobe`` best centroids of each query token, best first: ((Tq, p) ids, (Tq, p) sims).
        argpartition + a sort of p values: ~3x faster than torch.topk over K = 32,000 columns."""
        p = min(self.nprobe, sims.shape[1])
        idx = (
            np.argpartition(-sims, p - 1, axis=1)[:, :p]
            if p < sims.shape[1]
            else np.tile(np.arange(p), (len(sims), 1))
        )
        vals = np.take_along_axis(sims, idx, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        return np.take_along_axis(idx, order, 1), np.take_along_axis(vals, order, 1)

    def pruned_scores(self, sims: np.ndarray) -> np.ndarray:
        """Step 2: approximate scores of every item from the probed inverted lists: (n_items,)."""
        tq, n = sims.shape[0], self.n_items
        top, top_sims = self.probe(sims)  # (Tq, p) best centroids of each query token
        lens = self.inv_len[top]
        before = np.cumsum(lens, axis=1) - lens  # entries visited before each list
        visit = before < self.budget * n
        visit[:, 0] = True
        impute = top_sims[np.arange(tq), visit.sum(1) - 1]  # (Tq,)
        best = np.repeat(impute[:, None], n, axis=1)  # (Tq, n) float32
        t_idx, p_idx = np.nonzero(visit)
        codes, vals = top[t_idx, p_idx], top_sims[t_idx, p_idx]
        flat_best = best.reshape(-1)
        for p in self.parts:
            inv_codes = p.derived["inv_codes"]
            if not len(inv_codes):
                continue
            j = np.minimum(np.searchsorted(inv_codes, codes), len(inv_codes) - 1)
            hit = inv_codes[j] == codes  # the visited codes this segment has lists for
            pos, off = csr_rows(p.derived["inv_ptr"], j[hit])
            seg_len = np.diff(off)
            if not len(pos):
                continue
            keys = (
                p.derived["inv_items"][pos].astype(np.int64)
                + p.base
                + np.repeat(t_idx[hit].astype(np.int64) * n, seg_len)
            )
            np.maximum.at(flat_best, keys, np.repeat(vals[hit], seg_len))
        return best.sum(0)

    def full_scores(self, sims: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Step 3: centroid interaction of ``items`` (global positions) over all their codes."""
        items = np.asarray(items, dtype=np.int64)
        out = np.empty(len(items), dtype=np.float32)
        if not len(items):
            return out
        st = np.ascontiguousarray(sims.T)  # (K, Tq): one contiguous row per code
        part_of = np.searchsorted(self.bases, items, side="right") - 1
        for j in np.unique(part_of):
            sel = np.flatnonzero(part_of == j)
            fwd = self.parts[j].fields["codes"]
            pos, off = csr_rows(fwd.offsets, items[sel] - self.parts[j].base)
            vals = st[fwd.flat[pos]]  # (total codes, Tq)
            out[sel] = np.maximum.reduceat(vals, off[:-1], axis=0).sum(1)
        return out

    def codes_of(self, items: np.ndarray) -> Ragged:
        """Unique codes of ``items`` (global positions), as a Ragged in that order."""
        items = np.asarray(items, dtype=np.int64)
        part_of = np.searchsorted(self.bases, items, side="right") - 1
        parts = [
            self.parts[j].fields["codes"].take([i - self.parts[j].base])
            for i, j in zip(items, part_of, strict=True)
        ]
        return Ragged.concat(parts) if parts else Ragged(np.zeros(0, np.int64), np.zeros(1, np.int64))

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        sims = self.centroid_scores(q)
        n_full = max(self.n_full, n)
        if allowed is not None and allowed.sum() <= n_full:
            cand = np.flatnonzero(allowed)  # few allowed items: score them all fully
        elif n_full >= self.n_items and allowed is None:
            cand = np.arange(self.n_items)
        else:
            cand, approx_top = masked_topk(self.pruned_scores(sims), n_full, allowed)
            if n_full == n:  # step 3 would only reorder the same set; the exact rerank does that
                return cand, approx_top
        idx, sc = masked_topk(self.full_scores(sims, cand), n, None)
        return cand[idx], sc

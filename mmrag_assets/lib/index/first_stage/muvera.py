"""``muvera``: MUVERA fixed-dimensional encodings (FDE) + one dot product per item.

Each repetition r draws ``k_sim`` random hyperplanes (SimHash: 2^k_sim buckets) and a random
+-1 projection d -> ``d_proj``. A document's FDE block for (r, bucket) is the mean of its
projected tokens in that bucket (empty buckets take the token whose bucket is nearest in
Hamming distance); a query's block is the sum. <FDE(q), FDE(d)> approximates MaxSim(q, d), so
the first stage is a single-vector scan of ``reps * 2^k_sim * d_proj`` float16 dims per item.
Incremental: the hyperplanes and projections derive from ``seed``, so items encode independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.lib.index.first_stage.base import EncodeBatch, Part, Searchable, Strategy
from mmrag_assets.lib.index.vectors import Ragged

if TYPE_CHECKING:
    from mmrag_assets.lib.index.codebook import Codebook


class Encoder:
    """The random FDE maps of one parameter set (hyperplanes, projections) and the encoding."""

    def __init__(self, params: dict[str, Any], dim: int) -> None:
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
        empty = (counts == 0).reshape(n_items, r_, b_)
        if empty.any():
            # an empty bucket takes the projection of the first token of the item's nearest
            # non-empty bucket (Hamming distance between bucket ids), vectorised over the batch
            first = np.full(n_items * r_ * b_, -1, dtype=np.int64)
            flat_slot = slot.reshape(-1)  # token-major: (token, rep)
            u, at = np.unique(flat_slot, return_index=True)
            first[u] = at // r_  # np.unique's first occurrence = the item's earliest token
            first = first.reshape(n_items, r_, b_)
            ids = np.arange(b_)
            ham = np.bitwise_count(ids[:, None] ^ ids[None, :]).astype(np.int16)  # (B, B)
            dist = np.where(~empty[:, :, None, :], ham[None, None], np.iinfo(np.int16).max)  # (n, R, B, B)
            src = np.take_along_axis(first, dist.argmin(-1).reshape(n_items, r_, b_), axis=2)
            fill = empty & (src >= 0)  # an item without tokens keeps zeros
            _, rep, _ = np.nonzero(fill)
            sums.reshape(n_items, r_, b_, p_)[fill] = proj[src[fill], rep]
        return sums.reshape(n_items, -1)


class Muvera(Strategy):
    name = "muvera"
    build_params = ("k_sim", "reps", "d_proj", "seed")

    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        assert batch.vectors is not None
        v = batch.vectors
        enc = Encoder(self.params, v.dim)
        item_of = np.repeat(np.arange(len(v)), v.lengths)
        fde = enc.encode(v.flat, item_of, len(v), query=False).astype(np.float16)  # (n_items, D)
        return {"fde": Ragged(fde, np.arange(len(v) + 1, dtype=np.int64))}

    def open(self, codebook: Codebook, parts: Sequence[Part]) -> MuveraReader:
        return MuveraReader(self, parts, codebook.dim)


class MuveraReader(Searchable):
    def __init__(self, strategy: Muvera, parts: Sequence[Part], dim: int) -> None:
        super().__init__(strategy, parts, dim)
        self.encoder = Encoder(self.params, dim)
        self._q: tuple[int, Any] | None = None

    def score_part(self, q: np.ndarray, part: Part, local: np.ndarray | None) -> np.ndarray:
        import torch

        qf = self.encoder.encode(q, np.zeros(len(q), dtype=np.int64), 1, query=True)[0]
        qt = torch.from_numpy(qf.astype(np.float16))
        fde = np.asarray(part.fields["fde"].flat)
        rows = fde if local is None else fde[local]
        return (
            (torch.from_numpy(np.array(rows)) @ qt).float().numpy()
        )  # float16 scan (a copy: rows may be a read-only memmap)

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.dense_search(q, n, allowed)

"""``binary``: sign-binarised token vectors and a Hamming MaxSim (Vespa's ColPali recipe).

Each stored token becomes d bits (16 bytes at d = 128, 16x smaller than float16, 32x smaller
than float32). The query is binarised too; per query token the best doc token is the one at
the smallest Hamming distance, and a Hamming distance h maps to an angle estimate
cos(pi * h / d) (the SimHash relation) before summing over query tokens. This scans every
stored token per query: exact-shaped but O(total tokens), so it is the small-corpus option.
Incremental: a token's bits depend on nothing else, so a delta segment encodes only its items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

if TYPE_CHECKING:
    from mmrag_assets.lib.index.codebook import Codebook

CHUNK_ROWS = 1 << 15  # tokens per work unit: 20 x 32,768 uint8 distances = 640 KiB, cache-sized


def pack_signs(x: np.ndarray) -> np.ndarray:
    """(n, d) float -> (n, 8 * ceil(d / 64)) uint8 sign bits (set where > 0), zero padded.

    The padding makes every row a whole number of uint64 words; padded bits are zero in both
    query and documents, so they never add to a Hamming distance.
    """
    bits = np.packbits(np.asarray(x) > 0, axis=1)
    width = 8 * -(-bits.shape[1] // 8)
    if width != bits.shape[1]:
        bits = np.pad(bits, ((0, 0), (0, width - bits.shape[1])))
    return np.ascontiguousarray(bits)


def hamming_min(
    codes64: np.ndarray, q64: np.ndarray, offsets: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """Per item and query token, the smallest Hamming distance: (Tq, n_items) uint8.

    ``codes64``: (n_tokens, W) uint64 packed doc tokens, ``q64``: (Tq, W) packed query,
    ``offsets``: (n_items+1,) item boundaries in rows of ``codes64``.
    """
    n_items = len(offsets) - 1
    out = np.empty((q64.shape[0], n_items), dtype=np.uint8)
    # work units of whole items (about CHUNK_ROWS tokens each)
    bounds = [0]
    while bounds[-1] < n_items:
        i = bounds[-1]
        j = int(np.searchsorted(offsets, offsets[i] + CHUNK_ROWS, side="right")) - 1
        bounds.append(min(max(j, i + 1), n_items))

    def work(u: int) -> None:
        i, j = bounds[u], bounds[u + 1]
        x = codes64[offsets[i] : offsets[j]]  # (rows, W)
        h = np.zeros((q64.shape[0], x.shape[0]), dtype=np.uint8)
        for w in range(x.shape[1]):
            h += np.bitwise_count(x[None, :, w] ^ q64[:, w, None])  # (Tq, rows)
        lens = np.diff(offsets[i : j + 1])
        if (lens == lens[0]).all():
            out[:, i:j] = h.reshape(h.shape[0], j - i, lens[0]).min(-1)
        else:
            out[:, i:j] = np.minimum.reduceat(h, offsets[i:j] - offsets[i], axis=1)

    n_threads = threads or min(os.cpu_count() or 1, 4)
    if n_threads > 1 and len(bounds) > 2:
        with ThreadPoolExecutor(n_threads) as pool:  # numpy ufuncs release the GIL
            list(pool.map(work, range(len(bounds) - 1)))
    else:
        for u in range(len(bounds) - 1):
            work(u)
    return out


class Binary(Strategy):
    name = "binary"
    build_params = ("score",)  # "cos": cos(pi h / d); "linear": 1 - 2 h / d

    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        assert batch.vectors is not None
        if self.params["score"] not in ("cos", "linear"):
            raise FirstStageError(f"binary: score must be 'cos' or 'linear', got {self.params['score']!r}")
        return {"bits": Ragged(pack_signs(batch.vectors.flat), batch.vectors.offsets.copy())}

    def open(self, codebook: Codebook, parts: Sequence[Part]) -> BinaryReader:
        return BinaryReader(self, parts, codebook.dim)


class BinaryReader(Searchable):
    def __init__(self, strategy: Binary, parts: Sequence[Part], dim: int) -> None:
        super().__init__(strategy, parts, dim)
        if self.params["score"] == "linear":
            self.lut = (1 - 2 * np.arange(dim + 1) / dim).astype(np.float32)
        else:
            self.lut = np.cos(np.pi * np.arange(dim + 1) / dim).astype(np.float32)

    def score_part(self, q: np.ndarray, part: Part, local: np.ndarray | None) -> np.ndarray:
        bits = part.fields["bits"]
        q64 = pack_signs(q).view(np.uint64)  # (Tq, W)
        codes64 = np.asarray(bits.flat).view(np.uint64)
        if local is None:
            h = hamming_min(codes64, q64, bits.offsets)
        else:
            rows, off = csr_rows(bits.offsets, local)
            h = hamming_min(codes64[rows], q64, off, threads=1)
        return self.lut[h].sum(0)

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return self.dense_search(q, n, allowed)

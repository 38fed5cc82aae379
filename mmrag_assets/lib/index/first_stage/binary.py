"""``binary``: sign-binarised token vectors and a Hamming MaxSim (Vespa's ColPali recipe).

Each stored token becomes d bits (16 bytes at d = 128, 16x smaller than float16, 32x smaller
than float32). The query is binarised too; per query token the best doc token is the one at
the smallest Hamming distance, and a Hamming distance h maps to an angle estimate
cos(pi * h / d) (the SimHash relation) before summing over query tokens. This scans every
stored token per query: exact-shaped but O(total tokens), so it is the small-corpus option.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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


class BinaryIndex(FirstStageIndex):
    name = "binary"

    def __init__(
        self, directory: Path, params: dict[str, Any], codes: np.ndarray, offsets: np.ndarray, dim: int
    ) -> None:
        super().__init__(directory, params, len(offsets) - 1, dim)
        self.codes = codes  # (n_tokens, 8 * ceil(d / 64)) uint8
        self.codes64 = codes.view(np.uint64)  # (n_tokens, ceil(d / 64))
        self.offsets = offsets
        self.lut = np.cos(np.pi * np.arange(dim + 1) / dim).astype(np.float32)
        if params.get("score") == "linear":
            self.lut = (1 - 2 * np.arange(dim + 1) / dim).astype(np.float32)

    @classmethod
    def _build(
        cls,
        store: VecStore,
        out: Path,
        *,
        score: Literal["cos", "linear"] = "cos",
        chunk_rows: int = 1 << 20,
        **unknown: Any,
    ) -> dict[str, Any]:
        if unknown:
            raise FirstStageError(f"binary: unknown parameters {sorted(unknown)}")
        codes = np.lib.format.open_memmap(
            out / "codes.npy", mode="w+", dtype=np.uint8, shape=(store.n_vectors, 8 * -(-store.dim // 64))
        )
        for s in range(0, store.n_vectors, chunk_rows):
            codes[s : s + chunk_rows] = pack_signs(store.flat[s : s + chunk_rows])
        codes.flush()
        del codes
        save_array(out, "offsets", store.offsets)
        return {"score": score}

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        codes = load_array(directory, "codes")
        return cls(directory, meta["params"], codes, load_array(directory, "offsets"), meta["dim"])

    def scores(self, q: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Binary MaxSim of ``q`` for all items (or for ``items``): (n,) float32."""
        q64 = pack_signs(q).view(np.uint64)  # (Tq, W)
        if items is None:
            h = hamming_min(self.codes64, q64, self.offsets)
        else:
            rows, off = csr_rows(self.offsets, items)
            h = hamming_min(self.codes64[rows], q64, off, threads=1)
        return self.lut[h].sum(0)

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None and allowed.mean() < 0.25:  # score only the allowed items
            items = np.flatnonzero(allowed)
            s = self.scores(q, items)
            idx, sc = masked_topk(s, n, None)
            return items[idx], sc
        return masked_topk(self.scores(q), n, allowed)

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.offsets.nbytes)

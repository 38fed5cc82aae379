"""Where the reranker reads candidates' token vectors from, per tier and codec.

- Visual tiers, codec ``none``: the LanceDB table at the version's pinned table version, by row
  address (:class:`~mmrag_assets.lib.index.vectors.TableVectors`): the only copy of the vectors.
- Visual tiers, ``residual2``/``residual4``/``int8``: compressed per-token codes kept in the
  segments (``rerank/`` fields, written by :class:`Compressed` at publish), memory-mapped; far
  fewer bytes per query when the page cache is cold, at a small recall cost (BENCHMARKS.md).
- Lite: the vocabulary itself (:class:`VocabVectors`). Each item's unique token ids are plaid's
  forward lists, and MaxSim over them is exact: ``exact_scores`` sums, per query token, the max
  of S = q @ vocab.T over the item's ids, without materialising a vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mmrag_assets.lib.index.compress import (
    codec_bits,
    decode_int8,
    decode_residual,
    encode_int8,
    encode_residual,
    residual_lut,
)
from mmrag_assets.lib.index.first_stage.base import EncodeBatch, FirstStageError, Part, Strategy, csr_rows
from mmrag_assets.lib.index.vectors import Ragged

if TYPE_CHECKING:
    from mmrag_assets.lib.index.codebook import Codebook
    from mmrag_assets.lib.index.first_stage.plaid import PlaidReader


class Compressed(Strategy):
    """Compressed rerank vectors, stored per segment like a first stage's fields (``rerank/``)."""

    name = "rerank"
    build_params = ("codec",)

    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        codec = self.params["codec"]
        bits = codec_bits(codec)
        v = batch.vectors
        assert v is not None
        x = np.asarray(v.flat, dtype=np.float32)
        if codec == "int8":
            q, scale = encode_int8(x)
            return {"int8": Ragged(q, v.offsets.copy()), "scale": Ragged(scale, v.offsets.copy())}
        cb = batch.codebook
        key = f"res{bits}_cutoffs"
        if cb.kind != "kmeans" or key not in cb.residual:
            raise FirstStageError(f"codec {codec} needs a trained codebook with {bits}-bit residual buckets")
        codes = batch.codes.flat.astype(np.int64)
        packed = encode_residual(x - cb.centroids[codes], cb.residual[key], bits)
        return {
            "codes": Ragged(codes.astype(cb.code_dtype), v.offsets.copy()),
            "residual": Ragged(packed, v.offsets.copy()),
        }

    def open(self, codebook: Codebook, parts: Sequence[Part]) -> CompressedVectors:  # type: ignore[override]
        return CompressedVectors(self.params["codec"], codebook, parts)


class CompressedVectors:
    """A :class:`~mmrag_assets.lib.index.vectors.VectorSource` over the segments' compressed tokens."""

    def __init__(self, codec: str, codebook: Codebook, parts: Sequence[Part]) -> None:
        self.codec = codec
        self.codebook = codebook
        self.parts = list(parts)
        self.bases = np.array(
            [p.base for p in self.parts] + [sum(p.n_items for p in self.parts)], dtype=np.int64
        )
        bits = codec_bits(codec)
        self.lut = residual_lut(codebook.residual[f"res{bits}_weights"], bits) if bits else None

    @property
    def dim(self) -> int:
        return self.codebook.dim

    @property
    def max_norm(self) -> float:
        return 1.0  # decoded tokens are renormalised (residual) or scaled copies of unit vectors (int8)

    @property
    def nbytes(self) -> int:
        return int(sum(r.flat.nbytes + r.offsets.nbytes for p in self.parts for r in p.fields.values()))

    def gather_ragged(self, idxs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idxs = np.asarray(idxs, dtype=np.int64)
        part_of = np.searchsorted(self.bases, idxs, side="right") - 1
        lens = np.zeros(len(idxs), dtype=np.int64)
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        for j in np.unique(part_of):
            sel = np.flatnonzero(part_of == j)
            p = self.parts[j]
            main = p.fields["int8" if self.codec == "int8" else "residual"]
            rows, off = csr_rows(main.offsets, np.sort(idxs[sel] - p.base))  # disk order
            order = np.argsort(idxs[sel] - p.base, kind="stable")
            if self.codec == "int8":
                x = decode_int8(np.asarray(main.flat)[rows], np.asarray(p.fields["scale"].flat)[rows])
            else:
                codes = np.asarray(p.fields["codes"].flat)[rows].astype(np.int64)
                x = decode_residual(codes, np.asarray(main.flat)[rows], self.codebook.centroids, self.lut)  # type: ignore[arg-type]
            lens[sel[order]] = np.diff(off)
            chunks.append((sel[order], Ragged(x, off)))  # type: ignore[arg-type]
        out_off = np.zeros(len(idxs) + 1, dtype=np.int64)
        np.cumsum(lens, out=out_off[1:])
        out = np.empty((int(out_off[-1]), self.dim), dtype=np.float32)
        for sel, r in chunks:
            for k, i in enumerate(sel):
                out[out_off[i] : out_off[i + 1]] = r.item(k)
        return out, out_off


class VocabVectors:
    """The lite tier's exact vector source: vocabulary rows of each item's unique token ids."""

    def __init__(self, plaid: PlaidReader) -> None:
        self.plaid = plaid
        self.vocab = plaid.codebook.centroids

    @property
    def dim(self) -> int:
        return int(self.vocab.shape[1])

    @property
    def max_norm(self) -> float:
        return 1.0

    def gather_ragged(self, idxs: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self.plaid.codes_of(np.asarray(idxs, dtype=np.int64))
        return self.vocab[r.flat.astype(np.int64)], r.offsets

    def exact_scores(self, q: np.ndarray, idxs: np.ndarray) -> np.ndarray:
        """Exact MaxSim of ``idxs`` (float32): equal tokens, equal vectors, so the centroid
        interaction over the item's unique ids is the MaxSim over all its tokens."""
        return self.plaid.full_scores(self.plaid.centroid_scores(q), idxs)

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
from mmrag_assets.lib.index.rowread import RowFile
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

    def __init__(
        self, codec: str, codebook: Codebook, parts: Sequence[Part], *, dtype: type = np.float32
    ) -> None:
        self.codec = codec
        # float32: what the CPU rerank multiplies (rerank.py: no float16 screen on a CPU); numpy's
        # float16 cast would cost 23 ms per 200 pages here
        self.dtype = dtype
        self.codebook = codebook
        self.parts = list(parts)
        self.bases = np.array(
            [p.base for p in self.parts] + [sum(p.n_items for p in self.parts)], dtype=np.int64
        )
        bits = codec_bits(codec)
        self.lut = residual_lut(codebook.residual[f"res{bits}_weights"], bits) if bits else None
        self.field_names = ("int8", "scale") if codec == "int8" else ("codes", "residual")
        # segment files read by explicit preads, not through their memory maps (rowread.py says why)
        self._files = [{f: RowFile.of(p.fields[f].flat) for f in self.field_names} for p in self.parts]

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
        idxs = np.asarray(idxs, dtype=np.int64).reshape(-1)
        order = np.argsort(idxs, kind="stable")
        s = idxs[order]  # disk order: parts ascend with the positions
        if len(s) and (s[0] < 0 or s[-1] >= self.bases[-1]):
            raise IndexError(f"item positions outside 0..{int(self.bases[-1])}")
        part_of = np.searchsorted(self.bases, s, side="right") - 1
        got: dict[str, list[np.ndarray]] = {f: [] for f in self.field_names}
        lens: list[np.ndarray] = []
        for j in np.unique(part_of):
            local = s[part_of == j] - self.parts[j].base
            for f in self.field_names:
                got[f].append(self._read(int(j), f, local))
            ptr = self.parts[j].fields[self.field_names[0]].offsets  # every field has the same rows per item
            lens.append(ptr[local + 1] - ptr[local])
        off = np.zeros(len(s) + 1, dtype=np.int64)
        if lens:
            np.cumsum(np.concatenate(lens), out=off[1:])
        cat = {f: (np.concatenate(v) if v else self._empty(f)) for f, v in got.items()}
        if self.codec == "int8":
            x = decode_int8(cat["int8"], cat["scale"], dtype=self.dtype)
        else:  # one decode for every part's rows
            x = decode_residual(
                cat["codes"], cat["residual"], self.codebook.centroids, self.lut, dtype=self.dtype
            )  # type: ignore[arg-type]
        if len(s) > 1 and (np.diff(order) != 1).any():  # asked out of disk order: back to the asked order
            back = Ragged(x, off).take(np.argsort(order, kind="stable"))
            return back.flat, back.offsets
        return x, off

    def _read(self, j: int, name: str, local: np.ndarray) -> np.ndarray:
        """Rows of the part-local items ``local`` of field ``name`` of part ``j``, back to back: by
        pread from the segment file (a cold page cache reads only these bytes) or from memory."""
        r = self.parts[j].fields[name]
        rf = self._files[j].get(name)
        if rf is not None:
            starts = r.offsets[local]
            return rf.read(starts, r.offsets[local + 1] - starts)
        rows, _ = csr_rows(r.offsets, local)
        return np.asarray(r.flat)[rows]

    def _empty(self, name: str) -> np.ndarray:
        a = self.parts[0].fields[name].flat if self.parts else np.zeros(0)
        return np.zeros((0, *a.shape[1:]), dtype=a.dtype)


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

"""``dense``: the dense sentence channel's per-item vectors, stored in the segments.

Not a first stage (``search.first_stage`` cannot name it): a channel of its own, fused with the
others after the rerank (``lib/search/fusion.py``). At publish each new item's text is split into
windows and encoded by the configured sentence encoder (``lib/index/embedding/dense.py``): one
unit vector per window, stored as int8 with a float32 scale per window (384-d MiniLM: 388 bytes a
window, half of float16: with 64-word windows overlapping by half a page of text holds ~9 of
them; the cosines move by ~1e-3, tested), so, like every strategy, an item is encoded once and a
compaction only concatenates. At query time the query's vector is scored against every window (a
(rows, d) @ (d,) product over memory-mapped rows, times each row's scale) and an item's score is
its best window's cosine. Segments written before the int8 layout (float16 ``vecs``, no
``scale``) are read as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.lib.index.compress import encode_int8
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


class Dense(Strategy):
    name = "dense"
    build_params = ("model", "path", "onnx", "window_words", "stride_words", "max_windows")
    run_params = ("batch_size", "threads", "prefetch_windows")
    needs_vectors = False
    layout = 1  # 1: int8 windows with a scale per window (0: float16)

    def __init__(self, **params: Any) -> None:
        # versions published before dense.onnx and dense.threads existed hold sentence-transformers'
        # float32 vectors: their queries go through the fp32 ONNX export, which gives the same
        # vectors (max |diff| 2e-7, tests/lib/index/test_dense.py) without torch
        params.setdefault("onnx", "fp32")
        params.setdefault("threads", None)
        params.setdefault("prefetch_windows", 0)
        super().__init__(**params)

    def encoder(self) -> Any:
        from mmrag_assets.lib.index.embedding.dense import dense_encoder

        p = self.params
        return dense_encoder(p["model"], p["path"], int(p["batch_size"]), p["onnx"], p["threads"])

    def encode(self, batch: EncodeBatch) -> dict[str, Ragged]:
        from mmrag_assets.lib.index.embedding.dense import windows

        if batch.texts is None:
            raise FirstStageError("dense: the encode batch carries no texts")
        enc = self.encoder()
        w, stride, cap = (int(self.params[k]) for k in ("window_words", "stride_words", "max_windows"))
        per = [windows(t, w, cap, stride) for t in batch.texts]
        flat = enc.encode([w for ws in per for w in ws]).reshape(-1, enc.dim)  # (sum windows, d) unit rows
        off = np.zeros(len(per) + 1, dtype=np.int64)
        np.cumsum([len(ws) for ws in per], out=off[1:])
        codes, scale = encode_int8(flat, scale_dtype=np.float32)
        return {"vecs": Ragged(codes, off), "scale": Ragged(scale, off.copy())}

    def open(self, codebook: Codebook, parts: Sequence[Part]) -> DenseReader:
        dims = {
            int(p.fields["vecs"].flat.shape[1])
            for p in parts
            if p.n_items and p.fields["vecs"].flat.ndim == 2
        }
        return DenseReader(self, parts, dims.pop() if dims else self.encoder().dim)


class DenseReader(Searchable):
    def encode_query(self, query: str) -> np.ndarray:
        """The query's (1, d) unit vector."""
        return self.strategy.encoder().encode_query(query)  # type: ignore[attr-defined]

    def score_part(self, q: np.ndarray, part: Part, local: np.ndarray | None) -> np.ndarray:
        r = part.fields["vecs"]
        off = r.offsets if local is None else None
        rows = None
        if local is not None:
            rows, off = csr_rows(r.offsets, local)
        lens = np.diff(off)
        out = np.full(len(lens), -np.inf, dtype=np.float32)  # an item without text is never listed
        has = lens > 0
        if has.any():
            flat = np.asarray(r.flat) if rows is None else np.asarray(r.flat)[rows]
            keep = np.flatnonzero(has)
            # best window's cosine per item, in numpy: a (1, d) query needs no torch (its import
            # alone is ~3 s of a shell search). The items' windows are contiguous and an empty item
            # has none, so the rows from each non-empty item's start to the next one's are its own
            sims = np.asarray(flat[: off[-1]], dtype=np.float32) @ np.asarray(q, dtype=np.float32).reshape(
                -1
            )  # q: (1, d)
            if "scale" in part.fields:  # int8 rows (float16 in segments written before)
                sc = np.asarray(part.fields["scale"].flat)
                sims *= sc[: off[-1]] if rows is None else sc[rows][: off[-1]]
            out[keep] = np.maximum.reduceat(sims, off[keep])
        return out

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        idx, sc = self.dense_search(q, n, allowed)
        live = np.isfinite(sc)
        return idx[live], sc[live]

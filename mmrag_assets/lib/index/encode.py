"""Encoding items into segments: read their vectors at the pinned table version, assign codes,
run every strategy's encoder, stream the result into a segment. Also codebook training and
segment merging (compaction), which reads no vector.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.first_stage import EncodeBatch, Strategy, get_strategy
from mmrag_assets.lib.index.policy import Policy
from mmrag_assets.lib.index.rerank_vectors import Compressed
from mmrag_assets.lib.index.segment import TABLE_COLUMNS, Segment, SegmentWriter, items_from_table
from mmrag_assets.lib.index.vectors import Ragged, TableVectors

Progress = Callable[[str], None]


@dataclass
class IndexParams:
    """Everything a publish needs besides the table and the embedder: ``conf/index`` (plus
    ``search.prebuild`` and ``checks.probe_queries``), see :func:`IndexParams.from_config`."""

    strategies: dict[str, dict[str, Any]]  # first stages to build and their parameters (plaid always)
    codec: str  # rerank vectors: none (float16 from LanceDB) | residual2 | residual4 | int8
    rescore: int  # compressed codec: the top max(rescore, k) get exact scores from LanceDB (0: off)
    policy: Policy
    n_centroids: int | None  # None: PLAID's rule on the token count
    sample_tokens: int  # codebook training sample
    kmeans_iters: int
    assign_probe: int
    seed: int
    batch_items: int  # items read and encoded at once
    calibration_items: int  # per modality
    probe_queries: list[str]
    gc_grace_s: float  # old versions stay readable this long after they stop being current
    max_unindexed: int  # LanceDB full-text index: optimise once this many rows are unindexed
    table_small_fragments: int  # LanceDB fragments below table_target_rows: compact the table above this
    table_target_rows: int
    lock_timeout_s: float
    force: str | None = None  # an operation, not a setting: "retrain" or "reencode" now

    def build_strategies(self) -> dict[str, Strategy]:
        specs = {"plaid": self.strategies.get("plaid"), **self.strategies}
        if specs["plaid"] is None:
            raise ValueError(
                "IndexParams.strategies must hold plaid's parameters (the base of every version)"
            )
        return {name: get_strategy(name, **p) for name, p in specs.items()}


def params_from_config(cfg: Any, **replace: Any) -> IndexParams:
    """IndexParams of a composed ``MmragConfig``: ``index.*``, the first stages of
    ``search.prebuild`` (plaid always), ``checks.probe_queries``; ``replace`` overrides fields."""
    ix = cfg.index
    names = list(dict.fromkeys(["plaid", *cfg.search.prebuild]))
    cb = ix.codebook
    strategies = {n: dataclasses.asdict(getattr(ix.strategies, n)) for n in names}
    if cfg.dense.model != "none":  # the dense channel's vectors live in the segments too
        strategies["dense"] = dataclasses.asdict(cfg.dense)
    p = IndexParams(
        strategies=strategies,
        codec=ix.codec, rescore=ix.rescore, policy=Policy(**dataclasses.asdict(ix.policy)),
        n_centroids=cb.n_centroids, sample_tokens=cb.sample_tokens, kmeans_iters=cb.kmeans_iters,
        assign_probe=cb.assign_probe, seed=cb.seed, batch_items=ix.batch_items,
        calibration_items=ix.calibration_items, probe_queries=list(cfg.checks.probe_queries),
        gc_grace_s=ix.gc_grace_s, max_unindexed=ix.max_unindexed, lock_timeout_s=ix.lock_timeout_s,
        table_small_fragments=ix.table_small_fragments, table_target_rows=ix.table_target_rows,
    )  # fmt: skip
    return dataclasses.replace(p, **replace)


@dataclass
class Encoded:
    segment: Segment
    tokens: int
    error_sum: float  # sum over tokens of 1 - cos(token, its leaf) (kmeans codebooks)
    seconds: float

    @property
    def mean_error(self) -> float | None:
        return self.error_sum / self.tokens if self.tokens else None


class Encoder:
    """Encodes items (given by row address) with one codebook and a set of strategies."""

    def __init__(self, codebook: Codebook, strategies: dict[str, Strategy], codec: str) -> None:
        self.codebook = codebook
        self.strategies = dict(strategies)
        if codec != "none" and codebook.kind == "kmeans":
            self.strategies["rerank"] = Compressed(codec=codec)
        self.needs_vectors = any(s.needs_vectors for s in self.strategies.values())

    def derive(self) -> dict[str, Any]:
        return {n: (lambda f, s=s: s.derive(f, self.codebook)) for n, s in self.strategies.items()}

    def encode(
        self,
        table: Any,
        table_version: int,
        rowaddr: np.ndarray,
        out: Path,
        *,
        batch_items: int,
        progress: Progress | None = None,
    ) -> Encoded:
        """A new segment of the items at ``rowaddr`` (read in disk order), under ``out``."""
        t0 = time.perf_counter()
        rowaddr = np.sort(np.asarray(rowaddr, dtype=np.int64))
        src = TableVectors(table, table_version, rowaddr)
        w = SegmentWriter(out, codebook=self.codebook.id)
        tokens, err, max_norm = 0, 0.0, 0.0
        try:
            for s in range(0, len(rowaddr), batch_items):
                idx = np.arange(s, min(s + batch_items, len(rowaddr)))
                meta, raw = src.take_raw(idx, TABLE_COLUMNS)
                codes, vecs, e = self._codes(raw, src)
                if vecs is not None and self.codebook.kind == "kmeans" and vecs.n_rows:
                    max_norm = max(
                        max_norm, float(np.sqrt(np.einsum("ij,ij->i", vecs.flat, vecs.flat).max()))
                    )
                texts = meta.column("text").to_pylist() if "dense" in self.strategies else None
                fields = {
                    n: st.encode(EncodeBatch(codes, vecs, self.codebook, texts))
                    for n, st in self.strategies.items()
                }
                w.add(items_from_table(meta), fields)
                tokens += codes.n_rows
                err += float(e.sum()) if e is not None else 0.0
                if progress and (s // batch_items) % 20 == 19:
                    progress(f"encoded {idx[-1] + 1:,}/{len(rowaddr):,} items")
            seg = w.close(self.derive(), {"tokens": tokens, "error_sum": err, "max_norm": max_norm or 1.0})
        except BaseException:
            w.abort()
            raise
        return Encoded(seg, tokens, err, time.perf_counter() - t0)

    def _codes(self, raw: Ragged, src: TableVectors) -> tuple[Ragged, Ragged | None, np.ndarray | None]:
        if self.codebook.kind == "vocab":  # the stored token ids are the codes
            codes = Ragged(raw.flat.astype(np.int64), raw.offsets)
            vecs = Ragged(self.codebook.centroids[codes.flat], raw.offsets) if self.needs_vectors else None
            return codes, vecs, None
        x = np.asarray(raw.flat, dtype=np.float32)
        c, e = self.codebook.assign(x)
        return Ragged(c, raw.offsets), Ragged(x, raw.offsets), e

    def merge(self, segments: Sequence[Segment], keep: Sequence[np.ndarray], out: Path) -> Segment:
        """One segment of the kept items of ``segments`` (no vector is read: fields are concatenated)."""
        w = SegmentWriter(out, codebook=self.codebook.id)
        try:
            if not any(k.any() for k in keep):  # everything removed: an empty segment with every field
                seg = segments[0]
                w.add(
                    seg.items.take(pa.array([], pa.int64())),
                    {n: {f: r.take([]) for f, r in seg.fields[n].items()} for n in self.strategies},
                )
            for seg, k in zip(segments, keep, strict=True):
                local = np.flatnonzero(k)
                for s in range(0, len(local), 1 << 14):
                    part = local[s : s + (1 << 14)]
                    fields = {n: {f: r.take(part) for f, r in seg.fields[n].items()} for n in self.strategies}
                    w.add(seg.items.take(pa.array(part)), fields)
            tokens = int(sum(seg.meta.get("tokens", 0) for seg in segments))
            max_norm = max([float(s.meta.get("max_norm", 1.0)) for s in segments] or [1.0])
            return w.close(
                self.derive(),
                {
                    "tokens": tokens,
                    "error_sum": 0.0,
                    "max_norm": max_norm,
                    "merged_from": [s.id for s in segments],
                },
            )
        except BaseException:
            w.abort()
            raise


def train_codebook(
    table: Any,
    table_version: int,
    rowaddr: np.ndarray,
    n_tokens: np.ndarray,
    params: IndexParams,
    progress: Progress | None = None,
) -> Codebook:
    """Train a codebook on a token sample of the items at ``rowaddr`` (``n_tokens`` each)."""
    rng = np.random.default_rng(params.seed)
    total = int(n_tokens.sum())
    mean = max(1.0, total / max(len(rowaddr), 1))
    # whole items, ~4x the sample's tokens, then a uniform token subsample of them
    n_items = min(len(rowaddr), max(1, math.ceil(4 * params.sample_tokens / mean)))
    pick = np.sort(rng.choice(len(rowaddr), n_items, replace=False))
    src = TableVectors(table, table_version, np.asarray(rowaddr, dtype=np.int64)[pick])
    parts = [
        np.asarray(src.take_raw(np.arange(s, min(s + 512, n_items)))[1].flat, dtype=np.float32)
        for s in range(0, n_items, 512)
    ]
    x = np.concatenate(parts)
    if len(x) > params.sample_tokens:
        x = x[np.sort(rng.choice(len(x), params.sample_tokens, replace=False))]
    if progress:
        progress(f"training a codebook on {len(x):,} tokens of {n_items:,} items ({total:,} tokens in all)")
    cb = Codebook.train(
        x, n_centroids=params.n_centroids, n_tokens_total=total, kmeans_iters=params.kmeans_iters,
        assign_probe=params.assign_probe, residual_bits=(2, 4), seed=params.seed,
    )  # fmt: skip
    cb.stats["trained_items"] = len(rowaddr)
    return cb

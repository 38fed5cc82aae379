"""Compressed rerank vectors: residual codes against the codebook (2 or 4 bits per dimension), int8."""

from __future__ import annotations

import numpy as np
import pytest

from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.compress import (
    CompressError,
    codec_bits,
    decode_int8,
    decode_residual,
    encode_int8,
    encode_residual,
    residual_lut,
)
from mmrag_assets.lib.index.first_stage import EncodeBatch, Part
from mmrag_assets.lib.index.rerank_vectors import Compressed
from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.search.rerank import exact_maxsim_all, rerank_maxsim, topk


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((40, 32)))
    return _unit(centres[rng.integers(0, 40, 6000)] + 0.35 * rng.standard_normal((6000, 32)))


def test_residual_decoding_matches_a_direct_decode_and_more_bits_are_closer(tokens: np.ndarray) -> None:
    cb = Codebook.train(tokens, n_centroids=64, residual_bits=(2, 4))
    codes, _ = cb.assign(tokens)
    res = tokens - cb.centroids[codes]
    cos = {}
    for bits in (2, 4):
        packed = encode_residual(res, cb.residual[f"res{bits}_cutoffs"], bits)
        assert packed.shape == (len(tokens), 32 * bits // 8) and packed.dtype == np.uint8
        x = decode_residual(codes, packed, cb.centroids, residual_lut(cb.residual[f"res{bits}_weights"], bits))
        # the lookup-table decode equals unpacking the buckets one by one
        per, mask = 8 // bits, (1 << bits) - 1
        buckets = np.stack([(packed >> (bits * j)) & mask for j in range(per)], -1).reshape(len(tokens), 32)
        direct = cb.centroids[codes] + np.take_along_axis(cb.residual[f"res{bits}_weights"].T, buckets.astype(np.int64), 0)
        np.testing.assert_allclose(x, _unit(direct), atol=1e-5)
        cos[bits] = float((x * tokens).sum(1).mean())
    assert 0.9 < cos[2] < cos[4] < 1.0


def test_int8_round_trip(tokens: np.ndarray) -> None:
    q, scale = encode_int8(tokens)
    assert q.dtype == np.int8 and scale.dtype == np.float16
    assert np.abs(decode_int8(q, scale) - tokens).max() < 0.01


def test_codec_names_and_dims() -> None:
    assert [codec_bits(c) for c in ("none", "residual2", "residual4", "int8")] == [0, 2, 4, 0]
    with pytest.raises(CompressError, match="choose one of"):
        codec_bits("residual3")
    with pytest.raises(CompressError, match="divisible"):
        encode_residual(np.zeros((2, 6), np.float32), np.zeros((6, 3), np.float32), 2)


@pytest.mark.parametrize("codec", ["residual2", "residual4", "int8"])
def test_compressed_rerank_keeps_recall_and_exact_rescoring_restores_it(codec: str, tokens: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    items = [tokens[rng.integers(0, len(tokens), int(rng.integers(10, 40)))] for _ in range(300)]
    exact = Ragged.from_list(items, dtype=np.float16)
    cb = Codebook.train(exact.flat.astype(np.float32), n_centroids=64, residual_bits=(2, 4))
    codes, _ = cb.assign(exact.flat.astype(np.float32))
    strat = Compressed(codec=codec)
    half = 150  # two segments, as after a delta
    parts = []
    for lo, hi in ((0, half), (half, 300)):
        sub = exact.take(np.arange(lo, hi))
        c = Ragged(codes[exact.offsets[lo] : exact.offsets[hi]], sub.offsets)
        parts.append(Part(lo, hi - lo, strat.encode(EncodeBatch(c, Ragged(sub.flat.astype(np.float32), sub.offsets), cb)), {}))
    src = strat.open(cb, parts)
    _flat, off = src.gather_ragged([299, 3, 151])  # across segments, in the order asked
    assert np.array_equal(np.diff(off), [len(items[299]), len(items[3]), len(items[151])])
    qs = [tokens[rng.integers(0, len(tokens), 6)] for _ in range(10)]
    truth = exact_maxsim_all(qs, exact)
    rec, rec_rescored = [], []
    for j, q in enumerate(qs):
        want = set(topk(truth[:, j], 10).tolist())
        order, _ = rerank_maxsim(q, src, np.arange(300), 300)
        rec.append(len(want & set(order[:10].tolist())) / 10)
        top, _ = rerank_maxsim(q, exact, order[:30], 10)
        rec_rescored.append(len(want & set(top.tolist())) / 10)
    assert np.mean(rec) >= (0.7 if codec == "residual2" else 0.85), (codec, np.mean(rec))
    assert np.mean(rec_rescored) >= (0.9 if codec == "residual2" else 0.97), (codec, np.mean(rec_rescored))

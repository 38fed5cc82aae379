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
from mmrag_assets.lib.scoring.maxsim import exact_maxsim_all, topk
from mmrag_assets.lib.search.rerank import rerank_maxsim


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
        x = decode_residual(
            codes, packed, cb.centroids, residual_lut(cb.residual[f"res{bits}_weights"], bits)
        )
        # the lookup-table decode equals unpacking the buckets one by one
        per, mask = 8 // bits, (1 << bits) - 1
        buckets = np.stack([(packed >> (bits * j)) & mask for j in range(per)], -1).reshape(len(tokens), 32)
        direct = cb.centroids[codes] + np.take_along_axis(
            cb.residual[f"res{bits}_weights"].T, buckets.astype(np.int64), 0
        )
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
def test_compressed_rerank_keeps_recall_and_exact_rescoring_restores_it(
    codec: str, tokens: np.ndarray
) -> None:
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
        parts.append(
            Part(
                lo,
                hi - lo,
                strat.encode(EncodeBatch(c, Ragged(sub.flat.astype(np.float32), sub.offsets), cb)),
                {},
            )
        )
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


def _old_decode(codes: np.ndarray, packed: np.ndarray, centroids: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """The decode before the flat-table gather (kept as the reference)."""
    n, p = packed.shape
    x = centroids[codes] + lut[np.arange(p)[None, :], packed].reshape(n, -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("codec", ["residual2", "residual4", "int8"])
def test_rows_read_from_segment_files_equal_the_in_memory_decode(
    codec: str, tokens: np.ndarray, tmp_path
) -> None:
    """The rerank reads candidates' codes by pread from the segment files (not their memory maps):
    the same rows, in the asked order, as the in-memory path and the old decode."""
    rng = np.random.default_rng(2)
    items = [tokens[rng.integers(0, len(tokens), int(rng.integers(5, 30)))] for _ in range(120)]
    vecs = Ragged.from_list(items)
    cb = Codebook.train(vecs.flat, n_centroids=64, residual_bits=(2, 4))
    codes, _ = cb.assign(vecs.flat)
    strat = Compressed(codec=codec)
    mem_parts, disk_parts = [], []
    for k, (lo, hi) in enumerate(((0, 70), (70, 120))):
        sub = vecs.take(np.arange(lo, hi))
        fields = strat.encode(
            EncodeBatch(Ragged(codes[vecs.offsets[lo] : vecs.offsets[hi]], sub.offsets), sub, cb)
        )
        mem_parts.append(Part(lo, hi - lo, fields, {}))
        on_disk = {}
        for name, r in fields.items():
            np.save(tmp_path / f"{k}_{name}.npy", r.flat)
            on_disk[name] = Ragged(np.load(tmp_path / f"{k}_{name}.npy", mmap_mode="r"), r.offsets)
        disk_parts.append(Part(lo, hi - lo, on_disk, {}))
    mem, disk = strat.open(cb, mem_parts), strat.open(cb, disk_parts)
    assert all(f is not None for files in disk._files for f in files.values())  # really the pread path
    for ask in (np.arange(120), np.array([119, 3, 70, 69, 5, 100]), np.array([7])):
        want_flat, want_off = mem.gather_ragged(ask)
        got_flat, got_off = disk.gather_ragged(ask)
        assert np.array_equal(got_off, want_off) and np.array_equal(got_flat, want_flat)
        assert np.array_equal(np.diff(got_off), [len(items[i]) for i in ask])
        if codec != "int8":
            bits = codec_bits(codec)
            lut = residual_lut(cb.residual[f"res{bits}_weights"], bits)
            ref = Ragged.concat([Ragged(
                _old_decode(np.asarray(p.fields["codes"].item(i - p.base)).astype(np.int64),
                            np.asarray(p.fields["residual"].item(i - p.base)), cb.centroids, lut),
                np.array([0, len(items[i])])) for i in ask for p in mem_parts if p.base <= i < p.base + p.n_items])  # fmt: skip
            np.testing.assert_allclose(got_flat, ref.flat, atol=1e-6)
        else:
            np.testing.assert_allclose(got_flat, Ragged.from_list(items).take(ask).flat, atol=0.01)


def test_residual_buckets_fit_tokens_the_codebook_did_not_train_on() -> None:
    """With few tokens per leaf the training tokens sit near their own leaf's mean; buckets fitted on
    them would put far more than the nominal half of a new token's residual values in the two outer
    2-bit buckets (clipped). Fitted on held-out tokens, new tokens fill them as the quantiles say."""
    rng = np.random.default_rng(3)
    centres = _unit(rng.standard_normal((200, 32)))

    def draw(n: int) -> np.ndarray:
        return _unit(centres[rng.integers(0, 200, n)] + 0.5 * rng.standard_normal((n, 32)))

    cb = Codebook.train(draw(60_000), n_centroids=12_000, residual_bits=(2,))  # ~4.5 training tokens per leaf
    new = draw(20_000)
    codes, _ = cb.assign(new)
    res = new - cb.centroids[codes]
    cut = cb.residual["res2_cutoffs"]  # (d, 3)
    outer = float(np.mean((res < cut[None, :, 0]) | (res > cut[None, :, 2])))
    assert 0.45 < outer < 0.55, outer  # fitted on the training tokens themselves: 0.61

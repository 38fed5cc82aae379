"""The dense sentence channel: windows, the bundled encoders, and the segment strategy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.embedding.dense import dense_encoder, windows
from mmrag_assets.lib.index.first_stage import EncodeBatch, Part, get_strategy
from mmrag_assets.lib.index.vectors import Ragged

PASSAGES = [
    (
        "Floating-point numbers are stored in binary, so decimal fractions such as 0.1 cannot be represented "
        "exactly and sums of them carry small rounding errors."
    ),
    "To reset the router, hold the button on the back for ten seconds until the lights blink.",
    "Quarterly revenue grew in every region, led by the northern sales team.",
    "",  # an item without text: never listed
]


def test_windows_cut_words_and_cap() -> None:
    assert windows("a b c d e", 2, 2) == ["a b", "c d"]
    assert windows("a b c", 5, 3) == ["a b c"]
    assert windows("   ", 5, 3) == [] and windows(None, 5, 3) == []
    # overlapping by half: the tail is in the last window, no window inside the previous one
    assert windows("a b c d e", 2, 9, 1) == ["a b", "b c", "c d", "d e"]
    assert windows("a b c d e f", 4, 9, 2) == ["a b c d", "c d e f"]
    assert windows("a b c d e f g", 4, 9, 2) == ["a b c d", "c d e f", "e f g"]
    assert windows("a b", 4, 9, 2) == ["a b"]
    assert windows("a b c d e f g", 4, 2, 2) == ["a b c d", "c d e f"]
    for bad in (0, 5):
        with pytest.raises(ConfigError, match="stride_words"):
            windows("a b c", 4, 3, bad)
    with pytest.raises(ConfigError):
        windows("a", 0, 1)


@pytest.mark.parametrize("model", ["minilm", "wordllama"])
def test_dense_strategy_ranks_the_paraphrased_passage_first(model: str) -> None:
    st = get_strategy(
        "dense", model=model, path=None, window_words=12, stride_words=12, max_windows=3, batch_size=8
    )
    cb = Codebook.vocab(np.eye(4, dtype=np.float32))
    empty = Ragged(np.zeros(0, np.int64), np.zeros(len(PASSAGES) + 1, np.int64))
    fields = st.encode(EncodeBatch(empty, None, cb, PASSAGES))
    vecs = fields["vecs"]
    assert vecs.flat.dtype == np.int8 and list(np.diff(vecs.offsets)) == [2, 2, 1, 0]
    assert fields["scale"].flat.dtype == np.float32 and len(fields["scale"].flat) == len(vecs.flat)
    reader = st.open(cb, [Part(0, len(PASSAGES), fields, {})])
    q = reader.encode_query("why is 0.1 plus 0.2 not exactly 0.3")
    idx, scores = reader.search(q, 10)
    assert 3 not in idx.tolist() and len(idx) == 3  # the empty item is not listed
    if model == "minilm":  # context: the paraphrase shares almost no word with the passage
        assert idx[0] == 0 and scores[0] > scores[1]
    allowed = np.array([False, True, True, True])
    assert set(reader.search(q, 10, allowed)[0].tolist()) <= {1, 2}


def test_the_encoder_is_loaded_once_per_process() -> None:
    assert dense_encoder("wordllama", None, 8) is dense_encoder("wordllama", None, 8)
    with pytest.raises(ConfigError):
        dense_encoder("bert", None, 8)


TEXTS = [
    "how do I reset my wireless router",
    "E04",
    "Umsatz nach Région — naïve café ☕",
    "word " * 400,
    *PASSAGES[:3],
    (
        "SCons builds a target only when one of its sources changed: the signature of every source file is "
        "compared with the one stored in the .sconsign database after the last build, and by default the "
        "signature is an MD5 checksum of the contents, so touching a file without changing it rebuilds nothing."
    ),
]


@pytest.mark.slow  # loads sentence-transformers (torch) beside the ONNX graph, and exports fp32: 5-14 s each
@pytest.mark.parametrize(("quantize", "min_cos"), [("fp32", 0.99999), ("int8", 0.98)])
def test_onnx_minilm_matches_sentence_transformers(quantize: str, min_cos: float) -> None:
    """The ONNX export (documents on two threads, queries on this one) gives
    sentence-transformers' vectors: fp32 to float precision, int8 (per-channel weights) within a
    cosine of 0.98 of each (0.986 the lowest over 260 real windows when measured, mean 0.994)."""
    from mmrag_assets.lib.index.embedding.dense import _minilm, dense_encoder

    enc = dense_encoder("minilm", None, 8, quantize, 2)  # two threads: texts split between them
    theirs = _minilm(None).encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    docs = enc.encode(TEXTS)
    query = np.concatenate([enc.encode_query(t) for t in TEXTS])
    assert docs.shape == query.shape == theirs.shape == (len(TEXTS), 384)
    cos = (docs * theirs).sum(1)
    assert cos.min() >= min_cos, cos
    np.testing.assert_allclose(
        query, docs, atol=1e-6
    )  # one text per call: a vector never depends on its neighbours
    if quantize == "fp32":
        np.testing.assert_allclose(docs, theirs, atol=2e-5)


@pytest.mark.slow  # hashes the MiniLM folder three times and opens the graph twice: 20-30 s on 2 busy cores
def test_onnx_export_is_cached_by_content(tmp_path) -> None:
    """A second encoder of the same model opens the cached graph (no export); a folder whose
    files differ gets another cache key."""
    import os
    import shutil

    from mmrag_assets.lib.index.embedding.dense import _minilm_folder
    from mmrag_assets.lib.index.embedding.onnx_encoder import OnnxSentenceEncoder, content_key

    folder = _minilm_folder(None)
    a = OnnxSentenceEncoder(folder, "int8", threads=1)
    b = OnnxSentenceEncoder(folder, "int8", threads=1)
    assert a.graph == b.graph and b.export_seconds == 0.0 and a.graph.is_file()
    assert content_key(Path(folder), "int8") != content_key(Path(folder), "fp32")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, copy_function=os.link if _same_device(folder, tmp_path) else shutil.copy2)
    assert content_key(copy, "int8") == content_key(Path(folder), "int8")  # same contents elsewhere: same key
    (copy / "sentence_bert_config.json").unlink()
    (copy / "sentence_bert_config.json").write_text('{"max_seq_length": 128, "do_lower_case": false}')
    assert content_key(copy, "int8") != content_key(Path(folder), "int8")


def _same_device(a, b) -> bool:
    import os

    return os.stat(a).st_dev == os.stat(b).st_dev


def test_dense_query_path_imports_no_torch() -> None:
    """Encoding a query and scoring it against stored windows stays in numpy (a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from mmrag_assets.lib.index.embedding.dense import dense_encoder\n"
        "q = dense_encoder('minilm', None, 32).encode_query('reset the router')\n"
        "assert q.shape == (1, 384) and abs(float(np.linalg.norm(q)) - 1) < 1e-5\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dense_scores_are_each_items_best_window_with_empty_items_between() -> None:
    """score = max over the item's own windows' cosines, -inf for an item without windows: empty items
    first, between and last, on the full scan and on the sparse path (few items allowed)."""
    rng = np.random.default_rng(7)
    lens = np.array([0, 3, 0, 0, 1, 5, 0, 2] * 4 + [0])
    off = np.concatenate([[0], np.cumsum(lens)])
    flat = rng.standard_normal((int(off[-1]), 8)).astype(np.float16)
    st = get_strategy(
        "dense", model="wordllama", path=None, window_words=12, stride_words=12, max_windows=3, batch_size=8
    )
    reader = st.open(
        Codebook.vocab(np.eye(4, dtype=np.float32)), [Part(0, len(lens), {"vecs": Ragged(flat, off)}, {})]
    )
    q = rng.standard_normal((1, 8)).astype(np.float32)
    sims = flat.astype(np.float32) @ q[0]
    want = np.array(
        [sims[off[i] : off[i + 1]].max() if lens[i] else -np.inf for i in range(len(lens))], np.float32
    )
    np.testing.assert_allclose(reader.score_part(q, reader.parts[0], None), want, rtol=1e-6)
    local = np.array([0, 2, 5, 6, 7, 13, 32])  # the sparse path: a subset, empty items among them
    np.testing.assert_allclose(reader.score_part(q, reader.parts[0], local), want[local], rtol=1e-6)
    allowed = np.zeros(len(lens), dtype=bool)
    allowed[local] = True  # 7 of 33 allowed: dense_search scores only those
    idx, sc = reader.search(q, 10, allowed)
    listed = local[np.isfinite(want[local])]
    assert sorted(idx.tolist()) == sorted(listed.tolist())
    np.testing.assert_allclose(sc, np.sort(want[listed])[::-1], rtol=1e-6)


def test_int8_windows_keep_the_cosines_and_the_order() -> None:
    """Stored int8 windows (per-row scale) score within 1e-2 of the float cosines (largest seen
    ~2e-3) and rank the items alike; the float16 layout of older segments reads the same."""
    from mmrag_assets.lib.index.compress import encode_int8

    rng = np.random.default_rng(3)
    lens = np.array([2, 0, 3, 1, 4] * 20)
    off = np.concatenate([[0], np.cumsum(lens)])
    flat = rng.standard_normal((int(off[-1]), 384)).astype(np.float32)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    codes, scale = encode_int8(flat, scale_dtype=np.float32)
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    np.testing.assert_allclose(codes * scale[:, None], flat, atol=float(scale.max()) / 2 + 1e-7)
    st = get_strategy(
        "dense", model="wordllama", path=None, window_words=12, stride_words=12, max_windows=3, batch_size=8
    )
    cb = Codebook.vocab(np.eye(4, dtype=np.float32))
    as_int8 = st.open(
        cb, [Part(0, len(lens), {"vecs": Ragged(codes, off), "scale": Ragged(scale, off.copy())}, {})]
    )
    as_f16 = st.open(cb, [Part(0, len(lens), {"vecs": Ragged(flat.astype(np.float16), off)}, {})])
    q = flat[:1] + 0.5 * rng.standard_normal((1, 384)).astype(np.float32)
    q /= np.linalg.norm(q)
    a, b = as_int8.score_part(q, as_int8.parts[0], None), as_f16.score_part(q, as_f16.parts[0], None)
    fin = np.isfinite(b)
    assert np.array_equal(fin, np.isfinite(a)) and np.abs(a[fin] - b[fin]).max() < 1e-2
    assert as_int8.search(q, 5)[0].tolist() == as_f16.search(q, 5)[0].tolist()
    local = np.array([0, 1, 7, 42])  # the sparse path gathers the scales with the rows
    np.testing.assert_allclose(as_int8.score_part(q, as_int8.parts[0], local), a[local], rtol=1e-6)


def test_prefetched_windows_give_the_vectors_encode_gives() -> None:
    """Windows encoded ahead on the background thread are what encode would give (one text per
    call), encode takes them and encodes only the rest; past the cap nothing more is queued."""
    import time

    from mmrag_assets.lib.index.embedding.dense import DenseEncoder

    enc = DenseEncoder("minilm", None, 8, "int8", 2)  # not the cached instance: its own background thread
    enc.prefetch(TEXTS[:4], cap=6)
    enc.prefetch(TEXTS[4:7], cap=6)  # 4 + 3 > 6: left to encode
    assert enc._ahead.held == 4
    deadline = time.monotonic() + 120
    while len(enc._ahead.memo) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(enc._ahead.memo) == set(TEXTS[:4])
    calls = []
    real = enc._impl.encode
    enc._impl.encode = lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw)
    got = enc.encode([*TEXTS, TEXTS[0]])
    assert calls == [TEXTS[4:]]  # only the windows not encoded ahead, once each
    want = real([*TEXTS, TEXTS[0]])
    np.testing.assert_allclose(got, want, atol=1e-6)  # the same vectors (to the last bit or two of float32)
    enc.prefetch(TEXTS[:2], cap=6)  # a new run's prefetch starts a new background thread
    assert enc._ahead.held == 2 and not enc._ahead.stopped
    enc._ahead.stop()

from __future__ import annotations

import numpy as np
import pytest

from mmrag_assets.errors import QueryError
from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.scoring.maxsim import exact_maxsim_all, maxsim_ragged
from mmrag_assets.lib.search.rerank import RERANKERS, RerankerError, get_reranker, rerank_maxsim


def naive_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def f16(arrays: list[np.ndarray]) -> Ragged:
    """Items stored as the index stores them: float16 rows back to back."""
    return Ragged.from_list(arrays, dtype=np.float16)


@pytest.fixture
def store() -> Ragged:
    rng = np.random.default_rng(0)
    return f16([_unit(rng.standard_normal((int(rng.integers(1, 40)), 32))) for _ in range(60)])


def test_maxsim_ragged_matches_naive(store: Ragged) -> None:
    rng = np.random.default_rng(1)
    q = _unit(rng.standard_normal((7, 32)))
    want = np.array([naive_maxsim(q, store.item(i)) for i in range(store.n_items)])
    got = maxsim_ragged(q, store.flat, store.offsets)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got_chunked = maxsim_ragged(q, store.flat, store.offsets, chunk_rows=17)  # many ragged chunks
    np.testing.assert_allclose(got_chunked, want, rtol=1e-5, atol=1e-5)


def test_multi_query_and_all_items(store: Ragged) -> None:
    rng = np.random.default_rng(2)
    qs = [_unit(rng.standard_normal((n, 32))) for n in (3, 9, 1)]  # different query lengths
    s = exact_maxsim_all(qs, store, chunk_items=7)
    assert s.shape == (store.n_items, 3)
    for j, q in enumerate(qs):
        np.testing.assert_allclose(s[:, j], [naive_maxsim(q, store.item(i)) for i in range(store.n_items)],
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_rerank_returns_exact_topk(store: Ragged) -> None:
    rng = np.random.default_rng(3)
    q = _unit(rng.standard_normal((5, 32)))
    cand = np.array([10, 3, 3, 50, 7, 22, 41, 0, 59])  # duplicates are scored once
    idx, scores = rerank_maxsim(q, store, cand, k=4)
    exact = {int(i): naive_maxsim(q, store.item(int(i))) for i in set(cand.tolist())}
    best = sorted(exact, key=lambda i: -exact[i])[:4]
    assert idx.tolist() == best
    np.testing.assert_allclose(scores, [exact[i] for i in best], rtol=1e-5)
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(np.diff(scores) <= 0)
    empty_idx, empty_scores = rerank_maxsim(q, store, np.array([], dtype=np.int64), k=4)
    assert empty_idx.size == 0 and empty_scores.size == 0


def test_float16_screen_returns_the_exact_topk() -> None:
    """Near-duplicate items (ties within float16 error) must still come back in exact order."""
    rng = np.random.default_rng(7)
    base = _unit(rng.standard_normal((30, 64)))
    arrays = [_unit(base + 1e-3 * rng.standard_normal(base.shape)) for _ in range(80)]
    arrays += [_unit(rng.standard_normal((30, 64))) for _ in range(40)]
    store = f16(arrays)
    for j in range(5):
        q = _unit(base[rng.integers(0, 30, 6)] + 0.3 * rng.standard_normal((6, 64)))
        cand = rng.permutation(len(arrays))
        a_idx, a_sc = rerank_maxsim(q, store, cand, 10, screen=False)
        b_idx, b_sc = rerank_maxsim(q, store, cand, 10, screen=True)
        assert a_idx.tolist() == b_idx.tolist()
        np.testing.assert_array_equal(a_sc, b_sc)  # the returned scores are the float32 ones
        exact = [naive_maxsim(q, store.item(int(i))) for i in a_idx]
        np.testing.assert_allclose(a_sc, exact, rtol=1e-5)


def test_default_screens_on_cuda_only(store: Ragged, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the default scores every candidate in float32 (the float16 screen is slower there);
    with a CUDA device it screens first. Either way the same exact top-k."""
    import mmrag_assets.lib.search.rerank as rr

    computes: list[str] = []
    real = rr.maxsim_ragged

    def spy(*a: object, **kw: object) -> np.ndarray:
        computes.append(str(kw.get("compute", "float32")))
        return real(*a, **{**kw, "device": "cpu"})  # type: ignore[arg-type]

    monkeypatch.setattr(rr, "maxsim_ragged", spy)
    q = _unit(np.random.default_rng(9).standard_normal((5, 32)))
    cpu = rerank_maxsim(q, store, np.arange(60), 10, device="cpu")
    assert computes == ["float32"]
    computes.clear()
    cuda = rerank_maxsim(q, store, np.arange(60), 10, device="cuda")  # the spy computes on the CPU
    assert computes[0] == "float16" and set(computes[1:]) == {"float32"}
    assert cpu[0].tolist() == cuda[0].tolist()
    np.testing.assert_array_equal(cpu[1], cuda[1])


def test_float16_screen_with_non_unit_vectors() -> None:
    """Unnormalised embeddings (norm ~20) widen the screen's error bound instead of breaking it."""
    rng = np.random.default_rng(8)
    base = 20 * _unit(rng.standard_normal((30, 64)))
    arrays = [base + 0.02 * rng.standard_normal(base.shape) for _ in range(60)]
    store = f16(arrays)
    assert store.max_norm > 19
    q = 3 * _unit(base[:6] + 2 * rng.standard_normal((6, 64)))
    a = rerank_maxsim(q, store, np.arange(60), 10, screen=False)
    b = rerank_maxsim(q, store, np.arange(60), 10, screen=True)
    assert a[0].tolist() == b[0].tolist()
    np.testing.assert_array_equal(a[1], b[1])


def test_reranker_registry(store: Ragged) -> None:
    assert {"maxsim", "none"} <= set(RERANKERS)
    rng = np.random.default_rng(4)
    q = _unit(rng.standard_normal((5, 32)))
    cand = np.array([4, 8, 15, 16, 23])
    approx = np.array([0.1, 0.9, 0.5, 0.7, 0.2], np.float32)
    idx, sc = get_reranker("none").rerank(q, store, cand, 3, approx)
    assert idx.tolist() == [8, 16, 15] and sc.tolist() == pytest.approx([0.9, 0.7, 0.5])
    idx2, _ = get_reranker("maxsim").rerank(q, store, cand, 3, approx)
    assert idx2.tolist() == rerank_maxsim(q, store, cand, 3)[0].tolist()
    with pytest.raises(RerankerError):
        get_reranker("colbert-v9")


def test_bad_queries_are_rejected(store: Ragged) -> None:
    with pytest.raises(QueryError, match="NaN"):
        rerank_maxsim(np.full((2, 32), np.nan, np.float32), store, np.array([1]), 1)
    with pytest.raises(QueryError, match="dim"):
        rerank_maxsim(np.ones((2, 16), np.float32), store, np.array([1]), 1)
    with pytest.raises(QueryError):
        rerank_maxsim(np.ones((0, 32), np.float32), store, np.array([1]), 1)

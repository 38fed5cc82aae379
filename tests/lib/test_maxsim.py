from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrag_assets.lib.maxsim import maxsim, maxsim_many, nonfinite_rows

DIM = 32


def unit_rows(rng: np.random.Generator, n: int, *, positive: bool = False) -> np.ndarray:
    a = rng.standard_normal((n, DIM)).astype(np.float32)
    if positive:  # all dot products > 0: zero padding can never win a max
        a = np.abs(a)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def brute_force(q: np.ndarray, d: np.ndarray) -> float:
    """Loop-by-loop definition: sum over query tokens of the best document token."""
    if len(d) == 0:
        return float("-inf")
    return float(sum(max(float(qt @ dt) for dt in d) for qt in q))


@pytest.fixture
def ragged() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    queries = [unit_rows(rng, n, positive=True) for n in (3, 7, 12)]
    docs = [unit_rows(rng, n, positive=True) for n in (1, 5, 40, 17, 2, 64, 9)]
    return queries, docs


def test_agrees_with_colpali_engine_scorer(ragged: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

    queries, docs = ragged
    ref = BaseVisualRetrieverProcessor.score_multi_vector(
        [torch.from_numpy(q) for q in queries],
        [torch.from_numpy(d) for d in docs],
        batch_size=3,
        device="cpu",
    ).numpy()  # (n_queries, n_docs)
    ours = maxsim_many(queries, docs, batch_size=3)
    assert ours.shape == ref.shape == (3, 7)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_masks_padding_where_the_zero_padded_reference_cannot() -> None:
    # a query whose best match is negative: zero padding would clamp it to 0
    from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

    q = np.eye(DIM, dtype=np.float32)[:1]  # (1, d)
    short = -np.eye(DIM, dtype=np.float32)[:1]  # (1, d): similarity -1
    long = np.eye(DIM, dtype=np.float32)[1:4]  # (3, d): similarity 0
    ours = maxsim(q, [short, long])
    assert ours.tolist() == [-1.0, 0.0] == [brute_force(q, short), brute_force(q, long)]
    ref = BaseVisualRetrieverProcessor.score_multi_vector(
        [torch.from_numpy(q)], [torch.from_numpy(short), torch.from_numpy(long)], device="cpu"
    )
    assert ref[0, 0].item() == 0.0  # the reference's documented clamp


def test_ragged_matches_brute_force_for_any_batch_size(
    ragged: tuple[list[np.ndarray], list[np.ndarray]],
) -> None:
    rng = np.random.default_rng(1)
    q = unit_rows(rng, 6)  # mixed signs
    docs = ragged[1] + [unit_rows(rng, 3)]
    expected = np.array([brute_force(q, d) for d in docs], dtype=np.float32)
    for bs in (1, 2, 3, 256):
        np.testing.assert_allclose(maxsim(q, docs, batch_size=bs), expected, rtol=1e-5, atol=1e-5)


def test_padded_input_with_mask_equals_list_input(ragged: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    queries, docs = ragged
    n = max(len(d) for d in docs)
    padded = np.zeros((len(docs), n, DIM), dtype=np.float32)
    mask = np.zeros((len(docs), n), dtype=bool)
    for i, d in enumerate(docs):
        padded[i, n - len(d) :] = d  # left padding, as the models produce
        mask[i, n - len(d) :] = True
    padded[~mask] = 5.0  # garbage in padded rows must be ignored
    np.testing.assert_allclose(
        maxsim(queries[1], padded, mask=mask, batch_size=4), maxsim(queries[1], docs), rtol=1e-6
    )
    with pytest.raises(ValueError, match="mask shape"):
        maxsim(queries[1], padded, mask=mask[:, :-1])


def test_float16_storage_is_upcast(ragged: tuple[list[np.ndarray], list[np.ndarray]]) -> None:
    queries, docs = ragged
    docs16 = [d.astype(np.float16) for d in docs]
    q16 = queries[2].astype(np.float16)
    up = maxsim(q16.astype(np.float32), [d.astype(np.float32) for d in docs16])
    got = maxsim(q16, docs16)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, up, rtol=1e-6)  # computed in float32 on the float16 values
    np.testing.assert_allclose(got, maxsim(queries[2], docs), atol=2e-2)  # close to the float32 originals
    got_t = maxsim(torch.from_numpy(q16), [torch.from_numpy(d) for d in docs16])
    np.testing.assert_allclose(got_t, up, rtol=1e-6)


def test_empty_documents_and_queries() -> None:
    rng = np.random.default_rng(2)
    q = unit_rows(rng, 4)
    empty = np.zeros((0, DIM), dtype=np.float32)
    scores = maxsim(q, [empty, unit_rows(rng, 3), empty])
    assert scores[0] == -np.inf and scores[2] == -np.inf and np.isfinite(scores[1])
    assert maxsim(q, [empty, empty]).tolist() == [-np.inf, -np.inf]
    assert maxsim_many([q], []).shape == (1, 0)
    with pytest.raises(ValueError, match="dim"):
        maxsim(q[:, :8], [unit_rows(rng, 3)])


def test_nonfinite_rows() -> None:
    ok = np.ones((3, 4), dtype=np.float32)
    nan = ok.copy()
    nan[1, 2] = np.nan
    inf = ok.astype(np.float16)
    inf[0, 0] = np.inf
    assert nonfinite_rows([ok, nan, ok, inf, np.zeros((0, 4))]) == [1, 3]
    assert nonfinite_rows([torch.from_numpy(nan).to(torch.bfloat16)]) == [0]

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrag_assets.errors import NotFound
from mmrag_assets.lib.index.vecstore import VecStore, VecStoreError


def _items(rng: np.random.Generator, n: int = 7, d: int = 16) -> list[np.ndarray]:
    out = []
    for i in range(n):
        x = rng.standard_normal((3 + 5 * i, d)).astype(np.float32)
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return out


def test_write_open_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = _items(rng)
    ids = [f"doc:{i}" for i in range(len(arrays))]
    VecStore.write(tmp_path / "s", ids, (a for a in arrays))  # a generator is streamed
    store = VecStore.open(tmp_path / "s")
    assert store.n_items == len(arrays) and store.ids == ids and store.dim == 16
    assert store.lengths.tolist() == [len(a) for a in arrays]
    assert store.n_vectors == sum(len(a) for a in arrays)
    assert store.nbytes == store.n_vectors * 16 * 2 + (len(arrays) + 1) * 8
    for i, a in enumerate(arrays):
        got = store.get(i)
        assert got.dtype == np.float16 and got.shape == a.shape
        np.testing.assert_array_equal(got, a.astype(np.float16))
    np.testing.assert_array_equal(store.get(-1), arrays[-1].astype(np.float16))
    assert store.index_of("doc:3") == 3
    with pytest.raises(NotFound):
        store.index_of("nope")
    with pytest.raises(NotFound):
        store.get(len(arrays))


def test_flat_is_a_plain_memmappable_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = _items(rng, 4)
    with VecStore.writer(tmp_path / "s", dim=16) as w:
        w.add_batch(["a", "b"], arrays[:2])
        w.add_batch(["c", "d"], np.stack([arrays[2][:3], arrays[3][:3]]))  # (B, n, d) array
    flat = np.load(tmp_path / "s" / "flat.npy", mmap_mode="r")
    assert isinstance(flat, np.memmap) and flat.dtype == np.float16
    assert flat.shape == (len(arrays[0]) + len(arrays[1]) + 6, 16)
    store = VecStore.open(tmp_path / "s")
    assert isinstance(store.flat, np.memmap)
    np.testing.assert_array_equal(store.get(3), arrays[3][:3].astype(np.float16))


def test_gather_keeps_requested_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    arrays = _items(rng)
    store = VecStore.write(tmp_path / "s", [str(i) for i in range(len(arrays))], arrays)
    want = [5, 0, 3, 5]
    flat, off = store.gather_ragged(want)
    assert off.tolist() == [0, *np.cumsum([len(arrays[i]) for i in want]).tolist()]
    for j, i in enumerate(want):
        np.testing.assert_array_equal(flat[off[j] : off[j + 1]], arrays[i].astype(np.float16))
    with pytest.raises(NotFound):
        store.gather_ragged([len(arrays)])


def test_bad_input_is_rejected_and_leaves_no_store(tmp_path: Path) -> None:
    good = np.ones((2, 8), np.float32)
    with pytest.raises(VecStoreError, match="expected"):
        VecStore.write(tmp_path / "a", ["x", "y"], [good, np.ones((2, 4))])
    assert not (tmp_path / "a" / "flat.npy").exists()
    with pytest.raises(VecStoreError, match="no vectors"):
        VecStore.write(tmp_path / "b", ["x"], [np.ones((0, 8))])
    with pytest.raises(VecStoreError, match="duplicate"):
        VecStore.write(tmp_path / "c", ["x", "x"], [good, good])
    with pytest.raises(VecStoreError, match="ids"):
        VecStore.write(tmp_path / "d", ["x"], [good, good])
    with pytest.raises(NotFound):
        VecStore.open(tmp_path / "missing")


def test_normalize_option_and_max_norm(tmp_path: Path) -> None:
    x = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
    store = VecStore.write(tmp_path / "s", ["a"], [x], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(store.get(0).astype(np.float32), axis=1), 1.0, atol=1e-3)
    assert store.max_norm == pytest.approx(1.0, abs=1e-3)
    raw = VecStore.write(tmp_path / "r", ["a"], [x])
    assert raw.max_norm == pytest.approx(5.0)
    with pytest.raises(VecStoreError, match="NaN"):
        VecStore.write(tmp_path / "n", ["a"], [np.array([[np.nan, 1.0]])])
    with pytest.raises(VecStoreError, match="float16"):
        VecStore.write(tmp_path / "o", ["a"], [np.array([[1e6, 1.0]])])  # overflows float16

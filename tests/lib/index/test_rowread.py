"""Rows of a segment's .npy field read by explicit preads (``lib/index/rowread.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrag_assets.lib.index import rowread
from mmrag_assets.lib.index.rowread import RowFile


def _mapped(tmp_path: Path, a: np.ndarray) -> np.ndarray:
    np.save(tmp_path / "a.npy", a)
    return np.load(tmp_path / "a.npy", mmap_mode="r")


@pytest.mark.parametrize("threads", [1, 4])
def test_read_equals_slicing_with_touching_empty_and_repeated_ranges(
    tmp_path: Path, threads: int, monkeypatch
) -> None:
    monkeypatch.setattr(rowread, "READ_THREADS", threads)
    a = np.random.default_rng(0).integers(0, 255, (5000, 34), dtype=np.uint8)
    rf = RowFile.of(_mapped(tmp_path, a))
    assert rf is not None and rf.row_bytes == 34
    starts = np.array([0, 7, 10, 10, 400, 4990, 123, 2000])
    lens = np.array([7, 3, 5, 0, 20, 10, 1, 300])  # 0..7 and 7..10 touch: merged into one read
    got = rf.read(starts, lens)
    assert np.array_equal(got, np.concatenate([a[s : s + n] for s, n in zip(starts, lens, strict=True)]))
    assert rf.read(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0, 34)
    with pytest.raises(IndexError):
        rf.read(np.array([4999]), np.array([2]))


def test_only_the_file_np_load_mapped_is_read_by_offset(tmp_path: Path) -> None:
    m = _mapped(tmp_path, np.arange(400, dtype=np.uint16).reshape(100, 4))
    assert RowFile.of(m[10:]) is None  # a slice keeps its parent's file offset: not readable by it
    assert RowFile.of(np.asarray(m) + 0) is None  # in memory
    rf = RowFile.of(m)
    assert rf is not None and np.array_equal(rf.read(np.array([98]), np.array([2])), m[98:100])

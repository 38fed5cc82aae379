from __future__ import annotations

import random

import pytest
import torch

from mmrag_assets.lib.index.embedding.base import EmbedStats, make_version_key, run_batches


class FakeModel:
    """Doubles its inputs; raises CUDA OOM for batches larger than ``max_ok``."""

    def __init__(self, max_ok: int) -> None:
        self.max_ok = max_ok
        self.calls: list[list[int]] = []  # every attempted batch
        self.done: list[list[int]] = []  # batches that succeeded
        self.inference_mode: list[bool] = []

    def __call__(self, batch: list[int]) -> list[int]:
        self.calls.append(list(batch))
        self.inference_mode.append(torch.is_inference_mode_enabled())
        if len(batch) > self.max_ok:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        self.done.append(list(batch))
        return [2 * x for x in batch]


def test_oom_halves_batch_and_keeps_every_item_in_order() -> None:
    items = list(range(37))
    sizes = [random.Random(i).randint(1, 500) for i in items]
    fake, stats = FakeModel(max_ok=3), EmbedStats()
    out = run_batches(items, sizes, 16, fake, on_cuda=False, stats=stats)
    assert out == [2 * x for x in items]  # original order, nothing lost
    done = [x for b in fake.done for x in b]
    assert sorted(done) == items  # each item embedded exactly once
    assert [len(c) for c in fake.calls[:3]] == [16, 8, 4]  # 16 -> 8 -> 4 -> 2
    assert all(len(b) <= 2 for b in fake.done)
    assert stats.oom_retries == 3
    assert stats.batches == len(fake.done)
    assert all(fake.inference_mode)


def test_batches_are_sorted_longest_first() -> None:
    items = ["a", "bbbbb", "cc", "dddddddd", "e", "fff"]
    seen: list[list[str]] = []

    def fn(batch: list[str]) -> list[int]:
        seen.append(batch)
        return [len(x) for x in batch]

    out = run_batches(items, [len(x) for x in items], 4, fn, on_cuda=False)
    assert out == [1, 5, 2, 8, 1, 3]
    assert seen == [["dddddddd", "bbbbb", "fff", "cc"], ["a", "e"]]  # ties keep input order


def test_oom_at_batch_size_one_is_raised() -> None:
    fake = FakeModel(max_ok=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_batches([1, 2, 3], [1, 1, 1], 4, fake, on_cuda=False)
    assert [len(c) for c in fake.calls] == [3, 2, 1]  # batch size 4 (3 items) -> 2 -> 1, which raises


def test_other_errors_are_not_retried() -> None:
    calls = []

    def fn(batch: list[int]) -> list[int]:
        calls.append(batch)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_batches([1, 2], [1, 1], 2, fn, on_cuda=False)
    assert len(calls) == 1


def test_wrong_result_count_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        run_batches([1, 2], [1, 1], 2, lambda b: b[:1], on_cuda=False)
    with pytest.raises(ValueError):
        run_batches([1, 2], [1], 2, lambda b: b, on_cuda=False)


def test_empty_input() -> None:
    assert run_batches([], [], 8, lambda b: b, on_cuda=False) == []


def test_version_key_is_table_safe_and_distinct() -> None:
    k = make_version_key("colqwen2_5", "vidore/colqwen2.5-v0.2", "main", 1, 128)
    assert k == "colqwen2_5__vidore_colqwen2_5_v0_2__main__p1__d128"
    keys = {
        k,
        make_version_key("colqwen2_5", "vidore/colqwen2.5-v0.2", "main", 2, 128),
        make_version_key("colqwen2_5", "vidore/colqwen2.5-v0.2", "v1", 1, 128),
        make_version_key("colpali", "vidore/colqwen2.5-v0.2", "main", 1, 128),
        make_version_key("colqwen2_5", "vidore/colqwen2.5-v0.2", "main", 1, 64),
    }
    assert len(keys) == 5
    sha_a = make_version_key("colqwen2_5", "vidore/colqwen2.5-v0.2", "a" * 40, 1, 128)
    sha_b = make_version_key("colqwen2_5", "vidore/colqwen2.5-v0.2", "a" * 39 + "b", 1, 128)
    assert sha_a != sha_b and len(sha_a) <= 64
    for key in keys | {sha_a}:
        assert key.replace("_", "").isalnum() and key == key.lower()

"""Shared pieces of the index benchmarks: exact ground truth over a LanceDB table, two-stage
search timing over a published version, recall, cold page cache, bytes on disk."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.lib.index.vectors import iter_item_vectors
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged, topk
from mmrag_assets.lib.search.rerank import rerank_maxsim

K = 10
GT_KEEP = 100


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class VectorEmbedder:
    """An embedder for tables whose vectors were made without a model (synthetic pages): the
    publish only needs ``dim``, ``vocabulary()`` and probe queries for the calibration."""

    def __init__(self, dim: int, version_key: str, probes: np.ndarray) -> None:
        self.dim = dim
        self.version_key = version_key
        self.probes = probes  # (n, Tq, d)

    def vocabulary(self) -> None:
        return None

    def embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        return [self.probes[i % len(self.probes)] for i in range(len(texts))]


def ground_truth(
    tbl: Any,
    qs: Sequence[np.ndarray],
    cache: Path,
    *,
    version: int | None = None,
    keep: int = GT_KEEP,
    say: Callable[[str], None] = print,
) -> tuple[np.ndarray, np.ndarray]:
    """(Q, keep) item ids (object) and exact MaxSim of the best items of every query, by one
    streamed brute-force pass over the table (cached in ``cache``)."""
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        return z["ids"], z["scores"]
    t0 = time.perf_counter()
    best_ids = np.empty((len(qs), 0), dtype=object)
    best_sc = np.empty((len(qs), 0), dtype=np.float32)
    n = 0
    for batch, vecs in iter_item_vectors(tbl, ["item_id"], batch_rows=512, version=version):
        s = maxsim_ragged(list(qs), vecs.flat, vecs.offsets)  # (items, queries)
        ids = np.array(batch.column("item_id").to_pylist(), dtype=object)
        all_sc = np.concatenate([best_sc, s.T], axis=1)
        all_ids = np.concatenate([best_ids, np.broadcast_to(ids, (len(qs), len(ids)))], axis=1)
        top = np.argsort(-all_sc, axis=1, kind="stable")[:, :keep]
        best_sc = np.take_along_axis(all_sc, top, 1)
        best_ids = np.take_along_axis(all_ids, top, 1)
        n += len(ids)
        if n % 20480 < 512:
            say(f"  ground truth: {n:,} items, {time.perf_counter() - t0:.0f}s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=best_ids, scores=best_sc)
    return best_ids, best_sc


def recall(found: Sequence[str], truth: Sequence[str], k: int = K) -> float:
    return len(set(found[:k]) & set(truth[:k])) / k


@dataclass
class Timed:
    recall: float
    fs_recall: float
    p50: float
    p95: float
    fs_p50: float
    rr_p50: float
    queries: int
    extra: dict[str, Any] = field(default_factory=dict)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) * 1000 if xs else float("nan")


def two_stage(
    view: Any,
    qs: Sequence[np.ndarray],
    truth: np.ndarray,
    *,
    first_stage: str = "plaid",
    vectors: Any = None,
    n_cand: int = 200,
    warmup: int = 2,
    before_each: Callable[[], None] | None = None,
    exact_top: Any = None,
    max_queries: int | None = None,
    rescore: int = 20,
    count_io: bool = False,
) -> Timed:
    """First stage (top ``n_cand``) -> MaxSim rerank over ``vectors`` (default: the view's) ->
    top-10, per query; with ``exact_top`` (a vector source) the top max(20, k) are re-scored
    exactly (``rescore``: N). ``before_each`` runs untimed before every timed query (e.g. drop the page
    cache); ``count_io``: ``extra["read_mb"]`` is the median of the bytes read from storage per query."""
    fs = view.first_stage(first_stage)
    src = vectors if vectors is not None else view.vectors
    mask = view.allowed_mask({})
    ids = view.items["item_id"]
    nq = min(len(qs), max_queries or len(qs))
    for j in range(min(warmup, nq)):
        c, _ = fs.search(qs[j], n_cand, mask)
        rerank_maxsim(qs[j], src, c, K)
    t_fs, t_rr, t_all, rec, fs_rec, io = [], [], [], [], [], []
    for j in range(nq):
        if before_each:
            before_each()
        b0 = read_bytes() if count_io else 0
        t0 = time.perf_counter()
        cand, _ = fs.search(qs[j], n_cand, mask)
        t1 = time.perf_counter()
        if exact_top is not None:
            order, _ = rerank_maxsim(qs[j], src, cand, len(cand))
            top, _ = rerank_maxsim(qs[j], exact_top, order[: max(rescore, K)], K)
        else:
            top, _ = rerank_maxsim(qs[j], src, cand, K)
        t2 = time.perf_counter()
        io.append((read_bytes() - b0) / 1e6 if count_io else float("nan"))
        t_fs.append(t1 - t0)
        t_rr.append(t2 - t1)
        t_all.append(t2 - t0)
        rec.append(recall([ids[i] for i in top], list(truth[j])))
        fs_rec.append(len(set(ids[cand].tolist()) & set(truth[j][:K])) / K)
    return Timed(
        float(np.mean(rec)),
        float(np.mean(fs_rec)),
        pct(t_all, 50),
        pct(t_all, 95),
        pct(t_fs, 50),
        pct(t_rr, 50),
        nq,
        {"read_mb": float(np.median(io)) if io else float("nan")},
    )


def read_bytes() -> int:
    """Bytes this process has had fetched from storage (Linux ``/proc/self/io``; 0 elsewhere)."""
    try:
        with open("/proc/self/io") as fh:
            return next(int(x.split()[1]) for x in fh if x.startswith("read_bytes"))
    except OSError:
        return 0


def exact_truth_after(
    view: Any,
    qs: Sequence[np.ndarray],
    truth_ids: np.ndarray,
    truth_sc: np.ndarray,
    removed: set[str],
    added_ids: list[str],
    added_vecs: Any,
) -> np.ndarray:
    """Ground truth after a change: the old best minus removed items, merged with the exact scores
    of the added items."""  # fmt: skip
    out = []
    for j, q in enumerate(qs):
        keep = [(i, s) for i, s in zip(truth_ids[j], truth_sc[j], strict=True) if i not in removed]
        if added_ids:
            s = maxsim_ragged(q, added_vecs.flat, added_vecs.offsets)
            keep += list(zip(added_ids, s.tolist(), strict=True))
        keep.sort(key=lambda t: -t[1])
        out.append([i for i, _ in keep])
    width = min(len(o) for o in out)
    return np.array([o[:width] for o in out], dtype=object)


# ---------------------------------------------------------------- cold page cache
def drop_cache(paths: Sequence[Path], maps: Sequence[np.ndarray] = ()) -> int:
    """Evict ``paths`` from the page cache (posix_fadvise DONTNEED; mapped pages of ``maps`` are
    unmapped from this process first with madvise, or the kernel would keep them). Returns files."""
    for a in maps:
        mm = _mmap_of(a)
        if mm is not None:
            mm.madvise(mmap.MADV_DONTNEED)
    n = 0
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            n += 1
        finally:
            os.close(fd)
    return n


def _mmap_of(a: np.ndarray) -> mmap.mmap | None:
    while a is not None:
        mm = getattr(a, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        a = a.base if isinstance(a.base, np.ndarray) else None
    return None


def files_under(*roots: Path, suffixes: tuple[str, ...] = ()) -> list[Path]:
    out = []
    for r in roots:
        out += [p for p in r.rglob("*") if p.is_file() and (not suffixes or p.name.endswith(suffixes))]
    return out


def du(*roots: Path) -> int:
    return sum(p.stat().st_size for p in files_under(*roots))


def load_avg() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def top_ids(view: Any, qs: np.ndarray, k: int = K) -> list[list[str]]:
    """Best k item ids per query through the view's default path (plaid + its rerank vectors)."""
    out = []
    fs = view.first_stage("plaid")
    mask = view.allowed_mask({})
    for q in qs:
        cand, _ = fs.search(q, 200, mask)
        idx, _ = rerank_maxsim(q, view.vectors, cand, k)
        out.append([view.items["item_id"][i] for i in idx])
    return out


__all__ = [
    "K",
    "Timed",
    "VectorEmbedder",
    "drop_cache",
    "du",
    "ground_truth",
    "recall",
    "topk",
    "two_stage",
    "unit",
]

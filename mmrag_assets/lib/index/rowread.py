"""Reading given rows of a segment's ``.npy`` field with explicit, concurrent preads.

Why not the memory map: a page fault on a cold file-backed map reads ``read_ahead_kb`` around the
fault (8 MiB on this project's machines), so touching 200 candidates' residual codes (~12 KB
each) read ~117 MB at 10k pages and up to ~3 GB at 100k (2.7 s per cold query). Here each
candidate's rows are one ``pread`` of exactly their bytes, on a descriptor with
``POSIX_FADV_RANDOM`` (no readahead), issued from a few threads at once (a ``pread`` releases
the GIL), so a cold query waits for about one disk round trip per thread, not one per item.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

READ_THREADS = (
    8  # concurrent preads: 200 random 12-88 KB reads measured 41-47 ms on 1 thread, 11-27 ms on 4-16
)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="mmrag-rows")
        return _pool


class RowFile:
    """Rows of one C-ordered ``.npy`` array on disk: ``read(starts, lens)`` -> those rows back to back."""

    def __init__(
        self, path: str | os.PathLike[str], offset: int, dtype: np.dtype, shape: tuple[int, ...]
    ) -> None:
        self.path = os.fspath(path)
        self.offset = int(offset)  # bytes before row 0 (the .npy header)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))
        self.fd = os.open(self.path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)  # read what is asked, nothing around it
        self._close = weakref.finalize(self, os.close, self.fd)

    @classmethod
    def of(cls, a: np.ndarray) -> RowFile | None:
        """The file behind a read-only ``np.load(..., mmap_mode="r")`` array; None for an in-memory one."""
        # only the array np.load mapped (its base is the mmap): a slice of it keeps the parent's offset
        if not isinstance(a, np.memmap) or not isinstance(a.base, mmap.mmap) or a.filename is None:
            return None
        if not a.flags.c_contiguous:
            return None
        return cls(a.filename, a.offset, a.dtype, a.shape)

    def close(self) -> None:
        self._close()

    def read(self, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Rows ``starts[i] : starts[i] + lens[i]`` for every i, concatenated: (sum lens, *row_shape).

        Touching ranges are merged into one read; the reads are spread over READ_THREADS threads."""
        starts = np.asarray(starts, dtype=np.int64)
        lens = np.asarray(lens, dtype=np.int64)
        total = int(lens.sum())
        out = np.empty((total, *self.row_shape), dtype=self.dtype)
        if total == 0:
            return out
        if (starts < 0).any() or (starts + lens > self.shape[0]).any():
            raise IndexError(f"{self.path}: rows outside 0..{self.shape[0]}")
        keep = lens > 0
        starts, lens = starts[keep], lens[keep]
        dst = np.concatenate([[0], np.cumsum(lens)[:-1]])
        # merge a range into the previous one when it starts where that one ends (disk order, adjacent items)
        new = np.ones(len(starts), dtype=bool)
        new[1:] = starts[1:] != starts[:-1] + lens[:-1]
        grp = np.cumsum(new) - 1
        g_start, g_dst = starts[new], dst[new]
        g_len = np.bincount(grp, weights=lens).astype(np.int64)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        rb = self.row_bytes
        jobs = [
            (self.offset + int(s) * rb, int(d) * rb, int(n) * rb)
            for s, d, n in zip(g_start, g_dst, g_len, strict=True)
        ]

        def run(chunk: list[tuple[int, int, int]]) -> None:
            for src, d, n in chunk:
                done = 0
                while done < n:  # a pread may return fewer bytes than asked
                    got = os.preadv(self.fd, [buf[d + done : d + n]], src + done)
                    if got <= 0:
                        raise OSError(f"{self.path}: short read at byte {src + done}")
                    done += got

        n_threads = min(READ_THREADS, len(jobs))
        if n_threads <= 1:
            run(jobs)
        else:
            list(_executor().map(run, [jobs[i::n_threads] for i in range(n_threads)]))
        return out

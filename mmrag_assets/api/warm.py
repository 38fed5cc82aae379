"""Warm start: the index and the query encoder load in a background thread at start-up, so the
first search does not pay for them, and ``/readyz`` says whether that worked and, if not, why."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class NotReady(Exception):
    """Raised by :meth:`Warmup.searcher` while loading or after a failed load (HTTP 503)."""

    def __init__(self, status: str, error: str | None) -> None:
        super().__init__(error or status)
        self.status = status
        self.error = error


class Warmup:
    """``load()`` returns a ready searcher (it may run a warm-up query); it runs once in a thread at
    start-up and again, at most every ``retry_s`` seconds, when a request finds the load failed (the
    index may have been built since)."""

    def __init__(
        self, load: Callable[[], Any], *, retry_s: float, describe: Callable[[Exception], str]
    ) -> None:
        self._load = load
        self._describe = describe
        self.retry_s = retry_s
        self.status = "loading"
        self.error: str | None = None
        self.load_s: float | None = None
        self._started = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.status, self._started = "loading", time.monotonic()
            self._thread = threading.Thread(target=self._run, name="mmrag-warmup", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._load()
        except Exception as e:  # noqa: BLE001 - any failure is reported by /readyz, never fatal
            self.error = self._describe(e)
            self.status = "failed"
            log.error("search index not loaded: %s", self.error)
            return
        self.load_s = round(time.perf_counter() - t0, 3)
        self.error, self.status = None, "ready"
        log.info("search index and query encoder loaded in %.1f s", self.load_s)

    def wait(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def check(self) -> None:
        """Raise :class:`NotReady` unless ready; a failed load is retried (in the background)
        when ``retry_s`` has passed since the last attempt."""
        if self.status == "ready":
            return
        if self.status == "failed" and time.monotonic() - self._started >= self.retry_s:
            self.start()
        raise NotReady(self.status, self.error)

"""Named crash points for the kill -9 suite (``tests/faults/``): ``MMRAG_FAULT_AT=<point>:<n>``
makes the process SIGKILL itself the ``n``-th time (1-based, default 1) it reaches ``<point>``.

A SIGKILL is what an OOM kill, a power cut of the worker or ``kill -9`` does: no ``finally``,
no atexit, no flush; the instance still says STARTED, locks are released only by the kernel. The
points sit at the moments where a crash could leave half-done state behind:

- ``ingest.document``: after a document's pages are rendered and written to the catalog, before
  the next document (mid-ingest);
- ``embed.written``: a chunk's rows are written as Lance fragments, its staged batch not yet
  recorded (data files that no table version and no batch names);
- ``embed.chunk``: after a chunk of embeddings is staged, before the next chunk (mid-embedding:
  some documents staged, the rest not; nothing in the table);
- ``embed.staged``: every chunk staged, before the catalog records the outcome (quarantine rows)
  and before the embeddings contract runs;
- ``embed.committed``: the publisher committed the staged batches to the LanceDB table, before it
  removes their records and builds the search version;
- ``publish.before_current``: a new version's segments, state and manifest are written, ``CURRENT``
  still names the old one (an orphan version on disk);
- ``publish.after_current``: ``CURRENT`` switched, garbage collection not yet run.

``MMRAG_FAULT_WAIT=<point>:<dir>`` holds a process at ``<point>`` instead, once ``<dir>/armed`` exists:
it writes ``<dir>/<pid>.arrived`` and waits until ``<dir>/go`` exists (at most ``WAIT_MAX_S``). The
loopback scale test uses it to have two embedding steps on two workers inside their writes at the
same time, and to kill one of them there.

Unset (the default), :func:`fault_point` is two dictionary lookups.
"""

from __future__ import annotations

import os
import signal

ENV = "MMRAG_FAULT_AT"
WAIT_ENV = "MMRAG_FAULT_WAIT"
WAIT_MAX_S = 600.0
POINTS = (
    "ingest.document",
    "embed.written",
    "embed.chunk",
    "embed.staged",
    "embed.committed",
    "publish.before_current",
    "publish.after_current",
)
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if ``MMRAG_FAULT_AT`` names this point and hit count; wait
    here if ``MMRAG_FAULT_WAIT`` names it and its folder is armed."""
    if wait := os.environ.get(WAIT_ENV):
        _wait(name, wait)
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, n = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: unknown fault point; choose one of {', '.join(POINTS)}")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _wait(name: str, spec: str) -> None:
    import time
    from pathlib import Path

    point, _, folder = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"{WAIT_ENV}={spec!r}: unknown fault point; choose one of {', '.join(POINTS)}")
    d = Path(folder)
    if point != name or not (d / "armed").exists():
        return
    (d / f"{os.getpid()}.arrived").write_text(f"{time.time()}\n")
    deadline = time.monotonic() + WAIT_MAX_S
    while not (d / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.1)

"""The HTTP API's links to corpus files when ``corpus.root`` is an object store.

A recording (``/items/{id}/media``) and a converted file's original (``/items/{id}/original``) are
the corpus object itself: the server reads it into this machine's bounded object cache
(``lib/ingest/objects.py``; a worker that ingested it here already has it) and serves that copy
with the same headers and Range support as a local file. Deciding whether a result gets such a
link reads only the object's first bytes (one ranged GET, remembered for ``storage.refresh_s``
at least a minute), never the whole recording.
"""

from __future__ import annotations

import math
import posixpath
import threading
import time
from pathlib import Path
from typing import Any

from mmrag_assets.api.files import type_of_head
from mmrag_assets.errors import NotFound
from mmrag_assets.lib.ingest.objects import SourceChanged, corpus_objects, key_of
from mmrag_assets.lib.ingest.sniff import HEAD_BYTES, sniff_bytes

_LOCK = threading.Lock()


def source_of(searcher: Any, item_id: str, *, recording: bool) -> str:
    """The ``source`` of an item of the served version (a recording's, with ``recording``)."""
    view = searcher.view
    if item_id not in view.index_of:
        raise NotFound(f"unknown item id {item_id!r}")
    i = view.index_of[item_id]
    t = view.items["start_s"][i]
    if recording and (t is None or (isinstance(t, float) and math.isnan(t))):
        raise NotFound(f"item {item_id!r} is not part of a recording")
    return str(view.items["source"][i])


def _head(rt: Any, source: str) -> bytes | None:
    """The object's first bytes, remembered by the runtime (``lib/store/runtime.Runtime``)."""
    heads: dict[str, tuple[float, bytes | None]] = rt.handles.get("api_object_heads", dict)
    now = time.monotonic()
    with _LOCK:
        hit = heads.get(source)
    if hit is not None and now - hit[0] < max(60.0, float(rt.cfg.storage.refresh_s)):
        return hit[1]
    head = corpus_objects(rt).read_head(source, HEAD_BYTES)
    with _LOCK:
        if len(heads) > 4096:
            heads.clear()
        heads[source] = (now, head)
    return head


def served_type(rt: Any, source: str, kinds: tuple[str, ...]) -> tuple[str, bool] | None:
    """(Content-Type, inline?) of the object from its first bytes, or None (gone, another kind)."""
    head = _head(rt, source)
    return None if head is None else type_of_head(head, posixpath.splitext(key_of(source))[1], kinds)


def is_converted(rt: Any, source: str) -> bool:
    """The object is an Office, OpenDocument or text file (``sniff.converted_original``'s rule, from
    its first bytes and its name)."""
    head = _head(rt, source)
    return head is not None and sniff_bytes(head, posixpath.splitext(key_of(source))[1]).kind in (
        "office",
        "text",
    )


def local_copy(rt: Any, source: str, item_id: str) -> Path:
    """The object's copy in this machine's cache (downloaded when missing)."""
    try:
        with corpus_objects(rt).local_copy(source) as got:
            return got.path
    except SourceChanged:
        raise NotFound(f"the file of item {item_id!r} is no longer in the corpus") from None

"""How the server hands out files (recordings, page images, thumbnails): the type is what the
content is, never what the name says, and a served file can never run as a page or a script.

A corpus file named ``call.html`` that is also a valid WAV (the sniffer says ``wav``) is served as
``audio/wav``; taking the type from the extension served it as ``text/html``, and a script in it
ran in the server's origin. Every file response also carries ``nosniff`` (the browser keeps the
type), a ``sandbox`` Content-Security-Policy without scripts (a file opened as a document gets a
unique origin and runs nothing) and, for types no browser shows inline, ``attachment``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from fastapi.responses import FileResponse

from mmrag_assets.lib.ingest.sniff import HEAD_BYTES, sniff_bytes

# A file opened as a document shows its own media and nothing else: no script (no script-src, and
# `sandbox` without allow-scripts), a unique origin, no form, no frame, nothing from elsewhere.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"

# sniffed detail -> (type by kind, inline?); a container's kind (audio or video) picks the type
_TYPES: dict[str, dict[str, tuple[str, bool]]] = {
    "png": {"image": ("image/png", True)},
    "jpeg": {"image": ("image/jpeg", True)},
    "gif": {"image": ("image/gif", True)},
    "webp": {"image": ("image/webp", True)},
    "tiff": {"image": ("image/tiff", False)},
    "bmp": {"image": ("image/bmp", False)},
    "wav": {"audio": ("audio/wav", True)},
    "flac": {"audio": ("audio/flac", True)},
    "mp3": {"audio": ("audio/mpeg", True)},
    "m4a": {"audio": ("audio/mp4", True)},
    "ogg": {"audio": ("audio/ogg", True), "video": ("video/ogg", True)},
    "mp4": {"audio": ("audio/mp4", True), "video": ("video/mp4", True)},
    "webm": {"audio": ("audio/webm", True), "video": ("video/webm", True)},
    "matroska": {"audio": ("audio/x-matroska", False), "video": ("video/x-matroska", False)},
    "avi": {"video": ("video/x-msvideo", False)},
}
OPAQUE = ("application/octet-stream", False)
RECORDING_TYPES = sorted(
    {t for by_kind in _TYPES.values() for k, (t, _) in by_kind.items() if k in ("audio", "video")}
    | {OPAQUE[0]}
)
IMAGE_TYPES = sorted({t for by_kind in _TYPES.values() for k, (t, _) in by_kind.items() if k == "image"})


def sniffed_type(path: Path, kinds: tuple[str, ...]) -> tuple[str, bool] | None:
    """(Content-Type, shown inline?) of the file from its first bytes, or None when it does not
    hold one of ``kinds`` (``image``, ``audio``, ``video``). Cached by (path, size, mtime)."""
    st = os.stat(path)
    return _sniffed(str(path), st.st_size, st.st_mtime_ns, kinds)


@functools.lru_cache(maxsize=4096)
def _sniffed(path: str, _size: int, _mtime_ns: int, kinds: tuple[str, ...]) -> tuple[str, bool] | None:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    return type_of_head(head, Path(path).suffix, kinds)


def type_of_head(head: bytes, suffix: str, kinds: tuple[str, ...]) -> tuple[str, bool] | None:
    """``sniffed_type`` of a file's first ``HEAD_BYTES`` (an object's, read by a ranged GET)."""
    s = sniff_bytes(head, suffix)
    detail = s.detail
    if detail == "matroska" and b"webm" in head[:64]:  # the EBML DocType of a WebM file
        detail = "webm"
    by_kind = _TYPES.get(detail, {})
    # a container whose extension named the other kind (.ogg video) is still that container
    kind = s.kind if s.kind in kinds else next((k for k in kinds if k in by_kind), None)
    if kind is None:
        return None
    return by_kind.get(kind, OPAQUE)  # a format the sniffer knows and this table not yet: a download


def file_response(path: Path, served: tuple[str, bool]) -> FileResponse:
    media_type, inline = served
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_CSP,
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if not inline:
        headers["Content-Disposition"] = "attachment"
    return FileResponse(path, media_type=media_type, headers=headers)


def is_file(path: Path) -> bool:
    """``Path.is_file`` that never raises (a name over the system's limit raises ENAMETOOLONG)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux, macOS and the BSDs)

"""Detect a file's kind from its first bytes, then cross-check the extension.

The extension alone is never trusted: a text file named ``.pdf`` or random bytes named
``.wav`` are reported as unsupported with a reason that says what the content looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["pdf", "image", "audio", "video", "unsupported"]
HEAD_BYTES = 4096

EXTENSIONS: dict[str, Kind] = {
    **dict.fromkeys(["pdf"], "pdf"),
    **dict.fromkeys(["png", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp"], "image"),
    **dict.fromkeys(["wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "weba", "mka"], "audio"),
    **dict.fromkeys(["mp4", "m4v", "mov", "mkv", "webm", "avi", "ogv"], "video"),
}
_AUDIO_FTYP = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")


@dataclass(frozen=True)
class Sniffed:
    kind: Kind
    detail: str  # e.g. "png", "wav", "text", "unknown"
    reason: str | None = None  # set when kind == "unsupported"


def sniff_bytes(head: bytes, ext: str) -> Sniffed:
    """Classify ``head`` (the first bytes of a file) given its lower-case extension (no dot)."""
    ext = ext.lower().lstrip(".")
    by_ext = EXTENSIONS.get(ext)
    detail = _magic(head, ext)
    if detail is None:
        what = "plain text" if _looks_like_text(head) else "unrecognised binary data"
        if not head:
            return Sniffed("unsupported", "empty", "empty file (0 bytes)")
        if by_ext:
            return Sniffed(
                "unsupported", "text" if what == "plain text" else "unknown",
                f"extension .{ext} says {by_ext} but the content is {what}",
            )
        return Sniffed("unsupported", "unknown", f"unsupported file type (.{ext or 'no extension'}, {what})")
    kind = _KIND_OF_DETAIL[detail]
    if detail in ("ogg", "matroska", "mp4") and by_ext in ("audio", "video"):
        kind = by_ext  # containers carry either; the extension decides, the decoder verifies
    return Sniffed(kind, detail)


def sniff_file(path: Path) -> Sniffed:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    return sniff_bytes(head, path.suffix)


_KIND_OF_DETAIL: dict[str, Kind] = {
    "pdf": "pdf",
    "png": "image", "jpeg": "image", "gif": "image", "webp": "image", "tiff": "image", "bmp": "image",
    "wav": "audio", "flac": "audio", "mp3": "audio", "m4a": "audio", "ogg": "audio",
    "mp4": "video", "matroska": "video", "avi": "video",
}


def _magic(h: bytes, ext: str) -> str | None:
    if b"%PDF-" in h[:1024]:
        return "pdf"
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if h.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if h[:4] == b"RIFF" and len(h) >= 12:
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(h[8:12])
    if h[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if h[:2] == b"BM" and len(h) >= 26 and int.from_bytes(h[14:18], "little") in (12, 40, 52, 56, 108, 124):
        return "bmp"
    if h.startswith(b"fLaC"):
        return "flac"
    if h.startswith(b"OggS"):
        return "ogg"
    if h.startswith(b"ID3") or (len(h) > 1 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0 and ext in ("mp3", "aac")):
        return "mp3"
    if h[4:8] == b"ftyp":
        return "m4a" if h[8:12] in _AUDIO_FTYP else "mp4"
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    return None


def _looks_like_text(h: bytes) -> bool:
    if not h or b"\x00" in h:
        return False
    try:
        h.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(h) - 4:  # a multi-byte char cut at the end of the window is fine
            return False
    return True

"""Detect a file's kind from its content, then cross-check the extension.

The extension alone is never trusted: a text file named ``.pdf`` or random bytes named
``.wav`` are reported as unsupported with a reason that says what the content looks like.
Office and OpenDocument files are told apart by their container (the zip's layout, the OLE2
streams: ``sniff_office.py``), HTML by its markup, text by its decoded characters; an extension
of those kinds whose content says otherwise (a ``.md`` that is binary, a ``.pptx`` that holds
a Word document) is a mismatch with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmrag_assets.lib.ingest.sniff_office import FORMAT_NAMES, Container, inspect

Kind = Literal["pdf", "image", "audio", "video", "office", "text", "unsupported"]
HEAD_BYTES = 4096

# office: converted to PDF by LibreOffice (lib/ingest/convert_office.py); text: laid out to
# pages by PyMuPDF (lib/ingest/convert_text.py). Extension -> the format it names.
OFFICE_FORMATS: dict[str, str] = {
    **dict.fromkeys(["docx", "docm", "dotx", "dotm"], "docx"),
    **dict.fromkeys(["pptx", "pptm", "potx", "potm", "ppsx", "ppsm"], "pptx"),
    **dict.fromkeys(["xlsx", "xlsm", "xltx", "xltm"], "xlsx"),
    **dict.fromkeys(["odt", "ott"], "odt"),
    **dict.fromkeys(["odp", "otp"], "odp"),
    **dict.fromkeys(["ods", "ots"], "ods"),
    **dict.fromkeys(["doc", "dot"], "doc"),
    **dict.fromkeys(["xls", "xlt"], "xls"),
    **dict.fromkeys(["ppt", "pot", "pps"], "ppt"),
    "rtf": "rtf",
}
TEXT_FORMATS: dict[str, str] = {
    **dict.fromkeys(["html", "htm", "xhtml"], "html"),
    **dict.fromkeys(["md", "markdown"], "md"),
    **dict.fromkeys(["txt", "text"], "txt"),
    "rst": "rst",
    "epub": "epub",
}

EXTENSIONS: dict[str, Kind] = {
    **dict.fromkeys(["pdf"], "pdf"),
    **dict.fromkeys(["png", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp"], "image"),
    **dict.fromkeys(["wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "weba", "mka"], "audio"),
    **dict.fromkeys(["mp4", "m4v", "mov", "mkv", "webm", "avi", "ogv"], "video"),
    **dict.fromkeys(OFFICE_FORMATS, "office"),
    **dict.fromkeys(TEXT_FORMATS, "text"),
}
_AUDIO_FTYP = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")


@dataclass(frozen=True)
class Sniffed:
    kind: Kind
    detail: str  # e.g. "png", "wav", "docx", "md", "text", "unknown"
    reason: str | None = None  # set when kind == "unsupported"


def sniff_bytes(head: bytes, ext: str, container: Container | None = None) -> Sniffed:
    """Classify ``head`` (the first bytes of a file) given its lower-case extension (no dot) and,
    for a zip or OLE2 file, what ``sniff_office.inspect`` read of its container."""
    ext = ext.lower().lstrip(".")
    by_ext = EXTENSIONS.get(ext)
    detail = _magic(head, ext)
    if detail in ("zip", "ole2"):
        return _office_container(detail, ext, container)
    if detail == "rtf":
        return _checked("rtf", ext)
    if detail is None:
        if not head:
            return Sniffed("unsupported", "empty", "empty file (0 bytes)")
        text = looks_like_text(head)
        if by_ext == "text" and ext != "epub":
            return _text_detail(head, ext) if text else _mismatch(ext, "unrecognised binary data")
        if text and by_ext is None and _is_html(head):
            return Sniffed("text", "html")  # content decides, as for images under any name
        what = "plain text" if text else "unrecognised binary data"
        if by_ext:
            return Sniffed(
                "unsupported",
                "text" if what == "plain text" else "unknown",
                f"extension .{ext} says {by_ext} but the content is {what}",
            )
        return Sniffed("unsupported", "unknown", f"unsupported file type (.{ext or 'no extension'}, {what})")
    kind = _KIND_OF_DETAIL[detail]
    if by_ext in ("office", "text"):  # a .md that is a PNG, a .docx that is a PDF
        return _mismatch(ext, f"{_DETAIL_NAMES.get(detail, detail)} data")
    if detail in ("ogg", "matroska", "mp4") and by_ext in ("audio", "video"):
        kind = by_ext  # containers carry either; the extension decides, the decoder verifies
    return Sniffed(kind, detail)


def sniff_file(path: Path) -> Sniffed:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    container = None
    if _magic(head, "") in ("zip", "ole2"):
        container = inspect(path)
    return sniff_bytes(head, path.suffix, container)


def _office_container(detail: str, ext: str, c: Container | None) -> Sniffed:
    if c is None:  # head only (no file to look into): trust the extension within its family
        fmt = OFFICE_FORMATS.get(ext) or (ext if ext == "epub" else None)
        if fmt is None:
            return Sniffed(
                "unsupported", detail, f"unsupported file type (.{ext or 'no extension'}, {detail} container)"
            )
        return Sniffed("office" if fmt != "epub" else "text", fmt)
    if c.error:
        return Sniffed(
            "unsupported", detail, f"damaged or truncated {c.what} (.{ext or 'no extension'}): {c.error}"
        )
    if c.format is None:
        if EXTENSIONS.get(ext) in ("office", "text"):
            return _mismatch(ext, c.what)
        return Sniffed("unsupported", detail, f"unsupported file type (.{ext or 'no extension'}, {c.what})")
    return _checked(c.format, ext)


def _checked(fmt: str, ext: str) -> Sniffed:
    """``fmt`` found by content; an Office/text extension naming another format is a mismatch.
    An RTF named ``.doc`` is what Word itself often writes: accepted. An encrypted OOXML package
    cannot say which format it holds: any Office extension is accepted (ingestion explains)."""
    kind: Kind = "text" if fmt == "epub" else "office"
    named = OFFICE_FORMATS.get(ext) or TEXT_FORMATS.get(ext)
    by_ext = EXTENSIONS.get(ext)
    if named is None and by_ext is None:
        return Sniffed(kind, fmt)  # an unknown extension: content decides
    if named == fmt or (fmt == "rtf" and named == "doc") or (fmt == "encrypted" and by_ext == "office"):
        return Sniffed(kind, fmt)
    return _mismatch(ext, FORMAT_NAMES.get(fmt, fmt))


def _mismatch(ext: str, what: str) -> Sniffed:
    named = OFFICE_FORMATS.get(ext) or TEXT_FORMATS.get(ext)
    says = FORMAT_NAMES[named] if named else EXTENSIONS.get(ext, "?")
    return Sniffed("unsupported", "mismatch", f"extension .{ext} says {says} but the content is {what}")


def _text_detail(head: bytes, ext: str) -> Sniffed:
    fmt = TEXT_FORMATS[ext]
    if fmt == "html" and not _has_markup(head):
        return _mismatch(ext, "plain text without any markup")
    return Sniffed("text", fmt)


_DETAIL_NAMES = {
    "pdf": "PDF",
    "png": "PNG image",
    "jpeg": "JPEG image",
    "gif": "GIF image",
    "webp": "WebP image",
    "tiff": "TIFF image",
    "bmp": "BMP image",
    "wav": "WAV audio",
    "flac": "FLAC audio",
    "mp3": "MP3 audio",
    "m4a": "M4A audio",
    "ogg": "Ogg media",
    "mp4": "MP4 video",
    "matroska": "Matroska video",
    "avi": "AVI video",
}


_KIND_OF_DETAIL: dict[str, Kind] = {
    "pdf": "pdf",
    "png": "image",
    "jpeg": "image",
    "gif": "image",
    "webp": "image",
    "tiff": "image",
    "bmp": "image",
    "wav": "audio",
    "flac": "audio",
    "mp3": "audio",
    "m4a": "audio",
    "ogg": "audio",
    "mp4": "video",
    "matroska": "video",
    "avi": "video",
}


def _magic(h: bytes, ext: str) -> str | None:
    if h.startswith(b"PK\x03\x04"):
        return "zip"  # OOXML, OpenDocument, EPUB... (``sniff_office.inspect`` tells which)
    if h.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole2"  # Word/Excel/PowerPoint 97-2003, or an encrypted OOXML package
    if h.startswith(b"{\\rtf"):
        return "rtf"
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
    if h.startswith(b"ID3") or (
        len(h) > 1 and h[0] == 0xFF and h[1] & 0xE0 == 0xE0 and ext in ("mp3", "aac")
    ):
        return "mp3"
    if h[4:8] == b"ftyp":
        return "m4a" if h[8:12] in _AUDIO_FTYP else "mp4"
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    return None


_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def looks_like_text(h: bytes) -> bool:
    """Characters, not binary: UTF-8 or UTF-16 with a byte-order mark, or a legacy 8-bit encoding
    charset-normalizer recognises with little "chaos" (a cp1252 or Latin-1 note is text too)."""
    if not h:
        return False
    if h.startswith(_BOMS[1:]):
        return _decodes(h, "utf-16")
    if b"\x00" in h:
        return False
    if _decodes(h.removeprefix(_BOMS[0]), "utf-8"):
        return True
    from charset_normalizer import from_bytes

    best = from_bytes(h).best()
    # 0.1: charset-normalizer's own "mess" ratio; binary decoded as a code page is far above it
    return best is not None and best.percent_chaos <= 10.0 and _printable_share(str(best)) >= 0.95


def _decodes(h: bytes, codec: str) -> bool:
    try:
        h.decode(codec)
    except UnicodeDecodeError as e:
        return e.start >= len(h) - 4  # a multi-byte char cut at the end of the window is fine
    return True


def _printable_share(text: str) -> float:
    if not text:
        return 0.0
    ok = sum(1 for ch in text if ch.isprintable() or ch in "\t\r\n\f")
    return ok / len(text)


_HTML_START = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)


def _is_html(h: bytes) -> bool:
    """An HTML document by its first tag (a Markdown file with some inline HTML is not one)."""
    h = h.removeprefix(_BOMS[0])
    if h.startswith(_BOMS[1:]):
        h = h.decode("utf-16", errors="ignore").encode("utf-8")
    return bool(_HTML_START.match(h))


def _has_markup(h: bytes) -> bool:
    if h.startswith(_BOMS[1:]):
        h = h.decode("utf-16", errors="ignore").encode("utf-8")
    return re.search(rb"<[a-zA-Z!/?][^>]*>", h) is not None


def converted_original(corpus_root: Path, source: str) -> Path | None:
    """The corpus file behind a page of a converted document (Office, OpenDocument, text formats),
    for the HTTP API's link to it; None for PDFs, images, recordings, and anything outside the root."""
    root = corpus_root.resolve()
    p = (root / source).resolve()
    if root not in p.parents or not p.is_file():
        return None
    try:
        return p if sniff_file(p).kind in ("office", "text") else None
    except OSError:
        return None

"""Look inside a zip or OLE2 file to tell which Office, OpenDocument or EPUB format it holds.

Reads only the container's directory (the zip's central directory, the OLE2 stream names) and
an OpenDocument/EPUB ``mimetype`` entry, never the document itself: cheap enough for every scan.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

# what each format is called in a reason
FORMAT_NAMES: dict[str, str] = {
    "docx": "a Word document",
    "pptx": "a PowerPoint deck",
    "xlsx": "an Excel workbook",
    "odt": "an OpenDocument text",
    "odp": "an OpenDocument presentation",
    "ods": "an OpenDocument spreadsheet",
    "doc": "a Word 97-2003 document",
    "xls": "an Excel 97-2003 workbook",
    "ppt": "a PowerPoint 97-2003 deck",
    "rtf": "an RTF document",
    "html": "HTML",
    "md": "Markdown",
    "txt": "plain text",
    "rst": "reStructuredText",
    "epub": "an EPUB book",
    "encrypted": "an encrypted Office file",
}


@dataclass(frozen=True)
class Container:
    """What a zip or OLE2 file holds, as far as telling Office formats apart needs."""

    format: str | None  # docx pptx xlsx odt odp ods epub doc xls ppt encrypted, or None
    what: str  # its description for a reason ("a zip archive", "an OLE2 file (Outlook message)"...)
    error: str | None = None  # the container cannot be read (truncated, damaged)


_ODF_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.text-template": "odt",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/vnd.oasis.opendocument.presentation-template": "odp",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.spreadsheet-template": "ods",
    "application/epub+zip": "epub",
}
# OOXML: the main part's folder names the application
_OOXML_DIRS = (("word/", "docx"), ("ppt/", "pptx"), ("xl/", "xlsx"))
# OLE2 streams that name a legacy Office format (an encrypted OOXML package is an OLE2 file too)
_OLE_STREAMS = (
    ("encryptedpackage", "encrypted"),
    ("worddocument", "doc"),
    ("workbook", "xls"),
    ("book", "xls"),
    ("powerpoint document", "ppt"),
)


def inspect(path: Path) -> Container:
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK\x03\x04"):
        return _zip(path)
    return _ole(path)


def _zip(path: Path) -> Container:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "mimetype" in names:
                info = z.getinfo("mimetype")
                mime = z.read("mimetype").decode("ascii", "replace").strip() if info.file_size <= 200 else ""
                if mime in _ODF_MIMETYPES:
                    return Container(_ODF_MIMETYPES[mime], _name(_ODF_MIMETYPES[mime]))
                return Container(None, f"a zip archive of type {mime[:80]!r}")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return Container(None, "zip container", error=f"{e} (re-save or re-download the file)")
    if "[Content_Types].xml" in names:
        for prefix, fmt in _OOXML_DIRS:
            if any(n.startswith(prefix) for n in names):
                return Container(fmt, _name(fmt))
        return Container(None, "an OOXML package that is neither a Word, PowerPoint nor Excel file")
    return Container(None, "a zip archive (not an Office, OpenDocument or EPUB file)")


def _ole(path: Path) -> Container:
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            streams = {"/".join(e).lower() for e in ole.listdir(streams=True, storages=False)}
    except Exception as e:  # noqa: BLE001 - olefile raises OSError, struct.error, IndexError on damage
        return Container(None, "OLE2 container", error=f"{type(e).__name__}: {e}")
    for name, fmt in _OLE_STREAMS:
        if name in streams:
            return Container(fmt, _name(fmt))
    return Container(None, "an OLE2 file that is not a Word, Excel or PowerPoint document")


def _name(fmt: str) -> str:
    return FORMAT_NAMES.get(fmt, fmt)

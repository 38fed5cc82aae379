"""Look inside a zip or OLE2 file to tell which Office, OpenDocument or EPUB format it holds.

Reads only the container's directory (the zip's central directory, the OLE2 stream names) and
an OpenDocument/EPUB ``mimetype`` entry, never the document itself: cheap enough for every scan.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from mmrag_assets.lib.ingest.sniff import Container

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
    ("encryptedpackage", "encrypted"), ("worddocument", "doc"), ("workbook", "xls"), ("book", "xls"),
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
    from mmrag_assets.lib.ingest.sniff import FORMAT_NAMES

    return FORMAT_NAMES.get(fmt, fmt)

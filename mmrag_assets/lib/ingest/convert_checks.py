"""What an Office/OpenDocument/EPUB container is checked for before anything renders it.

- a zip bomb: the declared sizes against ``convert.max_unpacked_bytes`` and ``max_ratio``, then
  every entry inflated once with a running count (declared sizes can lie; zipfile stops at the
  declared size and checks the CRC, so a lying entry is a damaged file);
- encryption: an encrypted OOXML package (an OLE2 file with ``EncryptedPackage``), a
  password-protected legacy file (msoffcrypto-tool reads the flags of doc/xls/ppt), an ODF file
  whose manifest holds ``encryption-data``;
- macros and external links: reported (never run: LibreOffice runs with macros disabled and links
  never updated, in a namespace without network), the document still ingested;
- sheets (xlsx, ods): non-empty cells per sheet against ``convert.max_sheet_cells``, streaming,
  stopping at the cap; the cell strings are kept, because one page per sheet clips a long string
  at the printed column's edge and the page's text layer would lose its words.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import iterparse

from mmrag_assets.errors import CorruptInput

_INFLATE_CHUNK = 1 << 20


@dataclass
class Sheet:
    name: str
    hidden: bool = False
    cells: int = 0  # non-empty cells (repeats counted)
    strings: list[str] = field(default_factory=list)  # text cells, in reading order


@dataclass
class Findings:
    notes: list[str] = field(default_factory=list)  # macros not run, links not fetched
    sheets: list[Sheet] = field(default_factory=list)
    slides: int | None = None  # visible slides, where the container says


def check_container(
    path: Path, fmt: str, *, max_unpacked_bytes: int, max_ratio: float, max_sheet_cells: int
) -> Findings:
    """Raise ``CorruptInput`` for a bomb, an encrypted or a damaged file, or a sheet over the cell
    cap; return what else was found."""
    if fmt == "encrypted":
        raise CorruptInput(
            "encrypted (password-protected) Office file: mmrag cannot open it; save a copy without a "
            "password into the corpus instead"
        )
    if fmt in ("doc", "xls", "ppt"):
        found = _legacy(path)
        if fmt == "xls":
            found.sheets = _xls_sheets(path, max_sheet_cells)
        return found
    if fmt == "rtf":
        return Findings()
    try:
        with zipfile.ZipFile(path) as z:
            _bomb(z, path.stat().st_size, max_unpacked_bytes, max_ratio)
            names = set(z.namelist())
            if fmt in ("odt", "odp", "ods", "epub"):
                return _odf(z, names, fmt, max_sheet_cells)
            return _ooxml(z, names, fmt, max_sheet_cells)
    except zipfile.BadZipFile as e:
        raise CorruptInput(f"damaged or truncated {fmt} file: {e}; re-save or re-download it") from e


def _bomb(z: zipfile.ZipFile, size: int, cap: int, max_ratio: float) -> None:
    infos = z.infolist()
    declared = sum(i.file_size for i in infos)
    limit = min(cap, int(max_ratio * max(size, 1)))
    if declared > limit:
        raise CorruptInput(_bomb_reason(declared, size, cap, max_ratio))
    total = 0
    for info in infos:
        with z.open(info) as f:
            while chunk := f.read(_INFLATE_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise CorruptInput(_bomb_reason(total, size, cap, max_ratio))


def _bomb_reason(n: int, size: int, cap: int, max_ratio: float) -> str:
    return (
        f"zip bomb: the container inflates to over {n:,} bytes from {size:,} "
        f"(caps: convert.max_unpacked_bytes={cap:,}, convert.max_ratio={max_ratio:g})"
    )


# ---------------------------------------------------------------- legacy (OLE2) files


def _legacy(path: Path) -> Findings:
    import msoffcrypto
    import olefile

    try:
        with open(path, "rb") as f:
            encrypted = msoffcrypto.OfficeFile(f).is_encrypted()
    except Exception:  # noqa: BLE001 - msoffcrypto cannot read every valid file's flags: LibreOffice decides
        encrypted = False
    if encrypted:
        raise CorruptInput(
            "password-protected Office file: mmrag cannot open it; save a copy without a password into the corpus instead"
        )
    found = Findings()
    try:
        with olefile.OleFileIO(str(path)) as ole:
            storages = {"/".join(e).lower() for e in ole.listdir(streams=True, storages=True)}
    except Exception:  # noqa: BLE001 - sniffing read it; a damaged directory is LibreOffice's to report
        return found
    if any(s.split("/")[0] in ("macros", "_vba_project_cur", "vba") for s in storages):
        found.notes.append(_MACROS)
    return found


_MACROS = "contains macros: never run (LibreOffice converts with macros disabled); the document's content is indexed"


def _links_note(what: list[str]) -> str:
    shown = ", ".join(sorted(set(what))[:3])
    return f"refers to external content ({shown}): never fetched; what the file itself holds is indexed"


def _xls_sheets(path: Path, max_cells: int) -> list[Sheet]:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), on_demand=True, logfile=open(os.devnull, "w"))  # noqa: SIM115
    except Exception:  # noqa: BLE001 - xlrd cannot read every file LibreOffice can: the pages stand alone
        return []
    sheets: list[Sheet] = []
    try:
        for i in range(book.nsheets):
            sh = book.sheet_by_index(i)
            sheet = Sheet(sh.name, hidden=bool(sh.visibility))
            for r in range(sh.nrows):
                for v in sh.row_values(r):
                    if v not in ("", None):
                        sheet.cells += 1
                        if isinstance(v, str):
                            sheet.strings.append(v)
                if sheet.cells > max_cells:
                    raise CorruptInput(_cells_reason(sheet, max_cells))
            sheets.append(sheet)
            book.unload_sheet(i)
    finally:
        book.release_resources()
    return sheets


# ---------------------------------------------------------------- OOXML

_EXTERNAL_TYPES = (
    "image",
    "oleobject",
    "attachedtemplate",
    "frame",
    "subdocument",
    "externallinkpath",
    "package",
    "audio",
    "video",
)
_REL = re.compile(rb"<Relationship\b[^>]*>", re.IGNORECASE)


def _ooxml(z: zipfile.ZipFile, names: set[str], fmt: str, max_cells: int) -> Findings:
    found = Findings()
    if any(n.lower().endswith("vbaproject.bin") for n in names):
        found.notes.append(_MACROS)
    external = [n for n in names if n.startswith("xl/externalLinks/") and n.endswith(".xml")]
    links = ["linked workbook"] * bool(external)
    for n in names:
        if n.endswith(".rels") and z.getinfo(n).file_size < 4 << 20:
            for rel in _REL.findall(z.read(n)):
                if b'TargetMode="External"' in rel:
                    t = re.search(rb'Type="[^"]*/([A-Za-z]+)"', rel)
                    kind = t.group(1).decode().lower() if t else ""
                    if kind in _EXTERNAL_TYPES:
                        links.append(f"linked {kind}")
    if links:
        found.notes.append(_links_note(links))
    if fmt == "xlsx":
        found.sheets = _xlsx_sheets(z, names, max_cells)
    elif fmt == "pptx":
        found.slides = _pptx_slides(z, names)
    return found


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xlsx_sheets(z: zipfile.ZipFile, names: set[str], max_cells: int) -> list[Sheet]:
    rels = {}
    if "xl/_rels/workbook.xml.rels" in names:
        for rel in _REL.findall(z.read("xl/_rels/workbook.xml.rels")):
            rid, target = re.search(rb'Id="([^"]+)"', rel), re.search(rb'Target="([^"]+)"', rel)
            if rid and target:
                t = target.group(1).decode()
                rels[rid.group(1).decode()] = t.lstrip("/") if t.startswith("/") else f"xl/{t}"
    sheets: list[tuple[Sheet, str | None]] = []
    with z.open("xl/workbook.xml") as f:
        for _, el in iterparse(f):
            if _local(el.tag) == "sheet":
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                sheets.append(
                    (
                        Sheet(el.get("name", "?"), hidden=el.get("state", "visible") != "visible"),
                        rels.get(rid or ""),
                    )
                )
    shared = _shared_strings(z, names)
    for sheet, part in sheets:
        if part and part in names:
            _count_xlsx(z, part, sheet, shared, max_cells)
    return [s for s, _ in sheets]


def _shared_strings(z: zipfile.ZipFile, names: set[str]) -> list[str]:
    out: list[str] = []
    if "xl/sharedStrings.xml" not in names:
        return out
    with z.open("xl/sharedStrings.xml") as f:
        for _, el in iterparse(f):
            if _local(el.tag) == "si":
                out.append("".join(t.text or "" for t in el.iter() if _local(t.tag) == "t"))
                el.clear()
    return out


def _count_xlsx(z: zipfile.ZipFile, part: str, sheet: Sheet, shared: list[str], max_cells: int) -> None:
    with z.open(part) as f:
        for _, el in iterparse(f):
            if _local(el.tag) != "c":
                if _local(el.tag) == "row":
                    el.clear()
                continue
            kids = {_local(k.tag): k for k in el}
            if "v" not in kids and "is" not in kids:
                continue
            sheet.cells += 1
            if sheet.cells > max_cells:
                raise CorruptInput(_cells_reason(sheet, max_cells))
            t = el.get("t")
            if t == "s" and "v" in kids:
                i = int(kids["v"].text or -1)
                if 0 <= i < len(shared):
                    sheet.strings.append(shared[i])
            elif t == "inlineStr" and "is" in kids:
                sheet.strings.append("".join(x.text or "" for x in kids["is"].iter() if _local(x.tag) == "t"))
            elif t == "str" and "v" in kids:
                sheet.strings.append(kids["v"].text or "")


def _cells_reason(sheet: Sheet, cap: int) -> str:
    return (
        f"sheet {sheet.name!r} has more than {cap:,} non-empty cells (convert.max_sheet_cells): a page per "
        "sheet cannot show it; split the sheet, export the part that matters, or raise the cap"
    )


def _pptx_slides(z: zipfile.ZipFile, names: set[str]) -> int:
    n = 0
    for name in names:
        if re.fullmatch(r"ppt/slides/slide\d+\.xml", name):
            with z.open(name) as f:
                root = re.search(rb"<p:sld\b[^>]*>", f.read(4096))
            n += not (root and b'show="0"' in root.group(0))  # LibreOffice leaves hidden slides out
    return n


# ---------------------------------------------------------------- OpenDocument

_ODF_LINK = re.compile(
    rb"<(draw:image|draw:object|draw:object-ole|table:table-source|text:section-source|draw:plugin|draw:floating-frame)"
    rb"\b[^>]*xlink:href=\"([^\"]*)\"",
)


def _odf(z: zipfile.ZipFile, names: set[str], fmt: str, max_cells: int) -> Findings:
    found = Findings()
    if "META-INF/manifest.xml" in names and b"encryption-data" in z.read("META-INF/manifest.xml"):
        what = "EPUB (DRM)" if fmt == "epub" else "OpenDocument"
        raise CorruptInput(
            f"encrypted {what} file: mmrag cannot open it; save a copy without a password instead"
        )
    if fmt == "epub":
        return found
    if any(n.startswith(("Basic/", "Scripts/")) for n in names):
        found.notes.append(_MACROS)
    if "content.xml" not in names:
        raise CorruptInput(f"damaged {fmt} file: it has no content.xml")
    content = z.read("content.xml")
    links = [
        m.group(1).decode()
        for m in _ODF_LINK.finditer(content)
        if b"://" in m.group(2) or m.group(2).startswith((b"/", b"../"))
    ]
    if links:
        found.notes.append(_links_note([f"linked {x.split(':')[1]}" for x in links]))
    if fmt == "ods":
        found.sheets = _ods_sheets(content, max_cells)
    elif fmt == "odp":
        found.slides = len(re.findall(rb"<draw:page\b", content))
    return found


_T = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_O = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"


def _ods_sheets(content: bytes, max_cells: int) -> list[Sheet]:
    import io

    sheets: list[Sheet] = []
    rows_repeat = 1
    for ev, el in iterparse(io.BytesIO(content), events=("start", "end")):
        tag = el.tag
        if ev == "start":
            if tag == f"{_T}table":
                sheets.append(Sheet(el.get(f"{_T}name", "?")))
            elif tag == f"{_T}table-row":
                rows_repeat = int(el.get(f"{_T}number-rows-repeated", "1"))
            continue
        if tag in (f"{_T}table-cell", f"{_T}covered-table-cell") and sheets:
            text = "\n".join("".join(p.itertext()) for p in el if _local(p.tag) == "p")
            if el.get(f"{_O}value-type") or text:
                sheet = sheets[-1]
                sheet.cells += rows_repeat * int(el.get(f"{_T}number-columns-repeated", "1"))
                if sheet.cells > max_cells:
                    raise CorruptInput(_cells_reason(sheet, max_cells))
                if text and el.get(f"{_O}value-type", "string") == "string":
                    sheet.strings.append(text)
            el.clear()
        elif tag == f"{_T}table-row":
            el.clear()
    return sheets

"""A folder holding every format issue 24 lists, and the hostile cases, made on the fly.

The Office files are written by LibreOffice itself (``soffice --convert-to``) from small flat
OpenDocument sources, one run per target format; text formats are written here (they are text),
the EPUB by LibreOffice's EPUB export. ``formats_corpus(tmp_path_factory)`` builds it once per
test session (LibreOffice costs seconds a run) and returns ``{relative path: expectation}``:
``("ok", word)`` (the file is searchable by ``word``, which no other file holds) or
``("quarantined", reason substring)`` or ``("partial", reason substring)``.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"'
)
WRITER = ("docx", "doc", "odt", "rtf")
IMPRESS = ("pptx", "ppt", "odp")
CALC = ("xlsx", "xls", "ods")
# the word each file can be found by (only that file holds it)
WORDS = {
    f: f"{f}quokka"
    for f in (*WRITER, *IMPRESS, *CALC, "epub", "html", "htm", "xhtml", "md", "markdown", "txt", "rst")
}
NOTES_WORD = "zeppelinmigration"  # only in the pptx's speaker notes
DIAGRAM_WORD = "FLUXCAPACITOR"  # only in pixels: a picture on the second slide of the pptx


def diagram_png(text: str = DIAGRAM_WORD) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (900, 220), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((10, 10, 890, 210), outline="black", width=4)
    d.text((60, 70), text, fill="black", font=ImageFont.load_default(size=72))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def fodt(word: str, extra: str = "") -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document {NS} office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.text">
<office:body><office:text>
<text:h text:outline-level="1">Calibration guide {word}</text:h>
<text:p>The {word} calibration procedure needs a torque of 12 newton metres on every flange bolt.</text:p>
<table:table table:name="Limits"><table:table-column table:number-columns-repeated="2"/>
<table:table-row><table:table-cell><text:p>Setting</text:p></table:table-cell><table:table-cell><text:p>Limit</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>Spindle speed</text:p></table:table-cell><table:table-cell><text:p>2400 rpm</text:p></table:table-cell></table:table-row>
</table:table>{extra}
</office:text></office:body></office:document>
"""


def fodp(word: str) -> str:
    png = base64.b64encode(diagram_png()).decode()

    def slide(n: int, title: str, notes: str, body: str = "") -> str:
        return (
            f'<draw:page draw:name="s{n}"><draw:frame svg:x="2cm" svg:y="1.5cm" svg:width="24cm" svg:height="3cm">'
            f"<draw:text-box><text:p>{title}</text:p></draw:text-box></draw:frame>{body}"
            '<presentation:notes><draw:frame presentation:class="notes" svg:x="2cm" svg:y="15cm" svg:width="17cm" '
            f'svg:height="8cm"><draw:text-box><text:p>{notes}</text:p></draw:text-box></draw:frame></presentation:notes></draw:page>'
        )

    picture = (
        '<draw:frame svg:x="2cm" svg:y="6cm" svg:width="18cm" svg:height="4.4cm"><draw:image>'
        f"<office:binary-data>{png}</office:binary-data></draw:image></draw:frame>"
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document {NS} office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.presentation">
<office:body><office:presentation>
{slide(1, f"Architecture overview {word}", f"Remember the {NOTES_WORD} plan for the {word} deck")}
{slide(2, "Ingestion pipeline", "The diagram shows the message bus", picture)}
</office:presentation></office:body></office:document>
"""


def fods(word: str) -> str:
    def cell(v: str) -> str:
        return f"<table:table-cell><text:p>{v}</text:p></table:table-cell>"

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document {NS} office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
<office:body><office:spreadsheet>
<table:table table:name="Revenue"><table:table-row>{cell("Region")}{cell("Q3 revenue")}</table:table-row>
<table:table-row>{cell("Patagonia")}{cell("4711")}</table:table-row></table:table>
<table:table table:name="Staff"><table:table-row>{cell(f"Headcount of the {word} walrus team is eleven")}</table:table-row></table:table>
</office:spreadsheet></office:body></office:document>
"""


def soffice_convert(sources: list[Path], target: str, out: Path) -> None:
    """Files written by LibreOffice itself (a private profile per run)."""
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run(
            [
                "soffice",
                f"-env:UserInstallation=file://{prof}",
                "--headless",
                "--norestore",
                "--convert-to",
                target,
                "--outdir",
                str(out),
                *map(str, sources),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )


def make_office_files(dest: Path) -> None:
    """docx doc odt rtf pptx ppt odp xlsx xls ods epub, each with its own word, into ``dest``."""
    src = dest / "_src"
    src.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[Path, str]] = []
    for fmt in (*WRITER, "epub"):
        (src / f"{fmt}.fodt").write_text(fodt(WORDS[fmt]))
        jobs.append((src / f"{fmt}.fodt", fmt))
    for fmt in IMPRESS:
        (src / f"{fmt}.fodp").write_text(fodp(WORDS[fmt]))
        jobs.append((src / f"{fmt}.fodp", fmt))
    for fmt in CALC:
        (src / f"{fmt}.fods").write_text(fods(WORDS[fmt]))
        jobs.append((src / f"{fmt}.fods", fmt))
    with ThreadPoolExecutor(2) as pool:  # two runs at once, each with its own profile
        list(pool.map(lambda j: soffice_convert([j[0]], j[1], dest), jobs))
    shutil.rmtree(src)


def text_files(dest: Path) -> None:
    w = WORDS
    (dest / "img").mkdir(parents=True, exist_ok=True)
    (dest / "img" / "diagram.png").write_bytes(diagram_png("LOCALPICTURE"))
    (dest / "wiki.html").write_text(
        "<!DOCTYPE html><html><head><title>Wiki</title><script>document.write('SCRIPTRAN')</script></head><body>"
        f"<h1>Runbook {w['html']}</h1><p>Restart the broker before the nightly export.</p>"
        '<img src="img/diagram.png" alt="local"><img src="http://127.0.0.1:9/remote.png" alt="remote">'
        "<script>document.body.innerHTML = 'SCRIPTRAN'</script></body></html>"
    )
    (dest / "page.htm").write_text(
        f"<html><body><h2>Legacy page {w['htm']}</h2><p>Old intranet page.</p></body></html>"
    )
    (dest / "doc.xhtml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head>'
        f"<body><p>XHTML export {w['xhtml']} of the design notes.</p></body></html>"
    )
    (dest / "README.md").write_text(
        f'# Service {w["md"]}\n\n<div align="center">badge</div>\n\n| key | value |\n|---|---|\n'
        "| retries | 5 |\n\n![diagram](img/diagram.png)\n"
    )
    (dest / "CHANGES.markdown").write_text(f"## Release notes {w['markdown']}\n\n* fixed the scheduler\n")
    # a legacy Windows note: cp1252, not UTF-8
    (dest / "notes.txt").write_bytes(
        f"Meeting notes {w['txt']}\nThe caf\u00e9 cr\u00e8me br\u00fbl\u00e9e budget, d\u00e9j\u00e0 vu.\n".encode(
            "cp1252"
        )
    )
    (dest / "guide.rst").write_text(
        f"Install guide {w['rst']}\n=================\n\nRun the installer.\n\n.. include:: /etc/passwd\n\n"
        ".. raw:: html\n\n   <b>RAWHTML</b>\n"
    )


def hostile_files(dest: Path, office: Path) -> dict[str, tuple[str, str]]:
    """The issue's hostile cases, from the real files LibreOffice wrote into ``office``."""
    from msoffcrypto.format.ooxml import OOXMLFile

    dest.mkdir(parents=True, exist_ok=True)
    docx = (office / "docx.docx").read_bytes()
    out: dict[str, tuple[str, str]] = {}
    enc = io.BytesIO()
    OOXMLFile(io.BytesIO(docx)).encrypt("hunter2", enc)
    (dest / "encrypted.docx").write_bytes(enc.getvalue())
    out["encrypted.docx"] = ("quarantined", "encrypted")
    (dest / "bomb.docx").write_bytes(_with_entries(docx, {"word/media/filler.bin": b"\0" * (64 << 20)}))
    out["bomb.docx"] = ("quarantined", "zip bomb")
    (dest / "truncated.docx").write_bytes(docx[: len(docx) // 2])
    out["truncated.docx"] = ("quarantined", "damaged or truncated")
    (dest / "macros.docm").write_bytes(
        _with_entries(docx, {"word/vbaProject.bin": b"\xd0\xcf\x11\xe0fake vba project"})
    )
    out["macros.docm"] = ("partial", "never run")
    (dest / "big.xlsx").write_bytes(_big_sheet((office / "xlsx.xlsx").read_bytes(), rows=100_000))
    out["big.xlsx"] = ("quarantined", "convert.max_sheet_cells")
    png = diagram_png()
    (dest / "binary.md").write_bytes(png)
    out["binary.md"] = ("quarantined", "extension .md says Markdown but the content is PNG image data")
    (dest / "deck-named.docx").write_bytes((office / "pptx.pptx").read_bytes())
    out["deck-named.docx"] = ("quarantined", "the content is a PowerPoint deck")
    return out


def _with_entries(zip_bytes: bytes, extra: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(zip_bytes)) as src,
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for name, data in extra.items():
            dst.writestr(name, data)
    return buf.getvalue()


def _big_sheet(xlsx: bytes, rows: int) -> bytes:
    """The real workbook with its first sheet replaced by ``rows`` rows of three cells."""
    body = "".join(
        f'<row r="{i}"><c r="A{i}"><v>{i}</v></c><c r="B{i}"><v>{i * 2}</v></c><c r="C{i}"><v>{i * 3}</v></c></row>'
        for i in range(1, rows + 1)
    )
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.org/'
        f'spreadsheetml/2006/main"><dimension ref="A1:C{rows}"/><sheetData>{body}</sheetData></worksheet>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, sheet if info.filename == "xl/worksheets/sheet1.xml" else src.read(info))
    return buf.getvalue()


def formats_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The every-format folder, built once per session: ``(root, {source: expectation})``."""
    root = tmp_path_factory.getbasetemp() / "formats-corpus"
    if not (root / ".done").exists():
        if shutil.which("soffice") is None:
            pytest.skip(
                "LibreOffice (soffice) is not installed: .ci/run installs libreoffice-core and its apps"
            )
        shutil.rmtree(root, ignore_errors=True)
        make_office_files(root / "office")
        text_files(root / "text")
        hostile = hostile_files(root / "hostile", root / "office")
        (root / ".done").write_text("\n".join(f"{k}\t{v[0]}\t{v[1]}" for k, v in hostile.items()))
    expected: dict[str, tuple[str, str]] = {}
    for fmt in (*WRITER, *IMPRESS, *CALC, "epub"):
        expected[f"office/{fmt}.{fmt}"] = ("ok", WORDS[fmt])
    text_names = {
        "html": "wiki.html",
        "htm": "page.htm",
        "xhtml": "doc.xhtml",
        "md": "README.md",
        "markdown": "CHANGES.markdown",
        "txt": "notes.txt",
        "rst": "guide.rst",
    }
    for fmt, name in text_names.items():
        expected[f"text/{name}"] = ("ok", WORDS[fmt])
    for line in (root / ".done").read_text().splitlines():
        name, status, what = line.split("\t")
        expected[f"hostile/{name}"] = (status, what)
    return root, expected

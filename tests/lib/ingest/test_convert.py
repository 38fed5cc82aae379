"""Office files through a real LibreOffice, text formats through PyMuPDF's layout (issue 24).

LibreOffice costs seconds a conversion: the files are made once per session
(``tests/formats_corpus.py``) and each conversion here checks as much as it can.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.errors import CorruptInput
from mmrag_assets.lib.ingest.convert_checks import check_container
from mmrag_assets.lib.ingest.convert_office import BatchStats, OfficeJob, convert_office_batch
from mmrag_assets.lib.ingest.document import DocResult, OfficeConversions, ingest_document
from mmrag_assets.lib.ingest.sniff import sniff_file
from mmrag_assets.lib.store.runtime import Runtime
from tests.formats_corpus import DIAGRAM_WORD, NOTES_WORD, WORDS, formats_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return formats_corpus(tmp_path_factory)[0]


def _ingest(root: Path, source: str, storage: Path, *overrides: str) -> DocResult:
    cfg = load_config([f"corpus.root={root}", f"storage.root={storage}", *overrides])
    p = root / source
    s = sniff_file(p)
    assert s.kind in ("office", "text"), s
    return ingest_document(
        Runtime(cfg),
        source=source,
        doc_id=f"d{abs(hash(source)) % 10**12:012d}",
        kind=s.kind,
        sha256="0" * 64,
        size=p.stat().st_size,
    )


def test_slides_keep_their_notes_and_the_text_of_their_pictures(corpus: Path, tmp_path: Path) -> None:
    r = _ingest(corpus, "office/pptx.pptx", tmp_path)
    assert r.status == "ok", r.quarantine
    assert [p["page"] for p in r.pages] == [1, 2]  # the notes pages are cut off: one page per slide
    first, second = (p["text"] for p in r.pages)
    assert WORDS["pptx"] in first and NOTES_WORD in first and NOTES_WORD not in second
    # the diagram's words exist only as pixels of a picture on slide 2: OCR read them (layer+ocr)
    assert DIAGRAM_WORD in second.upper() and r.pages[1]["text_source"] == "layer+ocr"
    assert all(p["width"] > p["height"] for p in r.pages)  # slide pages, not portrait notes pages
    assert all((tmp_path / p["image_path"]).is_file() for p in r.pages)
    assert r.convert_stats["format"] == "pptx"


def test_two_conversions_at_once_and_one_page_per_sheet(corpus: Path, tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:  # each gets its own LibreOffice profile: neither fails
        sheet, doc = pool.map(
            lambda s: _ingest(corpus, s, tmp_path / s, "ocr=none"), ["office/xlsx.xlsx", "office/docx.docx"]
        )
    assert (sheet.status, doc.status) == ("ok", "ok"), (sheet.quarantine, doc.quarantine)
    assert [p["page"] for p in sheet.pages] == [1, 2]  # sheet number = page number
    revenue, staff = (p["text"] for p in sheet.pages)
    assert "Sheet: Revenue" in revenue and "Patagonia" in revenue
    # the long cell is clipped at the printed column's edge; its whole string joins the page's text
    assert f"Headcount of the {WORDS['xlsx']} walrus team is eleven" in staff
    assert WORDS["docx"] in doc.pages[0]["text"] and "2400 rpm" in doc.pages[0]["text"]


def test_a_hanging_conversion_is_killed_and_leaves_no_process(corpus: Path, tmp_path: Path) -> None:
    r = _ingest(corpus, "office/odp.odp", tmp_path, "convert.timeout_s=0.3")
    assert r.status == "quarantined"
    assert (
        "did not finish converting within convert.timeout_s=0.3 s and was killed" in r.quarantine[0]["reason"]
    )
    assert not _processes_with("mmrag-convert-")  # the whole process group went, the work folder too


def _processes_with(needle: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


def test_without_libreoffice_the_reason_says_what_to_install(corpus: Path, tmp_path: Path) -> None:
    r = _ingest(corpus, "office/docx.docx", tmp_path, "convert.soffice=/nonexistent/soffice")
    assert r.status == "quarantined"
    assert (
        "apt-get install libreoffice-core libreoffice-writer libreoffice-impress libreoffice-calc"
        in r.quarantine[0]["reason"]
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("hostile/encrypted.docx", "encrypted (password-protected) Office file"),
        ("hostile/bomb.docx", "zip bomb: the container inflates to over"),
        ("hostile/big.xlsx", "has more than 50,000 non-empty cells (convert.max_sheet_cells)"),
    ],
)
def test_hostile_containers_are_refused_before_libreoffice_sees_them(
    corpus: Path, tmp_path: Path, source: str, reason: str
) -> None:
    r = _ingest(corpus, source, tmp_path, "convert.soffice=/nonexistent/soffice")  # never reached
    assert r.status == "quarantined" and reason in r.quarantine[0]["reason"], r.quarantine
    assert r.quarantine[0]["stage"] == "convert"


def test_macros_are_reported_and_never_run(corpus: Path, tmp_path: Path) -> None:
    r = _ingest(corpus, "hostile/macros.docm", tmp_path, "ocr=none")
    assert r.status == "partial"
    assert any("contains macros: never run" in q["reason"] for q in r.quarantine)
    assert WORDS["docx"] in r.pages[0]["text"]


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counter.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_external_links_are_never_fetched(tmp_path: Path) -> None:
    """An OpenDocument text whose picture is a link to a live HTTP server: the conversion sees no
    network (its own namespace), the server no request, the quarantine table a note."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/diagram.png"
    root = tmp_path / "corpus"
    root.mkdir()
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
        'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.2"><office:body><office:text>'
        '<text:p>Linked picture report kiwifruitlink<draw:frame svg:width="5cm" svg:height="3cm">'
        f'<draw:image xlink:href="{url}" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/>'
        "</draw:frame></text:p></office:text></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    with zipfile.ZipFile(root / "linked.odt", "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content)
        z.writestr("META-INF/manifest.xml", manifest)
    try:
        r = _ingest(root, "linked.odt", tmp_path / "storage", "ocr=none")
    finally:
        server.shutdown()
    assert r.status == "partial", r.quarantine
    assert any(
        "refers to external content (linked image): never fetched" in q["reason"] for q in r.quarantine
    )
    assert "kiwifruitlink" in r.pages[0]["text"]
    assert _Counter.hits == []


# ---------------------------------------------------------------- batches: several files, one LibreOffice


def _unloadable_odt(path: Path) -> None:
    """A valid ODF container whose content.xml is not XML: it passes the container checks, and
    LibreOffice reports 'source file could not be loaded' for it and goes on with the next file."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
            'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
            '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
            '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>',
        )
        z.writestr("content.xml", "<office:document-content this is not XML <<<")


def _batch_corpus(corpus: Path, root: Path) -> list[SimpleNamespace]:
    """docx, the unloadable odt, odt, a deck (another kind: its own process) as manifest entries."""
    root.mkdir()
    for f in ("docx.docx", "odt.odt", "pptx.pptx"):
        shutil.copyfile(corpus / "office" / f, root / f)
    _unloadable_odt(root / "broken.odt")
    return [SimpleNamespace(doc_id=f"d{i}", source=s, kind="office") for i, s in
            enumerate(["docx.docx", "broken.odt", "odt.odt", "pptx.pptx"])]  # fmt: skip


def test_a_batch_with_one_bad_file_converts_the_others_and_quarantines_only_it(
    corpus: Path, tmp_path: Path
) -> None:
    entries = _batch_corpus(corpus, tmp_path / "corpus")
    cfg = load_config([f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 's'}", "ocr=none"])
    office = OfficeConversions(cfg.convert, cfg.corpus_root, entries)
    got, taken = {}, []
    for e in entries:
        taken.append(office.take(e.doc_id))
        got[e.source] = ingest_document(Runtime(cfg), source=e.source, doc_id=e.doc_id, kind="office", sha256="0" * 64,
                                        size=1, converted=taken[-1])  # fmt: skip
    office.close()
    assert {s: r.status for s, r in got.items()} == {
        "docx.docx": "ok",
        "broken.odt": "quarantined",
        "odt.odt": "ok",
        "pptx.pptx": "ok",
    }, {s: r.quarantine for s, r in got.items()}
    assert (
        "LibreOffice could not convert this odt file (Error: source file could not be loaded)"
        in (got["broken.odt"].quarantine[0]["reason"])
    )
    assert (
        WORDS["docx"] in got["docx.docx"].pages[0]["text"] and WORDS["odt"] in got["odt.odt"].pages[0]["text"]
    )
    first, _ = (p["text"] for p in got["pptx.pptx"].pages)  # the deck alone, its notes cut off as ever
    assert NOTES_WORD in first and len(got["pptx.pptx"].pages) == 2
    # one process for the three texts, one retry for the file it could not load, one for the deck
    assert (office.stats.batches, office.stats.retried, office.stats.processes) == (1, 1, 3)
    assert got["docx.docx"].convert_stats["batched"] and "batched" not in got["broken.odt"].convert_stats
    assert not any(t.work.exists() for t in taken if t) and not _processes_with("mmrag-convert-")


def test_a_batch_that_times_out_falls_back_to_one_file_at_a_time(corpus: Path, tmp_path: Path) -> None:
    jobs = []
    for i, f in enumerate(["docx.docx", "odt.odt"]):
        work = tmp_path / f"w{i}"
        p = corpus / "office" / f
        jobs.append(OfficeJob(p, f.split(".")[1], work, check_container(p, f.split(".")[1], max_unpacked_bytes=1 << 28,
                                                                       max_ratio=200, max_sheet_cells=50_000)))  # fmt: skip
    cfg = load_config(["convert.timeout_s=0.3"]).convert
    stats = BatchStats()
    out = convert_office_batch(jobs, cfg, stats=stats)
    assert all(
        isinstance(r, CorruptInput) and "within convert.timeout_s=0.3 s and was killed" in str(r) for r in out
    )
    assert (stats.batches, stats.retried, stats.processes) == (1, 2, 3)  # the batch, then each file alone
    assert not _processes_with("mmrag-convert-")


# ---------------------------------------------------------------- text formats (PyMuPDF layout)


def test_html_scripts_never_run_local_images_inlined_remote_never_fetched(
    corpus: Path, tmp_path: Path
) -> None:
    import pymupdf

    r = _ingest(corpus, "text/wiki.html", tmp_path, "ocr=none")
    assert r.status == "partial"  # the remote picture is noted
    text = r.pages[0]["text"]
    assert WORDS["html"] in text and "SCRIPTRAN" not in text and "[image]" not in text
    assert any("1 remote image(s) never fetched" in q["reason"] for q in r.quarantine)
    # the local picture is on the page: its pixels differ from a blank page's where it was placed
    img = pymupdf.Pixmap(str(tmp_path / r.pages[0]["image_path"]))
    dark = sum(1 for i in range(0, len(img.samples), 3 * 37) if img.samples[i] < 128)
    blank = _ingest(corpus, "text/page.htm", tmp_path / "b", "ocr=none")
    ref = pymupdf.Pixmap(str(tmp_path / "b" / blank.pages[0]["image_path"]))
    assert dark > 3 * sum(1 for i in range(0, len(ref.samples), 3 * 37) if ref.samples[i] < 128)


@pytest.mark.parametrize(
    ("source", "want", "unwanted"),
    [
        ("text/README.md", [WORDS["md"], "retries", "badge"], ["|---|"]),  # a table, inline HTML
        ("text/notes.txt", [WORDS["txt"], "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"], []),  # cp1252, detected
        ("text/guide.rst", [WORDS["rst"], "Run the installer"], ["root:", "RAWHTML"]),  # include/raw refused
        ("text/doc.xhtml", [WORDS["xhtml"]], []),
        ("office/epub.epub", [WORDS["epub"], "2400"], []),
    ],
)
def test_text_formats_are_laid_out_to_pages(
    corpus: Path, tmp_path: Path, source: str, want: list[str], unwanted: list[str]
) -> None:
    r = _ingest(corpus, source, tmp_path, "ocr=none")
    assert r.status == "ok", r.quarantine
    text = "\n".join(p["text"] for p in r.pages)
    assert all(w in text for w in want), text
    assert not any(u in text for u in unwanted), text
    assert all(p["height"] > p["width"] for p in r.pages)  # A4 pages with an image each


def test_a_huge_text_file_is_quarantined_not_laid_out(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    (root / "huge.txt").write_text("word " * 3000)
    r = _ingest(root, "huge.txt", tmp_path / "s", "convert.max_text_bytes=10000")
    assert r.status == "quarantined" and "over convert.max_text_bytes=10,000" in r.quarantine[0]["reason"]

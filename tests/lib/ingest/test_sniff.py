from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mmrag_assets.lib.ingest.sniff import sniff_bytes, sniff_file

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "


@pytest.mark.parametrize(
    ("head", "ext", "kind", "detail"),
    [
        (b"%PDF-1.7\n%\xe2\xe3", "pdf", "pdf", "pdf"),
        (PNG, "png", "image", "png"),
        (PNG, "dat", "image", "png"),  # content wins over a wrong extension
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpg", "image", "jpeg"),
        (WAV, "wav", "audio", "wav"),
        (b"fLaC\x00\x00\x00\x22", "flac", "audio", "flac"),
        (b"OggS\x00\x02", "ogg", "audio", "ogg"),
        (b"OggS\x00\x02", "ogv", "video", "ogg"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "mp4", "video", "mp4"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00", "m4a", "audio", "m4a"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "webm", "video", "matroska"),
    ],
)
def test_magic_detection(head: bytes, ext: str, kind: str, detail: str) -> None:
    s = sniff_bytes(head, ext)
    assert (s.kind, s.detail) == (kind, detail)
    assert s.reason is None


def test_text_named_pdf_is_unsupported_with_reason() -> None:
    s = sniff_bytes(b"Meeting notes\nnot really a pdf\n", "pdf")
    assert s.kind == "unsupported"
    assert "extension .pdf says pdf but the content is plain text" == s.reason


def test_random_bytes_named_wav() -> None:
    import random

    rng = random.Random(1)
    head = bytes(rng.randrange(256) for _ in range(4096))
    s = sniff_bytes(head, "wav")
    assert s.kind == "unsupported"
    assert "extension .wav says audio but the content is unrecognised binary data" == s.reason


def test_unknown_extension_and_empty() -> None:
    assert "unsupported file type (.xyz" in sniff_bytes(b"hello", "xyz").reason
    assert sniff_bytes(b"", "pdf").reason == "empty file (0 bytes)"


# ---------------------------------------------------------------- Office, OpenDocument, text (issue 24)


def _zip(tmp_path: Path, name: str, entries: dict[str, bytes], first: str | None = None) -> Path:
    p = tmp_path / name
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        if first:  # ODF/EPUB: the mimetype entry first, stored
            z.writestr(zipfile.ZipInfo("mimetype"), entries.pop("mimetype"), compress_type=zipfile.ZIP_STORED)
        for k, v in entries.items():
            z.writestr(k, v)
    return p


OOXML = {
    "[Content_Types].xml": b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
    "_rels/.rels": b"<Relationships/>",
}


@pytest.mark.parametrize(
    ("name", "entries", "kind", "detail"),
    [
        ("a.docx", {**OOXML, "word/document.xml": b"<w/>"}, "office", "docx"),
        ("a.pptx", {**OOXML, "ppt/presentation.xml": b"<p/>"}, "office", "pptx"),
        ("a.xlsm", {**OOXML, "xl/workbook.xml": b"<x/>"}, "office", "xlsx"),
        (
            "a.odp",
            {"mimetype": b"application/vnd.oasis.opendocument.presentation", "content.xml": b"<c/>"},
            "office",
            "odp",
        ),
        ("a.epub", {"mimetype": b"application/epub+zip", "META-INF/container.xml": b"<c/>"}, "text", "epub"),
        (
            "renamed.bin",
            {**OOXML, "word/document.xml": b"<w/>"},
            "office",
            "docx",
        ),  # unknown extension: content decides
    ],
)
def test_zip_containers_by_layout(tmp_path: Path, name: str, entries: dict, kind: str, detail: str) -> None:
    s = sniff_file(_zip(tmp_path, name, dict(entries), first="mimetype" if "mimetype" in entries else None))
    assert (s.kind, s.detail, s.reason) == (kind, detail, None)


def test_zip_layout_that_contradicts_the_extension_is_a_mismatch(tmp_path: Path) -> None:
    s = sniff_file(_zip(tmp_path, "deck.docx", {**OOXML, "ppt/presentation.xml": b"<p/>"}))
    assert s.kind == "unsupported"
    assert s.reason == "extension .docx says a Word document but the content is a PowerPoint deck"
    s = sniff_file(_zip(tmp_path, "x.xlsx", {"a.txt": b"hello"}))
    assert (
        s.reason
        == "extension .xlsx says an Excel workbook but the content is a zip archive (not an Office, OpenDocument or EPUB file)"
    )


def test_truncated_zip_container(tmp_path: Path) -> None:
    full = _zip(
        tmp_path, "full.docx", {**OOXML, "word/document.xml": b"<w>" + b"x" * 5000 + b"</w>"}
    ).read_bytes()
    (tmp_path / "cut.docx").write_bytes(full[: len(full) // 2])
    s = sniff_file(tmp_path / "cut.docx")
    assert s.kind == "unsupported" and s.reason.startswith("damaged or truncated zip container (.docx)")


def test_ole2_files_by_their_streams(tmp_path: Path) -> None:
    import io

    from msoffcrypto.format.ooxml import OOXMLFile

    docx = _zip(tmp_path, "plain.docx", {**OOXML, "word/document.xml": b"<w/>"}).read_bytes()
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(docx)).encrypt("pw", out)  # an encrypted OOXML package is an OLE2 file
    (tmp_path / "secret.docx").write_bytes(out.getvalue())
    s = sniff_file(tmp_path / "secret.docx")
    assert (s.kind, s.detail) == ("office", "encrypted")
    (tmp_path / "secret.pdf").write_bytes(out.getvalue())
    s = sniff_file(tmp_path / "secret.pdf")
    assert s.reason == "extension .pdf says pdf but the content is an encrypted Office file"


@pytest.mark.parametrize(
    ("head", "ext", "kind", "detail"),
    [
        (b"{\\rtf1\\ansi hello}", "rtf", "office", "rtf"),
        (b"{\\rtf1\\ansi hello}", "doc", "office", "rtf"),  # Word writes RTF under .doc
        (b"<!DOCTYPE html><html><body>x</body></html>", "html", "text", "html"),
        (
            b"<!-- saved --><html lang=en><p>x</p></html>",
            "page",
            "text",
            "html",
        ),  # an HTML document under any name
        (
            b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"></html>',
            "xhtml",
            "text",
            "html",
        ),
        (b"# Title\n\n<div align=center>badge</div>\n", "md", "text", "md"),
        (
            "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, d\u00e9j\u00e0 vu, na\u00efve fa\u00e7ade".encode(
                "cp1252"
            ),
            "txt",
            "text",
            "txt",
        ),
        ("\ufeffUTF-16 notes \u2013 with a BOM".encode("utf-16"), "txt", "text", "txt"),
        (b"Title\n=====\n\ntext", "rst", "text", "rst"),
    ],
)
def test_text_and_rtf_by_content(head: bytes, ext: str, kind: str, detail: str) -> None:
    s = sniff_bytes(head, ext)
    assert (s.kind, s.detail, s.reason) == (kind, detail, None)


@pytest.mark.parametrize(
    ("head", "ext", "reason"),
    [
        (PNG, "md", "extension .md says Markdown but the content is PNG image data"),
        (b"%PDF-1.7\n%\xe2\xe3", "docx", "extension .docx says a Word document but the content is PDF data"),
        (
            bytes(range(256)) * 4,
            "txt",
            "extension .txt says plain text but the content is unrecognised binary data",
        ),
        (
            b"just words, no tags",
            "html",
            "extension .html says HTML but the content is plain text without any markup",
        ),
        (b"{\\rtf1 x}", "pptx", "extension .pptx says a PowerPoint deck but the content is an RTF document"),
    ],
)
def test_every_mismatch_is_a_reason(head: bytes, ext: str, reason: str) -> None:
    s = sniff_bytes(head, ext)
    assert (s.kind, s.reason) == ("unsupported", reason)


def test_text_under_an_unknown_extension_stays_unsupported() -> None:
    assert sniff_bytes(b"key = value\n", "ini").reason == "unsupported file type (.ini, plain text)"

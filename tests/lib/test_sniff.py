from __future__ import annotations

import pytest

from mmrag_assets.lib.ingest.sniff import sniff_bytes

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

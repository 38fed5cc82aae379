"""Files a real corpus folder will contain sooner or later, made on the fly for tests.

``make_hostile_files(root, outside)`` writes them and returns ``{relative_path: expectation}``
where the expectation is ``"ok"``, ``"silence"`` (ingests, zero words) or a substring of the
quarantine reason the pipeline records: the corpus scanner's (content sniffing, unknown
extensions, symlinks leaving the corpus) where it refuses a file first, otherwise the one
``mmrag_assets.lib.ingest.render`` / ``asr`` raise (truncated, password, pixel cap, bomb).
"""

from __future__ import annotations

import os
import random
import struct
import wave
import zlib
from pathlib import Path

ENCRYPTED_PASSWORD = "hunter2"
SMALL_PIXEL_CAP = 1_000_000  # set ingest.max_image_pixels to this to quarantine big.png
BOMB_SIDE = 50_000


def _pdf(text: str, pages: int = 2, **save_kwargs: object) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"{text} (page {i + 1})", fontname="helv", fontsize=12)
    return doc.tobytes(no_new_id=True, **save_kwargs)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side white pixels: ~0.4 MB on disk, 2.5 GP decoded.

    Deflate is capped near 1000:1, so compressing 312 MB of rows would take seconds; instead one
    block of rows is compressed once and repeated: after a full flush the compressor state is
    reset, so every copy is the same byte-aligned run of deflate blocks.
    """
    row = b"\x00" + b"\xff" * ((side + 7) // 8)  # filter byte 0 + packed bits
    rows_per_block = 512
    full, rest = divmod(side, rows_per_block)
    block = row * rows_per_block
    co = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: we write the zlib wrapper
    body = (co.compress(block) + co.flush(zlib.Z_FULL_FLUSH)) * full
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    body += tail.compress(row * rest) + tail.flush()
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    idat = b"\x78\xda" + body + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _silent_wav(path: Path, seconds: float = 5.0, rate: int = 16_000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))


def make_hostile_files(root: Path, outside: Path) -> dict[str, str]:
    """Create the hostile files under ``root`` (and a target under ``outside``); see module doc."""
    import pymupdf
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(rel: str, data: bytes, expect: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        expected[rel] = expect

    put("empty.pdf", b"", "empty")
    good = _pdf("A perfectly normal document", pages=4)
    put("truncated.pdf", good[: len(good) // 2], "truncated")
    put(
        "encrypted.pdf",
        _pdf(
            "Top secret",
            encryption=pymupdf.PDF_ENCRYPT_AES_256,
            user_pw=ENCRYPTED_PASSWORD,
            owner_pw=ENCRYPTED_PASSWORD + "!",
        ),
        "password",
    )
    put("not-really.pdf", b"Meeting notes\nThis is plain text, not a PDF.\n" * 20, "content is plain text")
    # Seeded: some random byte strings happen to contain MPEG audio sync words that FFmpeg
    # will happily "decode"; this one is checked to be rejected.
    put(
        "noise.wav",
        random.Random(1234).randbytes(48_000),
        "says audio but the content is unrecognised binary data",
    )
    _silent_wav(root / "silence.wav")
    expected["silence.wav"] = "silence"

    big = Image.new("RGB", (2000, 2000), (30, 120, 200))
    big.save(root / "big.png", "PNG", compress_level=1)
    expected["big.png"] = "over ingest.max_image_pixels"
    put("bomb.png", bomb_png(), "decompression bomb guard")
    put("notes.xyz", b"opaque blob\x00\x01\x02", "unsupported")

    secret = outside / "secret.pdf"
    secret.write_bytes(_pdf("Private file outside the corpus"))
    os.symlink(secret, root / "link-to-outside.pdf")
    expected["link-to-outside.pdf"] = "outside the corpus"

    put("Ça va #1 (draft).pdf", _pdf("Quarterly draft with an awkward file name", pages=2), "ok")
    return expected


def make_mute_video(path: Path, seconds: float = 2.0, fps: int = 5) -> Path:
    """A small MPEG-4 video with no audio stream (screen recordings often have none)."""
    from fractions import Fraction

    import av
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (i * 20 % 256, 80, 160)))
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pk in vs.encode(frame):
                out.mux(pk)
        for pk in vs.encode(None):
            out.mux(pk)
    return path

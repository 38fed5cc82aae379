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


# ---------------------------------------------------------------- issue 21: names and polyglots


def speech_pcm(seconds: float = 8.0, rate: int = 16_000) -> bytes:
    """The first ``seconds`` of the bundled speech recording as 16-bit mono PCM at ``rate``."""
    import av
    import numpy as np

    from mmrag_assets.fixtures.sample_corpus import SPEECH_AUDIO

    out = []
    with av.open(str(SPEECH_AUDIO)) as f:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in f.decode(audio=0):
            for r in resampler.resample(frame):
                out.append(r.to_ndarray().reshape(-1))
    pcm = np.concatenate(out)[: int(seconds * rate)].astype("<i2")
    return pcm.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def wav_with_chunks(
    pcm: bytes, *, before: bytes = b"", after: bytes = b"", rate: int = 16_000, riff_size: bytes | None = None
) -> bytes:
    """A PCM WAV whose extra (ignored) chunks ``before`` / ``after`` the audio carry other content."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + _chunk(b"fmt ", fmt) + before + _chunk(b"data", pcm) + after
    return b"RIFF" + (riff_size or struct.pack("<I", len(body))) + body


def html_polyglot(pcm: bytes, script_src: str) -> bytes:
    """A valid WAV (speech) that is also an HTML page: inline script, and a script loaded from
    ``script_src`` (the media URL of :func:`js_polyglot`'s file)."""
    page = (
        b"<html><body><p id=x>polyglot</p><script>document.title='pwned-inline'</script>"
        b"<script src='" + script_src.encode() + b"'></script></body></html>"
    )
    return wav_with_chunks(pcm, before=_chunk(b"html", page))


def js_polyglot(pcm: bytes) -> bytes:
    """A valid WAV (speech) that is also a classic script: the RIFF size bytes are ``=1/*``, so
    JavaScript reads ``RIFF=1`` and a comment that runs over the audio to a trailing chunk which
    closes it and sets ``document.title``."""
    samples = bytearray(pcm)
    while (i := samples.find(b"*/")) >= 0:  # the audio must not close the comment early
        samples[i] ^= 1
    tail = _chunk(b"js  ", b"*/;document.title='pwned-js';//")
    return wav_with_chunks(bytes(samples), after=tail, riff_size=b"=1/*")


# (name bytes, one word only that file holds): every kind of name POSIX allows and a terminal,
# a log or a database chokes on
HOSTILE_NAMES: list[tuple[bytes, str]] = [
    (b"bad\xffname.pdf", "aardvark"),  # not UTF-8
    (b"two\nlines.pdf", "bandicoot"),  # a newline: a fake log line
    (b"bell\x07\x1b[31mred.pdf", "capybara"),  # control characters, an ANSI colour escape
    ("invoice-\u202efdp.exe".encode() + b".pdf", "dugong"),  # RTL override: reads "invoice-exe.pdf"
    ("zero\u200bwidth\ufeff.pdf".encode(), "echidna"),  # invisible format characters
    (b"back\\xffslash.pdf", "fossa"),  # a literal backslash-x: must not collide with the first one
    (b"n" * 251 + b".pdf", "gerenuk"),  # 255 bytes: the longest name Linux allows
]


def make_hostile_names(root: Path) -> dict[bytes, str]:
    """One small PDF per name of :data:`HOSTILE_NAMES` under ``root`` (its word on page 1);
    returns {name bytes: word}."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, word in HOSTILE_NAMES:
        with open(os.path.join(os.fsencode(root), name), "wb") as f:
            f.write(_pdf(f"The {word} document explains the {word} procedure", pages=1))
        out[name] = word
    return out


def matroska_audio(pcm: bytes, rate: int = 16_000) -> bytes:
    """``pcm`` (16-bit mono) as FLAC in a Matroska file: a recording browsers do not play inline."""
    import io

    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        st = out.add_stream("flac", rate=rate, layout="mono")
        samples = np.frombuffer(pcm, dtype="<i2")
        for i in range(0, len(samples), rate):
            frame = av.AudioFrame.from_ndarray(
                samples[i : i + rate].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, i
            for pk in st.encode(frame):
                out.mux(pk)
        for pk in st.encode(None):
            out.mux(pk)
    return buf.getvalue()

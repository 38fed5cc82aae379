"""Making the corpus files: scanned PDFs, standalone images, speech and a narrated screencast.

Every function is deterministic for a given input and seed, so a rebuild gives the same corpus.
"""

from __future__ import annotations

import io
import random
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image, ImageFilter

SPEECH_RATE = 2  # channels are mono 16-bit; espeak-ng writes 22050 Hz
GAP_S = 0.8  # silence between spoken passages
VOICE, WPM = "en-us", 165


def render(page: pymupdf.Page, dpi: int, clip: pymupdf.Rect | None = None) -> Image.Image:
    pix = page.get_pixmap(dpi=dpi, clip=clip, alpha=False)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def scan(img: Image.Image, rng: random.Random) -> Image.Image:
    """A photocopy-like page: grey, slightly rotated and blurred, sensor noise, JPEG later."""
    g = img.convert("L").rotate(rng.uniform(-1.2, 1.2), resample=Image.BICUBIC, fillcolor=255, expand=False)
    if rng.random() < 0.5:
        g = g.filter(ImageFilter.GaussianBlur(0.6))
    a = np.asarray(g, dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 7.0, a.shape)
    a = np.clip(a * rng.uniform(0.9, 1.0) + noise + rng.uniform(0, 12), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "L")


def scanned_pdf(src: bytes, out: Path, *, dpi: int, seed: int) -> list[str]:
    """Every page of ``src`` rasterised into an image-only PDF (no text layer); returns the
    original text layer of each page (ground truth)."""
    doc, new = pymupdf.open(stream=src, filetype="pdf"), pymupdf.open()
    texts = []
    for i, page in enumerate(doc):
        texts.append(page.get_text())
        img = scan(render(page, dpi), random.Random(f"{seed}:{out.name}:{i}"))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=70)
        p = new.new_page(width=page.rect.width, height=page.rect.height)
        p.insert_image(p.rect, stream=buf.getvalue())
    out.parent.mkdir(parents=True, exist_ok=True)
    new.save(out, garbage=4, deflate=True)
    return texts


def panels(src: bytes, *, cols: int, rows: int) -> list[tuple[int, pymupdf.Rect]]:
    """(page index, rectangle) of each panel: the page cut into ``cols`` x ``rows``."""
    doc = pymupdf.open(stream=src, filetype="pdf")
    out = []
    for i, page in enumerate(doc):
        r = page.rect
        w, h = r.width / cols, r.height / rows
        out += [(i, pymupdf.Rect(c * w, k * h, (c + 1) * w, (k + 1) * h)) for c in range(cols) for k in range(rows)]
    return out


def save_region(src: bytes, index: int, clip: pymupdf.Rect, out: Path, *, dpi: int) -> str:
    """Render one region of a page to ``out`` (PNG or JPEG by suffix); returns the text inside."""
    doc = pymupdf.open(stream=src, filetype="pdf")
    page = doc[index]
    out.parent.mkdir(parents=True, exist_ok=True)
    img = render(page, dpi, clip)
    img.save(out, quality=88) if out.suffix == ".jpg" else img.save(out)
    return page.get_text(clip=clip)


def speak(text: str, seed: int) -> tuple[np.ndarray, int]:
    """espeak-ng reading ``text``: int16 samples at 22050 Hz."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        pitch = 35 + seed % 30  # a little variety between passages
        subprocess.run(
            ["espeak-ng", "-v", VOICE, "-s", str(WPM), "-p", str(pitch), "-w", str(wav), text],
            check=True, capture_output=True,
        )
        with wave.open(str(wav)) as w:
            assert w.getsampwidth() == SPEECH_RATE and w.getnchannels() == 1
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy(), w.getframerate()


def recording(passages: list[str], out: Path, seed: int) -> list[tuple[float, float]]:
    """The passages read one after the other, with a pause between; written with sox (by suffix:
    .ogg, .flac, .wav). Returns each passage's (start_s, end_s)."""
    chunks, spans, t, rate = [], [], 0.0, 22050
    for i, text in enumerate(passages):
        samples, rate = speak(text, seed + i)
        gap = np.zeros(int(GAP_S * rate), dtype=np.int16)
        spans.append((t, t + len(samples) / rate))
        chunks += [samples, gap]
        t += (len(samples) + len(gap)) / rate
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "all.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes(np.concatenate(chunks).tobytes())
        subprocess.run(["sox", str(wav), str(out)], check=True, capture_output=True)
    return spans


def screencast(slides: list[Image.Image], narration: list[str], out: Path, *, seed: int, min_slide_s: float, size=(1280, 720)) -> list[tuple[float, float]]:
    """An H.264 + AAC screencast: each slide shown while its narration plays (at least
    ``min_slide_s``). Returns each slide's (start_s, end_s)."""
    import av

    audio, spans, t = [], [], 0.0
    rate = 22050
    for i, text in enumerate(narration):
        samples, rate = speak(text, seed + i)
        dur = max(min_slide_s, len(samples) / rate + GAP_S)
        pad = np.zeros(round(dur * rate) - len(samples), dtype=np.int16)
        audio.append(np.concatenate([samples, pad]))
        spans.append((t, t + dur))
        t += dur
    pcm = np.concatenate(audio)
    out.parent.mkdir(parents=True, exist_ok=True)
    fps = 2
    with av.open(str(out), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}
        as_ = c.add_stream("aac", rate=rate)
        as_.layout = "mono"
        frame_i = 0
        for img, (s0, s1) in zip(slides, spans, strict=True):
            canvas = letterbox(img, size)
            vf = av.VideoFrame.from_image(canvas)
            while frame_i / fps < s1:
                vf.pts = frame_i
                for p in vs.encode(vf):
                    c.mux(p)
                frame_i += 1
        for p in vs.encode():
            c.mux(p)
        step = 1024
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            af.sample_rate, af.pts = rate, i
            for p in as_.encode(af):
                c.mux(p)
        for p in as_.encode():
            c.mux(p)
    return spans


def letterbox(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    s = min(size[0] / img.width, size[1] / img.height)
    r = img.resize((max(1, int(img.width * s)), max(1, int(img.height * s))), Image.LANCZOS)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(r, ((size[0] - r.width) // 2, (size[1] - r.height) // 2))
    return canvas

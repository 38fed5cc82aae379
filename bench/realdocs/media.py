"""Making the corpus files: scanned PDFs, standalone images, speech and a narrated screencast.

Every function is deterministic for a given input and seed, so a rebuild gives the same corpus.
"""

from __future__ import annotations

import io
import random
import subprocess
import tempfile
import wave
from dataclasses import dataclass
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
        out += [
            (i, pymupdf.Rect(c * w, k * h, (c + 1) * w, (k + 1) * h))
            for c in range(cols)
            for k in range(rows)
        ]
    return out


def save_region(src: bytes, index: int, clip: pymupdf.Rect, out: Path, *, dpi: int) -> str:
    """Render one region of a page to ``out`` (PNG or JPEG by suffix); returns the text inside."""
    doc = pymupdf.open(stream=src, filetype="pdf")
    page = doc[index]
    out.parent.mkdir(parents=True, exist_ok=True)
    img = render(page, dpi, clip)
    img.save(out, quality=88) if out.suffix == ".jpg" else img.save(out)
    return page.get_text(clip=clip)


def speak(text: str, seed: int, voice: str = VOICE, wpm: int = WPM) -> tuple[np.ndarray, int]:
    """espeak-ng reading ``text``: int16 samples at 22050 Hz."""
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        pitch = 35 + seed % 30  # a little variety between passages
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(wav), text],
            check=True,
            capture_output=True,
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


def screencast(
    slides: list[Image.Image],
    narration: list[str],
    out: Path,
    *,
    seed: int,
    min_slide_s: float,
    size=(1280, 720),
) -> list[tuple[float, float]]:
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


# ---------------------------------------------------------------- support calls, rooms, lectures

RATE = 22050  # espeak-ng's rate: scripts are mixed at it, then each channel resamples
PHONE_RATE = 8000


@dataclass(frozen=True)
class Line:
    """One stretch of speech in a script: who says what, and the pause before it."""

    text: str
    voice: str = VOICE
    wpm: int = WPM
    pause_s: float = GAP_S


def script(lines: list[Line], seed: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The lines spoken one after another (float32 in [-1, 1] at ``RATE``) and each line's
    (start_s, end_s). Deterministic: espeak-ng is, and each line's pitch comes from the seed."""
    chunks, spans, t = [], [], 0.0
    for i, line in enumerate(lines):
        gap = np.zeros(round(line.pause_s * RATE), dtype=np.float32)
        samples, rate = speak(line.text, seed + i, line.voice, line.wpm)
        assert rate == RATE, rate
        t += len(gap) / RATE
        spans.append((t, t + len(samples) / RATE))
        t += len(samples) / RATE
        chunks += [gap, samples.astype(np.float32) / 32768.0]
    chunks.append(np.zeros(round(GAP_S * RATE), dtype=np.float32))
    return np.concatenate(chunks), spans


def power_in(x: np.ndarray, spans: list[tuple[float, float]], rate: int = RATE) -> float:
    """Mean power of ``x`` over the spoken spans (silences left out, so an SNR means speech vs noise)."""
    parts = [x[int(s * rate) : int(e * rate)] for s, e in spans]
    return float(np.mean(np.concatenate(parts) ** 2))


def band_noise(
    n: int, rate: int, lo: float, hi: float, rng: np.random.Generator, slope: float = 0.0
) -> np.ndarray:
    """Gaussian noise shaped in the frequency domain: zero outside [lo, hi] Hz, power ~ f**-slope
    (0 white, 1 pink), unit mean power."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    shape = np.where((f >= lo) & (f <= hi), 1.0, 0.0) / np.maximum(f, 1.0) ** (slope / 2)
    y = np.fft.irfft(spec * shape, n)
    return (y / np.sqrt(np.mean(y**2) + 1e-12)).astype(np.float32)


def at_snr(speech_power: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that speech power / noise power = ``snr_db``."""
    p = float(np.mean(noise**2)) + 1e-12
    return noise * np.sqrt(speech_power / (p * 10 ** (snr_db / 10)))


def _sox(args: list[str]) -> None:
    # -D: no dither (sox's dither draws random noise), so a rebuild writes the same samples
    subprocess.run(["sox", "-D", *args], check=True, capture_output=True)


def _write_wav(x: np.ndarray, rate: int, path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0


def normalise_peak(x: np.ndarray, peak: float = 0.7) -> np.ndarray:
    return x * (peak / (float(np.max(np.abs(x))) + 1e-9))


def phone_line(
    x: np.ndarray, spans: list[tuple[float, float]], out: Path, *, seed: int, line_snr_db: float
) -> None:
    """A support call as a call recorder keeps it: the mix resampled to 8 kHz and band-passed to
    300-3400 Hz (the telephone band), hiss and 50 Hz-harmonic hum of the line at ``line_snr_db``,
    through the GSM 06.10 full-rate codec of a mobile leg and back, stored as 8-bit mu-law WAV at 8 kHz."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        src, band, gsm = Path(d) / "in.wav", Path(d) / "band.wav", Path(d) / "leg.gsm"
        _write_wav(normalise_peak(x), RATE, src)
        _sox([str(src), "-r", str(PHONE_RATE), str(band), "sinc", "300-3400"])
        y = _read_wav(band)
        n = len(y)
        t = np.arange(n) / PHONE_RATE
        hum = sum(
            np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (7, 9, 11)
        )  # in band
        line = band_noise(n, PHONE_RATE, 300, 3400, rng) + 0.5 * hum.astype(np.float32) / np.sqrt(
            np.mean(hum**2)
        )
        y = y + at_snr(power_in(y, spans, PHONE_RATE), line, line_snr_db)
        _write_wav(normalise_peak(y), PHONE_RATE, band)
        _sox([str(band), str(gsm)])
        out.parent.mkdir(parents=True, exist_ok=True)
        _sox([str(gsm), "-e", "u-law", "-b", "8", str(out)])


def babble(texts: list[str], n: int, *, seed: int, voices: tuple[str, ...]) -> np.ndarray:
    """Background talkers: each voice reads texts, time-reversed (speech-like, unintelligible: a
    transcript of the room must not pick up their words), started at a random offset; unit power."""
    rng = np.random.default_rng(seed)
    mix = np.zeros(n, dtype=np.float32)
    for k, voice in enumerate(voices):
        talk: list[np.ndarray] = []
        i = k
        while sum(len(c) for c in talk) < n + RATE * 5:
            s, _ = speak(texts[i % len(texts)], seed + i, voice, WPM)
            talk += [
                s.astype(np.float32)[::-1] / 32768.0,
                np.zeros(int(rng.uniform(0.2, 1.0) * RATE), np.float32),
            ]
            i += len(voices)
        y = np.concatenate(talk)
        off = int(rng.uniform(0, RATE * 4))
        y = y[off : off + n]
        mix[: len(y)] += y / np.sqrt(np.mean(y**2) + 1e-12)
    return mix / np.sqrt(np.mean(mix**2) + 1e-12)


def room(
    x: np.ndarray,
    spans: list[tuple[float, float]],
    out: Path,
    *,
    seed: int,
    snr_db: float,
    reverb: int,
    babble_texts: list[str],
    rate: int = 16000,
) -> None:
    """Speech in a noisy room: the dry speech with sox ``reverb`` (reverberance ``reverb`` %),
    talkers in the background and fan-like pink noise (half the noise power each) at ``snr_db``
    against the dry speech, resampled to ``rate`` (FLAC or anything sox writes, by suffix)."""
    rng = np.random.default_rng(seed)
    noise = 0.5**0.5 * babble(
        babble_texts, len(x), seed=seed, voices=("en-gb+m2", "en-us+f2", "en-us+m5", "en-gb+f4")
    )
    noise = noise + 0.5**0.5 * band_noise(len(x), RATE, 60, 8000, rng, slope=1.0)
    noisy = x + at_snr(power_in(x, spans), noise, snr_db)
    with tempfile.TemporaryDirectory() as d:
        dry, wet = Path(d) / "dry.wav", Path(d) / "wet.wav"
        _write_wav(normalise_peak(x), RATE, dry)
        _sox([str(dry), str(wet), "reverb", str(reverb)])
        wet_x = np.pad(_read_wav(wet), (0, len(x)))[: len(x)]
        scale = float(np.max(np.abs(x))) / 0.7  # back to the dry speech's level
        mixed = wet_x * scale + (noisy - x)
        _write_wav(normalise_peak(mixed), RATE, dry)
        out.parent.mkdir(parents=True, exist_ok=True)
        _sox([str(dry), "-r", str(rate), str(out)])


def hall(x: np.ndarray, out: Path, *, reverb: int, rate: int = 16000) -> None:
    """A lecture: the speech in a large room (sox ``reverb``), resampled to ``rate`` (FLAC: Ogg would
    give every rebuild a new random stream serial number, so a different file)."""
    with tempfile.TemporaryDirectory() as d:
        dry = Path(d) / "dry.wav"
        _write_wav(normalise_peak(x), RATE, dry)
        out.parent.mkdir(parents=True, exist_ok=True)
        _sox([str(dry), "-r", str(rate), str(out), "reverb", str(reverb)])


def plain(x: np.ndarray, out: Path, *, rate: int = 16000) -> None:
    """The dry mix at ``rate`` (the reference a channel's effect is measured against)."""
    with tempfile.TemporaryDirectory() as d:
        dry = Path(d) / "dry.wav"
        _write_wav(normalise_peak(x), RATE, dry)
        out.parent.mkdir(parents=True, exist_ok=True)
        _sox([str(dry), "-r", str(rate), str(out)])

"""Pictures and a video for the sample corpus, drawn with PIL and encoded with PyAV.

Split from ``sample_corpus`` (which holds the PDFs, the facts and the entry point); every
function returns bytes or a PIL image and is deterministic.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


# ---------------------------------------------------------------- images


def font(size: int):  # PIL returns FreeTypeFont or a bitmap ImageFont depending on the build
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def pie_png() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (400, 300), "white")
    d = ImageDraw.Draw(img)
    channels = [
        ("Online", 46, (41, 97, 171)),
        ("Retail", 38, (230, 140, 40)),
        ("Wholesale", 16, (90, 170, 90)),
    ]
    start = -90.0
    for i, (label, share, colour) in enumerate(channels):
        end = start + 360 * share / 100
        d.pieslice((20, 40, 240, 260), start, end, fill=colour, outline="white")
        start = end
        d.rectangle((260, 100 + i * 35, 280, 120 + i * 35), fill=colour)
        d.text((288, 100 + i * 35), f"{label} {share}%", fill="black", font=font(16))
    return png_bytes(img)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def diagram() -> Image.Image:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (900, 520), "white")
    d = ImageDraw.Draw(img)
    boxes = {
        "Fibre modem": (40, 210),
        "Wi-Fi router": (260, 210),
        "Gigabit switch": (480, 210),
        "NAS backup drive": (700, 80),
        "Desktop PC": (700, 210),
        "Smart TV": (700, 340),
    }
    edges = [
        ("Fibre modem", "Wi-Fi router"),
        ("Wi-Fi router", "Gigabit switch"),
        ("Gigabit switch", "NAS backup drive"),
        ("Gigabit switch", "Desktop PC"),
        ("Gigabit switch", "Smart TV"),
    ]
    w, h = 170, 70
    for a, b in edges:
        (ax, ay), (bx, by) = boxes[a], boxes[b]
        d.line((ax + w, ay + h // 2, bx, by + h // 2), fill=(60, 60, 60), width=4)
    for label, (x, y) in boxes.items():
        d.rounded_rectangle((x, y, x + w, y + h), 12, fill=(222, 234, 250), outline=(41, 97, 171), width=3)
        d.text((x + w // 2, y + h // 2), label, fill="black", font=font(20), anchor="mm")
    d.text((450, 30), "Home network: modem, router, switch, NAS", fill="black", font=font(26), anchor="mm")
    return img


def _lighthouse() -> Image.Image:
    """A photo-like scene drawn upright (640x480, landscape)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    w, h = 640, 480
    y = np.linspace(0.0, 1.0, h)[:, None]
    sky = np.stack([255 - 60 * y, 150 - 70 * y, 90 + 80 * y], axis=-1) * np.ones((1, w, 1))
    sea = np.stack([20 + 30 * y, 60 + 40 * y, 110 + 40 * y], axis=-1) * np.ones((1, w, 1))
    arr = np.where(np.arange(h)[:, None, None] < 300, sky, sea)
    arr += np.random.default_rng(7).normal(0, 6, arr.shape)  # sensor-like noise, seeded
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.polygon([(0, 340), (220, 290), (330, 330), (330, 480), (0, 480)], fill=(58, 52, 48))  # rocks
    for i in range(6):  # red and white bands of the tower
        top = 120 + i * 30
        d.polygon(
            [(232 - i * 3, top), (268 + i * 3, top), (270 + i * 3, top + 30), (230 - i * 3, top + 30)],
            fill=(200, 30, 30) if i % 2 == 0 else (240, 240, 235),
        )
    d.rectangle((236, 95, 264, 120), fill=(255, 236, 150))  # lantern room
    d.polygon([(230, 95), (270, 95), (250, 75)], fill=(40, 40, 40))
    d.ellipse((470, 200, 530, 260), fill=(255, 210, 120))  # low sun
    return img.filter(ImageFilter.GaussianBlur(0.8))


def photo_jpeg() -> bytes:
    """JPEG whose pixels are stored rotated, with EXIF orientation 6 ("rotate 90 CW to view")."""
    from PIL import Image

    stored = _lighthouse().transpose(Image.Transpose.ROTATE_90)  # 480x640 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=88, exif=exif.tobytes())
    return buf.getvalue()


# ---------------------------------------------------------------- video


def _slide(text: str, sub: str, size: tuple[int, int]) -> Image.Image:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (18, 40, 70))
    d = ImageDraw.Draw(img)
    d.text((size[0] // 2, size[1] // 2 - 20), text, fill="white", font=font(26), anchor="mm")
    d.text((size[0] // 2, size[1] // 2 + 25), sub, fill=(190, 210, 240), font=font(16), anchor="mm")
    return img


def video_mp4(audio: Path) -> bytes:
    """MPEG-4 Part 2 video (native FFmpeg encoder: deterministic, always in PyAV's build) + AAC."""
    import av

    slides = [
        (0.0, "Step 1: reset the router", "hold the reset button 10 s"),
        (6.0, "Step 2: wait for restart", "power light blinks amber"),
        (13.5, "Step 3: firmware update", "admin page > firmware upgrade"),
        (20.0, "Do not unplug", "during the update"),
    ]
    fps, size = 5, (320, 240)
    with av.open(str(audio)) as src:
        astream = src.streams.audio[0]
        duration = float(src.duration or 0) / av.time_base
        frames = list(src.decode(astream))
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.codec_context.gop_size = fps * 5  # a keyframe every 5 s keeps seeking cheap
        vs.codec_context.thread_count = 1  # frame threading would make the bytes vary
        as_ = out.add_stream("aac", rate=16000, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        packets = []
        for i in range(int(duration * fps)):
            t = i / fps
            title, sub = next(s[1:] for s in reversed(slides) if t >= s[0])
            vf = av.VideoFrame.from_image(_slide(title, sub, size))
            vf.pts, vf.time_base = i, Fraction(1, fps)
            packets += vs.encode(vf)
        packets += vs.encode(None)
        for f in frames:
            f.pts = None
            for rf in resampler.resample(f):
                packets += as_.encode(rf)
        for rf in resampler.resample(None):
            packets += as_.encode(rf)
        packets += as_.encode(None)
        # Mux in time order so the file interleaves audio and video like a real recording.
        packets.sort(key=lambda pk: float((pk.dts or 0) * pk.time_base))
        for pk in packets:
            out.mux(pk)
    return buf.getvalue()

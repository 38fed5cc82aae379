"""PDF pages and standalone images into normalised page images, thumbnails and text.

Everything that writes a page image lives here (``video.py`` reuses ``write_page_image``), so
that PDF pages, photos and video keyframes come out with the same size cap, format and
thumbnail rules. PyMuPDF writes PNG/JPEG straight from its pixmap: a PIL round trip would
cost more than the rasterisation itself on text pages.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmrag_assets.errors import CorruptInput, UnsupportedInput

if TYPE_CHECKING:
    import pymupdf
    from PIL import Image

ImageFormat = Literal["png", "jpeg", "webp"]

_EXT: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# The PDF spec lets the header start anywhere in the first 1024 bytes and writers put %%EOF
# at the very end; both are cheap to check without handing MuPDF a file it would "repair".
_PDF_PROBE_BYTES = 1024


@dataclass
class RenderedPage:
    page: int  # 1-based page (PDF), 1 (image) or keyframe index (video)
    image_path: Path
    thumb_path: Path
    width: int
    height: int
    text: str
    t_s: float | None = None  # video keyframes: position in the recording


@dataclass
class PdfRender:
    pages: list[RenderedPage]
    total_pages: int  # pages in the document, rendered or not
    warnings: list[str] = field(default_factory=list)  # skipped pages and why


# ---------------------------------------------------------------- shared image writing helpers


def image_ext(image_format: str) -> str:
    """File extension (with the dot) for an ``ingest.image_format`` value."""
    try:
        return _EXT[image_format]
    except KeyError:
        raise UnsupportedInput(
            f"image_format={image_format!r} is not supported; use png, jpeg or webp"
        ) from None


def fit_scale(width: float, height: float, target_pixels: int) -> float:
    """Scale factor (<= 1) that brings width*height down to at most target_pixels."""
    area = width * height
    if target_pixels <= 0 or area <= target_pixels:
        return 1.0
    return math.sqrt(target_pixels / area)


def page_zoom(width_pt: float, height_pt: float, dpi: int, target_pixels: int) -> float:
    """Zoom for rendering a page at ``dpi``, lowered so the pixmap has at most target_pixels.

    A poster-sized page at 150 DPI can be 100+ MP. MuPDF rounds the pixmap out to whole pixels
    (up to +1 per side), so solve (a*s + 1) * (b*s + 1) <= target for the scale s.
    """
    zoom = dpi / 72.0
    a, b = width_pt * zoom, height_pt * zoom
    if target_pixels <= 0 or (math.ceil(a) + 1) * (math.ceil(b) + 1) <= target_pixels:
        return zoom
    s = (-(a + b) + math.sqrt((a + b) ** 2 - 4 * a * b * (1 - target_pixels))) / (2 * a * b)
    return zoom * min(1.0, s)


def thumb_size(width: int, height: int, thumbnail_px: int) -> tuple[int, int]:
    """Longest side becomes thumbnail_px (never upscaled), aspect ratio kept."""
    longest = max(width, height)
    if longest <= thumbnail_px:
        return width, height
    s = thumbnail_px / longest
    return max(1, round(width * s)), max(1, round(height * s))


def _save_pil(img: Image.Image, path: Path, image_format: str, jpeg_quality: int) -> None:
    if image_format == "png":
        # compress_level 1: PIL's default (6) costs ~3x the time for ~10% smaller page images.
        img.save(path, "PNG", compress_level=1)
    elif image_format == "jpeg":
        img.save(path, "JPEG", quality=jpeg_quality)
    else:
        # webp has no separate knob in the config: jpeg_quality is the lossy quality setting.
        img.save(path, "WEBP", quality=jpeg_quality, method=4)


def _write_thumb(img: Image.Image, path: Path, thumbnail_px: int, jpeg_quality: int) -> None:
    from PIL import Image

    tw, th = thumb_size(img.width, img.height, thumbnail_px)
    # reducing_gap=1: an integer box reduction does almost all the work, a bilinear pass the
    # rest; 3x cheaper than a full Lanczos pass over a 2-MP page and indistinguishable at 256 px.
    thumb = img.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=1.0) if (tw, th) != img.size else img
    thumb.save(path, "JPEG", quality=jpeg_quality)


def write_page_image(
    img: Image.Image,
    out_dir: Path,
    stem: str,
    *,
    page: int,
    target_pixels: int,
    image_format: str,
    jpeg_quality: int,
    thumbnail_px: int,
    text: str = "",
    t_s: float | None = None,
) -> RenderedPage:
    """Downscale an RGB PIL image to target_pixels, write ``stem.<ext>`` and ``stem.thumb.jpg``."""
    from PIL import Image

    ext = image_ext(image_format)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = fit_scale(img.width, img.height, target_pixels)
    if s < 1.0:
        size = (max(1, int(img.width * s)), max(1, int(img.height * s)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    image_path = out_dir / f"{stem}{ext}"
    thumb_path = out_dir / f"{stem}.thumb.jpg"
    _save_pil(img, image_path, image_format, jpeg_quality)
    _write_thumb(img, thumb_path, thumbnail_px, jpeg_quality)
    return RenderedPage(page, image_path, thumb_path, img.width, img.height, text, t_s)


# ---------------------------------------------------------------- PDF


def _check_pdf_bytes(src: Path) -> None:
    size = src.stat().st_size
    if size == 0:
        raise CorruptInput("PDF file is empty (0 bytes)")
    with src.open("rb") as f:
        head = f.read(_PDF_PROBE_BYTES)
        f.seek(max(0, size - _PDF_PROBE_BYTES))
        tail = f.read()
    if b"%PDF-" not in head:
        raise CorruptInput("not a PDF: no %PDF- header in the first 1024 bytes (wrong extension?)")
    if b"%%EOF" not in tail:
        raise CorruptInput(
            f"truncated PDF: no %%EOF marker in the last 1024 bytes ({size:,} bytes on disk); "
            "re-download or re-export the file"
        )


def _open_pdf(src: Path) -> pymupdf.Document:
    import pymupdf

    _check_pdf_bytes(src)
    try:
        doc = pymupdf.open(src, filetype="pdf")
    except Exception as e:  # MuPDF raises several types (FileDataError, RuntimeError...)
        raise CorruptInput(f"PyMuPDF cannot open this PDF: {e}") from e
    if doc.needs_pass:
        doc.close()
        raise CorruptInput(
            "PDF is encrypted and needs a password; save a decrypted copy (e.g. `qpdf --decrypt`) "
            "into the corpus instead"
        )
    if doc.page_count == 0:
        doc.close()
        raise CorruptInput("PDF has 0 pages")
    return doc


def _write_pixmap(pix: pymupdf.Pixmap, path: Path, image_format: str, jpeg_quality: int) -> None:
    if image_format == "png":
        # MuPDF's PNG writer is as fast as PIL's at compress_level=1 and its files ~15% smaller.
        pix.save(path, output="png")
    else:
        # MuPDF's JPEG writer is ~10x slower than PIL's (measured on 40 manual pages), and it has
        # no WebP writer: hand PIL a zero-copy view of the pixmap instead.
        _save_pil(_pix_to_pil(pix), path, image_format, jpeg_quality)


def _pix_to_pil(pix: pymupdf.Pixmap) -> Image.Image:
    from PIL import Image

    # frombuffer shares the pixmap's memory: no copy of a multi-megabyte page.
    return Image.frombuffer("RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", pix.stride, 1)


def render_pdf(
    src: Path,
    out_dir: Path,
    *,
    dpi: int,
    max_pages: int,
    target_pixels: int,
    image_format: str,
    jpeg_quality: int,
    thumbnail_px: int,
    on_page: Callable[[int, int], None] | None = None,
    ligatures: bool = True,
) -> PdfRender:
    """Render up to ``max_pages`` pages of a PDF into ``out_dir/pNNNN.<ext>`` + thumbnails + text;
    ``on_page(done, total)`` after each page (progress of a big PDF). ``ligatures=False`` spells
    ligature glyphs out ("ﬂange" becomes "flange", which BM25 and the token tiers can match): the
    converted formats use it, PDFs keep MuPDF's default so that their stored text does not change.

    Raises ``CorruptInput`` for empty, non-PDF, truncated, password-protected, unreadable and
    page-less files. A page that fails to render is skipped and named in ``warnings``.
    """
    import pymupdf

    ext = image_ext(image_format)
    text_flags = (
        pymupdf.TEXTFLAGS_TEXT if ligatures else pymupdf.TEXTFLAGS_TEXT & ~pymupdf.TEXT_PRESERVE_LIGATURES
    )
    doc = _open_pdf(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = doc.page_count
    notes: list[str] = []
    pages: list[RenderedPage] = []
    if total > max_pages:
        notes.append(f"pages {max_pages + 1}-{total} skipped: over ingest.max_pages={max_pages}")
    try:
        for i in range(min(total, max_pages)):
            n = i + 1
            try:
                page = doc.load_page(i)
                zoom = page_zoom(page.rect.width, page.rect.height, dpi, target_pixels)
                pix = page.get_pixmap(matrix=_matrix(zoom), alpha=False)
                image_path = out_dir / f"p{n:04d}{ext}"
                thumb_path = out_dir / f"p{n:04d}.thumb.jpg"
                _write_pixmap(pix, image_path, image_format, jpeg_quality)
                _write_thumb(_pix_to_pil(pix), thumb_path, thumbnail_px, jpeg_quality)
                text = page.get_text(flags=text_flags).strip()
                pages.append(RenderedPage(n, image_path, thumb_path, pix.width, pix.height, text))
                del pix
            except Exception as e:  # noqa: BLE001 - a broken page (font, image stream) must not sink the file
                notes.append(f"page {n} skipped: could not be rendered ({_one_line(e)})")
            if on_page is not None:
                on_page(n, min(total, max_pages))
    finally:
        doc.close()
    if not pages:
        raise CorruptInput("no page of this PDF could be rendered: " + "; ".join(notes))
    return PdfRender(pages=pages, total_pages=total, warnings=notes)


def _matrix(zoom: float) -> pymupdf.Matrix:
    import pymupdf

    return pymupdf.Matrix(zoom, zoom)


def _one_line(e: BaseException) -> str:
    msg = re.sub(r"\s+", " ", str(e)).strip()
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# ---------------------------------------------------------------- standalone images


def _mp(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.1f} MP" if mp >= 1 else f"{mp:.2g} MP"


def _bomb_reason(w: int | None, h: int | None, pixels: int, cap: int) -> str:
    dims = f"{w}x{h} = " if w is not None and h is not None else ""
    return f"image is {dims}{_mp(pixels)}, over ingest.max_image_pixels={_mp(cap)} (decompression bomb guard)"


def normalise_image(
    src: Path,
    out_dir: Path,
    *,
    max_source_pixels: int,
    target_pixels: int,
    image_format: str,
    jpeg_quality: int,
    thumbnail_px: int,
) -> RenderedPage:
    """Check the declared size, decode, orient (EXIF), flatten to RGB, downscale and write p0001.

    The size check reads only the header, so a decompression bomb is refused before any pixel
    is decoded.
    """
    from PIL import Image, ImageOps

    image_ext(image_format)  # fail on a bad format before decoding anything
    # PIL refuses headers over 2x its own MAX_IMAGE_PIXELS before we can read the size; our
    # configured cap is the real guard, so PIL's must never be the stricter one.
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < max_source_pixels:
        Image.MAX_IMAGE_PIXELS = max_source_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)  # lazy: parses the header only
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        pixels = int(m.group(1)) if m else max_source_pixels + 1
        raise CorruptInput(_bomb_reason(None, None, pixels, max_source_pixels)) from e
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError from plugins
        raise CorruptInput(f"image could not be decoded: {_one_line(e)}") from e
    with im:
        w, h = im.size
        if w * h > max_source_pixels:
            raise CorruptInput(_bomb_reason(w, h, w * h, max_source_pixels))
        try:
            s = fit_scale(w, h, target_pixels)
            if s < 1.0:
                # JPEG can decode at 1/2, 1/4, 1/8 scale: much faster for large photos.
                im.draft("RGB", (max(1, int(w * s)), max(1, int(h * s))))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = ImageOps.exif_transpose(im)  # loads the pixels
            img = _to_rgb(img)
        except Image.DecompressionBombError as e:
            raise CorruptInput(_bomb_reason(w, h, w * h, max_source_pixels)) from e
        except Exception as e:  # truncated data, bad Huffman tables, unsupported modes...
            raise CorruptInput(f"image could not be decoded: {_one_line(e)}") from e
    return write_page_image(
        img,
        out_dir,
        "p0001",
        page=1,
        target_pixels=target_pixels,
        image_format=image_format,
        jpeg_quality=jpeg_quality,
        thumbnail_px=thumbnail_px,
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white (what a reader would see on a page)."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than letting convert() clip at 255.
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")

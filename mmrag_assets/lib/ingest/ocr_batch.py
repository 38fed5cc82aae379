"""OCR many images: decode, hash, look up, recognise the misses, store, report progress.

The cache is content-addressed: ``{sha256 of the decoded pixels}:{engine key}``. Hashing pixels
rather than file bytes makes a re-render, a renamed file, the same picture saved in another
format or embedded in two documents the same key; the engine key (models, library version,
detection settings) makes a settings change a miss. A bad image becomes an ``OcrOutcome`` with
an ``error`` (a quarantine reason), never an exception that would stop the other images.
"""

from __future__ import annotations

import hashlib
import io
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mmrag_assets.errors import CorruptInput
from mmrag_assets.lib.ingest.ocr import (
    Box,
    OcrEngine,
    OcrError,
    OcrResult,
    OcrSettings,
    get_engine,
    one_line,
)

if TYPE_CHECKING:
    import numpy as np


# ---------------------------------------------------------------- images in


def load_rgb(src: Path | bytes, *, max_pixels: int, region: Box | None = None) -> np.ndarray:
    """Decode an image file (or its bytes) to RGB pixels, (height, width, 3) uint8.

    The size is checked from the header before any pixel is decoded. ``region`` crops to
    (x0, y0, x1, y1), clipped to the image. Raises ``CorruptInput`` with a specific reason.
    """
    import numpy as np
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
    except Image.DecompressionBombError as e:
        raise CorruptInput(f"OCR input refused: {one_line(e)}") from e
    except FileNotFoundError as e:
        raise CorruptInput(f"OCR input missing: {e.filename}") from e
    except Image.UnidentifiedImageError as e:
        raise CorruptInput(
            "OCR input is not an image Pillow can read (unknown format or damaged header)"
        ) from e
    except Exception as e:
        raise CorruptInput(f"OCR input could not be decoded: {one_line(e)}") from e
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise CorruptInput(
                f"OCR input is {w}x{h} = {w * h / 1e6:.1f} MP, over ocr.max_pixels={max_pixels / 1e6:.1f} MP"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = ImageOps.exif_transpose(im)
                img = _to_rgb(img)
                if region is not None:
                    x0, y0, x1, y1 = (
                        max(0, region[0]),
                        max(0, region[1]),
                        min(img.width, region[2]),
                        min(img.height, region[3]),
                    )
                    if x1 - x0 < 1 or y1 - y0 < 1:
                        raise CorruptInput(f"OCR region {region} is outside the {w}x{h} image")
                    img = img.crop((x0, y0, x1, y1))
                return np.asarray(img, dtype=np.uint8)
        except CorruptInput:
            raise
        except Exception as e:  # truncated data, bad chunks
            raise CorruptInput(f"OCR input could not be decoded: {one_line(e)}") from e


def _to_rgb(img: Any) -> Any:
    """RGB, transparency composited on white: dark text on a transparent PNG must stay visible."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def pixels_sha(rgb: np.ndarray) -> str:
    """sha256 of the decoded pixels and their shape: the same picture in another file is a hit."""
    h = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x{rgb.shape[2]}:".encode())
    h.update(memoryview(rgb).cast("B") if rgb.flags.c_contiguous else rgb.tobytes())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------- cache and batches


class OcrCache(Protocol):
    """Content-addressed OCR results: key = ``{pixels_sha}:{engine_key}``."""

    def get_many(self, keys: Sequence[str]) -> dict[str, OcrResult]: ...

    def put_many(self, results: dict[str, OcrResult]) -> None: ...


class MemoryOcrCache:
    """A dict-backed cache (tests, one-off scripts)."""

    def __init__(self) -> None:
        self.store: dict[str, OcrResult] = {}

    def get_many(self, keys: Sequence[str]) -> dict[str, OcrResult]:
        return {k: self.store[k] for k in keys if k in self.store}

    def put_many(self, results: dict[str, OcrResult]) -> None:
        self.store.update(results)


@dataclass(frozen=True)
class OcrTask:
    """One image to OCR: a file (or its bytes), optionally only a region of it."""

    id: str  # the caller's id (item id, or item id + region)
    image: Path | bytes
    region: Box | None = None  # OCR only this rectangle; boxes come back in full-image pixels
    size: tuple[int, int] | None = None  # full image (width, height); needed with ``region``


@dataclass
class OcrOutcome:
    id: str
    result: OcrResult | None  # unfiltered; None when the image failed
    cached: bool = False
    error: str | None = None  # why the image has no result (a quarantine reason)


@dataclass(frozen=True)
class OcrProgress:
    done: int
    total: int
    cached: int
    failed: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Images per second over the whole run so far (cache hits included)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        eta = f", ETA {self.eta_s:.0f} s" if self.eta_s is not None and self.done < self.total else ""
        extra = f", {self.cached} cached" if self.cached else ""
        extra += f", {self.failed} failed" if self.failed else ""
        return f"OCR {self.done}/{self.total} images{extra}, {self.rate:.2f} images/s{eta}"


@dataclass
class _Loaded:
    task: OcrTask
    rgb: Any = None
    key: str | None = None
    error: str | None = None


def ocr_batch(
    tasks: Sequence[OcrTask],
    settings: OcrSettings,
    *,
    cache: OcrCache | None = None,
    progress: Callable[[OcrProgress], None] | None = None,
    engine: OcrEngine | None = None,
) -> list[OcrOutcome]:
    """OCR every task (in order), ``settings.batch_size`` images at a time.

    Per batch: decode and hash the images, look their keys up in ``cache``, recognise the
    misses, store them, report progress. A bad image becomes an outcome with ``error`` set;
    only an engine that cannot start raises (``OcrError``/``ConfigError``).
    """
    t0 = time.perf_counter()
    outcomes: list[OcrOutcome] = []
    n_cached = n_failed = 0
    eng = engine
    for start in range(0, len(tasks), settings.batch_size):
        batch = [_load(t, settings) for t in tasks[start : start + settings.batch_size]]
        keys = [b.key for b in batch if b.key]
        if keys and eng is None:
            eng = get_engine(settings)
        if eng is not None:
            for b in batch:
                if b.key:
                    b.key = f"{b.key}:{eng.key}"
        hits = cache.get_many([b.key for b in batch if b.key]) if cache is not None and keys else {}
        fresh: dict[str, OcrResult] = {}
        for b in batch:
            if b.error:
                outcomes.append(OcrOutcome(b.task.id, None, error=b.error))
                n_failed += 1
                continue
            assert b.key is not None and eng is not None
            res = hits.get(b.key) or fresh.get(b.key)
            cached = res is not None
            if res is None:
                try:
                    res = fresh[b.key] = eng.recognise(b.rgb)
                except OcrError as e:
                    outcomes.append(OcrOutcome(b.task.id, None, error=str(e)))
                    n_failed += 1
                    continue
            n_cached += cached
            outcomes.append(OcrOutcome(b.task.id, _place(res, b.task), cached=cached))
            b.rgb = None
        if cache is not None and fresh:
            cache.put_many(fresh)
        if progress is not None:
            progress(OcrProgress(len(outcomes), len(tasks), n_cached, n_failed, time.perf_counter() - t0))
    return outcomes


def _load(task: OcrTask, settings: OcrSettings) -> _Loaded:
    try:
        rgb = load_rgb(task.image, max_pixels=settings.max_pixels, region=task.region)
    except CorruptInput as e:
        return _Loaded(task, error=str(e))
    return _Loaded(task, rgb=rgb, key=pixels_sha(rgb))


def _place(res: OcrResult, task: OcrTask) -> OcrResult:
    """Crop results back into full-image coordinates."""
    if task.region is None:
        return res
    w, h = task.size or (res.width + max(0, task.region[0]), res.height + max(0, task.region[1]))
    return res.shifted(max(0, task.region[0]), max(0, task.region[1]), w, h)


def ocr_image(src: Path | bytes, settings: OcrSettings, *, cache: OcrCache | None = None) -> OcrResult:
    """OCR one image file and return its lines at or above ``settings.min_confidence``.

    Raises ``CorruptInput`` for an unreadable or oversized image, ``OcrError`` if the engine fails.
    """
    (out,) = ocr_batch([OcrTask("image", src)], replace(settings, batch_size=1), cache=cache)
    if out.result is None:
        raise CorruptInput(out.error or "OCR failed")
    return out.result.filtered(settings.min_confidence)


@dataclass
class OcrStats:
    """Counters a caller can report (asset metadata, benchmarks)."""

    images: int = 0
    cached: int = 0
    failed: int = 0
    engine_seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def add(self, outcomes: Sequence[OcrOutcome]) -> None:
        for o in outcomes:
            self.images += 1
            self.cached += o.cached
            if o.error:
                self.failed += 1
                self.reasons.append(o.error)
            elif o.result is not None and not o.cached:
                self.engine_seconds += o.result.seconds


class CatalogOcrCache:
    """``OcrCache`` over the catalog's ``ocr_cache`` table (survives re-ingests and deletions)."""

    def __init__(self, catalog: Any):
        self.catalog = catalog  # lib.store.catalog.Catalog

    def get_many(self, keys: Sequence[str]) -> dict[str, OcrResult]:
        rows = self.catalog.ocr_cache(list(keys))
        return {k: OcrResult.from_json(r["result"], r["seconds"] or 0.0) for k, r in rows.items()}

    def put_many(self, results: dict[str, OcrResult]) -> None:
        self.catalog.put_ocr_cache(
            [
                {
                    "cache_key": k,
                    "engine_key": k.rsplit(":", 1)[-1],
                    "width": r.width,
                    "height": r.height,
                    "seconds": r.seconds,
                    "result": r.to_json(),
                }
                for k, r in results.items()
            ]
        )

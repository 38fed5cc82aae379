from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from mmrag_assets.errors import CorruptInput
from mmrag_assets.fixtures.sample_corpus import AUDIO, PHOTO, VIDEO, build_sample_corpus
from mmrag_assets.lib.ingest.video import MediaInfo, probe_media, sample_keyframes
from tests.hostile_corpus import make_mute_video

KW = {
    "max_keyframes": 200,
    "target_pixels": 4_000_000,
    "image_format": "png",
    "jpeg_quality": 90,
    "thumbnail_px": 256,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    build_sample_corpus(root)
    return root


def _diff(a: Path, b: Path) -> float:
    with Image.open(a) as x, Image.open(b) as y:
        return sum(ImageStat.Stat(ImageChops.difference(x.convert("RGB"), y.convert("RGB"))).mean) / 3


def test_probe_video_audio_and_image(corpus: Path) -> None:
    v = probe_media(corpus / VIDEO)
    assert v.has_audio and v.has_video and 25.0 < v.duration_s < 26.0
    a = probe_media(corpus / AUDIO)
    assert a == MediaInfo(duration_s=pytest.approx(25.44, abs=0.01), has_audio=True, has_video=False)
    assert probe_media(corpus / PHOTO).has_audio is False


def test_probe_mute_video(tmp_path: Path) -> None:
    info = probe_media(make_mute_video(tmp_path / "mute.mp4", seconds=3))
    assert (info.has_audio, info.has_video) == (False, True)
    assert info.duration_s == pytest.approx(3.0, abs=0.3)


def test_probe_cover_art_is_not_video(tmp_path: Path) -> None:
    # An .m4a with an attached cover picture: FFmpeg lists the picture as a one-frame video stream.
    import av
    import numpy as np

    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        audio = out.add_stream("aac", rate=16000, layout="mono")
        cover = out.add_stream("png", rate=1)
        cover.width, cover.height, cover.pix_fmt = 32, 32, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        packets = [*audio.encode(frame), *audio.encode(None)]
        packets += [
            *cover.encode(av.VideoFrame.from_image(Image.new("RGB", (32, 32), "red"))),
            *cover.encode(None),
        ]
        for pk in packets:
            out.mux(pk)
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1  # the picture is there, as a video stream
    info = probe_media(path)
    assert info.has_audio and not info.has_video
    assert sample_keyframes(path, tmp_path / "kf", interval_s=1, **KW) == []


@pytest.mark.parametrize("data", [b"", b"definitely not a media file" * 50])
def test_probe_garbage_is_corrupt(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "clip.mp4").write_bytes(data)
    with pytest.raises(CorruptInput, match="could not be decoded"):
        probe_media(tmp_path / "clip.mp4")


def test_keyframes_every_interval_named_by_time(corpus: Path, tmp_path: Path) -> None:
    pages = sample_keyframes(corpus / VIDEO, tmp_path, interval_s=5, **KW)
    assert [p.page for p in pages] == [1, 2, 3, 4, 5, 6]
    assert [p.t_s for p in pages] == pytest.approx([0, 5, 10, 15, 20, 25])
    assert [p.image_path.name for p in pages] == [
        f"k{ms:09d}.png" for ms in (0, 5000, 10000, 15000, 20000, 25000)
    ]
    for p in pages:
        assert p.thumb_path.name == p.image_path.name.replace(".png", ".thumb.jpg") and p.thumb_path.exists()
        assert (p.width, p.height) == (320, 240) and p.text == ""
    # The slides change at 6 s, 13.5 s and 20 s: the frames must show the slide of their time.
    files = [p.image_path for p in pages]
    assert _diff(files[0], files[1]) < 3  # both "Step 1"
    assert _diff(files[1], files[2]) > 3  # "Step 1" vs "Step 2"
    assert _diff(files[3], files[4]) > 3  # "Step 3" vs "Do not unplug"
    assert _diff(files[4], files[5]) < 3


def test_keyframes_between_codec_keyframes_are_accurate(corpus: Path, tmp_path: Path) -> None:
    # The sample video has a codec keyframe every 5 s; 3.4 s forces a decode forward after the seek.
    pages = sample_keyframes(corpus / VIDEO, tmp_path, interval_s=3.4, **KW)
    assert len(pages) == 8  # 0, 3.4, ... 23.8
    for i, p in enumerate(pages):
        assert p.t_s == pytest.approx(3.4 * i, abs=0.1 + 1e-9)  # within half a frame at 5 fps


def test_keyframes_capped_and_formats(corpus: Path, tmp_path: Path) -> None:
    pages = sample_keyframes(
        corpus / VIDEO, tmp_path, interval_s=1, **{**KW, "max_keyframes": 3, "image_format": "jpeg"}
    )
    assert [p.image_path.name for p in pages] == ["k000000000.jpg", "k000001000.jpg", "k000002000.jpg"]
    with Image.open(pages[0].image_path) as im:
        assert im.format == "JPEG"


def test_keyframes_downscaled_to_target(corpus: Path, tmp_path: Path) -> None:
    pages = sample_keyframes(corpus / VIDEO, tmp_path, interval_s=10, **{**KW, "target_pixels": 20_000})
    assert all(p.width * p.height <= 20_000 for p in pages)
    assert all(abs(p.width / p.height - 4 / 3) < 0.02 for p in pages)


def test_dense_sampling_of_sparse_video_does_not_repeat_frames(tmp_path: Path) -> None:
    video = make_mute_video(tmp_path / "slow.mp4", seconds=2, fps=1)  # 2 frames, 1 s each
    pages = sample_keyframes(video, tmp_path / "out", interval_s=0.25, **KW)
    assert [p.t_s for p in pages] == pytest.approx([0.0, 1.0])


def test_audio_only_file_has_no_keyframes(corpus: Path, tmp_path: Path) -> None:
    assert sample_keyframes(corpus / AUDIO, tmp_path, interval_s=5, **KW) == []


def test_bad_interval(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        sample_keyframes(corpus / VIDEO, tmp_path, interval_s=0, **KW)


def test_repeated_pictures_are_one_keyframe(corpus: Path, tmp_path: Path) -> None:
    # every 5 s: 0 and 5 show "Step 1", 20 and 25 "Do not unplug" (see the test above); 20 and 25
    # are the same picture, 0 and 5 differ by the codec's noise (1.3 levels), other frames by 3.9-5
    pages = sample_keyframes(corpus / VIDEO, tmp_path, interval_s=5, min_change=1.0, **KW)
    assert [p.t_s for p in pages] == pytest.approx([0, 5, 10, 15, 20])
    pages = sample_keyframes(corpus / VIDEO, tmp_path / "2", interval_s=5, min_change=2.0, **KW)
    assert [p.t_s for p in pages] == pytest.approx([0, 10, 15, 20])
    assert [p.page for p in pages] == [1, 2, 3, 4]
    files = [p.image_path for p in pages]
    assert all(_diff(a, b) > 3 for a, b in itertools.pairwise(files))
    # 0 keeps every sampled frame
    assert len(sample_keyframes(corpus / VIDEO, tmp_path / "all", interval_s=5, min_change=0, **KW)) == 6


def test_video_only_keys_leave_other_fingerprints_alone() -> None:
    from mmrag_assets.config import load_config
    from mmrag_assets.lib.ingest.document import fingerprint

    base = ["corpus.root=unused", "storage.root=unused"]
    a, b = (load_config([*base, f"ingest.keyframe_min_change={v}"], resolve_paths=False) for v in (1.0, 5.0))
    assert fingerprint(a, "pdf") == fingerprint(b, "pdf") and fingerprint(a, "image") == fingerprint(
        b, "image"
    )
    assert fingerprint(a, "video") != fingerprint(b, "video")
    c = load_config([*base, "ingest.dpi=100"], resolve_paths=False)
    assert fingerprint(a, "pdf") != fingerprint(c, "pdf")

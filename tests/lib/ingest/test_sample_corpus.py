from __future__ import annotations

import hashlib
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from mmrag_assets.fixtures import sample_corpus as sc
from mmrag_assets.fixtures.sample_corpus import SAMPLE_FACTS, SPEECH_AUDIO, SPEECH_TEXT, build_sample_corpus
from mmrag_assets.lib.ingest.video import probe_media


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, build_sample_corpus(root)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _page_text(path: Path, page: int) -> str:
    with pymupdf.open(path) as doc:
        return " ".join(doc[page - 1].get_text().split()).lower()


def test_layout_and_awkward_names(built: tuple[Path, list[Path]]) -> None:
    root, paths = built
    rels = sorted(p.relative_to(root).as_posix() for p in paths)
    assert rels == sorted([sc.MANUAL, sc.REPORT, sc.DIAGRAM, sc.PHOTO, sc.AUDIO, sc.VIDEO])
    assert sorted(_digests(root)) == rels  # nothing else was written (no temp files left)
    assert {r.split("/")[0] for r in rels} == {"manuals", "reports", "images", "audio", "video"}
    assert "reports/Q3 résumé (final).pdf" in rels
    assert any(" " in r for r in rels)


def test_rebuild_writes_identical_bytes(built: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, _ = built
    build_sample_corpus(tmp_path)
    assert _digests(tmp_path) == _digests(root)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    build_sample_corpus(tmp_path)  # idempotent in place, too
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def test_pdfs_have_pages_text_and_drawings(built: tuple[Path, list[Path]]) -> None:
    root, _ = built
    with pymupdf.open(root / sc.MANUAL) as m, pymupdf.open(root / sc.REPORT) as r:
        assert (m.page_count, r.page_count) == (4, 3)
        assert len(m[2].get_drawings()) >= 15  # axes, grid, curve and 10 markers: vector graphics
        assert len(r[1].get_drawings()) >= 4  # one bar per region
        assert len(r[2].get_images()) == 1  # the embedded pie chart PNG
        assert m.metadata["creationDate"] == ""  # no timestamps: the bytes stay reproducible


def test_facts_point_at_real_content(built: tuple[Path, list[Path]]) -> None:
    root, _ = built
    spoken = " ".join(SPEECH_TEXT.read_text().split()).lower()
    assert {f.source for f in SAMPLE_FACTS} == {
        sc.MANUAL,
        sc.REPORT,
        sc.DIAGRAM,
        sc.PHOTO,
        sc.AUDIO,
        sc.VIDEO,
    }
    for f in SAMPLE_FACTS:
        assert (root / f.source).is_file(), f.source
        assert f.query and f.topic
        if f.kind == "pdf":
            text = _page_text(root / f.source, f.page or 0)
        elif f.kind in ("audio", "video"):
            assert f.span_s is not None and 0 <= f.span_s[0] < f.span_s[1] <= 25.5
            text = spoken
        else:
            assert f.page == 1 and f.text_keywords == ()  # images have no text layer
            assert f.visual_keywords
            continue
        for kw in f.text_keywords:
            assert kw.lower() in text, (f.source, f.page, kw)


def test_topics_are_distinct(built: tuple[Path, list[Path]]) -> None:
    root, _ = built
    manual = " ".join(_page_text(root / sc.MANUAL, i) for i in range(1, 5))
    report = " ".join(_page_text(root / sc.REPORT, i) for i in range(1, 4))
    spoken = SPEECH_TEXT.read_text().lower()
    for word in ("inverter", "photovoltaic", "isolator"):
        assert word in manual and word not in report and word not in spoken
    for word in ("revenue", "cookware", "skillets"):
        assert word in report and word not in manual and word not in spoken
    for word in ("router", "firmware", "wireless"):
        assert word in spoken and word not in manual and word not in report


def test_photo_is_stored_sideways_with_exif_orientation(built: tuple[Path, list[Path]]) -> None:
    root, _ = built
    with Image.open(root / sc.PHOTO) as im:
        assert im.format == "JPEG" and im.size == (480, 640)
        assert im.getexif()[0x0112] == 6
    with Image.open(root / sc.DIAGRAM) as im:
        assert im.format == "PNG" and im.size == (900, 520)


def test_speech_recording_is_bundled_small_and_long_enough(built: tuple[Path, list[Path]]) -> None:
    root, _ = built
    assert SPEECH_AUDIO.stat().st_size < 400_000
    assert (root / sc.AUDIO).read_bytes() == SPEECH_AUDIO.read_bytes()
    info = probe_media(root / sc.AUDIO)
    assert info.has_audio and not info.has_video and info.duration_s >= 20
    assert len(SPEECH_TEXT.read_text().split()) >= 50


def test_video_has_picture_and_the_speech_track(built: tuple[Path, list[Path]]) -> None:
    root, _ = built
    info = probe_media(root / sc.VIDEO)
    assert info.has_audio and info.has_video
    assert 10 <= info.duration_s <= 26


def test_video_can_be_skipped(tmp_path: Path) -> None:
    paths = build_sample_corpus(tmp_path, video=False)
    assert len(paths) == 5 and not (tmp_path / sc.VIDEO).exists()

"""OCR with the RapidOCR models bundled in its wheel, on real rendered images (no mocks)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from mmrag_assets.errors import ConfigError, CorruptInput
from mmrag_assets.lib.ingest.ocr import OcrError, OcrResult, OcrSettings, get_engine
from mmrag_assets.lib.ingest.ocr_batch import (
    CatalogOcrCache,
    MemoryOcrCache,
    OcrProgress,
    OcrTask,
    ocr_batch,
    ocr_image,
)
from mmrag_assets.lib.store.catalog import Catalog
from tests.tolerance import assert_has_line, assert_most_keywords, closest, found_keywords

SETTINGS = OcrSettings(
    languages=("en",),
    min_confidence=0.5,
    max_pixels=20_000_000,
    max_side_px=2000,
    det_max_side_px=1280,
    direction=True,
    threads=0,
    batch_size=2,
)
ZOOM = 2.0  # 144 dpi
WORDS = ("Proxy", "proxy.example.org", "8080", "Apply", "Settings")


def _screenshot_pdf():
    """A settings dialog drawn with PyMuPDF (real fonts), the way a screenshot looks."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=420, height=160)
    page.draw_rect(pymupdf.Rect(0, 0, 420, 28), color=None, fill=(0.2, 0.3, 0.5))
    page.insert_text((12, 19), "Network Settings", fontname="hebo", fontsize=13, color=(1, 1, 1))
    page.insert_text((16, 62), "Proxy server: proxy.example.org", fontname="helv", fontsize=12)
    page.insert_text((16, 90), "Port: 8080", fontname="helv", fontsize=12)
    page.draw_rect(pymupdf.Rect(320, 118, 400, 146), color=(0.3, 0.3, 0.3), fill=(0.9, 0.9, 0.9))
    page.insert_text((340, 137), "Apply", fontname="helv", fontsize=12)
    return doc


@pytest.fixture(scope="module")
def screenshot(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, tuple[float, float, float, float]]]:
    """The dialog as a PNG, and the pixel box of each word in WORDS (from the PDF's own layout)."""
    import pymupdf

    doc = _screenshot_pdf()
    page = doc[0]
    png = page.get_pixmap(matrix=pymupdf.Matrix(ZOOM, ZOOM), alpha=False).tobytes("png")
    truth = {}
    for w in WORDS:
        (r,) = page.search_for(w)[:1]
        truth[w] = (r.x0 * ZOOM, r.y0 * ZOOM, r.x1 * ZOOM, r.y1 * ZOOM)
    path = tmp_path_factory.mktemp("ocr") / "dialog.png"
    path.write_bytes(png)
    return path, truth


@pytest.fixture(scope="module")
def dialog_result(screenshot) -> OcrResult:
    return ocr_image(screenshot[0], SETTINGS)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_screenshot_words_come_back_with_their_boxes(screenshot, dialog_result: OcrResult) -> None:
    from PIL import Image

    path, truth = screenshot
    with Image.open(path) as im:
        assert (dialog_result.width, dialog_result.height) == im.size
    # OCR is read with the tolerance of tests/tolerance.py (lines at similarity >= 90, words >= 80):
    # onnxruntime's kernels differ by CPU; measured here, every line came back exact at 0.99-1.0
    text = dialog_result.text
    for line in ("Network Settings", "Proxy server: proxy.example.org", "Port: 8080", "Apply"):
        assert_has_line(line, text.splitlines())
    words = [w for ln in dialog_result.lines for w in ln.words]
    for w, box in truth.items():
        got = closest(w, words, lambda x: x.text)
        assert got is not None, (w, [x.text for x in words])
        assert got.score > 0.9  # measured 1.0 for every word
        # the OCR box sits on the word as the PDF laid it out (font boxes include line spacing)
        assert _iou(got.box, box) > 0.4, (w, got.box, box)
    for ln in dialog_result.lines:
        x0, y0, x1, y1 = ln.box
        assert 0 <= x0 < x1 <= dialog_result.width and 0 <= y0 < y1 <= dialog_result.height
        assert all(x0 <= w.box[0] and w.box[2] <= x1 + 1 for w in ln.words)


def test_result_json_round_trips_and_filters_by_confidence(dialog_result: OcrResult) -> None:
    again = OcrResult.from_json(dialog_result.to_json())
    assert again.to_dict() == dialog_result.to_dict()
    assert again.text == dialog_result.text
    assert dialog_result.filtered(1.01).lines == ()
    low = min(ln.score for ln in dialog_result.lines)
    assert len(dialog_result.filtered(low).lines) == len(dialog_result.lines)


def test_cache_prevents_a_second_ocr_of_the_same_pixels(screenshot, tmp_path: Path) -> None:
    """Re-run, a renamed file, another file format and a re-render are all cache hits."""
    import pymupdf
    from PIL import Image

    path, _ = screenshot
    renamed = tmp_path / "renamed copy.png"
    renamed.write_bytes(path.read_bytes())
    as_bmp = tmp_path / "dialog.bmp"
    with Image.open(path) as im:
        im.save(as_bmp)  # other bytes, same pixels
    rerender = _screenshot_pdf()[0].get_pixmap(matrix=pymupdf.Matrix(ZOOM, ZOOM), alpha=False).tobytes("png")
    catalog = Catalog(tmp_path / "catalog.duckdb")
    cache = CatalogOcrCache(catalog)
    eng = get_engine(SETTINGS)
    calls = eng.calls
    first = ocr_batch([OcrTask("a", path)], SETTINGS, cache=cache)
    assert eng.calls == calls + 1 and not first[0].cached
    again = ocr_batch(
        [OcrTask("b", path), OcrTask("c", renamed), OcrTask("d", as_bmp), OcrTask("e", rerender)],
        SETTINGS,
        cache=CatalogOcrCache(Catalog(tmp_path / "catalog.duckdb")),  # a new process would reopen it
    )
    assert eng.calls == calls + 1, "no image was OCRed twice"
    assert all(o.cached for o in again)
    assert {o.result.text for o in again} == {first[0].result.text}
    assert catalog.scalar("SELECT count(*) FROM ocr_cache") == 1
    # other settings are another key: the cache never serves a result the settings would not give
    other = replace(SETTINGS, max_side_px=1000)
    (o,) = ocr_batch([OcrTask("f", path)], other, cache=cache)
    assert not o.cached and catalog.scalar("SELECT count(*) FROM ocr_cache") == 2


def test_a_region_is_ocred_alone_and_placed_in_full_image_pixels(screenshot) -> None:
    path, truth = screenshot
    x0, y0, x1, y1 = truth["8080"]
    region = (int(x0) - 120, int(y0) - 10, int(x1) + 10, int(y1) + 10)
    (o,) = ocr_batch([OcrTask("r", path, region=region, size=(840, 320))], SETTINGS, cache=MemoryOcrCache())
    res = o.result.filtered(SETTINGS.min_confidence)
    assert (res.width, res.height) == (840, 320)
    words = [w for ln in res.lines for w in ln.words]
    assert closest("Proxy", words, lambda x: x.text) is None  # outside the region
    port = closest("8080", words, lambda x: x.text)
    assert port is not None and _iou(port.box, truth["8080"]) > 0.4, [x.text for x in words]


def test_bad_images_become_outcomes_with_a_reason_not_exceptions(screenshot, tmp_path: Path) -> None:
    from PIL import Image

    path, _ = screenshot
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(path.read_bytes()[:2000])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really" * 10)
    huge = tmp_path / "huge.png"
    Image.new("L", (6000, 4000), 255).save(huge)  # 24 MP, over max_pixels=20 MP
    seen: list[OcrProgress] = []
    outs = ocr_batch(
        [
            OcrTask("t", truncated),
            OcrTask("g", garbage),
            OcrTask("h", huge),
            OcrTask("ok", path),
            OcrTask("m", tmp_path / "gone.png"),
        ],
        SETTINGS,
        cache=MemoryOcrCache(),
        progress=seen.append,
    )
    by = {o.id: o for o in outs}
    assert "could not be decoded" in by["t"].error
    assert "not an image" in by["g"].error
    assert "6000x4000 = 24.0 MP, over ocr.max_pixels=20.0 MP" in by["h"].error
    assert "missing" in by["m"].error
    assert by["ok"].error is None and found_keywords(["8080"], by["ok"].result.text.split())[0]
    # one progress report per batch of 2, the last one complete
    assert [p.done for p in seen] == [2, 4, 5] and seen[-1].failed == 4 and seen[-1].total == 5
    assert "OCR 5/5 images, 4 failed" in seen[-1].line()
    with pytest.raises(CorruptInput, match="not an image"):
        ocr_image(garbage, SETTINGS)


def test_blank_image_gives_no_lines() -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(buf, "PNG")
    res = ocr_image(buf.getvalue(), SETTINGS)
    assert res.lines == () and res.text == "" and (res.width, res.height) == (400, 300)


def test_settings_are_checked_before_any_model_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not read"):
        get_engine(replace(SETTINGS, languages=("korean",)))
    with pytest.raises(OcrError, match="ocr.rec_model_path"):
        get_engine(replace(SETTINGS, rec_model_path=str(tmp_path / "missing.onnx")))
    with pytest.raises(ConfigError, match="min_confidence"):
        replace(SETTINGS, min_confidence=1.5)
    with pytest.raises(ConfigError, match="languages"):
        replace(SETTINGS, languages=())


def test_engine_sessions_do_not_busy_wait(screenshot) -> None:
    """RapidOCR's onnxruntime sessions are made without spinning threads (they burnt the CPU that
    rendering and the dense encoder needed on shared cores); the words are read as before."""
    eng = get_engine(SETTINGS)
    res = eng.recognise(_rgb(screenshot[0]))
    assert_most_keywords(WORDS, res.text.split(), "no-spin engine")
    for model in (eng._ocr.text_det, eng._ocr.text_rec):
        opts = model.session.session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _rgb(path: Path):
    from mmrag_assets.lib.ingest.ocr_batch import load_rgb

    return load_rgb(path, max_pixels=SETTINGS.max_pixels)


def test_rec_batch_is_passed_to_the_recogniser_and_keeps_the_words(screenshot) -> None:
    """ocr.rec_batch sets RapidOCR's text lines per recogniser call; 1 (the default) and RapidOCR's
    own 6 read the same words; it makes its own engine but not its own cache key."""
    one, six = get_engine(replace(SETTINGS, rec_batch=1)), get_engine(replace(SETTINGS, rec_batch=6))
    assert one is not six and one.key == six.key
    rgb = _rgb(screenshot[0])
    texts = [e.recognise(rgb).text for e in (one, six)]
    assert one._ocr.text_rec.rec_batch_num == 1 and six._ocr.text_rec.rec_batch_num == 6
    for t in texts:
        assert_most_keywords(WORDS, t.split(), "rec_batch")

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from mmrag_assets.errors import CorruptInput, UnsupportedInput
from mmrag_assets.fixtures.sample_corpus import MANUAL, PHOTO, REPORT, SAMPLE_FACTS, build_sample_corpus
from mmrag_assets.lib.ingest import render
from mmrag_assets.lib.ingest.render import normalise_image, render_pdf, thumb_size
from tests.hostile_corpus import SMALL_PIXEL_CAP, make_hostile_files

PDF_KW = {
    "dpi": 150,
    "max_pages": 500,
    "target_pixels": 4_000_000,
    "image_format": "png",
    "jpeg_quality": 90,
    "thumbnail_px": 256,
}
IMG_KW = {
    "max_source_pixels": 100_000_000,
    "target_pixels": 4_000_000,
    "image_format": "png",
    "jpeg_quality": 90,
    "thumbnail_px": 256,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    build_sample_corpus(root, video=False)
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("hostile")
    return base / "corpus", make_hostile_files(base / "corpus", base / "outside")


def _pdf_bytes(n_pages: int, **save: object) -> bytes:
    doc = pymupdf.open()
    for i in range(n_pages):
        doc.new_page().insert_text((72, 72), f"page number {i + 1}", fontname="helv")
    return doc.tobytes(**save)


# ---------------------------------------------------------------- PDFs


def test_render_pdf_writes_every_page_image_thumb_and_text(corpus: Path, tmp_path: Path) -> None:
    r = render_pdf(corpus / MANUAL, tmp_path, **PDF_KW)
    assert r.total_pages == 4 and r.warnings == []
    assert [p.page for p in r.pages] == [1, 2, 3, 4]
    for p in r.pages:
        assert p.image_path == tmp_path / f"p{p.page:04d}.png"
        assert p.thumb_path == tmp_path / f"p{p.page:04d}.thumb.jpg"
        with Image.open(p.image_path) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (p.width, p.height)
        with Image.open(p.thumb_path) as th:
            assert th.format == "JPEG" and max(th.size) == 256
        assert p.t_s is None
    # A4 at 150 DPI: 595x842 pt * 150/72
    assert (r.pages[0].width, r.pages[0].height) == (1240, 1755)
    assert r.pages[0].text.startswith("SunVolt SV-5000")
    assert r.pages[0].text == r.pages[0].text.strip()


def test_text_layer_carries_each_pages_keywords(corpus: Path, tmp_path: Path) -> None:
    texts = {}
    for src in (MANUAL, REPORT):
        for p in render_pdf(corpus / src, tmp_path / src[:6], **PDF_KW).pages:
            texts[(src, p.page)] = " ".join(p.text.split()).lower()  # phrases may wrap lines
    facts = [f for f in SAMPLE_FACTS if f.kind == "pdf"]
    assert len(facts) == 7
    for f in facts:
        for kw in f.text_keywords:
            assert kw.lower() in texts[(f.source, f.page)], (f.source, f.page, kw)
        for kw in f.visual_keywords:  # only in the pixels: must not leak into the text layer
            assert kw.lower() not in texts[(f.source, f.page)], (f.source, f.page, kw)


def test_pages_over_max_pages_are_skipped_and_reported(corpus: Path, tmp_path: Path) -> None:
    r = render_pdf(corpus / MANUAL, tmp_path, **{**PDF_KW, "max_pages": 2})
    assert [p.page for p in r.pages] == [1, 2]
    assert r.total_pages == 4
    assert r.warnings == ["pages 3-4 skipped: over ingest.max_pages=2"]
    assert not (tmp_path / "p0003.png").exists()


def test_huge_page_is_rendered_at_lower_zoom(tmp_path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page(width=2384, height=3370).insert_text((100, 100), "A0 poster", fontsize=60)  # A0
    (tmp_path / "a0.pdf").write_bytes(doc.tobytes())
    r = render_pdf(tmp_path / "a0.pdf", tmp_path / "out", **{**PDF_KW, "target_pixels": 1_000_000})
    p = r.pages[0]
    assert p.width * p.height <= 1_000_000
    assert p.width * p.height > 900_000  # lowered just enough, not to a thumbnail
    assert abs(p.width / p.height - 2384 / 3370) < 0.01


@pytest.mark.parametrize(("fmt", "ext", "pil_format"), [("jpeg", ".jpg", "JPEG"), ("webp", ".webp", "WEBP")])
def test_lossy_formats(corpus: Path, tmp_path: Path, fmt: str, ext: str, pil_format: str) -> None:
    r = render_pdf(corpus / REPORT, tmp_path, **{**PDF_KW, "image_format": fmt})
    for p in r.pages:
        assert p.image_path.suffix == ext
        with Image.open(p.image_path) as im:
            assert im.format == pil_format and im.size == (p.width, p.height)


def test_unknown_format_is_refused(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedInput, match="image_format='tiff'"):
        render_pdf(corpus / MANUAL, tmp_path, **{**PDF_KW, "image_format": "tiff"})


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.pdf", "empty (0 bytes)"),
        ("truncated.pdf", "truncated PDF: no %%EOF"),
        ("encrypted.pdf", "encrypted and needs a password"),
        ("not-really.pdf", "not a PDF"),
    ],
)
def test_hostile_pdfs_raise_corrupt_input(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path, name: str, reason: str
) -> None:
    root, expected = hostile
    with pytest.raises(CorruptInput, match=re.escape(reason)):
        render_pdf(root / name, tmp_path, **PDF_KW)
    assert name in expected  # (its expectation string is the scanner's, which sniffs first)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_hostile_good_file_with_awkward_name_renders(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, expected = hostile
    assert expected["Ça va #1 (draft).pdf"] == "ok"
    r = render_pdf(root / "Ça va #1 (draft).pdf", tmp_path, **PDF_KW)
    assert len(r.pages) == 2 and "awkward file name" in r.pages[0].text


def test_pdf_with_zero_pages(tmp_path: Path) -> None:
    src = tmp_path / "zero.pdf"
    src.write_bytes(
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )
    with pytest.raises(CorruptInput, match="0 pages"):
        render_pdf(src, tmp_path / "out", **PDF_KW)


def test_pdf_mupdf_cannot_open(tmp_path: Path) -> None:
    src = tmp_path / "garbage.pdf"
    src.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n")
    with pytest.raises(CorruptInput, match="PyMuPDF cannot open"):
        render_pdf(src, tmp_path / "out", **PDF_KW)


def test_owner_password_only_pdf_still_renders(tmp_path: Path) -> None:
    # Encrypted with an empty user password: readers open it without asking, so must we.
    src = tmp_path / "restricted.pdf"
    src.write_bytes(_pdf_bytes(1, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw=""))
    assert render_pdf(src, tmp_path / "out", **PDF_KW).pages[0].text == "page number 1"


def test_one_broken_page_is_skipped_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "three.pdf"
    src.write_bytes(_pdf_bytes(3))
    real = pymupdf.Page.get_pixmap

    def flaky(page: pymupdf.Page, *a: object, **k: object) -> pymupdf.Pixmap:
        if page.number == 1:
            raise RuntimeError("bad\nimage stream")
        return real(page, *a, **k)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", flaky)
    r = render_pdf(src, tmp_path / "out", **PDF_KW)
    assert [p.page for p in r.pages] == [1, 3]
    assert r.warnings == ["page 2 skipped: could not be rendered (RuntimeError: bad image stream)"]


def test_every_page_broken_is_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "two.pdf"
    src.write_bytes(_pdf_bytes(2))

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", broken)
    with pytest.raises(CorruptInput, match="no page of this PDF could be rendered"):
        render_pdf(src, tmp_path / "out", **PDF_KW)


# ---------------------------------------------------------------- images


def test_exif_orientation_is_applied(corpus: Path, tmp_path: Path) -> None:
    with Image.open(corpus / PHOTO) as raw:
        assert raw.size == (480, 640) and raw.getexif()[0x0112] == 6
    p = normalise_image(corpus / PHOTO, tmp_path, **IMG_KW)
    assert (p.page, p.text, p.t_s) == (1, "", None)
    assert (p.width, p.height) == (640, 480)
    with Image.open(p.image_path) as im:
        r, _g, b = im.getpixel((320, 5))  # upright: orange sky on top, not the sea
        assert r > 200 and b < 150
        r, _g, b = im.getpixel((600, 470))
        assert b > r  # sea at the bottom right


def test_alpha_is_flattened_on_white(tmp_path: Path) -> None:
    src = tmp_path / "logo.png"
    im = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (0, 0, 20, 20))
    im.save(src)
    p = normalise_image(src, tmp_path / "out", **IMG_KW)
    with Image.open(p.image_path) as out:
        assert out.mode == "RGB"
        assert out.getpixel((5, 5)) == (255, 0, 0)
        assert out.getpixel((35, 5)) == (255, 255, 255)


def test_palette_and_16bit_images_become_rgb(tmp_path: Path) -> None:
    Image.new("P", (30, 30), 3).save(tmp_path / "pal.gif")
    Image.new("I;16", (30, 30), 60_000).save(tmp_path / "deep.png")
    for name in ("pal.gif", "deep.png"):
        p = normalise_image(tmp_path / name, tmp_path / name[:3], **IMG_KW)
        with Image.open(p.image_path) as out:
            assert out.mode == "RGB"
    with Image.open(tmp_path / "dee" / "p0001.png") as out:
        assert out.getpixel((0, 0)) == (234, 234, 234)  # 60000/256, not clipped to 255


def test_large_image_is_downscaled_keeping_aspect(tmp_path: Path) -> None:
    src = tmp_path / "wide.jpg"
    Image.new("RGB", (3000, 2000), (10, 200, 30)).save(src, quality=80)
    p = normalise_image(
        src, tmp_path / "out", **{**IMG_KW, "target_pixels": 1_000_000, "image_format": "jpeg"}
    )
    assert p.image_path.name == "p0001.jpg"
    assert p.width * p.height <= 1_000_000 and p.width * p.height > 950_000
    assert abs(p.width / p.height - 1.5) < 0.01
    with Image.open(p.thumb_path) as th:
        assert th.size == (256, 171)


def test_image_over_pixel_cap_is_refused_before_decoding(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, expected = hostile

    def no_decoding(*a: object, **k: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(CorruptInput) as e:
        normalise_image(root / "big.png", tmp_path, **{**IMG_KW, "max_source_pixels": SMALL_PIXEL_CAP})
    assert str(e.value) == (
        "image is 2000x2000 = 4.0 MP, over ingest.max_image_pixels=1.0 MP (decompression bomb guard)"
    )
    assert expected["big.png"] in str(e.value)


@pytest.mark.parametrize("cap", [SMALL_PIXEL_CAP, 100_000_000])
def test_true_bomb_gets_our_reason_not_pils(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path, cap: int
) -> None:
    root, expected = hostile
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape either
        with pytest.raises(CorruptInput) as e:
            normalise_image(root / "bomb.png", tmp_path, **{**IMG_KW, "max_source_pixels": cap})
    assert not isinstance(e.value, Image.DecompressionBombError)
    assert "2500.0 MP" in str(e.value) and f"max_image_pixels={cap / 1e6:.1f} MP" in str(e.value)
    assert expected["bomb.png"] in str(e.value)


def test_pil_limit_never_stricter_than_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # PIL warns over 1,000 px, refuses over 2,000
    Image.new("RGB", (60, 60), "navy").save(tmp_path / "a.png")  # 3,600 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = normalise_image(tmp_path / "a.png", tmp_path / "out", **{**IMG_KW, "max_source_pixels": 10_000})
    assert (p.width, p.height) == (60, 60)
    Image.new("RGB", (200, 200), "navy").save(tmp_path / "b.png")  # 40,000 px: over both
    # PIL refuses this header before anyone can read its size: same reason, without the WxH.
    with pytest.raises(
        CorruptInput, match=r"^image is 0.04 MP, over ingest.max_image_pixels=0.01 MP \(decomp"
    ):
        normalise_image(tmp_path / "b.png", tmp_path / "out2", **{**IMG_KW, "max_source_pixels": 10_000})


def test_undecodable_and_truncated_images(corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image at all")
    with pytest.raises(CorruptInput, match="image could not be decoded"):
        normalise_image(tmp_path / "text.png", tmp_path / "o1", **IMG_KW)
    data = (corpus / PHOTO).read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInput, match="image could not be decoded"):
        normalise_image(tmp_path / "half.jpg", tmp_path / "o2", **IMG_KW)


@pytest.mark.parametrize(
    ("w", "h", "px", "want"),
    [(1240, 1754, 256, (181, 256)), (100, 50, 256, (100, 50)), (5000, 10, 256, (256, 1))],
)
def test_thumb_size(w: int, h: int, px: int, want: tuple[int, int]) -> None:
    assert thumb_size(w, h, px) == want


def test_fit_scale() -> None:
    assert render.fit_scale(100, 100, 20_000) == 1.0
    s = render.fit_scale(4000, 3000, 3_000_000)
    assert abs(s - 0.5) < 1e-9


def test_a_big_pdf_reports_its_pages_as_it_renders(tmp_path: Path) -> None:
    """Per-page progress (rate, ETA) while a long PDF renders, in the form the CLI turns into a
    progress bar; the last line says it is done."""
    from mmrag_assets.defs.shared import _DONE, _PROGRESS
    from mmrag_assets.lib.progress import page_counter

    src = tmp_path / "long.pdf"
    src.write_bytes(_pdf_bytes(12))
    lines: list[str] = []
    render_pdf(
        src,
        tmp_path / "out",
        **PDF_KW,
        on_page=page_counter("rendered", lines.append, unit="pages", detail="long.pdf", every_s=0),
    )
    assert len(lines) == 12, lines
    assert all(_PROGRESS.match(ln) for ln in lines[:-1]) and _DONE.match(lines[-1])
    assert (
        lines[0].startswith("rendered 1/12 pages, ") and "ETA" in lines[0] and lines[0].endswith("(long.pdf)")
    )
    assert lines[-1].startswith("rendered 12/12 pages in ")


def test_ligatures_are_spelled_out_unless_kept(tmp_path: Path) -> None:
    """LaTeX manuals set "ﬁ", "ﬂ" as one glyph: kept, "conﬁgure" never matches the "configure" a
    user types (BM25, the lite tier); the default (ingest.pdf_ligatures=false) spells them out."""
    font = Path(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )  # has the ligature glyphs (fonts-dejavu-core)
    if not font.is_file():
        pytest.skip("needs DejaVuSans.ttf (Debian fonts-dejavu-core) for a PDF with ligature glyphs")
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_font(fontname="dj", fontfile=str(font))
    page.insert_text((72, 72), "Con\ufb01gure the \ufb02ange", fontname="dj")
    pdf = tmp_path / "lig.pdf"
    doc.save(pdf)
    kept = render_pdf(pdf, tmp_path / "kept", **PDF_KW, ligatures=True).pages[0].text
    spelled = render_pdf(pdf, tmp_path / "spelled", **PDF_KW, ligatures=False).pages[0].text
    assert "Con\ufb01gure" in kept and "\ufb02ange" in kept
    assert "Configure the flange" in spelled


def test_pdf_only_keys_leave_other_fingerprints_alone() -> None:
    from mmrag_assets.config import load_config
    from mmrag_assets.lib.ingest.document import fingerprint

    base = ["corpus.root=unused", "storage.root=unused"]
    a, b = (load_config([*base, f"ingest.pdf_ligatures={v}"], resolve_paths=False) for v in ("false", "true"))
    assert a.ingest.pdf_ligatures is False  # the default spells them out
    assert fingerprint(a, "pdf") != fingerprint(b, "pdf")
    for kind in ("image", "video", "audio", "office", "text"):
        assert fingerprint(a, kind) == fingerprint(b, kind), kind

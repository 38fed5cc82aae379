"""A small, deterministic, license-clean corpus made entirely by this project.

Two PDFs (a solar-inverter installation manual and a cookware sales report, each with a vector
chart and a table), two images (a network diagram PNG and a photo-like JPEG stored sideways with
EXIF orientation 6), a speech recording and a 25 s video (MPEG-4 Part 2 + AAC, FFmpeg's native
encoders that every PyAV build has) whose slides follow the speech on its audio track. Calling ``build_sample_corpus`` twice writes the same bytes.

The speech (``mmrag_assets/sample_data/speech.ogg``) was made once with
``espeak-ng -v en-us -s 160 -w raw.wav -f speech.txt`` and
``sox raw.wav -r 16000 -c 1 -C 4 speech.ogg``; ``speech.txt`` holds the exact spoken text.

``SAMPLE_FACTS`` says what is where, for labelled query sets and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmrag_assets.lib.sample_media import diagram, photo_jpeg, pie_png, png_bytes, video_mp4

if TYPE_CHECKING:
    import pymupdf

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
SPEECH_AUDIO = SAMPLE_DATA / "speech.ogg"
SPEECH_TEXT = SAMPLE_DATA / "speech.txt"

MANUAL = "manuals/SunVolt SV-5000 installation manual.pdf"
REPORT = "reports/Q3 résumé (final).pdf"
DIAGRAM = "images/home-network-diagram.png"
PHOTO = "images/lighthouse at dusk.jpg"
AUDIO = "audio/router reset how-to.ogg"
VIDEO = "video/router firmware walkthrough.mp4"


@dataclass(frozen=True)
class SampleFact:
    source: str  # path relative to the corpus root (POSIX)
    kind: str  # pdf | image | audio | video
    page: int | None  # 1-based page (pdf), 1 (image); None for time-based media
    span_s: tuple[float, float] | None  # audio/video: where in the recording it is said
    topic: str
    # Words in the text layer (pdf) or in the spoken text (audio, video), case-insensitive.
    text_keywords: tuple[str, ...]
    # What only the pixels carry: words drawn inside images and charts, or what a photo shows.
    visual_keywords: tuple[str, ...]
    query: str  # a natural question this item answers


# What `mmrag demo` asks once the sample corpus is indexed: one question per modality.
DEMO_QUERIES = (
    "what does inverter error code E04 mean",
    "revenue by region in the third quarter",
    "how do I reset my wireless router",
)

SAMPLE_FACTS: tuple[SampleFact, ...] = (
    SampleFact(
        MANUAL,
        "pdf",
        1,
        None,
        "inverter safety and wall mounting",
        ("inverter", "photovoltaic", "mounting bracket", "torque"),
        (),
        "how do I mount the solar inverter on the wall",
    ),
    SampleFact(
        MANUAL,
        "pdf",
        2,
        None,
        "DC wiring and commissioning",
        ("DC isolator", "string", "commissioning", "MC4"),
        (),
        "how to connect the PV strings to the inverter DC isolator",
    ),
    SampleFact(
        MANUAL,
        "pdf",
        3,
        None,
        "efficiency versus load chart (vector line chart)",
        ("efficiency", "load", "97.8"),
        (),
        "what is the inverter conversion efficiency at half load",
    ),
    SampleFact(
        MANUAL,
        "pdf",
        4,
        None,
        "inverter error code table",
        ("E04", "insulation", "ground fault", "heatsink"),
        (),
        "what does inverter error code E04 mean",
    ),
    SampleFact(
        REPORT,
        "pdf",
        1,
        None,
        "quarterly sales summary",
        ("revenue", "quarter", "gross margin", "cookware"),
        (),
        "what was the cookware revenue growth in the third quarter",
    ),
    SampleFact(
        REPORT,
        "pdf",
        2,
        None,
        "revenue by region bar chart (vector)",
        ("EMEA", "APAC", "North America", "region"),
        (),
        "which sales region had the highest revenue",
    ),
    SampleFact(
        REPORT,
        "pdf",
        3,
        None,
        "product line table and sales channel pie chart (embedded PNG)",
        ("skillets", "saucepans", "bakeware", "sales channel"),
        ("Online", "Retail", "Wholesale"),
        "what share of revenue came from wholesale",
    ),
    SampleFact(
        DIAGRAM,
        "image",
        1,
        None,
        "home network topology diagram",
        (),
        ("modem", "router", "switch", "NAS"),
        "diagram of the home network with modem router and switch",
    ),
    SampleFact(
        PHOTO,
        "image",
        1,
        None,
        "photo of a red and white lighthouse on a rocky coast at dusk",
        (),
        ("lighthouse", "sea", "sunset"),
        "picture of a lighthouse by the sea",
    ),
    SampleFact(
        AUDIO,
        "audio",
        None,
        (0.0, 13.5),
        "resetting a wireless router",
        ("reset", "router", "button", "amber"),
        (),
        "how long to hold the router reset button",
    ),
    SampleFact(
        AUDIO,
        "audio",
        None,
        (13.5, 25.4),
        "router firmware update",
        ("firmware", "upgrade", "admin", "website"),
        (),
        "how to update the router firmware",
    ),
    SampleFact(
        VIDEO,
        "video",
        None,
        (0.0, 25.4),
        "router reset and firmware walkthrough video",
        ("router", "firmware", "reset"),
        ("Step 3: firmware update", "Do not unplug"),
        "video showing the router firmware update",
    ),
)

# ---------------------------------------------------------------- PDF drawing helpers

_A4 = (595, 842)
_INK = (0.1, 0.1, 0.1)
_BLUE = (0.16, 0.38, 0.67)


def _heading(page: pymupdf.Page, y: float, text: str, size: float = 16) -> float:
    page.insert_text((56, y), text, fontname="hebo", fontsize=size, color=_INK)
    return y + size * 1.8


def _para(page: pymupdf.Page, y: float, text: str, height: float = 150) -> float:
    import pymupdf

    page.insert_textbox(pymupdf.Rect(56, y, _A4[0] - 56, y + height), text, fontname="helv", fontsize=10.5)
    return y + height


def _table(page: pymupdf.Page, y: float, widths: list[float], rows: list[list[str]]) -> float:
    """A ruled table; the first row is the header (bold)."""
    import pymupdf

    row_h = 22.0
    x0 = 56.0
    for r, row in enumerate(rows):
        x = x0
        for w, cell in zip(widths, row, strict=True):
            page.draw_rect(
                pymupdf.Rect(x, y, x + w, y + row_h),
                color=_INK,
                width=0.6,
                fill=(0.88, 0.91, 0.96) if r == 0 else None,
            )
            page.insert_text((x + 4, y + 15), cell, fontname="hebo" if r == 0 else "helv", fontsize=9.5)
            x += w
        y += row_h
    return y + 12


def _axes(page: pymupdf.Page, box: pymupdf.Rect, x_label: str, y_label: str) -> None:
    page.draw_line(box.bl, box.br, color=_INK, width=1)
    page.draw_line(box.bl, box.tl, color=_INK, width=1)
    page.insert_text((box.x0 + box.width / 2 - 40, box.y1 + 32), x_label, fontname="helv", fontsize=9.5)
    page.insert_text((box.x0 - 40, box.y0 - 10), y_label, fontname="helv", fontsize=9.5)


def _manual_pdf() -> bytes:
    import pymupdf

    doc = pymupdf.open()
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "SunVolt SV-5000 Grid-Tie Inverter: Installation Manual", 17)
    y = _heading(p, y, "1. Safety and wall mounting", 13)
    _para(
        p,
        y,
        (
            "The SV-5000 converts direct current from a photovoltaic array into grid-synchronised "
            "alternating current. Only a qualified electrician may install the inverter. Choose a "
            "shaded, ventilated wall that can carry 22 kg, at least 30 cm from the ceiling and 50 cm "
            "from other inverters. Fix the stainless mounting bracket with four M8 anchor bolts, "
            "tighten them to a torque of 12 Nm, then hang the inverter on the bracket and secure it "
            "with the locking screw. Never install the inverter in direct sunlight: the heatsink "
            "needs free airflow to avoid thermal derating."
        ),
        260,
    )
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "2. DC wiring and commissioning", 13)
    _para(
        p,
        y,
        (
            "Switch the DC isolator to OFF before touching any cable. Each PV string connects with MC4 "
            "connectors to the DC inputs; keep the open-circuit string voltage below 600 V at the "
            "coldest expected temperature. Check polarity with a multimeter: a reversed string can "
            "destroy the input stage. Connect the AC cable to the grid terminal block, then the "
            "earth conductor. Commissioning: switch on the AC breaker, then the DC isolator; the "
            "display shows the country grid code selection. After the 60 second self-test the "
            "green LED turns on and the inverter starts feeding power."
        ),
        260,
    )
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "3. Conversion efficiency versus output load", 13)
    box = pymupdf.Rect(110, y + 40, 520, y + 360)
    _axes(p, box, "Output load (% of rated power)", "Efficiency (%)")
    loads = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    eff = [91.2, 95.8, 97.1, 97.6, 97.8, 97.7, 97.5, 97.3, 97.0, 96.8]
    lo, hi = 90.0, 99.0

    def pt(x: float, v: float) -> pymupdf.Point:
        return pymupdf.Point(box.x0 + box.width * x / 100, box.y1 - box.height * (v - lo) / (hi - lo))

    for v in (90, 92, 94, 96, 98):
        p.draw_line(pt(0, v), pt(100, v), color=(0.8, 0.8, 0.8), width=0.4)
        p.insert_text((box.x0 - 22, pt(0, v).y + 3), str(v), fontname="helv", fontsize=8)
    for x in loads:
        p.insert_text((pt(x, lo).x - 6, box.y1 + 14), str(x), fontname="helv", fontsize=8)
    p.draw_polyline([pt(x, v) for x, v in zip(loads, eff, strict=True)], color=_BLUE, width=2)
    for x, v in zip(loads, eff, strict=True):
        p.draw_circle(pt(x, v), 2.5, color=_BLUE, fill=_BLUE)
    _para(
        p,
        box.y1 + 50,
        (
            "Figure 3: Conversion efficiency of the SV-5000 versus output load at 400 V DC input. "
            "Peak efficiency is 97.8 % at 50 % load; European weighted efficiency is 97.2 %."
        ),
        60,
    )
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "4. Error codes and remedies", 13)
    _table(
        p,
        y,
        [50, 170, 263],
        [
            ["Code", "Meaning", "Remedy"],
            ["E01", "Grid overvoltage", "Check grid voltage; contact the utility above 253 V"],
            ["E02", "Grid undervoltage", "Check the AC breaker and cable cross-section"],
            ["E03", "Grid frequency out of range", "Wait; the inverter reconnects by itself"],
            ["E04", "DC insulation fault", "Low insulation resistance: inspect PV cables"],
            ["E05", "Ground fault current", "Residual current detected: call an electrician"],
            ["E06", "Heatsink over-temperature", "Clean the fan filter, improve ventilation"],
            ["E07", "Fan failure", "Replace the cooling fan (part SV-FAN-2)"],
            ["E08", "Monitoring link lost", "Re-pair the Wi-Fi monitoring dongle"],
        ],
    )
    return doc.tobytes(no_new_id=True, garbage=1, deflate=True)


def _report_pdf() -> bytes:
    import pymupdf

    doc = pymupdf.open()
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "Northwind Cookware: Q3 2026 Quarterly Sales Report", 17)
    y = _heading(p, y, "Executive summary", 13)
    _para(
        p,
        y,
        (
            "Third-quarter revenue reached 18.4 million euros, up 11 % on the second quarter and 23 % "
            "year on year, driven by cast-iron skillets and the new ceramic bakeware range. Gross "
            "margin improved to 41.5 % thanks to lower freight costs. Customer churn in the "
            "subscription club fell to 3.2 %. EMEA remains the largest region; APAC grew fastest "
            "after the launch of the Singapore warehouse. Guidance for the fourth quarter, which "
            "includes the holiday season, is 22 to 24 million euros."
        ),
        220,
    )
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "Revenue by region, Q3 2026 (million EUR)", 13)
    box = pymupdf.Rect(110, y + 40, 520, y + 340)
    _axes(p, box, "Sales region", "Revenue (M EUR)")
    regions = [("North America", 5.1), ("EMEA", 7.3), ("APAC", 4.2), ("Latin America", 1.8)]
    slot = box.width / len(regions)
    for i, (name, v) in enumerate(regions):
        x0 = box.x0 + i * slot + slot * 0.2
        top = box.y1 - box.height * v / 8.0
        p.draw_rect(pymupdf.Rect(x0, top, x0 + slot * 0.6, box.y1), color=None, fill=_BLUE)
        p.insert_text((x0 + 6, top - 6), f"{v:.1f}", fontname="helv", fontsize=9)
        p.insert_text((x0, box.y1 + 14), name, fontname="helv", fontsize=8.5)
    _para(p, box.y1 + 50, ("Figure 1: EMEA leads with 7.3 M EUR; APAC grew 38 % quarter on quarter."), 40)
    p = doc.new_page(width=_A4[0], height=_A4[1])
    y = _heading(p, 70, "Product lines", 13)
    y = _table(
        p,
        y,
        [180, 110, 110, 83],
        [
            ["Product line", "Units sold", "Revenue (M EUR)", "Change"],
            ["Cast-iron skillets", "96,400", "6.2", "+31 %"],
            ["Stainless saucepans", "71,800", "4.9", "+4 %"],
            ["Ceramic bakeware", "58,300", "3.8", "new"],
            ["Chef knife sets", "21,600", "3.5", "-6 %"],
        ],
    )
    y = _heading(p, y + 10, "Revenue share by sales channel", 13)
    p.insert_image(pymupdf.Rect(150, y, 450, y + 225), stream=pie_png())
    return doc.tobytes(no_new_id=True, garbage=1, deflate=True)


# ---------------------------------------------------------------- entry point


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_bytes() == data:
        return  # keep mtimes stable for scanners that look at them
    path.write_bytes(data)


def build_sample_corpus(dest: Path, *, video: bool = True) -> list[Path]:
    """Write the sample corpus under ``dest`` and return the files written (sorted).

    Idempotent: running it again rewrites the same bytes. ``video=False`` skips the video (the
    only part that needs PyAV's encoders, ~1 s).
    """
    dest = Path(dest)
    _write(dest / MANUAL, _manual_pdf())
    _write(dest / REPORT, _report_pdf())
    _write(dest / DIAGRAM, png_bytes(diagram()))
    _write(dest / PHOTO, photo_jpeg())
    _write(dest / AUDIO, SPEECH_AUDIO.read_bytes())
    paths = [dest / p for p in (MANUAL, REPORT, DIAGRAM, PHOTO, AUDIO)]
    if video:
        _write(dest / VIDEO, video_mp4(SPEECH_AUDIO))
        paths.append(dest / VIDEO)
    return sorted(paths)

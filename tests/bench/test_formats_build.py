"""The every-format evaluation's labelling (bench/formats/build.py): pure parts, no LibreOffice."""

from __future__ import annotations

import random

from bench.formats import build
from bench.realdocs.labels import Unit


def test_markdown_sections_become_slides_with_three_kinds_of_text() -> None:
    md = (
        "# Guide\n\nIntro line that is short.\n\n## Authentication\n\n"
        "Pip can read credentials from the URL itself for every index. The netrc file is read when the URL "
        "holds no credentials at all. A keyring can also hold them for pip to use later on. "
        "Extra words go to the speaker notes of the slide.\n\n```\ncode block is dropped here\n```\n"
    )
    ((head, sents),) = build.md_sections(md)
    assert head == "Authentication" and len(sents) == 4 and not any("code block" in s for s in sents)
    doc, truth = build.fodp([(head, sents)])
    assert truth == [
        {"slide": f"Authentication\n{sents[0]}", "diagram": sents[1], "notes": " ".join(sents[2:])}
    ]
    assert sents[1] not in doc  # the picture's sentence exists only as pixels
    assert "presentation:notes" in doc and sents[2] in doc


def test_decks_are_judged_by_slide_and_other_files_by_file() -> None:
    slide = Unit("decks/a.pptx#p2:notes", "pptx", "decks/a.pptx", "t", page=2, meta={"evidence": "notes"})
    sheet = Unit("sheets/z.xlsx#r40", "xlsx", "sheets/z.xlsx", "t", meta={"evidence": "sheet"})
    assert build.query_line("q1", "x", slide, "literal")["relevant"] == [
        {"source": "decks/a.pptx", "page": 2}
    ]
    assert build.query_line("q2", "x", sheet, "literal")["relevant"] == [{"source": "sheets/z.xlsx"}]


def test_literal_queries_are_unique_to_their_unit() -> None:
    units = [
        Unit(
            "web/a.md",
            "md",
            "web/a.md",
            "the zebrafish aquarium heater keeps water at twenty six degrees",
            meta={"evidence": "text"},
        ),
        Unit(
            "web/b.md",
            "md",
            "web/b.md",
            "the aquarium filter must be rinsed in old tank water monthly",
            meta={"evidence": "text"},
        ),
    ]
    qs = build.literal_queries(units)
    assert qs and all(q["kind"] == "literal" for q in qs)
    for q in qs:
        (j,) = q["relevant"]
        others = [u for u in units if u.source != j["source"]]
        assert all(q["query"] not in u.text for u in others)


def test_a_file_gives_one_unit_per_paragraph_judged_by_the_file_and_navigation_gives_no_query() -> None:
    page = (
        "<html><head><title>Nav title words here</title></head><body>"
        "<p>Next: Zebrafish Heaters, Previous: Aquarium Filters, Up: Fishkeeping [Index]</p>"
        "<h2>Gravel</h2><p>The zebrafish gravel bed should be rinsed before the first filling.</p>"
        "<ul><li>Driftwood must soak for several weeks before it sinks.</li></ul></body></html>"
    )
    paras = build.paragraphs(page, "html")
    assert paras[0].startswith("Next:") and "Nav title" not in " ".join(paras)
    units = build.file_units("docs/fish.docx", "docx", paras, "document")
    assert {u.source for u in units} == {"docs/fish.docx"} and not units[0].meta["pick"]
    qs = build.literal_queries(units)
    assert len(qs) == 2 and all(q["relevant"] == [{"source": "docs/fish.docx"}] for q in qs)
    assert not any("previous" in q["query"] for q in qs)


def test_markdown_and_rst_ground_truth_is_the_text_a_reader_sees() -> None:
    md = "# Title\n\nSee [the zebrafish guide](https://example.org/hidden-address) for more.\n\n![badge](https://ci.example/badge.svg)\n"
    assert build.paragraphs(md, "md") == ["Title", "See the zebrafish guide for more."]
    rst = "Heading\n=======\n\n.. image:: https://ci.example/badge.svg\n   :target: https://ci.example\n\nVisible words only.\n"
    assert build.paragraphs(rst, "rst") == ["Heading", "Visible words only."]


def test_literal_picks_spread_over_a_formats_files() -> None:
    units = [
        Unit(f"web/{f}.md#s{n}", "md", f"web/{f}.md", "", meta={"evidence": "text"})
        for f in ("a", "b")
        for n in range(4)
    ]
    order = [u.source for u in build.spread(units, random.Random(1))]
    assert sorted(order[:2]) == ["web/a.md", "web/b.md"] and sorted(order[2:4]) == ["web/a.md", "web/b.md"]


def test_a_literal_phrase_is_unique_with_diacritics_folded() -> None:
    row = "BR -0127-04829 America/Belem {} (east), {}"
    units = [
        Unit(
            "sheets/z.xls#r0", "xls", "sheets/z.xls", row.format("Para", "Amapa"), meta={"evidence": "sheet"}
        ),
        Unit(
            "sheets/y.xlsx#r0",
            "xlsx",
            "sheets/y.xlsx",
            row.format("Pará", "Amapá"),
            meta={"evidence": "sheet"},
        ),
    ]
    assert build.literal_queries(units) == []

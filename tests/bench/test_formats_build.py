"""The every-format evaluation's labelling (bench/formats/build.py): pure parts, no LibreOffice."""

from __future__ import annotations

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

"""BENCHMARKS.md's summary table (written by hand) names every section the bench scripts write, and a
script rewriting its section (bench/_report.py write_section) leaves the summary as it is."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from bench import _report

BENCHMARKS = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"


def slug(heading: str) -> str:
    """The anchor GitHub and MkDocs (Python-Markdown's toc) both give these headings."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def summary_and_sections(text: str) -> tuple[str, list[str]]:
    summary = re.search(r"^## Summary\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    assert summary, "BENCHMARKS.md has no '## Summary' section"
    sections = [h for h in re.findall(r"^## (.+)$", text, re.MULTILINE) if h != "Summary"]
    return summary.group(1), sections


def test_every_section_has_a_summary_row_and_every_row_a_section() -> None:
    summary, sections = summary_and_sections(BENCHMARKS.read_text())
    linked = set(re.findall(r"^\| \[[^\]]+\]\(#([^)]+)\)", summary, re.MULTILINE))
    anchors = {slug(h) for h in sections}
    assert anchors - linked == set(), f"sections without a summary row: {sorted(anchors - linked)}"
    assert linked - anchors == set(), f"summary rows naming no section: {sorted(linked - anchors)}"
    rows = [r for r in summary.splitlines() if r.startswith("| [")]
    assert all(r.count(" | ") == 4 for r in rows), "a row needs claim, figure, baseline, command, date"
    assert all(re.search(r"\| \d{4}-\d{2}-\d{2} \|$", r) for r in rows), "a row ends with the section's date"


def test_write_section_keeps_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "BENCHMARKS.md"
    copy.write_text(BENCHMARKS.read_text())
    monkeypatch.setattr(_report, "BENCHMARKS", copy)
    before, sections = summary_and_sections(copy.read_text())
    _report.write_section(sections[0], "new figures")
    _report.write_section("A new benchmark", "its figures")
    after, sections_after = summary_and_sections(copy.read_text())
    assert after == before
    assert sections_after == [*sections, "A new benchmark"]
    assert "new figures" in copy.read_text() and copy.read_text().rstrip().endswith("its figures")

"""The docs site builds offline with --strict (broken links and anchors, pages missing from the nav fail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a browser would fetch from elsewhere: stylesheets, scripts, images, fonts, CSS imports
EXTERNAL = re.compile(
    r"""<(?:link|script|img|iframe)\b[^>]*\b(?:href|src)=["'](?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//""",  # CSS: @import url(...), fonts, backgrounds
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests."""
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return site


def test_docs_site_builds_strict_and_offline(site: Path) -> None:
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    # README is the home page, BENCHMARKS.md the measured figures, every docs/*.md a page
    expected = {"index.html", "results/index.html"} | {
        f"{p.stem}/index.html" for p in (ROOT / "docs").glob("*.md")
    }
    assert expected <= pages, sorted(expected - pages)
    fetched = [
        (p.relative_to(site).as_posix(), m.group(0)[:120])
        for p in site.rglob("*")
        if p.suffix in {".html", ".css", ".js"}
        for m in EXTERNAL.finditer(p.read_text(errors="replace"))
    ]
    assert not fetched, fetched[:10]


def _article(html: str) -> str:
    """A page's own content (the nav, on every page, links every page)."""
    found = re.search(r"<article\b.*?</article>", html, re.DOTALL)
    assert found, "no <article> in the page"
    return found.group(0)


def test_every_benchmark_section_is_its_own_page_linked_from_the_results_page(site: Path) -> None:
    from markdown.extensions.toc import slugify  # the toc's anchors: the Summary's links name them

    text = (ROOT / "BENCHMARKS.md").read_text()
    sections = [slugify(h, "-") for h in re.findall(r"^## (.+)$", text, re.MULTILINE) if h != "Summary"]
    assert len(sections) > 20
    missing = [s for s in sections if not (site / "results" / s / "index.html").is_file()]
    assert not missing, missing
    results = _article((site / "results" / "index.html").read_text())
    linked = set(re.findall(r'href="([^"#/]+)/"', results))
    assert set(sections) - linked == set(), "results page lacks links to " + str(
        sorted(set(sections) - linked)
    )
    assert "Summary" in results and not any(f'id="{s}"' in results for s in sections)  # the summary only
    for slug in sections:
        page = _article((site / "results" / slug / "index.html").read_text())
        assert f'<h1 id="{slug}">' in page, slug
        body = re.sub(r"<[^>]+>", " ", page.split("</h1>", 1)[1])
        assert len(body.split()) >= 20, f"{slug}: page nearly empty ({body.strip()[:80]!r})"


def test_benchmark_links_point_at_site_pages() -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    from hooks import rewrite_links, section_page, split_benchmarks

    head, sections = split_benchmarks(
        "# Benchmarks\n\nintro\n\n## Summary\n\n| [A](#a-benchapy) | x |\n\n"
        "## A (bench/a.py)\n\nsee [B](#b), [the script](bench/a.py), [docs](docs/search.md), "
        "[home](README.md), [here](#a-benchapy), [web](https://example.org/x)\n\n### Detail\n\ntext\n\n"
        "## B\n\nbody\n"
    )
    assert list(sections) == ["a-benchapy", "b"] and head.rstrip().endswith("| [A](#a-benchapy) | x |")
    assert rewrite_links(head, "BENCHMARKS.md", "results.md", sections).endswith(
        "| [A](results/a-benchapy.md) | x |\n\n"
    )
    page = rewrite_links(
        section_page(*sections["a-benchapy"]), "BENCHMARKS.md", "results/a-benchapy.md", sections
    )
    assert page.startswith("# A (bench/a.py)\n") and "\n## Detail\n" in page
    assert (
        "see [B](b.md), the script, [docs](../search.md), [home](../index.md), [here](#a-benchapy), " in page
    )
    assert "[web](https://example.org/x)" in page
    docs = "[fig](../BENCHMARKS.md#b), [all](../BENCHMARKS.md), [s](search.md#x), [t](#y)"
    assert rewrite_links(docs, "docs/x.md", "x.md", sections) == (
        "[fig](results/b.md), [all](results.md), [s](search.md#x), [t](#y)"
    )


def test_config_reference_lists_every_key_of_the_composed_config() -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    from config_reference import reference

    from mmrag_assets.config import load_config

    def leaves(node: object, prefix: str = "") -> list[str]:
        import dataclasses

        if dataclasses.is_dataclass(node):
            return [
                k
                for f in dataclasses.fields(node)
                if f.name != "overrides"
                for k in leaves(getattr(node, f.name), prefix + f.name + ".")
            ]
        return [prefix.rstrip(".")]

    page = reference()
    cfg = load_config(["model=lite"], resolve_paths=False)
    keys = leaves(cfg)
    assert len(keys) > 200
    missing = [k for k in keys if f"| `{k}` |" not in page]
    assert not missing, missing[:10]
    rescore = cfg.answer.extractive.rescore
    assert (
        f"| `answer.extractive.rescore` | int | `{rescore}` | this many best passages" in page
    )  # type, value, comment
    assert "| `search.fusion` | one of " in page  # a Literal lists its choices

"""MkDocs hooks (mkdocs.yml ``hooks:``): README.md and BENCHMARKS.md, which live at the repository root
where GitHub shows them, become the site's home page (``index.md``) and its measured figures.

BENCHMARKS.md stays one file on GitHub; in the site it is split at every build (so it never drifts):
``results.md`` (not ``BENCHMARKS.md``, whose URL would differ from ``benchmarks.md``'s by case only) holds
its title, intro and ``## Summary`` table, and each other ``## <section>`` becomes its own page
``results/<slug>.md`` (its heading the page's ``# `` title, its ``###`` subsections ``##``), where
``<slug>`` is the anchor the site's toc (Python-Markdown's default ``slugify``) gives that heading.
``on_config`` lists those pages in the nav right after ``results.md``, so a new section appears by itself.

Links are rewritten so that each file's links work both on GitHub and in the site: README's
``docs/x.md`` -> ``x.md``, ``BENCHMARKS.md`` -> ``results.md``, ``BENCHMARKS.md#<section>`` ->
``results/<section>.md`` (the same for a docs page's ``../BENCHMARKS.md``), and in BENCHMARKS.md's
pages ``#<section>`` -> that section's page. A link from README or BENCHMARKS.md to a file outside
``docs/`` (``bench/x.py``) has no page in the site and becomes its plain text. ``config-reference.md``
is generated from the config schemas (``config_reference.py``). ``mkdocs build --strict`` then
validates them all, anchors included."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from markdown.extensions.toc import slugify
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
RESULTS = "results.md"  # BENCHMARKS.md's title, intro and summary
RESULTS_DIR = "results"  # one page per section: results/<slug>.md
LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def split_benchmarks(text: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """BENCHMARKS.md as (its head up to the end of ``## Summary``, {slug: (heading, body)} of the other
    ``## `` sections in file order), split the way bench/_report.py's write_section finds a section."""
    parts = re.split(r"^## (.+)\n", text, flags=re.MULTILINE)
    head, sections = parts[0], {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if heading == "Summary":
            head += f"## {heading}\n{body}"
        else:
            sections[slugify(heading, "-")] = (heading, body)
    return head, sections


def section_page(heading: str, body: str) -> str:
    """A section as a page: its heading the ``# `` title, every heading below it one level up."""
    lines, fenced = [], False
    for line in body.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and re.match(r"#{3,6} ", line):
            line = line[1:]
        lines.append(line)
    return f"# {heading}\n" + "\n".join(lines) + "\n"


def _sections() -> dict[str, tuple[str, str]]:
    return split_benchmarks(BENCHMARKS.read_text())[1]


def on_config(config):
    """List one nav entry per BENCHMARKS.md section, right after the entry for ``results.md``."""
    pages = [f"{RESULTS_DIR}/{slug}.md" for slug in _sections()]

    def insert(items: list) -> bool:
        for i, item in enumerate(items):
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if value == RESULTS:
                items.insert(i + 1, {"By benchmark": pages})
                return True
            if isinstance(value, list) and insert(value):
                return True
        return False

    if config.nav is not None:
        insert(config.nav)
    return config


def on_files(files, config):
    head, sections = split_benchmarks(BENCHMARKS.read_text())
    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    files.append(File.generated(config, RESULTS, content=head))
    for slug, (heading, body) in sections.items():
        files.append(File.generated(config, f"{RESULTS_DIR}/{slug}.md", content=section_page(heading, body)))
    import sys

    sys.path.insert(0, str(ROOT / "docs"))
    from config_reference import reference  # the configuration reference, from the schemas at every build

    files.append(File.generated(config, "config-reference.md", content=reference()))
    return files


def _site_target(repo_path: str, anchor: str, sections: dict) -> str | None:
    """The site's source path (and anchor) for a repository path, or None where the site has no page."""
    if repo_path == "BENCHMARKS.md":
        if anchor in sections:
            return f"{RESULTS_DIR}/{anchor}.md"
        return RESULTS + (f"#{anchor}" if anchor else "")
    suffix = f"#{anchor}" if anchor else ""
    if repo_path == "README.md":
        return "index.md" + suffix
    if repo_path.startswith("docs/"):
        return repo_path.removeprefix("docs/") + suffix
    return None


def rewrite_links(markdown: str, source: str, page_uri: str, sections: dict) -> str:
    """Point the relative links of ``source`` (its repository path), shown as the site page ``page_uri``,
    at the site's pages. A docs page's links to README.md and BENCHMARKS.md are rewritten and its other
    links left as written (``--strict`` checks them); README's and BENCHMARKS.md's links outside docs/
    become their plain text."""
    root_file = "/" not in source  # README.md, BENCHMARKS.md

    def sub(m: re.Match) -> str:
        text, href = m.group(1), m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", href, re.IGNORECASE):  # http:, mailto:
            return m.group(0)
        path, _, anchor = href.partition("#")
        if not path:  # an anchor: on the same page, unless it names a section of BENCHMARKS.md
            if source != "BENCHMARKS.md" or anchor not in sections:
                return m.group(0)
            repo_path = source
        else:
            repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if not root_file and repo_path not in {"README.md", "BENCHMARKS.md"}:
            return m.group(0)
        target = _site_target(repo_path, anchor, sections)
        if target is None:
            return text
        target_path, _, target_anchor = target.partition("#")
        if target_path == page_uri:
            return f"[{text}](#{target_anchor or anchor})" if target_anchor or anchor else text
        rel = posixpath.relpath(target_path, posixpath.dirname(page_uri) or ".")
        return f"[{text}]({rel}{'#' + target_anchor if target_anchor else ''})"

    return LINK.sub(sub, markdown)


def on_page_markdown(markdown, page, config, files):
    uri = page.file.src_uri
    sections = _sections()
    if uri == "index.md":
        source = "README.md"
    elif uri == RESULTS or uri.startswith(f"{RESULTS_DIR}/"):
        source = "BENCHMARKS.md"
    elif uri == "config-reference.md":
        return markdown
    else:
        source = f"docs/{uri}"
    return rewrite_links(markdown, source, uri, sections)

"""MkDocs hooks (mkdocs.yml ``hooks:``): README.md and BENCHMARKS.md, which live at the repository root
where GitHub shows them, become the site's home page (``index.md``) and its measured-figures page
(``results.md``: not ``BENCHMARKS.md``, whose URL would differ from ``benchmarks.md``'s by case only).
Links are rewritten so that each file's links work both on GitHub and in the site: README's
``docs/x.md`` -> ``x.md`` and ``BENCHMARKS.md`` -> ``results.md``, a docs page's ``../BENCHMARKS.md`` ->
``results.md``. ``config-reference.md`` is generated from the config schemas (``config_reference.py``). ``mkdocs build --strict`` then validates them all,
anchors included."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"index.md": "README.md", "results.md": "BENCHMARKS.md"}


def on_files(files, config):
    for uri, name in GENERATED.items():
        files.append(File.generated(config, uri, abs_src_path=str(ROOT / name)))
    import sys

    sys.path.insert(0, str(ROOT / "docs"))
    from config_reference import reference  # the configuration reference, from the schemas at every build

    files.append(File.generated(config, "config-reference.md", content=reference()))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "index.md":
        return re.sub(r"\]\(BENCHMARKS\.md", "](results.md", re.sub(r"\]\(docs/", "](", markdown))
    if page.file.src_uri != "results.md":
        return re.sub(r"\]\(\.\./BENCHMARKS\.md", "](results.md", markdown)
    return markdown

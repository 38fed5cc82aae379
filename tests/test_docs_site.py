"""The docs site builds offline with --strict (broken links and anchors, pages missing from the nav fail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what a browser would fetch from elsewhere: stylesheets, scripts, images, fonts, CSS imports
EXTERNAL = re.compile(
    r"""<(?:link|script|img|iframe)\b[^>]*\b(?:href|src)=["'](?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//""",  # CSS: @import url(...), fonts, backgrounds
    re.IGNORECASE,
)


def test_docs_site_builds_strict_and_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
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

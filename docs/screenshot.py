"""Regenerate ``docs/search-page.png`` (the README's screenshot of the search page).

    uv run python docs/screenshot.py [--dir /tmp/mmrag-shot]

Builds the bundled sample corpus, indexes it with the lite tier, starts `mmrag serve` on a free
loopback port, searches it in Debian's chromium (``apt-get install -y chromium``) and writes a
palette-quantised PNG (small enough to commit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = "what does inverter error code E04 mean"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "search-page.png")
    args = ap.parse_args()

    from PIL import Image

    from mmrag_assets.config import load_config
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus
    from mmrag_assets.orchestration.launch import index
    from tests.web.browser import browser_page, chromium_path, search, wait_for
    from tests.web.conftest import start_server, stop_server

    if chromium_path() is None:
        print("error: chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        base = args.dir or Path(tmp)
        build_sample_corpus(base / "corpus")
        overrides = [f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", "model=lite"]
        index(load_config(overrides))
        server = start_server(overrides, base / "serve.log")
        try:
            with browser_page(server.url, width=1200, height=720) as (page, external, errors):
                page.goto(server.url + "/")
                wait_for(page, "document.body.dataset.ready === 'true'")
                search(page, QUERY)
                wait_for(page, "document.querySelector('#results article .thumb img').naturalWidth > 0")
                page.focus("#results article")
                shot = base / "shot.png"
                page.screenshot(path=shot)
                assert not external and not errors, (external, errors)
        finally:
            stop_server(server)
        img = Image.open(shot).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        img.save(args.out, optimize=True)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

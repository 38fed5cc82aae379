"""Paragraph-sized chunks of real documentation from Debian packages (the real-text benchmark's corpus).

Packages (Debian main, fetched with ``apt-get download`` into ``<out>/debs``, unpacked with
``dpkg-deb -x``): the Python 3.11 and PostgreSQL 15 manuals, the Debian reference, handbook,
policy and developers' reference, GNU manuals (bash, binutils (as, ld, gprof), diffutils,
autoconf, libtool, gettext, m4, the GNU coding standards), git's and SQLite's documentation.
The R, gnuplot, Asymptote and Octave documentation is deliberately not used: it is kept aside
for independent checks. Info manuals that duplicate an HTML manual are skipped.

HTML pages give their ``<p>``, ``<li>``, ``<dd>``, ``<pre>`` and table-cell blocks; GNU info files
their blank-line-separated paragraphs (node headers and menus dropped); the Debian handbook's
English edition only. Blocks shorter than
``MIN_WORDS`` are merged with the next ones of the same page, blocks longer than ``MAX_WORDS`` are
split at sentence ends, and exact duplicates (navigation, boilerplate) are kept once.

    uv run python bench/debdocs.py            # writes <out>/chunks.parquet (~a minute)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from _paths import DATA  # run as a script: bench/ is sys.path[0]

PACKAGES = [
    "python3.11-doc", "postgresql-doc-15", "debian-reference-en", "bash-doc", "binutils-doc", "diffutils-doc",
    "autoconf-doc", "gnu-standards", "libtool-doc", "gettext-doc", "m4-doc", "debian-handbook", "debian-policy",
    "developers-reference", "git-doc", "sqlite3-doc",
]  # fmt: skip
# info manuals that duplicate an HTML manual of the same packages (near-duplicate chunks otherwise)
INFO_DUPLICATES = ("python3.11.info", "bash.info", "autoconf.info", "standards.info")
EXCLUDED = ("r-doc", "gnuplot", "asymptote", "octave")  # kept aside for independent checks
OUT = DATA / "realtext"
MIN_WORDS, MAX_WORDS = 25, 200
BLOCKS = {"p", "li", "dd", "pre", "td", "dt", "blockquote"}
SKIP = {"script", "style", "nav", "head"}


class Blocks(HTMLParser):
    """Text of the block elements of one HTML page, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[str] = []
        self.buf: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP:
            self.skip += 1
        if tag in BLOCKS:
            self.flush()
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP and self.skip:
            self.skip -= 1
        if tag in BLOCKS and self.stack:
            self.flush()
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and not self.skip:
            self.buf.append(data)

    def flush(self) -> None:
        text = " ".join("".join(self.buf).split())
        if text:
            self.out.append(text)
        self.buf = []


def html_blocks(path: Path) -> list[str]:
    p = Blocks()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    p.flush()
    return p.out


def info_blocks(path: Path) -> list[str]:
    text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    out = []
    for para in re.split(r"\n\s*\n", text):
        if para.startswith(
            ("\x1f", "File:", "* Menu:", "Tag Table:", "END-INFO-DIR")
        ) or para.lstrip().startswith("* "):
            continue
        t = " ".join(para.split())
        if t and not re.fullmatch(r"[=\-*.\s]+", t):
            out.append(t)
    return out


def chunks(blocks: list[str]) -> Iterator[str]:
    """Paragraph-sized chunks: short blocks merged, long ones split at sentence ends."""
    cur: list[str] = []
    for b in blocks:
        words = b.split()
        if len(words) > MAX_WORDS:
            if cur:
                yield " ".join(cur)
                cur = []
            part: list[str] = []
            for sent in re.split(r"(?<=[.!?])\s+", b):
                part.append(sent)
                if sum(len(s.split()) for s in part) >= MAX_WORDS // 2:
                    yield " ".join(part)
                    part = []
            if part:
                yield " ".join(part)
            continue
        cur.append(b)
        if sum(len(c.split()) for c in cur) >= MIN_WORDS:
            yield " ".join(cur)
            cur = []
    if cur and sum(len(c.split()) for c in cur) >= MIN_WORDS // 3:
        yield " ".join(cur)


def unpack(out: Path) -> Path:
    debs, root = out / "debs", out / "unpacked"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not any(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    if missing or not root.exists():
        root.mkdir(exist_ok=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def sources(root: Path) -> Iterator[tuple[str, list[str]]]:
    share = root / "usr" / "share"
    for p in sorted(f for f in share.rglob("*.html") if f.is_file()):
        rel = str(p.relative_to(share))
        if "debian-handbook/html/" in rel and "/en-US/" not in rel:
            continue  # the handbook ships in 20 languages: English only
        if not any(x in rel for x in EXCLUDED):
            yield rel, html_blocks(p)
    for p in sorted((share / "info").glob("*.info*.gz")):
        if not p.name.startswith(INFO_DUPLICATES):
            yield str(p.relative_to(share)), info_blocks(p)


def main(argv: list[str] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    root = unpack(args.out)
    seen: set[str] = set()
    rows: dict[str, list] = {"source": [], "n": [], "text": []}
    for src, blocks in sources(root):
        n = 0
        for c in chunks(blocks):
            h = hashlib.sha1(c.encode()).hexdigest()
            if h in seen:
                continue
            seen.add(h)
            n += 1
            rows["source"].append(src)
            rows["n"].append(n)
            rows["text"].append(c)
    t = pa.table(rows)
    pq.write_table(t, args.out / "chunks.parquet")
    by = {}
    for s in rows["source"]:
        k = s.split("/")[1] if s.startswith("doc/") else s.split("/")[0]
        by[k] = by.get(k, 0) + 1
    words = [len(x.split()) for x in rows["text"]]
    print(
        f"{t.num_rows:,} chunks from {len(set(rows['source'])):,} files, mean {sum(words) / len(words):.0f} words; by package: {by}"
    )


if __name__ == "__main__":
    main()

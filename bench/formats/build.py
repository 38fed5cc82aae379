"""Build the every-format evaluation corpus and its query sets from real files we did not write.

    uv run python bench/formats/build.py [--out DIR]

Sources (nothing here is written by hand except the flat-ODF wrapper of the decks; the Debian
packages python3-pip, libffi8, valgrind, tzdata, iso-codes, espeak-ng, mosquitto, base-passwd and
LibreOffice must be installed, and README files of a few others are used when present):
- Debian documentation installed on the machine (``/usr/share/doc``): pip's Markdown and
  reStructuredText docs (python3-pip), libffi's and valgrind's HTML manuals, espeak-ng's Markdown
  guides, mosquitto's and git's READMEs, plain-text READMEs (libmpfr6, libgmp-dev, base-passwd),
  setuptools' and jansson's reStructuredText, base-passwd's HTML; tzdata's and iso-codes' tables;
- Office files written by LibreOffice from those sources: libffi and valgrind HTML pages to docx,
  odt, doc, rtf and EPUB (valgrind's navigation icons dropped: LibreOffice would keep them as
  links to files that are not copied); tzdata's tab-separated tables and iso-codes' JSON tables
  (as tab-separated rows) to xlsx, ods and xls (one sheet each); pip's topic guides to decks
  (pptx, odp, ppt), one slide per section: the section title and first sentence on the slide,
  its second sentence only as a picture (a diagram's text), the rest of the section in the
  speaker notes;
- python-pptx and python-docx test files (their sdists on PyPI), which must ingest without error
  (they hold almost no words: no queries).

Units (what a judgement names): a slide (source + page) for decks, whose numbering the product and
a plain LibreOffice export share; a whole file otherwise (the product lays sheets and text formats
out into its own pages, a user's LibreOffice export into others). A file's text is held by several
units, one per paragraph (documents, web and text formats) or per ``ROWS_PER_UNIT`` rows (sheets),
all judged by the file, so that one file can give several literal queries. Literal queries are
phrases of one unit's ground-truth text that no other unit holds (``bench/realdocs/labels.py``), up
to ``LITERAL_PER_FORMAT`` per format, spread over its files and (decks) over slide, picture and
notes; navigation lines of the HTML manuals ("Next: ..., Up: ...") are never picked. Paraphrases
are hand-written against an anchor phrase (``bench/formats/paraphrases.jsonl``).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import html
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._paths import DATA
from bench.realdocs import labels
from bench.realdocs.build import write_jsonl
from bench.realdocs.labels import Unit

DOC = Path("/usr/share/doc")
SEED = 24
# per format at most, shared among its evidence strata (decks: slide, diagram, notes); with
# labels.DEV_SHARE 0.4, 18 literal queries leave 11 for the test split
LITERAL_PER_FORMAT = 18
ROWS_PER_UNIT = 20  # a sheet unit: this many rows of the table
PARAPHRASES = Path(__file__).resolve().parent / "paraphrases.jsonl"
SDISTS = ("python-pptx==1.0.2", "python-docx==1.2.0")
LIBRARY_FILES_PER_SDIST = 12  # in archive order: each costs a LibreOffice start (~4 s)


def default_out() -> Path:
    return DATA / "formats"


def read_doc(rel: str) -> str:
    p = DOC / rel
    if p.suffix == ".gz":
        return gzip.decompress(p.read_bytes()).decode("utf-8", "replace")
    return p.read_text(encoding="utf-8", errors="replace")


def soffice(sources: list[Path], target: str, out: Path, infilter: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as prof:
        cmd = ["soffice", f"-env:UserInstallation=file://{prof}", "--headless", "--norestore"]
        if infilter:
            cmd.append(f"--infilter={infilter}")
        subprocess.run(
            [*cmd, "--convert-to", target, "--outdir", str(out), *map(str, sources)],
            check=True,
            capture_output=True,
            timeout=600,
        )


# ---------------------------------------------------------------- decks (pptx, odp, ppt)

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"'
)
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def md_sections(md: str) -> list[tuple[str, list[str]]]:
    """(heading, sentences) of each ``#``/``##`` section of a Markdown file, code and markup dropped."""
    md = re.sub(r"```.*?```", " ", md, flags=re.DOTALL)
    md = re.sub(r"^[:`{(<].*$|^\s*[-*|>].*$", " ", md, flags=re.MULTILINE)
    out: list[tuple[str, list[str]]] = []
    for block in re.split(r"^#{1,3} ", md, flags=re.MULTILINE)[1:]:
        head, _, body = block.partition("\n")
        body = re.sub(r"\[([^\]]*)\]\([^)]*\)|\{[^}]*\}`?[^`]*`?", r"\1", body)
        body = re.sub(r"[`*_]", "", " ".join(body.split()))
        sents = [s.strip() for s in _SENT.split(body) if len(s.split()) >= 6]
        if len(sents) >= 3:
            out.append((head.strip().strip("#").strip(), sents))
    return out


def picture(sentence: str) -> bytes:
    """A diagram-like picture whose only text is ``sentence`` (wrapped), as PNG."""
    from PIL import Image, ImageDraw, ImageFont

    words, lines, cur = sentence.split(), [], ""
    for w in words:
        if len(cur) + len(w) > 48:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    font = ImageFont.load_default(size=34)
    im = Image.new("RGB", (1100, 90 + 48 * len(lines)), (245, 248, 255))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((8, 8, im.width - 8, im.height - 8), radius=24, outline=(40, 60, 140), width=5)
    for i, line in enumerate(lines):
        d.text((44, 44 + 48 * i), line, fill=(10, 20, 60), font=font)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def fodp(sections: list[tuple[str, list[str]]]) -> tuple[str, list[dict[str, str]]]:
    slides, truth = [], []
    for n, (head, sents) in enumerate(sections, 1):
        body, pic, notes = sents[0], sents[1], " ".join(sents[2:])
        png = base64.b64encode(picture(pic)).decode()
        slides.append(
            f'<draw:page draw:name="s{n}"><draw:frame svg:x="1.5cm" svg:y="1cm" svg:width="25cm" svg:height="2.5cm">'
            f"<draw:text-box><text:p>{html.escape(head)}</text:p></draw:text-box></draw:frame>"
            '<draw:frame svg:x="1.5cm" svg:y="4cm" svg:width="25cm" svg:height="4cm"><draw:text-box>'
            f"<text:p>{html.escape(body)}</text:p></draw:text-box></draw:frame>"
            '<draw:frame svg:x="3cm" svg:y="9cm" svg:width="20cm" svg:height="5.5cm"><draw:image>'
            f"<office:binary-data>{png}</office:binary-data></draw:image></draw:frame>"
            '<presentation:notes><draw:frame presentation:class="notes" svg:x="2cm" svg:y="14cm" svg:width="17cm" '
            f'svg:height="12cm"><draw:text-box><text:p>{html.escape(notes)}</text:p></draw:text-box></draw:frame>'
            "</presentation:notes></draw:page>"
        )
        truth.append({"slide": f"{head}\n{body}", "diagram": pic, "notes": notes})
    doc = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {NS} office:version="1.2" '
        'office:mimetype="application/vnd.oasis.opendocument.presentation"><office:body><office:presentation>'
        + "".join(slides)
        + "</office:presentation></office:body></office:document>\n"
    )
    return doc, truth


DECKS = [  # (pip topic guide, target format): 10-11 slides per format
    ("python3-pip/html/topics/authentication.md", "pptx"),
    ("python3-pip/html/topics/local-project-installs.md", "pptx"),
    ("python3-pip/html/topics/caching.md.gz", "pptx"),
    ("python3-pip/html/topics/vcs-support.md.gz", "pptx"),
    ("python3-pip/html/topics/repeatable-installs.md", "odp"),
    ("python3-pip/html/topics/secure-installs.md.gz", "odp"),
    ("python3-pip/html/topics/configuration.md.gz", "odp"),
    ("python3-pip/html/topics/https-certificates.md", "ppt"),
    ("python3-pip/html/topics/more-dependency-resolution.md.gz", "ppt"),
    ("python3-pip/html/topics/python-option.md", "ppt"),
]


def build_decks(corpus: Path, work: Path) -> list[Unit]:
    units: list[Unit] = []
    by_target: dict[str, list[Path]] = {}
    for rel, fmt in DECKS:
        sections = md_sections(read_doc(rel))[:6]
        name = Path(rel).name.split(".")[0]
        doc, truth = fodp(sections)
        (work / f"{name}.fodp").write_text(doc, encoding="utf-8")
        by_target.setdefault(fmt, []).append(work / f"{name}.fodp")
        for n, t in enumerate(truth, 1):
            for evidence, text in t.items():
                units.append(
                    Unit(
                        f"decks/{name}.{fmt}#p{n}:{evidence}",
                        fmt,
                        f"decks/{name}.{fmt}",
                        text,
                        page=n,
                        meta={"evidence": evidence},
                    )
                )
    for fmt, srcs in by_target.items():
        soffice(srcs, fmt, corpus / "decks")
    return units


# ---------------------------------------------------------------- documents and text formats

LIBFFI = DOC / "libffi8" / "html"
VALGRIND = DOC / "valgrind" / "html"
DOCS_FROM_HTML = [  # manual pages -> Office documents written by LibreOffice (25-80 paragraphs per format)
    (LIBFFI / "Using-libffi.html", "docx"),
    (LIBFFI / "The-Basics.html", "docx"),
    (LIBFFI / "Thread-Safety.html", "docx"),
    (LIBFFI / "Closure-Example.html", "odt"),
    (LIBFFI / "Types.html", "odt"),
    (VALGRIND / "manual-intro.html", "odt"),
    (VALGRIND / "lk-manual.html", "odt"),
    (LIBFFI / "Structures.html", "doc"),
    (VALGRIND / "bbv-manual.html", "doc"),
    (LIBFFI / "Memory-Usage.html", "rtf"),
    (VALGRIND / "design-impl.html", "rtf"),
    (VALGRIND / "quick-start.html", "rtf"),
    (LIBFFI / "Size-and-Alignment.html", "epub"),
    (LIBFFI / "Complex.html", "epub"),
    (VALGRIND / "faq.html", "epub"),
]
HTML_AS_IS = [
    "Introduction.html",
    "Simple-Example.html",
    "Primitive-Types.html",
    "Type-Example.html",
    "The-Closure-API.html",
    "Multiple-ABIs.html",
    "Arrays-Unions-Enums.html",
    "Complex-Type-Example.html",
]
TEXT_FILES = [  # (path under /usr/share/doc, corpus name, format)
    ("python3-pip/html/getting-started.md", "pip-getting-started.md", "md"),
    ("python3-pip/html/installation.md", "pip-installation.md", "md"),
    ("espeak-ng/docs/guide.md", "espeak-guide.md", "md"),
    ("espeak-ng/docs/markup.md", "espeak-markup.md", "md"),
    ("mosquitto/README.md", "mosquitto-readme.md", "md"),
    ("procps/bugs.md", "procps-bugs.markdown", "markdown"),
    ("git/README.md", "git-readme.markdown", "markdown"),
    ("python3-pip/html/reference/requirement-specifiers.md", "pip-req-specifiers.markdown", "markdown"),
    ("python3-pip/html/quickstart.rst", "pip-quickstart.rst", "rst"),
    ("python3-pip/html/development/conventions.rst", "pip-conventions.rst", "rst"),
    ("python3-pip/html/ux_research_design.rst", "pip-ux-research.rst", "rst"),
    ("python3-setuptools/roadmap.rst", "setuptools-roadmap.rst", "rst"),
    ("libjansson4/README.rst", "jansson-readme.rst", "rst"),
    ("libmpfr6/README", "mpfr-readme.txt", "txt"),
    ("libgmp-dev/README", "gmp-readme.txt", "txt"),
    ("base-passwd/README", "base-passwd-readme.txt", "txt"),
    ("dictionaries-common/README.problems", "dictionaries-problems.txt", "txt"),
    ("base-passwd/users-and-groups.html", "users-and-groups.htm", "htm"),
    ("valgrind/html/cl-format.html", "valgrind-cl-format.htm", "htm"),
    ("espeak-ng/README.html", "espeak-readme.xhtml.html", "html"),
]


_NAV = re.compile(r"^(Next|Previous|Up): ")
_BLOCK_TAGS = frozenset(
    ("address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "div", "dl", "dt",
     "figcaption", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
     "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul")
)  # fmt: skip


class _Blocks(HTMLParser):
    """The visible text of an HTML document, one string per block (paragraph, heading, list item,
    table cell, ``<pre>`` with its line breaks); nothing of ``head``, ``script``, ``style``."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []
        self._buf: list[str] = []
        self._hidden = self._pre = 0

    def _flush(self) -> None:
        text = "".join(self._buf)
        self._buf = []
        if self._pre:
            lines = [" ".join(ln.split()) for ln in text.splitlines()]
            text = "\n".join(ln for ln in lines if ln)
        else:
            text = " ".join(text.split())
        if text:
            self.out.append(text)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("head", "script", "style", "title"):
            self._hidden += 1
        elif tag in _BLOCK_TAGS:
            self._flush()
            self._pre += tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "script", "style", "title"):
            self._hidden = max(self._hidden - 1, 0)
        elif tag in _BLOCK_TAGS:
            self._flush()
            self._pre = max(self._pre - (tag == "pre"), 0)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._buf.append(data)


def rendered(text: str, fmt: str) -> str:
    """The HTML a reader of the file sees: Markdown by markdown-it-py (CommonMark + tables +
    strikethrough), reStructuredText by docutils (no file insertion, no raw HTML), HTML as is."""
    if fmt in ("md", "markdown"):
        from markdown_it import MarkdownIt

        return MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(text)
    if fmt == "rst":
        from docutils.core import publish_parts

        settings = {"file_insertion_enabled": False, "raw_enabled": False, "report_level": 5}
        parts = publish_parts(text, writer="html5", settings_overrides=settings)
        return f"<h1>{parts['title']}</h1>{parts['body']}"
    return text


def paragraphs(text: str, fmt: str) -> list[str]:
    """The ground-truth text of a document, web or text file as a reader sees it, one string per
    block: HTML, Markdown and reStructuredText by their rendered HTML (:class:`_Blocks`: link
    targets, image addresses and directives are not text), plain text by blank-line blocks."""
    if fmt == "txt":
        return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    p = _Blocks()
    p.feed(rendered(text, fmt))
    p.close()
    p._flush()
    return p.out


def file_units(source: str, fmt: str, paras: list[str], evidence: str) -> list[Unit]:
    """One unit per paragraph of a file, each judged by the whole file; navigation lines are units
    (no other unit may hold a query's phrase) that no query is picked from."""
    return [
        Unit(
            f"{source}#s{n}",
            fmt,
            source,
            text,
            meta={"evidence": evidence, "pick": not _NAV.match(text)},
        )
        for n, text in enumerate(paras, 1)
    ]


def without_images(html_text: str) -> str:
    return re.sub(r"<img\b[^>]*>", "", html_text, flags=re.IGNORECASE)


def build_documents(corpus: Path, work: Path) -> list[Unit]:
    units: list[Unit] = []
    by_target: dict[str, list[Path]] = {}
    for src, fmt in DOCS_FROM_HTML:
        text = src.read_text(encoding="utf-8", errors="replace")
        (work / src.name).write_text(without_images(text), encoding="utf-8")
        by_target.setdefault(fmt, []).append(work / src.name)
        units += file_units(f"docs/{src.stem}.{fmt}", fmt, paragraphs(text, "html"), "document")
    for fmt, srcs in by_target.items():
        # opened as a Writer document: Writer/Web (HTML's default) has no docx/doc/rtf/EPUB export
        soffice(srcs, fmt, corpus / "docs", infilter="HTML (StarWriter)")
    (corpus / "web").mkdir(parents=True, exist_ok=True)
    for name in HTML_AS_IS:
        shutil.copyfile(LIBFFI / name, corpus / "web" / name)
        text = (LIBFFI / name).read_text(errors="replace")
        units += file_units(f"web/{name}", "html", paragraphs(text, "html"), "html-section")
    for rel, name, fmt in TEXT_FILES:
        if not (DOC / rel).exists():
            continue
        dest = corpus / "web" / (name.replace(".xhtml.html", ".html"))
        shutil.copyfile(DOC / rel, dest)
        evidence = "html-section" if fmt in ("html", "htm") else "text"
        units += file_units(f"web/{dest.name}", fmt, paragraphs(read_doc(rel), fmt), evidence)
    return units


ZONEINFO = Path("/usr/share/zoneinfo")
ISO_CODES = Path("/usr/share/iso-codes/json")
TABLES = [  # (tzdata tab-separated table or iso-codes JSON table, target format)
    (ZONEINFO / "zone1970.tab", "xlsx"),
    (ISO_CODES / "iso_639-5.json", "xlsx"),
    (ZONEINFO / "iso3166.tab", "ods"),
    (ISO_CODES / "iso_15924.json", "ods"),
    (ZONEINFO / "zone.tab", "xls"),
    (ISO_CODES / "iso_4217.json", "xls"),
]


def table_rows(src: Path) -> list[str]:
    """Tab-separated rows of a tzdata table (comments dropped) or of an iso-codes JSON table (its
    entries' fields in the order of their first appearance)."""
    if src.suffix == ".json":
        (entries,) = json.loads(src.read_text(encoding="utf-8")).values()
        cols = list(dict.fromkeys(k for e in entries for k in e))
        return ["\t".join(str(e.get(c, "")) for c in cols) for e in entries]
    return [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]


def build_sheets(corpus: Path, work: Path) -> list[Unit]:
    units = []
    for src, fmt in TABLES:
        stem = src.stem.replace(".", "-")
        rows = table_rows(src)
        (work / f"{stem}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        soffice([work / f"{stem}.csv"], fmt, corpus / "sheets", infilter="CSV:9,34,76")
        for i in range(0, len(rows), ROWS_PER_UNIT):  # each judged by the whole sheet (file)
            units.append(
                Unit(
                    f"sheets/{stem}.{fmt}#r{i}",
                    fmt,
                    f"sheets/{stem}.{fmt}",
                    "\n".join(" ".join(r.split("\t")).strip() for r in rows[i : i + ROWS_PER_UNIT]),
                    meta={"evidence": "sheet"},
                )
            )
    return units


def build_library_files(corpus: Path, work: Path) -> list[str]:
    """python-pptx / python-docx test files: real Office files that must ingest (no queries)."""
    dest = corpus / "library-tests"
    dest.mkdir(parents=True, exist_ok=True)
    got = []
    pip = [
        str(Path(sys.base_prefix) / "bin" / "python3"),
        "-m",
        "pip",
    ]  # the base interpreter's pip (uv's venv has none)
    for spec in SDISTS:
        r = subprocess.run(
            [*pip, "download", "--no-binary", ":all:", "--no-deps", spec, "-d", str(work)],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            print(f"warning: {spec} sdist not downloaded: {r.stderr.strip()[-200:]}", file=sys.stderr)
    for tgz in sorted(work.glob("python_*.tar.gz")):
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                if len([g for g in got if g.startswith(tgz.name.split("-")[0])]) >= LIBRARY_FILES_PER_SDIST:
                    break
                if (
                    re.search(r"/(features/steps|tests)/test_files/[^/]+\.(pptx|docx|xlsx)$", m.name)
                    and m.size < 2_000_000
                ):
                    f = tar.extractfile(m)
                    if f:
                        name = f"{tgz.name.split('-')[0]}-{Path(m.name).name}"
                        (dest / name).write_bytes(f.read())
                        got.append(name)
    return got


# ---------------------------------------------------------------- queries


def query_line(qid: str, query: str, u: Unit, kind: str) -> dict[str, Any]:
    judgement = {"source": u.source, "page": u.page} if u.page is not None else {"source": u.source}
    return {
        "qid": qid,
        "query": query,
        "relevant": [judgement],
        "channel": u.channel,
        "kind": kind,
        "evidence": u.meta["evidence"],
    }


def spread(pool: list[Unit], rng: random.Random) -> list[Unit]:
    """``pool`` in the order a round robin over its files takes it (files and each file's units
    shuffled): the picks of a stratum spread over its files instead of exhausting the first."""
    by_file: dict[str, list[Unit]] = {}
    for u in pool:
        by_file.setdefault(u.source, []).append(u)
    files = sorted(by_file)
    rng.shuffle(files)
    for f in files:
        rng.shuffle(by_file[f])
    out: list[Unit] = []
    for i in range(max((len(v) for v in by_file.values()), default=0)):
        out += [by_file[f][i] for f in files if i < len(by_file[f])]
    return out


def fold(text: str) -> str:
    """``text`` without diacritics ("Pará" -> "Para"): what search engines match alike."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def pick_literal(
    u: Unit, units: list[Unit], df: Counter[str], normalised: dict[str, str], folded: dict[str, str]
) -> str | None:
    """``labels.pick_literal`` (same candidates, same seeded order), and the phrase must also be
    unique with diacritics folded: tzdata's zone.tab spells "Para (east), Amapa" where
    zone1970.tab has "Pará (east), Amapá", so such a row is in both files as a search engine sees it."""
    cands = labels.literal_candidates(u, df)
    random.Random(f"{SEED}:{u.uid}").shuffle(cands)
    for c in cands[:50]:
        if [h.uid for h in labels.containing(c, units, normalised)] != [u.uid]:
            continue
        f = f" {labels.normalise(fold(c))} "
        if [uid for uid, t in folded.items() if f in f" {t} "] == [u.uid]:
            return c
    return None


def literal_queries(units: list[Unit], per_format: int = LITERAL_PER_FORMAT) -> list[dict[str, Any]]:
    df = labels.document_frequency(units)
    normalised = {u.uid: labels.normalise(u.text) for u in units}
    folded = {u.uid: labels.normalise(fold(u.text)) for u in units}  # before normalise drops "á"
    out = []
    strata: dict[tuple[str, str], list[Unit]] = {}
    for u in units:
        if u.meta.get("pick", True):
            strata.setdefault((u.channel, u.meta["evidence"]), []).append(u)
    n_strata = Counter(fmt for fmt, _ in strata)
    for (fmt, evidence), pool in sorted(strata.items()):
        cap = -(-per_format // n_strata[fmt])
        picked = 0
        for u in spread(pool, random.Random(f"{SEED}:{fmt}:{evidence}")):
            # a slide's units share a page: a phrase must be unique among all units, and its
            # judgement (the slide) is what any of the slide's units would be judged by
            phrase = pick_literal(u, units, df, normalised, folded)
            if phrase is None:
                continue
            qid = f"lit-{fmt}-{evidence}-{hashlib.sha256(u.uid.encode()).hexdigest()[:6]}"
            out.append(query_line(qid, phrase, u, "literal"))
            picked += 1
            if picked == cap:
                break
    return out


def paraphrase_queries(units: list[Unit]) -> list[dict[str, Any]]:
    if not PARAPHRASES.exists():
        return []
    normalised = {u.uid: labels.normalise(u.text) for u in units}
    out = []
    for n, line in enumerate(PARAPHRASES.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        spec = json.loads(line)
        try:
            u = labels.resolve_anchor(spec["anchor"], units, normalised)
        except ValueError as e:
            raise SystemExit(f"error: {PARAPHRASES.name}:{n} ({spec['qid']}): {e}") from None
        out.append(query_line(spec["qid"], spec["query"], u, "paraphrase"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=default_out())
    args = ap.parse_args(argv)
    need = [DOC / rel for rel, _ in DECKS] + [p for p, _ in DOCS_FROM_HTML] + [LIBFFI / n for n in HTML_AS_IS]
    need += [p for p, _ in TABLES]
    if missing := [str(p) for p in need if not p.exists()]:
        raise SystemExit(
            f"error: {len(missing)} source files are missing (first: {missing[0]}): `apt-get install python3-pip "
            "libffi8 valgrind tzdata iso-codes espeak-ng mosquitto base-passwd libreoffice-writer libreoffice-impress libreoffice-calc`"
        )
    out: Path = args.out
    corpus = out / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    for d in ("decks", "docs", "sheets", "web"):
        (corpus / d).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        units = build_decks(corpus, work) + build_documents(corpus, work) + build_sheets(corpus, work)
        (work / "sdists").mkdir()
        library = build_library_files(corpus, work / "sdists")
    missing = sorted(
        {u.source for u in units}
        - {p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file()}
    )
    if missing:
        raise SystemExit(f"error: LibreOffice did not write {', '.join(missing)}")
    queries = literal_queries(units) + paraphrase_queries(units)
    dev, test = labels.split(queries)
    header = "built by bench/formats/build.py from Debian documentation and PyPI sdists; split: labels.split"
    write_jsonl(out / "queries" / "all.jsonl", queries, header)
    write_jsonl(out / "queries" / "dev.jsonl", dev, header)
    write_jsonl(out / "queries" / "test.jsonl", test, header)
    (out / "units.jsonl").write_text(
        "\n".join(
            json.dumps(
                {
                    "uid": u.uid,
                    "source": u.source,
                    "page": u.page,
                    "evidence": u.meta["evidence"],
                    "text": u.text,
                }
            )
            for u in units
        )
    )
    files = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file())
    (out / "manifest.json").write_text(json.dumps({"files": files, "library_test_files": library}, indent=1))
    print(
        f"{len(files)} files ({len(library)} library test files), {len(units)} units, "
        f"{len(queries)} queries ({len(dev)} dev, {len(test)} test) in {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build the every-format evaluation corpus and its query sets from real files we did not write.

    uv run python bench/formats/build.py [--out DIR]

Sources (nothing here is written by hand except the flat-ODF wrapper of the decks; the Debian
packages python3-pip, libffi8, tzdata, espeak-ng, mosquitto, base-passwd and LibreOffice must be
installed, and README files of a few others are used when present):
- Debian documentation installed on the machine (``/usr/share/doc``): pip's Markdown and
  reStructuredText docs (python3-pip), libffi's HTML manual (libffi8), espeak-ng's Markdown guides,
  mosquitto's and git's READMEs, plain-text READMEs (libmpfr6, libgmp-dev, base-passwd),
  setuptools' and jansson's reStructuredText, base-passwd's HTML, tzdata's tables;
- Office files written by LibreOffice from those sources: libffi HTML pages to docx, odt, doc,
  rtf and EPUB; tzdata's tab-separated tables to xlsx, ods and xls (one sheet each); pip's topic
  guides to decks (pptx, odp, ppt), one slide per section: the section title and first sentence
  on the slide, its second sentence only as a picture (a diagram's text), the rest of the
  section in the speaker notes;
- python-pptx and python-docx test files (their sdists on PyPI), which must ingest without error
  (they hold almost no words: no queries).

Units (what a judgement names): a slide (source + page) for decks, whose numbering the product and
a plain LibreOffice export share; a whole file otherwise (the product lays sheets and text formats
out into its own pages, a user's LibreOffice export into others). Literal queries are phrases of
one unit's ground-truth text that no other unit holds (``bench/realdocs/labels.py``); paraphrases
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._paths import DATA
from bench.realdocs import labels
from bench.realdocs.build import passages, write_jsonl
from bench.realdocs.labels import Unit

DOC = Path("/usr/share/doc")
SEED = 24
N_LITERAL = 6  # per (format, evidence) stratum at most
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


def plain(text_html: str) -> str:
    return " ".join(passages(text_html, lo=5, hi=10_000))


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


DECKS = [  # (pip topic guide, target format)
    ("python3-pip/html/topics/authentication.md", "pptx"),
    ("python3-pip/html/topics/local-project-installs.md", "pptx"),
    ("python3-pip/html/topics/repeatable-installs.md", "odp"),
    ("python3-pip/html/topics/https-certificates.md", "ppt"),
]


def build_decks(corpus: Path, work: Path) -> list[Unit]:
    units: list[Unit] = []
    by_target: dict[str, list[Path]] = {}
    for rel, fmt in DECKS:
        sections = md_sections(read_doc(rel))[:6]
        name = Path(rel).stem
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
DOCS_FROM_HTML = {  # libffi manual pages -> Office documents written by LibreOffice
    "Using-libffi.html": "docx",
    "The-Basics.html": "docx",
    "Closure-Example.html": "odt",
    "Types.html": "odt",
    "Structures.html": "doc",
    "Memory-Usage.html": "rtf",
    "Size-and-Alignment.html": "epub",
    "Thread-Safety.html": "docx",
}
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
    ("python3-pip/html/quickstart.rst", "pip-quickstart.rst", "rst"),
    ("python3-pip/html/ux_research_design.rst", "pip-ux-research.rst", "rst"),
    ("python3-setuptools/roadmap.rst", "setuptools-roadmap.rst", "rst"),
    ("libjansson4/README.rst", "jansson-readme.rst", "rst"),
    ("libmpfr6/README", "mpfr-readme.txt", "txt"),
    ("libgmp-dev/README", "gmp-readme.txt", "txt"),
    ("base-passwd/README", "base-passwd-readme.txt", "txt"),
    ("dictionaries-common/README.problems", "dictionaries-problems.txt", "txt"),
    ("base-passwd/users-and-groups.html", "users-and-groups.htm", "htm"),
    ("espeak-ng/README.html", "espeak-readme.xhtml.html", "html"),
]


def strip_markup(text: str, fmt: str) -> str:
    if fmt in ("html", "htm"):
        return plain(text)
    return " ".join(re.sub(r"[`*_#|=~^\-]{2,}|[`*_]", " ", text).split())


def build_documents(corpus: Path, work: Path) -> list[Unit]:
    units: list[Unit] = []
    by_target: dict[str, list[Path]] = {}
    for name, fmt in DOCS_FROM_HTML.items():
        stem = Path(name).stem
        shutil.copyfile(LIBFFI / name, work / name)
        by_target.setdefault(fmt, []).append(work / name)
        units.append(
            Unit(
                f"docs/{stem}.{fmt}",
                fmt,
                f"docs/{stem}.{fmt}",
                plain((LIBFFI / name).read_text(errors="replace")),
                meta={"evidence": "document"},
            )
        )
    for fmt, srcs in by_target.items():
        # opened as a Writer document: Writer/Web (HTML's default) has no docx/doc/rtf/EPUB export
        soffice(srcs, fmt, corpus / "docs", infilter="HTML (StarWriter)")
    (corpus / "web").mkdir(parents=True, exist_ok=True)
    for name in HTML_AS_IS:
        shutil.copyfile(LIBFFI / name, corpus / "web" / name)
        units.append(
            Unit(
                f"web/{name}",
                "html",
                f"web/{name}",
                plain((LIBFFI / name).read_text(errors="replace")),
                meta={"evidence": "html-section"},
            )
        )
    for rel, name, fmt in TEXT_FILES:
        if not (DOC / rel).exists():
            continue
        dest = corpus / "web" / (name.replace(".xhtml.html", ".html"))
        shutil.copyfile(DOC / rel, dest)
        text = read_doc(rel)
        units.append(
            Unit(
                f"web/{dest.name}",
                fmt,
                f"web/{dest.name}",
                strip_markup(text, fmt),
                meta={"evidence": "html-section" if fmt in ("html", "htm") else "text"},
            )
        )
    return units


TABLES = [("zone1970.tab", "xlsx"), ("iso3166.tab", "ods"), ("zone.tab", "xls")]


def build_sheets(corpus: Path, work: Path) -> list[Unit]:
    units = []
    for name, fmt in TABLES:
        src = Path("/usr/share/zoneinfo") / name
        rows = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
        (work / f"{Path(name).stem}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        soffice([work / f"{Path(name).stem}.csv"], fmt, corpus / "sheets", infilter="CSV:9,34,76")
        for i in range(0, len(rows), 40):  # units of 40 rows, each judged by the whole sheet (file)
            units.append(
                Unit(
                    f"sheets/{Path(name).stem}.{fmt}#r{i}",
                    fmt,
                    f"sheets/{Path(name).stem}.{fmt}",
                    "\n".join(r.replace("\t", " ") for r in rows[i : i + 40]),
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


def literal_queries(units: list[Unit]) -> list[dict[str, Any]]:
    df = labels.document_frequency(units)
    normalised = {u.uid: labels.normalise(u.text) for u in units}
    out = []
    strata: dict[tuple[str, str], list[Unit]] = {}
    for u in units:
        strata.setdefault((u.channel, u.meta["evidence"]), []).append(u)
    for (fmt, evidence), pool in sorted(strata.items()):
        random.Random(f"{SEED}:{fmt}:{evidence}").shuffle(pool)
        picked = 0
        for u in pool:
            # a slide's units share a page: a phrase must be unique among all units, and its
            # judgement (the slide) is what any of the slide's units would be judged by
            phrase = labels.pick_literal(u, units, df, SEED, normalised)
            if phrase is None:
                continue
            qid = f"lit-{fmt}-{evidence}-{hashlib.sha256(u.uid.encode()).hexdigest()[:6]}"
            out.append(query_line(qid, phrase, u, "literal"))
            picked += 1
            if picked == N_LITERAL:
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
    need = [DOC / rel for rel, _ in DECKS] + [LIBFFI / n for n in (*DOCS_FROM_HTML, *HTML_AS_IS)]
    need += [Path("/usr/share/zoneinfo") / n for n, _ in TABLES]
    if missing := [str(p) for p in need if not p.exists()]:
        raise SystemExit(
            f"error: {len(missing)} source files are missing (first: {missing[0]}): `apt-get install python3-pip "
            "libffi8 tzdata espeak-ng mosquitto base-passwd libreoffice-writer libreoffice-impress libreoffice-calc`"
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

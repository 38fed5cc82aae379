"""HTML, Markdown, plain text, reStructuredText and EPUB laid out to PDF pages by PyMuPDF.

Every format becomes HTML (Markdown by markdown-it-py, reStructuredText by docutils with file
insertion and raw directives off, text escaped into a wrapping ``<pre>``) and is placed on pages
by MuPDF's Story, so each result has a page image and a page number. EPUB is laid out by MuPDF's
own EPUB reader. Nothing is ever fetched or executed:
- MuPDF's HTML engine runs no JavaScript; ``script``, ``iframe``, ``object``, ``embed``, ``link``,
  ``meta`` and ``base`` elements are removed from the tree anyway;
- an ``<img>`` whose source is a local file inside the corpus root (a real image under
  ``convert.max_image_bytes``) is read into an in-memory archive and inlined; a remote one
  (``http:``, ``//host``...) or one outside the corpus is dropped, and counted in a note;
- the character encoding is detected (a byte-order mark, the document's own ``<meta charset>``
  when it decodes, UTF-8, else charset-normalizer's best guess), never assumed.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mmrag_assets.errors import CorruptInput

_DROP = (
    "script",
    "noscript",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "link",
    "meta",
    "base",
)
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_CSS = "body {font-family: sans-serif;} pre {white-space: pre-wrap; font-family: monospace;} img {max-width: 100%;}"


@dataclass
class Laid:
    pdf: Path
    pages: int
    notes: list[str] = field(default_factory=list)  # reasons for the quarantine table (document kept)
    encoding: str | None = None


def layout_text(
    src: Path,
    fmt: str,
    out_pdf: Path,
    cfg: Any,
    *,
    corpus_root: Path,
    max_pages: int,
    resolve: Callable[[str], Path | None] | None = None,
) -> Laid:
    """Lay ``src`` (``fmt`` as sniffed: html md txt rst epub) out into ``out_pdf``; ``cfg`` is the
    ``convert`` config section. Raises ``CorruptInput`` for what cannot be laid out. ``resolve``
    (an object-store corpus) turns an image reference relative to the document into a local copy,
    or None where the local rule refuses it; without it references are files under ``corpus_root``."""
    import pymupdf

    size = src.stat().st_size
    if size > cfg.max_text_bytes:
        raise CorruptInput(
            f"{fmt} file is {size:,} bytes, over convert.max_text_bytes={cfg.max_text_bytes:,} "
            "(thousands of pages): split it or raise the cap"
        )
    paper = pymupdf.paper_rect(cfg.page_size)
    if fmt == "epub":
        return _epub(src, out_pdf, cfg, paper, max_pages)
    raw = src.read_bytes()
    text, encoding = decode(raw, html=fmt == "html")
    notes: list[str] = []
    if fmt == "html":
        body = text
    elif fmt == "md":
        from markdown_it import MarkdownIt

        body = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(text)
    elif fmt == "rst":
        body = _rst(text)
    else:
        body = f"<pre>{html_lib.escape(text)}</pre>"
    pages = _story(body, src, out_pdf, cfg, paper, corpus_root, max_pages, notes, resolve)
    return Laid(out_pdf, pages, notes, encoding)


def decode(raw: bytes, *, html: bool = False) -> tuple[str, str]:
    """Text and the encoding it was read with."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            return raw.decode(codec, errors="replace"), codec
    if html and (m := _CHARSET.search(raw[:4096])):
        declared = m.group(1).decode("ascii")
        try:
            return raw.decode(declared), declared.lower()
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong declaration: detect instead
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw[: 1 << 20]))
    if not matches or b"\x00" in raw[:4096]:
        raise CorruptInput("cannot tell the character encoding of this text (binary data?)")
    best = matches[0]
    # A short Western note decodes cleanly in several code pages (cp1250, cp1252, cp1257 tie at zero
    # "chaos" for "crème brûlée"); among the tied best, windows-1252 is the one HTML's own
    # standard falls back to for unlabelled legacy text.
    tied = [
        m
        for m in matches
        if (m.percent_chaos, -m.percent_coherence) == (best.percent_chaos, -best.percent_coherence)
    ]
    encoding = next((m.encoding for m in tied if m.encoding == "cp1252"), best.encoding)
    return raw.decode(encoding, errors="replace"), encoding


def _rst(text: str) -> str:
    from docutils.core import publish_parts

    settings = {
        "file_insertion_enabled": False,
        "raw_enabled": False,  # no `.. include::` of other files, no raw HTML
        "report_level": 5,
        "halt_level": 5,
        "embed_stylesheet": False,
        "stylesheet_path": "",
        "input_encoding": "unicode",
    }
    try:
        parts = publish_parts(text, writer="html5", settings_overrides=settings)
    except Exception as e:  # noqa: BLE001 - a docutils failure on hostile markup: keep the words
        return f"<pre>{html_lib.escape(text)}</pre><!-- docutils: {type(e).__name__} -->"
    return f"<h1>{parts['title']}</h1>{parts['body']}" if parts.get("title") else parts["body"]


def _story(
    body: str,
    src: Path,
    out_pdf: Path,
    cfg: Any,
    paper: Any,
    corpus_root: Path,
    max_pages: int,
    notes: list[str],
    resolve: Callable[[str], Path | None] | None = None,
) -> int:
    import pymupdf

    css = f"{_CSS} body {{font-size: {cfg.font_size_pt}pt;}}"
    # first pass: read the image sources from MuPDF's own parse of the document (the same parser
    # that lays it out), so the archive holds exactly what the layout will ask for
    first = pymupdf.Story(body, user_css=css)  # kept alive while its tree is walked
    images = _collect_images(first, src, corpus_root, cfg.max_image_bytes, resolve)
    archive = pymupdf.Archive()
    for name, data in images.inlined.items():
        archive.add(data, name)
    story = pymupdf.Story(body, user_css=css, archive=archive)
    root = story.document()
    for tag in _DROP:
        while (el := root.find(tag, None, None)) is not None:
            el.remove()
    el = root.find("img", None, None)
    while el is not None:
        nxt = el.find_next("img", None, None)
        name = images.names.get(_src(el))
        if name:
            el.set_attribute("src", name)
        else:
            el.remove()
        el = nxt
    if images.remote:
        notes.append(f"{images.remote} remote image(s) never fetched")
    if images.refused:
        notes.append(
            f"{images.refused} local image(s) left out (missing, outside the corpus, not an image, or over convert.max_image_bytes)"
        )
    where = paper + (cfg.margin_pt, cfg.margin_pt, -cfg.margin_pt, -cfg.margin_pt)
    writer = pymupdf.DocumentWriter(str(out_pdf))
    pages, more, stuck = 0, 1, 0
    try:
        while more:
            if pages >= max_pages:
                notes.append(f"laid out past ingest.max_pages={max_pages} pages: the rest skipped")
                break
            dev = writer.begin_page(paper)
            more, filled = story.place(where)
            story.draw(dev)
            writer.end_page()
            pages += 1
            stuck = stuck + 1 if pymupdf.Rect(filled).is_empty else 0
            if stuck >= 3:  # MuPDF placed nothing on three pages running: an element that never fits
                notes.append(f"layout stopped at page {pages}: an element does not fit on a page")
                break
    finally:
        writer.close()
    return pages


def _src(el: Any) -> str:
    # Xml.get_attributes, not get_attribute_value("src"): with PyMuPDF 2.0 the latter never
    # returned for the first <img> of an ordinary page (fz_dom_attribute spun; "alt" returned)
    return ((el.get_attributes() or {}).get("src") or "").strip()


@dataclass
class _Images:
    inlined: dict[str, bytes] = field(default_factory=dict)  # archive name -> bytes
    names: dict[str, str] = field(default_factory=dict)  # src as written -> archive name
    remote: int = 0
    refused: int = 0


def _collect_images(
    story: Any,
    src: Path,
    corpus_root: Path,
    max_bytes: int,
    resolve: Callable[[str], Path | None] | None = None,
) -> _Images:
    from mmrag_assets.lib.ingest.sniff import sniff_file

    out = _Images()
    root = corpus_root.resolve()
    el = story.document().find("img", None, None)
    while el is not None:
        ref = _src(el)
        el = el.find_next("img", None, None)
        if not ref or ref in out.names or ref.startswith("data:"):
            if ref.startswith("data:"):
                out.names[ref] = ref  # already inline
            continue
        parts = urlsplit(ref)
        if parts.scheme or parts.netloc:
            out.remote += 1
            continue
        if resolve is not None:  # an object-store corpus: the object next to the document, fetched
            got = resolve(unquote(parts.path))
            ok = got is not None and got.stat().st_size <= max_bytes and sniff_file(got).kind == "image"
            p = got if got is not None else src
        else:
            p = (src.parent / unquote(parts.path)).resolve()
            ok = (
                p.is_file()
                and root in p.parents
                and p.stat().st_size <= max_bytes
                and sniff_file(p).kind == "image"
            )
        if not ok:
            out.refused += 1
            continue
        name = f"mmrag-img-{len(out.inlined):04d}{p.suffix.lower()}"
        out.inlined[name] = p.read_bytes()
        out.names[ref] = name
    return out


def _epub(src: Path, out_pdf: Path, cfg: Any, paper: Any, max_pages: int) -> Laid:
    import pymupdf

    try:
        doc = pymupdf.open(src, filetype="epub")
    except Exception as e:
        raise CorruptInput(f"MuPDF cannot open this EPUB: {e}") from e
    notes: list[str] = []
    with doc:
        doc.layout(rect=paper, fontsize=cfg.font_size_pt)
        n = doc.page_count
        if n == 0:
            raise CorruptInput("EPUB has no pages")
        if n > max_pages:
            notes.append(f"pages {max_pages + 1}-{n} skipped: over ingest.max_pages={max_pages}")
        out_pdf.write_bytes(doc.convert_to_pdf(0, min(n, max_pages) - 1))
    return Laid(out_pdf, min(n, max_pages), notes)

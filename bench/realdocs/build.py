"""Build the real-document evaluation corpus and its labelled query sets.

    uv run python -m bench.realdocs.build [--out DIR] [--update-committed]

Downloads Debian documentation packages (``apt-get download``; see ``sources.py`` for which and
why), and writes under ``--out`` (default ``$MMRAG_REALDOCS`` or ``$MMRAG_BENCH_DATA/evalset``):

- ``corpus/pages/``    PDFs with their text layer (channel ``page``)
- ``corpus/scanned/``  the same kind of PDFs rasterised to image-only pages (``scanned``)
- ``corpus/images/``   reference-card panels, page regions and real screenshots (``image``)
- ``corpus/audio/``    espeak-ng reading passages of the git manuals, minutes per file (``audio``)
- ``corpus/video/``    screencasts: half-page slides with espeak-ng narration (``video``)
- ``units.jsonl``      every labellable unit with its ground-truth text
- ``queries/{all,dev,test}.jsonl``  the labelled queries (the product's query-set format, with
  tags ``channel``, ``kind``, ``evidence``), split by ``labels.split``

``--update-committed`` copies the query files into ``bench/realdocs/queries/`` (committed; the
corpus is not). Needs ``espeak-ng`` and ``sox`` (apt) besides the project's environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pymupdf

from bench._paths import DATA
from bench.realdocs import labels, media, sources
from bench.realdocs.labels import Unit

HERE = Path(__file__).resolve().parent
COMMITTED = HERE / "queries"
PARAPHRASES = HERE / "paraphrases.jsonl"
SEED = 20261201
DPI_SCAN, DPI_IMAGE, DPI_SLIDE = 150, 130, 110
N_LITERAL = 20  # literal queries per channel
N_SCREENSHOTS = 30  # real wireshark screenshots (unlabelled: distractors)
N_REGION_PAGES = 40  # zsh manual pages that give one region screenshot each
AUDIO_FILE_S = 300.0  # a recording is cut after this many seconds of passages
SLIDE_MIN_S = 12.0
NARRATED_WORDS = 45  # the narration reads the first words of a slide; the rest is only on screen
EVIDENCE = {"page": "text_layer", "scanned": "pixels", "image": "pixels", "audio": "speech"}


def default_out() -> Path:
    return Path(os.environ.get("MMRAG_REALDOCS") or DATA / "evalset")


# ---------------------------------------------------------------- corpus


def build_pages(root: Path, corpus: Path) -> list[Unit]:
    units = []
    for name, rel in sources.PAGE_DOCS:
        data = sources.read_pdf_bytes(root, rel)
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_bytes(data)
        for i, page in enumerate(pymupdf.open(stream=data, filetype="pdf"), 1):
            units.append(Unit(f"{name}#p{i}", "page", name, page.get_text(), page=i))
    return units


def build_scanned(root: Path, corpus: Path) -> list[Unit]:
    units = []
    for name, rel in sources.SCANNED_DOCS:
        texts = media.scanned_pdf(sources.read_pdf_bytes(root, rel), corpus / name, dpi=DPI_SCAN, seed=SEED)
        units += [Unit(f"{name}#p{i}", "scanned", name, t, page=i) for i, t in enumerate(texts, 1)]
    return units


def region_rects(page: pymupdf.Page, rng: random.Random, min_h: float = 230.0) -> pymupdf.Rect | None:
    """A run of whole text blocks at least ``min_h`` points tall, from a random starting block."""
    blocks = sorted((b for b in page.get_text("blocks") if b[4].strip()), key=lambda b: b[1])
    if len(blocks) < 3:
        return None
    start = rng.randrange(0, max(1, len(blocks) - 2))
    r = pymupdf.Rect(blocks[start][:4])
    for b in blocks[start + 1 :]:
        r |= pymupdf.Rect(b[:4])
        if r.height >= min_h:
            break
    m = 8
    return pymupdf.Rect(page.rect.x0 + 30, r.y0 - m, page.rect.x1 - 30, r.y1 + m) & page.rect


def build_images(root: Path, corpus: Path) -> list[Unit]:
    units = []
    for rel in sources.REFCARDS:
        data = sources.read_pdf_bytes(root, rel)
        stem = Path(rel).stem
        for n, (i, rect) in enumerate(media.panels(data, cols=3, rows=2), 1):
            name = f"images/refcards/{stem}-panel{n:02d}.png"
            text = media.save_region(data, i, rect, corpus / name, dpi=DPI_IMAGE)
            units.append(Unit(name, "image", name, text, page=1, meta={"kind": "refcard panel"}))
    data = sources.read_pdf_bytes(root, sources.REGION_DOC)
    doc = pymupdf.open(stream=data, filetype="pdf")
    rng = random.Random(SEED)
    for p in range(30, 30 + 2 * N_REGION_PAGES, 2):
        rect = region_rects(doc[p], rng)
        if rect is None:
            continue
        name = f"images/zsh-manual/zsh-p{p + 1:03d}-region.jpg"
        text = media.save_region(data, p, rect, corpus / name, dpi=DPI_IMAGE)
        units.append(Unit(name, "image", name, text, page=1, meta={"kind": "page region"}))
    shots = sorted((root / sources.SCREENSHOTS_DIR).glob("ws-*.png"), key=lambda f: (-f.stat().st_size, f.name))
    for f in shots[:N_SCREENSHOTS]:
        name = f"images/wireshark/{f.name}"
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, corpus / name)
        units.append(Unit(name, "image", name, "", page=1, meta={"kind": "screenshot (unlabelled distractor)"}))
    return units


class _Paragraphs(HTMLParser):
    """Text of each <p> outside <pre>: what a person would read aloud."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []
        self._buf: list[str] | None = None
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "pre":
            self._pre += 1
        elif tag == "p" and not self._pre:
            self._buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre -= 1
        elif tag == "p" and self._buf is not None:
            self.out.append(" ".join("".join(self._buf).split()))
            self._buf = None

    def handle_data(self, data: str) -> None:
        if self._buf is not None:
            self._buf.append(data)


def passages(html: str, lo: int = 30, hi: int = 110) -> list[str]:
    p = _Paragraphs()
    p.feed(html)
    return [t for t in p.out if lo <= len(t.split()) <= hi and sum(c.isalpha() for c in t) > 0.7 * len(t.replace(" ", ""))]


def build_audio(root: Path, corpus: Path) -> list[Unit]:
    units = []
    for rel in sources.SPEECH_HTML:
        texts = passages((root / rel).read_text(encoding="utf-8", errors="replace"))
        stem, part, batch, est = Path(rel).stem, 1, [], 0.0
        for t in texts + [None]:
            if t is not None:
                batch.append(t)
                est += len(t.split()) / media.WPM * 60 + media.GAP_S
            if batch and (t is None or est >= AUDIO_FILE_S):
                name = f"audio/{stem}-part{part}.ogg"
                spans = media.recording(batch, corpus / name, seed=SEED + part)
                units += [Unit(f"{name}@{s:.2f}-{e:.2f}", "audio", name, txt, start_s=s, end_s=e) for txt, (s, e) in zip(batch, spans, strict=True)]
                part, batch, est = part + 1, [], 0.0
                if part > 2:  # two recordings per manual (~10 min): enough windows to compete
                    break
    return units


def build_video(root: Path, corpus: Path) -> list[Unit]:
    units = []
    for name, rel in sources.SLIDE_DOCS:
        doc = pymupdf.open(stream=sources.read_pdf_bytes(root, rel), filetype="pdf")
        slides, texts = [], []
        for page in doc:
            r = page.rect
            for half in (pymupdf.Rect(r.x0, r.y0, r.x1, r.y1 / 2), pymupdf.Rect(r.x0, r.y1 / 2, r.x1, r.y1)):
                text = page.get_text(clip=half)
                if len(labels.words(text)) < 15:
                    continue
                slides.append(media.render(page, DPI_SLIDE, half))
                texts.append(text)
        narration = [" ".join(" ".join(t.split()).split()[:NARRATED_WORDS]) for t in texts]
        spans = media.screencast(slides, narration, corpus / name, seed=SEED, min_slide_s=SLIDE_MIN_S)
        units += [
            Unit(f"{name}@{s:.2f}-{e:.2f}", "video", name, t, start_s=s, end_s=e, meta={"narration": n})
            for t, n, (s, e) in zip(texts, narration, spans, strict=True)
        ]
    return units


# ---------------------------------------------------------------- queries


def literal_queries(units: list[Unit], normalised: dict[str, str]) -> list[dict[str, Any]]:
    df = labels.document_frequency(units)
    out = []
    for channel in ("page", "scanned", "image", "audio", "video"):
        pool = [u for u in units if u.channel == channel and len(normalised[u.uid].split()) >= 25]
        random.Random(f"{SEED}:{channel}").shuffle(pool)
        picked = 0
        for u in pool:
            phrase = labels.pick_literal(u, units, df, SEED, normalised)
            if phrase is None:
                continue
            out.append(query_line(f"lit-{channel}-{hashlib.sha256(u.uid.encode()).hexdigest()[:6]}", phrase, u, "literal"))
            picked += 1
            if picked == N_LITERAL:
                break
    return out


def paraphrase_queries(units: list[Unit], normalised: dict[str, str], path: Path = PARAPHRASES) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        spec = json.loads(line)
        pool = [u for u in units if u.channel == spec["channel"]]
        try:
            u = labels.resolve_anchor(spec["anchor"], pool, normalised)
        except ValueError as e:
            raise SystemExit(f"error: {path.name}:{n} ({spec['qid']}): {e}") from None
        out.append(query_line(spec["qid"], spec["query"], u, "paraphrase", anchor=spec["anchor"]))
    return out


def query_line(qid: str, query: str, u: Unit, kind: str, anchor: str | None = None) -> dict[str, Any]:
    """One query-set line; ``evidence`` says where the answer is (for a screencast slide: spoken
    as well when the phrase, or the paraphrase's anchor, is in the narration; else only on screen)."""
    evidence = EVIDENCE.get(u.channel)
    if u.channel == "video":
        said = f" {labels.normalise(anchor or query)} " in f" {labels.normalise(u.meta['narration'])} "
        evidence = "speech+pixels" if said else "pixels"
    return {"qid": qid, "query": query, "relevant": [u.judgement()], "channel": u.channel, "kind": kind, "evidence": evidence}


def write_jsonl(path: Path, rows: list[dict[str, Any]], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_text(f"# {header}\n{body}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=default_out(), help="cache dir (default: $MMRAG_REALDOCS or $MMRAG_BENCH_DATA/evalset)")
    ap.add_argument("--update-committed", action="store_true", help="copy the query files into bench/realdocs/queries/")
    ap.add_argument("--queries-only", action="store_true", help="re-label from an existing units.jsonl (no media rebuild)")
    args = ap.parse_args(argv)
    out: Path = args.out
    for tool in ("espeak-ng", "sox"):
        if not args.queries_only and shutil.which(tool) is None:
            print(f"error: {tool} not found: apt-get install espeak-ng sox", file=sys.stderr)
            return 2
    try:
        root, versions = sources.fetch(out)
    except sources.FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    units_path = out / "units.jsonl"
    if args.queries_only and units_path.exists():
        units = [Unit(**json.loads(line)) for line in units_path.read_text().splitlines()]
    else:
        corpus = out / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        units = []
        for step in (build_pages, build_scanned, build_images, build_audio, build_video):
            got = step(root, corpus)
            print(f"{step.__name__}: {len(got)} units", file=sys.stderr, flush=True)
            units += got
        units_path.write_text("\n".join(json.dumps(u.__dict__, ensure_ascii=False) for u in units) + "\n")
    normalised = {u.uid: labels.normalise(u.text) for u in units}
    queries = literal_queries(units, normalised) + paraphrase_queries(units, normalised)
    dev, test = labels.split(queries)
    pkgs = " ".join(f"{p}={v}" for p, v in sorted(versions.items()))
    header = f"built by bench/realdocs/build.py from Debian packages {pkgs}; split: labels.split (dev share {labels.DEV_SHARE})"
    for name, rows in (("all", queries), ("dev", dev), ("test", test)):
        write_jsonl(out / "queries" / f"{name}.jsonl", rows, header)
        if args.update_committed:
            write_jsonl(COMMITTED / f"{name}.jsonl", rows, header)
    counts: dict[str, int] = {}
    for u in units:
        counts[u.channel] = counts.get(u.channel, 0) + 1
    by_uid = {(json.dumps(u.judgement(), sort_keys=True)): u for u in units}
    overlap = {
        kind: round(sum(labels.content_overlap(q["query"], by_uid[json.dumps(q["relevant"][0], sort_keys=True)].text) for q in qs) / len(qs), 3)
        for kind in ("literal", "paraphrase")
        if (qs := [q for q in queries if q["kind"] == kind])
    }
    manifest = {
        "packages": versions, "units": counts, "queries": len(queries), "dev": len(dev), "test": len(test),
        "content_word_overlap": overlap,  # share of a query's content words found in its target's text
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build the real-document evaluation corpus and its labelled query sets.

    uv run python -m bench.realdocs.build [--out DIR] [--update-committed]

Downloads Debian documentation packages (``apt-get download``; see ``sources.py`` for which and
why), and writes under ``--out`` (default ``$MMRAG_REALDOCS`` or ``$MMRAG_BENCH_DATA/evalset``):

- ``corpus/pages/``    PDFs with their text layer (channel ``page``)
- ``corpus/scanned/``  the same kind of PDFs rasterised to image-only pages (``scanned``)
- ``corpus/images/``   reference-card panels, page regions and real screenshots (``image``)
- ``corpus/audio/``    espeak-ng reading passages of the git manuals, minutes per file (``audio``)
- ``corpus/video/``    screencasts: half-page slides with espeak-ng narration (``video``)
- the **support material** (``recordings.jsonl`` is its script): ``corpus/audio/calls/`` support
  calls, two espeak-ng voices (a caller asks, in words written for the script, a question of a real
  FAQ; the agent reads the FAQ's answer) on a telephone line (8 kHz, 300-3400 Hz, line noise, GSM
  codec, mu-law); ``corpus/audio/rooms/`` FAQ answers read in noisy rooms (reverb, background
  talkers and fan noise at a stated SNR); ``corpus/audio/lectures/`` manual chapters read by another
  voice in a large room; ``corpus/pages/support/`` long manuals on the same topics as page
  distractors (their HTML rendered to PDF by PyMuPDF). Every recording's unit carries
  ``meta.recording`` (clean | call | noisy | lecture: the git recordings above are ``clean``)
- ``units.jsonl``      every labellable unit with its ground-truth text
- ``scripts.jsonl``    what each support recording says, line by line, with times (for ``bench/asr_wer.py``)
- ``queries/{all,dev,test}.jsonl``  the labelled queries (the product's query-set format, with
  tags ``channel``, ``kind``, ``evidence``, ``recording`` for audio, ``set`` for paraphrases from
  another ``paraphrases_*.jsonl`` file), split by ``labels.split``

Labels of the first corpus never move: its literal queries are picked from its own units (as before
the support material existed) and must stay unique in the whole corpus, or the build stops; the
split is stratified by recording kind and paraphrase file as well, so the new queries fill strata of
their own.

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
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pymupdf

from bench._paths import DATA
from bench.realdocs import labels, media, sources, spoken
from bench.realdocs.labels import Unit

HERE = Path(__file__).resolve().parent
COMMITTED = HERE / "queries"
PARAPHRASES = HERE / "paraphrases.jsonl"
RECORDINGS = HERE / "recordings.jsonl"
SEED = 20261201
DPI_SCAN, DPI_IMAGE, DPI_SLIDE = 150, 130, 110
N_LITERAL = 20  # literal queries per channel
N_LITERAL_SUPPORT = 8  # literal queries per support recording kind (call, noisy, lecture)
LECTURE_S = 420.0  # a lecture is cut after this many seconds of passages
N_SCREENSHOTS = 30  # real wireshark screenshots (unlabelled: distractors)
N_REGION_PAGES = 40  # zsh manual pages that give one region screenshot each
AUDIO_FILE_S = 300.0  # a recording is cut after this many seconds of passages
SLIDE_MIN_S = 12.0
NARRATED_WORDS = 45  # the narration reads the first words of a slide; the rest is only on screen
STRATA = ("channel", "kind", "recording", "set")  # labels.split strata (absent tags: one value)
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
    shots = sorted(
        (root / sources.SCREENSHOTS_DIR).glob("ws-*.png"), key=lambda f: (-f.stat().st_size, f.name)
    )
    for f in shots[:N_SCREENSHOTS]:
        name = f"images/wireshark/{f.name}"
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, corpus / name)
        units.append(
            Unit(name, "image", name, "", page=1, meta={"kind": "screenshot (unlabelled distractor)"})
        )
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
    return [
        t
        for t in p.out
        if lo <= len(t.split()) <= hi and sum(c.isalpha() for c in t) > 0.7 * len(t.replace(" ", ""))
    ]


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
                units += [
                    Unit(
                        f"{name}@{s:.2f}-{e:.2f}",
                        "audio",
                        name,
                        txt,
                        start_s=s,
                        end_s=e,
                        meta={"recording": "clean"},
                    )
                    for txt, (s, e) in zip(batch, spans, strict=True)
                ]
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


# ---------------------------------------------------------------- support material


def html_to_pdf(root: Path, rels: list[str], out: Path) -> None:
    """HTML pages rendered to one PDF with a text layer (MuPDF's HTML engine), saved without a
    fresh file id or date so a rebuild writes the same bytes."""
    doc = pymupdf.open()
    for rel in rels:
        src = pymupdf.open(str(root / rel))
        doc.insert_pdf(pymupdf.open("pdf", src.convert_to_pdf()))
    doc.set_metadata(
        {"title": out.stem, "producer": "bench/realdocs/build.py", "creationDate": "", "modDate": ""}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.save(out, garbage=4, deflate=True, no_new_id=True)


def build_support_pages(root: Path, corpus: Path) -> list[Unit]:
    units = []
    for name, rels in sources.SUPPORT_PAGES:
        html_to_pdf(root, rels, corpus / name)
        for i, page in enumerate(pymupdf.open(corpus / name), 1):
            units.append(Unit(f"{name}#p{i}", "page", name, page.get_text(), page=i, meta={"set": "support"}))
    return units


def load_recordings(path: Path = RECORDINGS) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _faq_blocks(root: Path, faq: str) -> list[spoken.Block]:
    return [
        b
        for rel in sources.FAQS[faq]
        for b in spoken.html_blocks((root / rel).read_text(encoding="utf-8", errors="replace"))
    ]


def exchange_unit(
    name: str,
    kind: str,
    spans: list[tuple[float, float]],
    first: int,
    last: int,
    said: str,
    meta: dict[str, Any],
) -> Unit:
    """The unit of one exchange of a recording: from the start of its first line (a caller's
    question, or the question read aloud) to the end of its last (the answer); greetings and
    closings belong to no unit."""
    if last < first:
        raise ValueError(f"{name}: an exchange needs turns {first}..{last} in order")
    s, e = spans[first][0], spans[last][1]
    return Unit(
        f"{name}@{s:.2f}-{e:.2f}", "audio", name, said, start_s=s, end_s=e, meta={"recording": kind, **meta}
    )


def build_support_audio(root: Path, corpus: Path, scripts: list[dict[str, Any]]) -> list[Unit]:
    """The calls, noisy rooms and lectures of ``recordings.jsonl``; appends each recording's script
    (its lines with times) to ``scripts``."""
    units = []
    faqs: dict[str, list[spoken.Block]] = {}
    babble_texts = spoken.section_passages(
        spoken.html_blocks((root / sources.BABBLE_HTML).read_text(encoding="utf-8"))
    )
    for n, rec in enumerate(load_recordings()):
        name, kind, seed = rec["name"], rec["kind"], SEED + 1000 + n
        if kind == "lecture":
            blocks = [
                b
                for rel in sources.LECTURES[rec["lecture"]]
                for b in spoken.html_blocks((root / rel).read_text(encoding="utf-8"))
            ]
            texts, est = [], 0.0
            for t in spoken.section_passages(blocks):
                texts.append(t)
                est += len(t.split()) / rec["wpm"] * 60 + media.GAP_S
                if est >= LECTURE_S:
                    break
            lines = [media.Line(t, rec["voice"], rec["wpm"], media.GAP_S) for t in texts]
            x, spans = media.script(lines, seed)
            media.hall(x, corpus / name, reverb=rec["reverb"])
            units += [
                Unit(
                    f"{name}@{s:.2f}-{e:.2f}",
                    "audio",
                    name,
                    t,
                    start_s=s,
                    end_s=e,
                    meta={"recording": "lecture", "lecture": rec["lecture"]},
                )
                for t, (s, e) in zip(texts, spans, strict=True)
            ]
        else:
            lines, exchanges = [], []
            if kind == "call":
                lines.append(media.Line(rec["greeting"], rec["agent"], rec["agent_wpm"], 0.4))
            for turn in rec["turns"]:
                faq = turn.get("faq", rec.get("faq"))
                blocks = faqs.setdefault(faq, _faq_blocks(root, faq))
                question, answer = spoken.faq_answer(blocks, turn["question"])
                first = len(lines)
                if kind == "call":  # the caller asks in their own words; the agent reads the FAQ's answer
                    lines += [
                        media.Line(turn["caller"], rec["caller"], rec["caller_wpm"], 0.7),
                        media.Line(answer, rec["agent"], rec["agent_wpm"], 0.5),
                    ]
                    said = f"{turn['caller']}\n{answer}"
                else:  # a recorded answer: the FAQ's question, then its answer, one voice
                    lines += [
                        media.Line(question, rec["voice"], rec["wpm"], 1.2),
                        media.Line(answer, rec["voice"], rec["wpm"], 0.5),
                    ]
                    said = f"{question}\n{answer}"
                exchanges.append(
                    (first, len(lines) - 1, said, {"faq": faq, "question": question, "answer": answer})
                )
            if kind == "call":
                lines.append(media.Line(rec["closing"], rec["caller"], rec["caller_wpm"], 0.6))
            x, spans = media.script(lines, seed)
            if kind == "call":
                media.phone_line(x, spans, corpus / name, seed=seed, line_snr_db=rec["line_snr_db"])
            elif kind == "noisy":
                media.room(
                    x,
                    spans,
                    corpus / name,
                    seed=seed,
                    snr_db=rec["snr_db"],
                    reverb=rec["reverb"],
                    babble_texts=babble_texts,
                )
            else:
                raise SystemExit(f"error: {RECORDINGS.name}: {name}: unknown kind {kind!r}")
            units += [exchange_unit(name, kind, spans, a, b, said, meta) for a, b, said, meta in exchanges]
        scripts.append(
            {
                "name": name,
                "kind": kind,
                "seed": seed,
                **{k: v for k, v in rec.items() if k not in ("name", "kind", "turns")},
                "lines": [
                    {
                        "text": ln.text,
                        "voice": ln.voice,
                        "wpm": ln.wpm,
                        "pause_s": ln.pause_s,
                        "start_s": round(s, 3),
                        "end_s": round(e, 3),
                    }
                    for ln, (s, e) in zip(lines, spans, strict=True)
                ],
            }
        )
    return units


# ---------------------------------------------------------------- queries


def is_support(u: Unit) -> bool:
    return u.meta.get("set") == "support" or u.meta.get("recording") in ("call", "noisy", "lecture")


def literal_queries(units: list[Unit], normalised: dict[str, str]) -> list[dict[str, Any]]:
    """Per channel of the first corpus, ``N_LITERAL`` phrases picked among its own units (so that
    the support material leaves them as they were) that are unique in the whole corpus; then
    ``N_LITERAL_SUPPORT`` per support recording kind, unique in the whole corpus, from what the
    recording's text source says (a call's answer, not the caller's words written for the script)."""
    first = [u for u in units if not is_support(u)]
    out = _pick_literals(
        first,
        first,
        normalised,
        ("page", "scanned", "image", "audio", "video"),
        lambda u, ch: u.channel == ch,
        N_LITERAL,
    )
    clash = [q["qid"] for q in out if len(labels.containing(q["query"], units, normalised)) != 1]
    if clash:
        raise SystemExit(
            f"error: literal queries of the first corpus no longer unique with the support material: {', '.join(clash)}"
        )
    out += _pick_literals(
        units,
        units,
        normalised,
        ("call", "noisy", "lecture"),
        lambda u, k: u.channel == "audio" and u.meta.get("recording") == k,
        N_LITERAL_SUPPORT,
    )
    return out


def _pick_literals(
    pool_from: list[Unit], units: list[Unit], normalised: dict[str, str], groups, member, n: int
) -> list[dict[str, Any]]:
    df = labels.document_frequency(units)
    out = []
    for group in groups:
        pool = [u for u in pool_from if member(u, group) and len(normalised[u.uid].split()) >= 25]
        random.Random(f"{SEED}:{group}").shuffle(pool)
        picked = 0
        for u in pool:
            source = (
                replace(u, text=u.meta["answer"]) if "answer" in u.meta else u
            )  # the FAQ's words, not the script's
            phrase = labels.pick_literal(source, units, df, SEED, normalised)
            if phrase is None:
                continue
            out.append(
                query_line(
                    f"lit-{u.channel}-{hashlib.sha256(u.uid.encode()).hexdigest()[:6]}", phrase, u, "literal"
                )
            )
            picked += 1
            if picked == n:
                break
    return out


def paraphrase_files(here: Path = HERE) -> list[Path]:
    """``paraphrases.jsonl`` and every other ``paraphrases*.jsonl`` beside it, sorted by name."""
    return sorted(here.glob("paraphrases*.jsonl"))


def paraphrase_queries(
    units: list[Unit], normalised: dict[str, str], path: Path = PARAPHRASES
) -> list[dict[str, Any]]:
    """The hand-written queries of one file; those of a file other than ``paraphrases.jsonl`` are
    tagged ``set`` = the rest of its name (``paraphrases_pages.jsonl``: ``pages``)."""
    out = []
    batch = path.stem.removeprefix("paraphrases").strip("_-.")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        spec = json.loads(line)
        pool = [u for u in units if u.channel == spec["channel"]]
        try:
            u = labels.resolve_anchor(spec["anchor"], pool, normalised)
        except ValueError as e:
            raise SystemExit(f"error: {path.name}:{n} ({spec['qid']}): {e}") from None
        q = query_line(spec["qid"], spec["query"], u, "paraphrase", anchor=spec["anchor"])
        if batch:
            q["set"] = batch
        out.append(q)
    return out


def query_line(qid: str, query: str, u: Unit, kind: str, anchor: str | None = None) -> dict[str, Any]:
    """One query-set line; ``evidence`` says where the answer is (for a screencast slide: spoken
    as well when the phrase, or the paraphrase's anchor, is in the narration; else only on screen)."""
    evidence = EVIDENCE.get(u.channel)
    if u.channel == "video":
        said = f" {labels.normalise(anchor or query)} " in f" {labels.normalise(u.meta['narration'])} "
        evidence = "speech+pixels" if said else "pixels"
    line = {
        "qid": qid,
        "query": query,
        "relevant": [u.judgement()],
        "channel": u.channel,
        "kind": kind,
        "evidence": evidence,
    }
    if u.channel == "audio":
        line["recording"] = u.meta.get("recording", "clean")
    return line


def write_jsonl(path: Path, rows: list[dict[str, Any]], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_text(f"# {header}\n{body}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=default_out(),
        help="cache dir (default: $MMRAG_REALDOCS or $MMRAG_BENCH_DATA/evalset)",
    )
    ap.add_argument(
        "--update-committed", action="store_true", help="copy the query files into bench/realdocs/queries/"
    )
    ap.add_argument(
        "--queries-only", action="store_true", help="re-label from an existing units.jsonl (no media rebuild)"
    )
    ap.add_argument(
        "--support-only",
        action="store_true",
        help="rebuild only the support material (calls, rooms, lectures, their pages) of an existing build",
    )
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
        scripts: list[dict[str, Any]] = []
        steps = (build_pages, build_scanned, build_images, build_audio, build_video, build_support_pages)
        if args.support_only and units_path.exists():
            units = [
                u
                for u in (Unit(**json.loads(line)) for line in units_path.read_text().splitlines())
                if not is_support(u)
            ]
            for d in ("pages/support", "audio/calls", "audio/rooms", "audio/lectures"):
                shutil.rmtree(corpus / d, ignore_errors=True)
            steps = (build_support_pages,)
        else:
            shutil.rmtree(corpus, ignore_errors=True)
            units = []
        for step in (*steps, lambda r, c: build_support_audio(r, c, scripts)):
            got = step(root, corpus)
            print(
                f"{getattr(step, '__name__', 'build_support_audio')}: {len(got)} units",
                file=sys.stderr,
                flush=True,
            )
            units += got
        (out / "scripts.jsonl").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in scripts) + "\n"
        )
        units_path.write_text("\n".join(json.dumps(u.__dict__, ensure_ascii=False) for u in units) + "\n")
    normalised = {u.uid: labels.normalise(u.text) for u in units}
    queries = literal_queries(units, normalised)
    for path in paraphrase_files():
        queries += paraphrase_queries(units, normalised, path)
    seen: set[str] = set()
    if dup := [q["qid"] for q in queries if q["qid"] in seen or seen.add(q["qid"])]:
        print(f"error: query ids used twice: {', '.join(dup)}", file=sys.stderr)
        return 2
    dev, test = labels.split(queries, strata=STRATA)
    pkgs = " ".join(f"{p}={v}" for p, v in sorted(versions.items()))
    header = f"built by bench/realdocs/build.py from Debian packages {pkgs}; split: labels.split (dev share {labels.DEV_SHARE}, strata {'/'.join(STRATA)})"
    for name, rows in (("all", queries), ("dev", dev), ("test", test)):
        write_jsonl(out / "queries" / f"{name}.jsonl", rows, header)
        if args.update_committed:
            write_jsonl(COMMITTED / f"{name}.jsonl", rows, header)
    counts: dict[str, int] = {}
    for u in units:
        counts[u.channel] = counts.get(u.channel, 0) + 1
        if u.channel == "audio":
            key = f"audio:{u.meta.get('recording', 'clean')}"
            counts[key] = counts.get(key, 0) + 1
        elif is_support(u):
            counts[f"{u.channel}:support"] = counts.get(f"{u.channel}:support", 0) + 1
    by_recording: dict[str, dict[str, int]] = {}
    for split_name, rows in (("dev", dev), ("test", test)):
        for q in rows:
            if q["channel"] == "audio":
                key = f"{q['recording']}/{q['kind']}"
                by_recording.setdefault(key, {"dev": 0, "test": 0})[split_name] += 1
    by_uid = {(json.dumps(u.judgement(), sort_keys=True)): u for u in units}
    overlap = {
        kind: round(
            sum(
                labels.content_overlap(q["query"], by_uid[json.dumps(q["relevant"][0], sort_keys=True)].text)
                for q in qs
            )
            / len(qs),
            3,
        )
        for kind in ("literal", "paraphrase")
        if (qs := [q for q in queries if q["kind"] == kind])
    }
    manifest = {
        "packages": versions,
        "units": counts,
        "queries": len(queries),
        "dev": len(dev),
        "test": len(test),
        "audio_queries": by_recording,
        "content_word_overlap": overlap,  # share of a query's content words found in its target's text
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Turn one corpus document into catalog rows: rendered pages, image pages, transcript windows.

Every failure becomes a quarantine row with a specific reason; nothing here raises for bad
input, so one bad file never fails a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.config import AsrConfig, ConvertConfig, IngestConfig, MmragConfig
from mmrag_assets.errors import MmragError
from mmrag_assets.lib.ingest.names import openable_path, source_path

if TYPE_CHECKING:
    from mmrag_assets.lib.ingest.ocr_batch import OcrProgress
    from mmrag_assets.lib.store.runtime import Runtime

log = logging.getLogger(__name__)

# config sections whose values change what a document of each kind produces
FINGERPRINT_SECTIONS = {
    "pdf": ("ingest",),
    "image": ("ingest",),
    "audio": ("asr",),
    "video": ("ingest", "asr"),
    "office": ("ingest", "convert"),
    "text": ("ingest", "convert"),
}
OCR_KINDS = (
    "pdf",
    "image",
    "video",
    "office",
    "text",
)  # their rows also depend on the ocr section (less its runtime keys)
CONVERTED_KINDS = ("office", "text")  # turned into a PDF first, then ingested as one (OCR rules included)
# convert keys that change how a conversion runs, not what it produces: left out of the fingerprint
CONVERT_RUNTIME_KEYS = (
    "soffice",
    "timeout_s",
    "max_memory_mb",
    "isolate_network",
    "require_isolation",
    "batch_files",
)


@dataclass
class DocResult:
    doc: dict[str, Any]
    pages: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    ocr: list[dict[str, Any]] = field(default_factory=list)  # page_ocr rows: words and boxes
    seconds: float = 0.0
    ocr_stats: dict[str, Any] = field(default_factory=dict)  # images, cached, failed, engine_seconds
    convert_stats: dict[str, Any] = field(default_factory=dict)  # office/text: format, seconds to a PDF

    @property
    def status(self) -> str:
        return self.doc["status"]


# ingest keys that only videos read: a PDF's or an image's fingerprint leaves them out, so that
# tuning them re-ingests the videos alone (keys added since fingerprints were first stored; the
# older keyframe_* keys stay in every kind's hash, or every stored fingerprint would change)
VIDEO_ONLY_KEYS = ("keyframe_min_change",)
# ingest keys that only PDFs read (converted formats always spell ligatures out): left out of the
# other kinds' fingerprints, so that a change re-ingests the PDFs alone
PDF_ONLY_KEYS = ("pdf_ligatures",)


def fingerprint(cfg: MmragConfig, kind: str) -> str:
    leave_out = () if kind == "video" else tuple(f"ingest.{k}" for k in VIDEO_ONLY_KEYS)
    leave_out += () if kind == "pdf" else tuple(f"ingest.{k}" for k in PDF_ONLY_KEYS)
    leave_out += tuple(f"convert.{k}" for k in CONVERT_RUNTIME_KEYS)
    base = cfg.fingerprint(*FINGERPRINT_SECTIONS.get(kind, ("ingest",)), leave_out=leave_out)
    if kind not in OCR_KINDS:
        return base
    from mmrag_assets.lib.ingest.ocr_pages import RUNTIME_KEYS

    ocr = {k: v for k, v in cfg.to_dict()["ocr"].items() if k not in RUNTIME_KEYS}
    blob = json.dumps([base, ocr], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def segment_id(doc_id: str, start_s: float, end_s: float) -> str:
    """Content key of a transcript window: its time span, never its position."""
    return f"{doc_id}:t{round(start_s * 1000)}-{round(end_s * 1000)}"


def ingest_document(
    rt: Runtime,
    *,
    source: str,
    doc_id: str,
    kind: str,
    sha256: str,
    size: int,
    progress: Callable[[OcrProgress], None] | None = None,
    say: Callable[[str], None] | None = None,
    converted: Preconverted | None = None,
) -> DocResult:
    """Render/decode one document into rows, then OCR the pages, images and keyframes that the
    ``ocr`` config asks for (``lib/ingest/ocr_pages.py``), reporting each OCR batch to ``progress``
    and a big PDF's pages (rate, ETA, every few seconds) to ``say``. ``converted``: an Office file's
    conversion done ahead in a batch (:class:`OfficeConversions`), taken instead of converting it here."""
    cfg = rt.cfg
    if rt.corpus_remote:
        # an object store: the object, checked against the scan's hash, from this machine's bounded
        # cache (downloaded when missing) and pinned there while it is read; an HTML file's images
        # are fetched the same way (lib/ingest/objects.py). A changed or vanished object raises
        # objects.SourceChanged: not ingested this run, like a local file that moved after the scan.
        import contextlib

        from mmrag_assets.lib.ingest.objects import corpus_objects

        objects = corpus_objects(rt)
        with contextlib.ExitStack() as stack:
            got = stack.enter_context(objects.local_copy(source, sha256))
            resolve = objects.resolver(source, stack, cfg.convert.max_image_bytes)
            return _ingest_document(rt, got.path, source, doc_id, kind, sha256, size, progress, say, resolve)
    # sources are escaped names; a name that is not UTF-8 is read through a UTF-8 symlink (lib/ingest/names.py)
    with openable_path(source_path(rt.corpus_root, source)) as path:
        return _ingest_document(
            rt, path, source, doc_id, kind, sha256, size, progress, say, converted=converted
        )


def _ingest_document(
    rt: Runtime,
    path: Path,
    source: str,
    doc_id: str,
    kind: str,
    sha256: str,
    size: int,
    progress: Callable[[OcrProgress], None] | None,
    say: Callable[[str], None] | None,
    resolve: Callable[[str], Path | None] | None = None,
    *,
    converted: Preconverted | None = None,
) -> DocResult:
    t0 = time.perf_counter()
    cfg = rt.cfg
    # one folder per (content, settings): a re-render never overwrites images a live version serves
    fp = fingerprint(cfg, kind)
    out_dir = rt.pages_dir / doc_id / fp
    shutil.rmtree(out_dir, ignore_errors=True)  # leftovers of an interrupted attempt
    res = DocResult(
        doc={
            "doc_id": doc_id,
            "source": source,
            "kind": kind,
            "sha256": sha256,
            "size": size,
            "n_pages": 0,
            "n_segments": 0,
            "duration_s": None,
            "status": "ok",
            "fingerprint": fp,
        }
    )
    stage = {
        "pdf": "render",
        "image": "render",
        "audio": "asr",
        "video": "video",
        "office": "convert",
        "text": "convert",
    }.get(kind, "scan")
    work = None
    ocr_path, ocr_kind = path, kind
    try:
        if kind == "pdf":
            _pdf(rt, path, out_dir, res, say)
        elif kind in CONVERTED_KINDS:
            pre = converted if kind == "office" else None
            work = pre.work if pre is not None else Path(tempfile.mkdtemp(prefix="mmrag-convert-"))
            ocr_path, ocr_kind = _converted(rt, path, kind, out_dir, work, res, say, resolve, pre), "pdf"
        elif kind == "image":
            _image(rt, path, out_dir, res)
        elif kind == "audio":
            _transcribe(cfg.asr, path, res)
        elif kind == "video":
            _video(rt, path, out_dir, res)
        else:
            raise MmragError(f"kind {kind!r} is not ingestible")
    except MmragError as e:
        _quarantine(res, source, stage, str(e))
    except Exception as e:  # noqa: BLE001 - a decoder bug must not fail the whole run
        log.error("unexpected error ingesting %s:\n%s", source, traceback.format_exc())
        _quarantine(res, source, stage, f"unexpected {type(e).__name__} while decoding: {e}")
    if res.status != "quarantined" and (dup := _shared_key(res)):
        # the catalog's key: rows of one key would fail the shard's whole catalog write, not this file
        _quarantine(
            res,
            source,
            stage,
            f"two items of this file share the key {dup} (a bug of mmrag: please report it)",
        )
    try:
        if res.status != "quarantined" and res.pages:
            _ocr(rt, res, ocr_path, ocr_kind, progress)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    if res.status == "quarantined":
        shutil.rmtree(out_dir, ignore_errors=True)
        res.pages, res.segments, res.ocr = [], [], []
    for row in (*res.pages, *res.segments):
        row["text"] = catalog_text(row["text"])
    res.doc["n_pages"] = len(res.pages)
    res.doc["n_segments"] = len(res.segments)
    if res.pages and out_dir.is_dir():
        # an object-store root: the images are there before any catalog row names them (a storage
        # outage fails the step, to be retried, rather than quarantining a good document)
        rt.storage.put(out_dir.relative_to(rt.storage_root).as_posix())
    res.seconds = time.perf_counter() - t0
    return res


def _ocr(
    rt: Runtime,
    res: DocResult,
    path: Path,
    kind: str,
    progress: Callable[[OcrProgress], None] | None,
) -> None:
    """Fold OCR text into the page rows; a failure costs the OCR text, never the rendered pages."""
    from mmrag_assets.lib.ingest.ocr_pages import plan_from_config, set_text_sources

    plan = plan_from_config(rt.cfg.ocr)
    if plan is None:
        set_text_sources(res.pages)
        return
    from mmrag_assets.lib.ingest.ocr_batch import CatalogOcrCache
    from mmrag_assets.lib.ingest.ocr_pages import apply_ocr

    source = res.doc["source"]
    try:
        applied = apply_ocr(
            res.pages,
            kind=kind,
            doc_id=res.doc["doc_id"],
            source_path=path,
            storage_root=rt.storage_root,
            plan=plan,
            cache=CatalogOcrCache(rt.catalog),
            progress=progress,
        )
    except MmragError as e:  # the engine cannot start (models missing, bad settings)
        set_text_sources(res.pages)
        _quarantine(res, source, "ocr", str(e), whole=False)
        return
    except Exception as e:  # noqa: BLE001 - an OCR bug must not lose the rendered pages
        log.error("unexpected error in OCR of %s:\n%s", source, traceback.format_exc())
        set_text_sources(res.pages)
        _quarantine(res, source, "ocr", f"unexpected {type(e).__name__} during OCR: {e}", whole=False)
        return
    res.ocr = applied.ocr_rows
    _write_boxes(rt.storage_root, res)
    s = applied.stats
    res.ocr_stats = {
        "images": s.images,
        "cached": s.cached,
        "failed": s.failed,
        "engine_seconds": round(s.engine_seconds, 3),
    }
    for reason in applied.reasons:
        _quarantine(res, source, "ocr", reason, whole=False)


def _write_boxes(storage_root: Path, res: DocResult) -> None:
    """Each OCRed page's word boxes beside its image, for the search page (``ocr_boxes.py``)."""
    from mmrag_assets.lib.store.ocr_boxes import write_boxes

    image_of = {row["item_id"]: row["image_path"] for row in res.pages}
    for o in res.ocr:
        if image_of.get(o["item_id"]):
            write_boxes(
                storage_root / image_of[o["item_id"]], o["width"], o["height"], json.loads(o["lines"])
            )


# C0 controls but tab, newline and carriage return, DEL, and lone UTF-16 surrogates
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def catalog_text(text: str) -> str:
    """A page's or segment's text as the catalog and the index keep it: control characters (a PDF
    whose font maps glyphs to U+0000 gives a text layer with NULs) become spaces, and a lone
    surrogate (a broken ToUnicode map) becomes U+FFFD. PostgreSQL refuses a NUL in a text column and
    no UTF-8 encoder takes a lone surrogate: either failed the catalog write of the whole shard, every
    other file of it included (``catalog=postgres``)."""
    return _SURROGATE.sub("\ufffd", _NOT_TEXT.sub(" ", text))


def _shared_key(res: DocResult) -> str | None:
    """An ``item_id`` that two of the document's pages or segments share, or None."""
    seen: set[str] = set()
    for row in (*res.pages, *res.segments):
        if row["item_id"] in seen:
            return row["item_id"]
        seen.add(row["item_id"])
    return None


def _quarantine(res: DocResult, source: str, stage: str, reason: str, *, whole: bool = True) -> None:
    res.quarantine.append({"source": source, "stage": stage, "reason": reason})
    if whole:
        res.doc["status"] = "quarantined"
    elif res.doc["status"] == "ok":
        res.doc["status"] = "partial"


def _page_row(root: Path, doc_id: str, rp: Any, modality: str, item_id: str) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "doc_id": doc_id,
        "page": rp.page,
        "modality": modality,
        "image_path": Path(rp.image_path).relative_to(root).as_posix(),
        "thumb_path": Path(rp.thumb_path).relative_to(root).as_posix() if rp.thumb_path else None,
        "width": rp.width,
        "height": rp.height,
        "text": rp.text or "",
        "t_s": rp.t_s,
    }


def _image_kwargs(i: IngestConfig) -> dict[str, Any]:
    return {"image_format": i.image_format, "jpeg_quality": i.jpeg_quality, "thumbnail_px": i.thumbnail_px}


def _pdf(
    rt: Runtime,
    path: Path,
    out_dir: Path,
    res: DocResult,
    say: Callable[[str], None] | None,
    *,
    ligatures: bool | None = None,
) -> None:
    """``ligatures``: keep ligature glyphs in the text layer (default: ``ingest.pdf_ligatures``)."""
    from mmrag_assets.lib.ingest.render import render_pdf
    from mmrag_assets.lib.progress import page_counter

    i = rt.cfg.ingest
    r = render_pdf(
        path,
        out_dir,
        dpi=i.dpi,
        max_pages=i.max_pages,
        target_pixels=i.image_target_pixels,
        **_image_kwargs(i),
        on_page=page_counter("rendered", say, unit="pages", detail=res.doc["source"]) if say else None,
        ligatures=i.pdf_ligatures if ligatures is None else ligatures,
    )
    doc_id = res.doc["doc_id"]
    res.pages = [_page_row(rt.storage_root, doc_id, p, "page", f"{doc_id}:{p.page}") for p in r.pages]
    for w in r.warnings:
        _quarantine(res, res.doc["source"], "render", w, whole=False)


def _converted(
    rt: Runtime,
    path: Path,
    kind: str,
    out_dir: Path,
    work: Path,
    res: DocResult,
    say: Callable[[str], None] | None,
    resolve: Callable[[str], Path | None] | None = None,
    pre: Preconverted | None = None,
) -> Path:
    """An Office file through LibreOffice (or its batch conversion ``pre``), a text format through PyMuPDF's layout, into a PDF in
    ``work``, then ingested as a PDF; slide notes and clipped sheet cells join their page's text.
    Returns the PDF (OCR reads its embedded images by the same rules as any PDF's)."""
    from mmrag_assets.lib.ingest.convert_checks import check_container
    from mmrag_assets.lib.ingest.sniff import sniff_file

    if pre is not None:  # sniffed, checked and converted in its batch
        if isinstance(pre.result, MmragError):
            raise pre.result
        conv = pre.result
        res.convert_stats = {"format": pre.fmt, "seconds": round(conv.seconds, 3), "batched": True}
        return _ingest_pdf(rt, conv.pdf, out_dir, res, say, conv.extra_text, conv.notes)
    sniffed = sniff_file(path)  # the manifest stores the kind; the exact format is read again here
    if sniffed.kind != kind:
        raise MmragError(sniffed.reason or f"the file is now {sniffed.kind}, not {kind}: run the scan again")
    cfg = rt.cfg
    fmt, c = sniffed.detail, cfg.convert
    extra: dict[int, str] = {}
    t0 = time.perf_counter()
    if kind == "office" or fmt == "epub":
        findings = check_container(
            path,
            fmt,
            max_unpacked_bytes=c.max_unpacked_bytes,
            max_ratio=c.max_ratio,
            max_sheet_cells=c.max_sheet_cells,
        )
        notes = list(findings.notes)
    if kind == "office":
        from mmrag_assets.lib.ingest.convert_office import convert_office

        conv = convert_office(path, fmt, work, c, findings=findings)
        pdf, extra, notes = conv.pdf, conv.extra_text, conv.notes
    else:
        from mmrag_assets.lib.ingest.convert_text import layout_text

        laid = layout_text(
            path,
            fmt,
            work / "document.pdf",
            c,
            corpus_root=rt.corpus_root,
            max_pages=cfg.ingest.max_pages,
            resolve=resolve,
        )
        pdf, notes = laid.pdf, (notes if fmt == "epub" else []) + laid.notes
    res.convert_stats = {"format": fmt, "seconds": round(time.perf_counter() - t0, 3)}
    return _ingest_pdf(rt, pdf, out_dir, res, say, extra, notes)


def _ingest_pdf(
    rt: Runtime,
    pdf: Path,
    out_dir: Path,
    res: DocResult,
    say: Callable[[str], None] | None,
    extra: dict[int, str],
    notes: list[str],
) -> Path:
    """A converted document's PDF ingested as one; slide notes and clipped sheet cells join their page's text."""
    _pdf(rt, pdf, out_dir, res, say, ligatures=False)
    for row in res.pages:
        if more := extra.get(row["page"]):
            row["text"] = f"{row['text']}\n\n{more}".strip()
    for note in notes:
        _quarantine(res, res.doc["source"], "convert", note, whole=False)
    return pdf


@dataclass
class Preconverted:
    """An Office file converted in a batch: its work folder (removed once the document is ingested),
    sniffed format and conversion (or the error that quarantines it)."""

    work: Path
    fmt: str
    result: Any  # convert_office.Converted | MmragError


class OfficeConversions:
    """The Office files among a run's documents, converted ahead in batches as the ingest loop reaches
    them: asked for one, it converts it with up to ``convert.batch_files - 1`` more of the same kind
    (writer, impress, calc) that come after it, in one LibreOffice (``convert_office_batch``). Local
    corpora only (an object store's files are downloaded one at a time); files whose sniff or container
    check fails are left to :func:`ingest_document`, which quarantines them with the reason."""

    def __init__(self, convert: ConvertConfig, corpus_root: Path | None, entries: list[Any]) -> None:
        """``corpus_root``: the local corpus folder (None: an object store's corpus, not batched)."""
        from mmrag_assets.lib.ingest.convert_office import BatchStats

        self.convert, self.corpus_root = convert, corpus_root
        on = int(convert.batch_files) > 1 and corpus_root is not None
        self.queue = [e for e in entries if e.kind == "office"] if on else []
        self.ready: dict[str, Preconverted] = {}
        self.stats = BatchStats()

    def take(self, doc_id: str) -> Preconverted | None:
        """``doc_id``'s conversion (made now, with its batch, unless made already), or None: convert it alone."""
        if doc_id not in self.ready:
            self._convert_from(doc_id)
        return self.ready.pop(doc_id, None)

    def close(self) -> None:
        for pre in self.ready.values():
            shutil.rmtree(pre.work, ignore_errors=True)
        self.ready.clear()

    def _convert_from(self, doc_id: str) -> None:
        import contextlib

        from mmrag_assets.lib.ingest.convert_checks import check_container
        from mmrag_assets.lib.ingest.convert_office import _FILTERS, OfficeJob, convert_office_batch
        from mmrag_assets.lib.ingest.sniff import sniff_file

        pos = next((i for i, e in enumerate(self.queue) if e.doc_id == doc_id), None)
        if pos is None:
            return
        c, family, picked, jobs, keep = self.convert, None, [], [], []
        with contextlib.ExitStack() as stack:
            for e in self.queue[pos:]:
                if len(jobs) >= int(c.batch_files):
                    break
                try:
                    path = stack.enter_context(openable_path(source_path(self.corpus_root, e.source)))
                    sniffed = sniff_file(path)
                    kind_of = _FILTERS.get(sniffed.detail) if sniffed.kind == "office" else None
                    if kind_of is None or family not in (None, kind_of):
                        raise MmragError("not an Office file of this batch's kind")
                    findings = check_container(path, sniffed.detail, max_unpacked_bytes=c.max_unpacked_bytes,
                                               max_ratio=c.max_ratio, max_sheet_cells=c.max_sheet_cells)  # fmt: skip
                except (MmragError, OSError):
                    if e.doc_id == doc_id:
                        self.queue.pop(pos)
                        return  # converted alone, which says why it fails
                    continue
                family = kind_of
                work = Path(tempfile.mkdtemp(prefix="mmrag-convert-"))
                jobs.append(OfficeJob(path, sniffed.detail, work, findings))
                picked.append(e)
            results = convert_office_batch(jobs, c, stats=self.stats)
        for e, job, r in zip(picked, jobs, results, strict=True):
            self.ready[e.doc_id] = Preconverted(job.work, job.fmt, r)
            keep.append(e.doc_id)
        done = set(keep)
        self.queue = [e for e in self.queue if e.doc_id not in done]


def _image(rt: Runtime, path: Path, out_dir: Path, res: DocResult) -> None:
    from mmrag_assets.lib.ingest.render import normalise_image

    i = rt.cfg.ingest
    p = normalise_image(
        path,
        out_dir,
        max_source_pixels=i.max_image_pixels,
        target_pixels=i.image_target_pixels,
        **_image_kwargs(i),
    )
    doc_id = res.doc["doc_id"]
    res.pages = [_page_row(rt.storage_root, doc_id, p, "image", f"{doc_id}:1")]


def _transcribe(asr: AsrConfig, path: Path, res: DocResult) -> None:
    from mmrag_assets.lib.ingest.asr import transcribe, window_words

    tr = transcribe(path, asr)
    res.doc["duration_s"] = tr.duration_s
    doc_id = res.doc["doc_id"]
    res.segments = [
        {
            "item_id": segment_id(doc_id, s.start_s, s.end_s),
            "doc_id": doc_id,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "text": s.text,
            "n_words": s.n_words,
        }
        for s in window_words(tr.words, asr.window_s, asr.overlap_s)
    ]


def _video(rt: Runtime, path: Path, out_dir: Path, res: DocResult) -> None:
    from mmrag_assets.lib.ingest.video import probe_media, sample_keyframes

    info = probe_media(path)
    res.doc["duration_s"] = info.duration_s
    doc_id = res.doc["doc_id"]
    i = rt.cfg.ingest
    if info.has_video:
        frames = sample_keyframes(
            path,
            out_dir,
            interval_s=i.keyframe_interval_s,
            max_keyframes=i.max_keyframes,
            min_change=i.keyframe_min_change,
            target_pixels=i.image_target_pixels,
            **_image_kwargs(i),
        )
        res.pages = [
            _page_row(rt.storage_root, doc_id, f, "image", f"{doc_id}:k{round((f.t_s or 0) * 1000)}")
            for f in frames
        ]
    if info.has_audio:
        _transcribe(rt.cfg.asr, path, res)
        res.doc["duration_s"] = info.duration_s

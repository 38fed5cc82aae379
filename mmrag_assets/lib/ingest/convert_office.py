"""Office and OpenDocument files to PDF with LibreOffice headless, in sandboxed processes.

``convert_office`` converts one file in one process; ``convert_office_batch`` converts several files
of the same kind (same export filter) in one process, which saves LibreOffice's start (~1 s of CPU
a file): files a failed batch (a timeout, a crash, a file it could not load) left without a complete
PDF are then converted one by one, so a hostile file quarantines itself and no other.

Each LibreOffice process gets:
- its own fresh profile directory (``-env:UserInstallation``), written with macros disabled
  (security level "very high", macro execution off) and links never updated, so two conversions
  at once never share a profile and no document can leave state for the next;
- a copy of the file under a neutral name in a private work folder (LibreOffice writes lock files
  beside what it opens: never into the corpus);
- an empty network namespace (``unshare -rn``: not even loopback) where the kernel allows one,
  so nothing a document refers to can be fetched;
- an address-space cap (RLIMIT_AS) and a timeout, after which its whole process group is killed
  (a batch: ``timeout_s`` without a new finished PDF, so every file has ``timeout_s`` of its own).

Presentations are exported with their notes pages (``ExportNotesPages``), which are cut off the
PDF and become the text of their slide's page; spreadsheets one page per sheet
(``SinglePageSheets``), with the sheet's name and the cell strings the printed page clipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from mmrag_assets.errors import CorruptInput, MmragError, UnsupportedInput

INSTALL_HINT = (
    "install LibreOffice (Debian/Ubuntu: `apt-get install libreoffice-core libreoffice-writer "
    "libreoffice-impress libreoffice-calc`) or set convert.soffice=PATH"
)
_FILTERS = {
    "docx": "writer_pdf_Export",
    "doc": "writer_pdf_Export",
    "odt": "writer_pdf_Export",
    "rtf": "writer_pdf_Export",
    "pptx": "impress_pdf_Export",
    "ppt": "impress_pdf_Export",
    "odp": "impress_pdf_Export",
    "xlsx": "calc_pdf_Export",
    "xls": "calc_pdf_Export",
    "ods": "calc_pdf_Export",
}
PRESENTATIONS = ("pptx", "ppt", "odp")
SPREADSHEETS = ("xlsx", "xls", "ods")

# Macro security 3 = "very high" (only trusted locations, none configured); Update/Link 1 = never
# (Calc's ScLkUpdMode and Writer's link update mode both read 1 as never).
_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update"><prop oor:name="Link" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update"><prop oor:name="Link" oor:op="fuse"><value>1</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="UseSystemFileDialog" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""


@dataclass
class Converted:
    pdf: Path  # one page per page, slide or sheet
    extra_text: dict[int, str] = field(default_factory=dict)  # page -> speaker notes / sheet text
    notes: list[str] = field(default_factory=list)  # reasons for the quarantine table (the document is kept)
    seconds: float = 0.0  # LibreOffice's wall time
    isolated: bool = False  # ran in its own network namespace


def find_soffice(configured: str | None) -> str:
    """The LibreOffice executable, or ``UnsupportedInput`` saying what to install."""
    if configured:
        p = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if p is None:
            raise UnsupportedInput(f"convert.soffice={configured} does not exist: {INSTALL_HINT}")
        return p
    for name in ("soffice", "libreoffice"):
        if p := shutil.which(name):
            return p
    raise UnsupportedInput(
        f"Office/OpenDocument files need LibreOffice, which is not installed: {INSTALL_HINT}"
    )


@cache
def network_namespace_available() -> bool:
    """``unshare -rn`` works here (user + network namespace; no root needed where user namespaces are on)."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        return (
            subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10, check=False).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


@dataclass
class OfficeJob:
    """One file of a batch: ``src`` (sniffed format ``fmt``) converted into ``work/out/document.pdf``."""

    src: Path
    fmt: str
    work: Path
    findings: Any  # convert_checks.check_container's findings


@dataclass
class BatchStats:
    processes: int = 0  # LibreOffice processes started (batches + one-by-one retries)
    batches: int = 0
    retried: int = 0  # files converted alone after their batch failed


def convert_office(src: Path, fmt: str, work: Path, cfg: Any, *, findings: Any) -> Converted:
    """Convert ``src`` (format ``fmt`` as sniffed) into ``work/out/document.pdf``; ``cfg`` is the
    ``convert`` config section, ``findings`` what ``convert_checks.check_container`` found."""
    exe, isolated = _setup(cfg)
    doc, outbox = _sandbox(work, [(src, fmt)])[0], work / "out"
    t0 = time.perf_counter()
    out, err, code = _run(_argv(exe, work, fmt, cfg, [doc], isolated), work, cfg.timeout_s, cfg.max_memory_mb)
    return _result(
        outbox / f"{doc.stem}.pdf", fmt, cfg, findings, time.perf_counter() - t0, isolated, err or out, code
    )


def convert_office_batch(
    jobs: Sequence[OfficeJob], cfg: Any, *, stats: BatchStats | None = None
) -> list[Converted | MmragError]:
    """Each job's conversion (or the error that quarantines it), in order: the files of one export
    filter (writer, impress, calc) go through one LibreOffice process per ``cfg.batch_files``;
    whatever a batch left unconverted (its process timed out, crashed or could not load a file) is
    converted alone by :func:`convert_office`. ``UnsupportedInput`` (no LibreOffice, no namespace
    where one is required) is every job's error."""
    stats = stats if stats is not None else BatchStats()
    out: list[Converted | MmragError | None] = [None] * len(jobs)
    try:
        exe, isolated = _setup(cfg)
    except UnsupportedInput as e:
        return [e] * len(jobs)
    groups: dict[tuple[str, bool], list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault((_FILTERS[j.fmt], j.fmt in PRESENTATIONS), []).append(i)
    size = max(1, int(getattr(cfg, "batch_files", 1)))
    for idx in groups.values():
        for s in range(0, len(idx), size):
            part = idx[s : s + size]
            if len(part) > 1:
                stats.processes += 1
                stats.batches += 1
                for i, res in zip(part, _batch([jobs[i] for i in part], cfg, exe, isolated), strict=True):
                    out[i] = res
    for i, j in enumerate(jobs):
        if out[i] is None:  # alone in its group, or left over by a failed batch
            stats.processes += 1
            stats.retried += len(groups[(_FILTERS[j.fmt], j.fmt in PRESENTATIONS)]) > 1
            try:
                out[i] = convert_office(j.src, j.fmt, j.work, cfg, findings=j.findings)
            except MmragError as e:
                out[i] = e
    return [r for r in out if r is not None]


def _batch(jobs: list[OfficeJob], cfg: Any, exe: str, isolated: bool) -> list[Converted | None]:
    """One LibreOffice over ``jobs`` (one export filter) in a sandbox of its own; None for a file
    without a complete PDF afterwards (to be converted alone)."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="mmrag-convert-batch-"))
    try:
        docs = _sandbox(work, [(j.src, j.fmt) for j in jobs])
        t0 = time.perf_counter()
        try:
            _run(_argv(exe, work, jobs[0].fmt, cfg, docs, isolated), work, cfg.timeout_s, cfg.max_memory_mb,
                 watch=work / "out", n_files=len(docs))  # fmt: skip
        except CorruptInput:
            pass  # timed out: what it finished is kept, the rest converted alone
        seconds = (time.perf_counter() - t0) / len(jobs)
        res: list[Converted | None] = []
        for j, doc in zip(jobs, docs, strict=True):
            pdf = work / "out" / f"{doc.stem}.pdf"
            if not _complete_pdf(pdf):
                res.append(None)
                continue
            (j.work / "out").mkdir(parents=True, exist_ok=True)
            mine = j.work / "out" / "document.pdf"
            shutil.move(pdf, mine)
            try:
                res.append(_result(mine, j.fmt, cfg, j.findings, seconds, isolated, "", 0))
            except MmragError:
                res.append(None)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _complete_pdf(pdf: Path) -> bool:
    """A PDF LibreOffice finished writing (ends with ``%%EOF``; a killed export leaves less)."""
    try:
        size = pdf.stat().st_size
        with pdf.open("rb") as f:
            f.seek(max(0, size - 64))
            return size > 0 and b"%%EOF" in f.read()
    except OSError:
        return False


def _setup(cfg: Any) -> tuple[str, bool]:
    exe = find_soffice(cfg.soffice)
    isolated = bool(cfg.isolate_network) and network_namespace_available()
    if cfg.isolate_network and not isolated and cfg.require_isolation:
        raise UnsupportedInput(
            "convert.require_isolation is set but no network namespace can be made here (`unshare -rn` "
            "fails: user namespaces are off); enable them or set convert.require_isolation=false"
        )
    return exe, isolated


def _sandbox(work: Path, files: list[tuple[Path, str]]) -> list[Path]:
    """A fresh profile (macros off, links never updated) and copies of ``files`` under neutral
    names in ``work/in`` (``document.<fmt>`` alone, ``d<i>.<fmt>`` in a batch)."""
    profile, inbox = work / "profile", work / "in"
    for d in (profile / "user", inbox, work / "out", work / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    (profile / "user" / "registrymodifications.xcu").write_text(_PROFILE)
    docs = []
    for i, (src, fmt) in enumerate(files):
        doc = inbox / (f"document.{fmt}" if len(files) == 1 else f"d{i}.{fmt}")
        shutil.copyfile(src, doc)
        docs.append(doc)
    return docs


def _argv(exe: str, work: Path, fmt: str, cfg: Any, docs: list[Path], isolated: bool) -> list[str]:
    options: dict[str, Any] = {}
    if fmt in PRESENTATIONS and cfg.notes:
        options["ExportNotesPages"] = {"type": "boolean", "value": "true"}
    if fmt in SPREADSHEETS:
        options["SinglePageSheets"] = {"type": "boolean", "value": "true"}
    filter_name = _FILTERS[fmt]
    argv = [
        exe, f"-env:UserInstallation={(work / 'profile').resolve().as_uri()}", "--headless", "--invisible", "--nologo",
        "--norestore", "--nolockcheck", "--nodefault", "--nofirststartwizard",
        "--convert-to", f"pdf:{filter_name}:{json.dumps(options)}" if options else f"pdf:{filter_name}",
        "--outdir", str(work / "out"), *map(str, docs),
    ]  # fmt: skip
    if isolated:
        argv = [shutil.which("unshare") or "unshare", "-rn", *argv]
    return argv


def _result(
    pdf: Path, fmt: str, cfg: Any, findings: Any, seconds: float, isolated: bool, said: str, code: int | None
) -> Converted:
    if not pdf.is_file() or pdf.stat().st_size == 0:
        said = _last_line(said) or f"exit status {code}"
        raise CorruptInput(
            f"LibreOffice could not convert this {fmt} file ({said}): it is damaged, password-protected or "
            "not what its extension says; open and re-save it"
        )
    if pdf.name != "document.pdf":
        pdf = pdf.rename(pdf.with_name("document.pdf"))
    res = Converted(pdf, notes=list(findings.notes), seconds=seconds, isolated=isolated)
    if fmt in PRESENTATIONS and cfg.notes:
        _split_notes(res, findings.slides)
    elif fmt in SPREADSHEETS:
        _sheet_text(res, findings.sheets)
    return res


def _run(
    argv: list[str],
    work: Path,
    timeout_s: float,
    max_memory_mb: int,
    *,
    watch: Path | None = None,
    n_files: int = 1,
) -> tuple[str, str, int]:
    """Run ``argv`` capped and sandboxed; killed after ``timeout_s`` (with ``watch``: after
    ``timeout_s`` in which no new file appeared in ``watch``, and ``n_files * timeout_s`` in all)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "TMPDIR": str(work / "tmp"),
        "LANG": "C.UTF-8",
        "SAL_USE_VCLPLUGIN": "svp",  # no display, no proxy variables, no session bus
    }
    cap = max_memory_mb * 1024 * 1024
    # util-linux's prlimit sets the caps in the child (inherited by soffice.bin); a preexec_fn
    # would do the same but is unsafe in a process with threads (Dagster's, the OCR pool's)
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise UnsupportedInput(
            "`prlimit` (util-linux) is missing: it caps LibreOffice's memory; install util-linux"
        )
    argv = [prlimit, f"--as={cap}", "--core=0", "--", *argv]
    logs = work / "tmp"
    logs.mkdir(parents=True, exist_ok=True)
    # output to files, not pipes: a batch is polled, and a full pipe would block LibreOffice
    with (logs / "stdout.txt").open("w+") as so, (logs / "stderr.txt").open("w+") as se:
        try:
            p = subprocess.Popen(
                argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=so, stderr=se, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            raise UnsupportedInput(f"LibreOffice could not be started ({e}): {INSTALL_HINT}") from e
        try:
            _wait(p, timeout_s, watch, n_files)
        except subprocess.TimeoutExpired:
            raise CorruptInput(
                f"LibreOffice did not finish converting within convert.timeout_s={timeout_s:g} s and was killed "
                "(a file that makes it hang, or too big for the timeout: raise convert.timeout_s)"
            ) from None
        finally:
            _kill_group(p)  # a converter that forked something must leave nothing behind
        so.seek(0)
        se.seek(0)
        return so.read(), se.read(), p.returncode


def _wait(p: subprocess.Popen, timeout_s: float, watch: Path | None, n_files: int) -> None:
    if watch is None:
        p.wait(timeout=timeout_s)
        return
    start = last = time.monotonic()
    seen = 0
    while True:
        try:
            p.wait(timeout=min(0.25, timeout_s))
            return
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        done = sum(1 for _ in watch.iterdir()) if watch.is_dir() else 0
        if done != seen:
            seen, last = done, now
        if now - last > timeout_s or now - start > n_files * timeout_s:
            raise subprocess.TimeoutExpired(p.args, timeout_s)


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if p.returncode is None:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and "javaldx" not in ln]
    return lines[-1][:300] if lines else ""


def _split_notes(res: Converted, slides: int | None) -> None:
    """Cut the notes pages (the second half of the export) off; their text, less what the slide's
    own page says (a notes page shows the slide too), becomes that slide's extra text."""
    import pymupdf

    with pymupdf.open(res.pdf) as doc:
        total = doc.page_count
        n = slides if slides and 2 * slides == total else (total // 2 if total % 2 == 0 else None)
        if not n:
            res.notes.append(f"speaker notes left out: {total} pages for an unknown number of slides")
            return
        for i in range(n):
            seen = {ln.strip() for ln in doc[i].get_text().splitlines() if ln.strip()}
            lines = [
                ln.strip()
                for ln in doc[n + i].get_text().splitlines()
                if ln.strip() and ln.strip() not in seen
            ]
            lines = [ln for ln in lines if not ln.isdigit()]  # the page number field of the notes master
            if lines:
                res.extra_text[i + 1] = "Speaker notes:\n" + "\n".join(lines)
        doc.select(list(range(n)))
        slides_pdf = res.pdf.with_name("slides.pdf")
        doc.save(slides_pdf, garbage=1)
    res.pdf = slides_pdf


def _sheet_text(res: Converted, sheets: list[Any]) -> None:
    """Page i is the i-th printed sheet: its name, and the cell strings its text layer lacks."""
    import pymupdf

    visible = [s for s in sheets if not s.hidden]
    with pymupdf.open(res.pdf) as doc:
        if not visible or doc.page_count != len(visible):
            return  # an .xls (not read here), or LibreOffice left a sheet out: the pages stand alone
        for i, sheet in enumerate(visible):
            layer = doc[i].get_text()
            missing = [s for s in dict.fromkeys(sheet.strings) if s.strip() and s not in layer]
            res.extra_text[i + 1] = "\n".join([f"Sheet: {sheet.name}", *missing])

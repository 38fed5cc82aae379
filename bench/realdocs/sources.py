"""Which Debian documentation packages the evaluation corpus is made from, and fetching them.

Kept out on purpose: the R, gnuplot, Asymptote and Octave documentation (held back for an
independent check of the same targets) and the Python, PostgreSQL, GNU and Debian reference
manuals (the 100k-chunk index benchmark uses them; independent data keeps both honest).
``sqlite3-doc`` is the exception: the support material reads its FAQ and renders a few of its pages,
which the real-text benchmark also chunks (it measures speed and recall against exact search, not
these labels).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

PACKAGES = (
    "doxygen-doc",
    "scons-doc",
    "dblatex-doc",
    "graphviz-doc",
    "pari-doc",
    "zsh-doc",
    "git-doc",
    "wireshark-doc",
)
# the support material: FAQs read as support calls and in noisy rooms, manual chapters read as
# lectures, and long manuals on the same topics as page distractors
SUPPORT_PACKAGES = ("sqlite3-doc", "debian-faq", "privoxy", "ffmpeg-doc", "fetchmail", "aptitude-doc-en")
ALL_PACKAGES = PACKAGES + SUPPORT_PACKAGES

# channel -> [(corpus name, path inside the unpacked packages)]; .gz files are decompressed
PAGE_DOCS = [
    ("pages/doxygen_manual.pdf", "usr/share/doc/doxygen/doxygen_manual.pdf"),
    ("pages/scons-user.pdf", "usr/share/doc/scons/PDF/scons-user.pdf.gz"),
    ("pages/dblatex-manual.pdf", "usr/share/doc/dblatex/manual.pdf.gz"),
    ("pages/graphviz-dotguide.pdf", "usr/share/doc/graphviz/pdf/dotguide.pdf.gz"),
    ("pages/graphviz-libguide.pdf", "usr/share/doc/graphviz/pdf/libguide.pdf.gz"),
]
SCANNED_DOCS = [  # rasterised to image-only PDFs
    ("scanned/pari-tutorial.pdf", "usr/share/pari/doc/tutorial.pdf"),
    ("scanned/pari-develop.pdf", "usr/share/pari/doc/develop.pdf"),
    ("scanned/dblatex-release-notes.pdf", "usr/share/doc/dblatex/release-notes.pdf.gz"),
]
REFCARDS = [  # reference-card panels: each page cut into columns x halves
    "usr/share/pari/doc/refcard.pdf",
    "usr/share/pari/doc/refcard-ell.pdf",
    "usr/share/pari/doc/refcard-nf.pdf",
    "usr/share/pari/doc/refcard-lfun.pdf",
    "usr/share/pari/doc/refcard-mf.pdf",
]
REGION_DOC = "usr/share/doc/zsh-common/zsh.pdf"  # page regions rendered as standalone screenshots
SCREENSHOTS_DIR = "usr/share/doc/wireshark/wsug_html_chunked/images"  # real screenshots (distractors)
SPEECH_HTML = [  # paragraphs read by espeak-ng
    "usr/share/doc/git-doc/user-manual.html",
    "usr/share/doc/git-doc/gitcore-tutorial.html",
]
SLIDE_DOCS = [  # half pages as screencast slides, narrated
    ("video/graphviz-neatoguide.mp4", "usr/share/doc/graphviz/pdf/neatoguide.pdf.gz"),
    ("video/pari-parallel.mp4", "usr/share/pari/doc/parallel.pdf"),
]


_DEB_FAQ = "usr/share/doc/debian/FAQ"
_PRIVOXY = "usr/share/doc/privoxy"
_APTITUDE = "usr/share/doc/aptitude/html/en"
_SQLITE = "usr/share/doc/sqlite3"
# FAQ name -> its HTML pages (questions and answers; recordings.jsonl names which are read)
FAQS = {
    "sqlite": [f"{_SQLITE}/faq.html"],
    "debian": [
        f"{_DEB_FAQ}/{c}.en.html"
        for c in ("pkg-basics", "pkgtools", "uptodate", "customizing", "software", "compatibility", "kernel")
    ],
    "privoxy": [
        f"{_PRIVOXY}/faq/{c}.html" for c in ("general", "installation", "configuration", "misc", "trouble")
    ],
    "ffmpeg": ["usr/share/doc/ffmpeg/manual/faq.html"],
    "fetchmail": ["usr/share/doc/fetchmail/fetchmail-FAQ.html"],
}
# lecture name -> the manual pages read aloud, in order (not among the page distractors below)
LECTURES = {
    "aptitude-tutorial": [
        f"{_APTITUDE}/ch01.html",
        *(f"{_APTITUDE}/ch01s01s0{i}.html" for i in range(1, 6)),
        f"{_APTITUDE}/ch01s02.html",
    ],
    "sqlite-atomic-commit": [f"{_SQLITE}/atomiccommit.html"],
}
# page distractors: HTML manuals on the FAQs' topics, rendered to PDF (corpus name, HTML pages)
SUPPORT_PAGES = [
    (f"pages/support/sqlite-{n}.pdf", [f"{_SQLITE}/{n}.html"])
    # on the FAQ's topics, but not its answers: autoinc, lang_vacuum, foreignkeys and lang_altertable
    # say what the calls' answers say, so a page would be as right as the recording (left out)
    for n in (
        "lockingv3",
        "lang_transaction",
        "wal",
        "datatype3",
        "lang_createtable",
        "howtocorrupt",
        "isolation",
        "quirks",
        "threadsafe",
        "limits",
        "lang_expr",
        "cli",
        "lang_datefunc",
    )
] + [
    (
        "pages/support/aptitude-reference.pdf",
        [f"{_APTITUDE}/{c}.html" for c in ("ch02", *(f"ch02s0{i}" for i in range(1, 7)), "ch03", "ch04")],
    ),
    (
        "pages/support/privoxy-user-manual.pdf",
        [
            f"{_PRIVOXY}/user-manual/{c}.html"
            for c in (
                "introduction",
                "installation",
                "whatsnew",
                "quickstart",
                "startup",
                "configuration",
                "config",
            )
        ],
    ),
    ("pages/support/ffmpeg.pdf", ["usr/share/doc/ffmpeg/manual/ffmpeg.html"]),
    (
        "pages/support/fetchmail-notes.pdf",
        ["usr/share/doc/fetchmail/fetchmail-features.html", "usr/share/doc/fetchmail/design-notes.html"],
    ),
]
BABBLE_HTML = f"{_SQLITE}/whentouse.html"  # read by the background talkers of a noisy room, time-reversed


class FetchError(RuntimeError):
    pass


def fetch(cache: Path) -> tuple[Path, dict[str, str]]:
    """Download the packages with ``apt-get download`` (once) and unpack them; returns the
    unpacked root and package -> version."""
    debs, root = cache / "debs", cache / "unpacked"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in ALL_PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        if shutil.which("apt-get") is None:
            raise FetchError("apt-get not found: the corpus is built from Debian documentation packages")
        r = subprocess.run(
            ["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            raise FetchError(
                f"apt-get download {' '.join(missing)} failed: {r.stderr.strip()[-400:]} (run apt-get update?)"
            )
    versions = {}
    for p in ALL_PACKAGES:
        (deb,) = sorted(debs.glob(f"{p}_*.deb"))[-1:]
        versions[p] = deb.name.split("_")[1].replace("%3a", ":")
        marker = root / f".{deb.name}"
        if not marker.exists():
            root.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            marker.touch()
    return root, versions


def read_pdf_bytes(root: Path, rel: str) -> bytes:
    data = (root / rel).read_bytes()
    return gzip.decompress(data) if rel.endswith(".gz") else data

"""Which Debian documentation packages the evaluation corpus is made from, and fetching them.

Kept out on purpose: the R, gnuplot, Asymptote and Octave documentation (held back for an
independent check of the same targets) and the Python, PostgreSQL, GNU and Debian reference
manuals (the 100k-chunk index benchmark uses them; independent data keeps both honest).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

PACKAGES = ("doxygen-doc", "scons-doc", "dblatex-doc", "graphviz-doc", "pari-doc", "zsh-doc", "git-doc", "wireshark-doc")

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


class FetchError(RuntimeError):
    pass


def fetch(cache: Path) -> tuple[Path, dict[str, str]]:
    """Download the packages with ``apt-get download`` (once) and unpack them; returns the
    unpacked root and package -> version."""
    debs, root = cache / "debs", cache / "unpacked"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        if shutil.which("apt-get") is None:
            raise FetchError("apt-get not found: the corpus is built from Debian documentation packages")
        r = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise FetchError(f"apt-get download {' '.join(missing)} failed: {r.stderr.strip()[-400:]} (run apt-get update?)")
    versions = {}
    for p in PACKAGES:
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

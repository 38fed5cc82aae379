"""Scan the corpus: every file with size, mtime, sha256, sniffed kind and status.

Documents are keyed by content (``doc_id = sha256[:16]``), so renaming a file keeps its rows
and two copies of one file are one document. Symlinks are never followed out of the root. A file
is known by its escaped relative path (``names.escape_name``): any byte string a POSIX name can
hold is kept, losslessly, in a form every table and log line can store.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.ingest.names import escape_name
from mmrag_assets.lib.ingest.sniff import sniff_file

CHUNK = 1 << 20


@dataclass
class FileEntry:
    source: str  # relative to the corpus root, POSIX separators, escaped (lib/ingest/names.py)
    size: int
    mtime_ns: int
    kind: str  # pdf | image | audio | video | unsupported
    status: str  # ok | duplicate | quarantined
    reason: str | None = None
    sha256: str | None = None
    etag: str | None = None  # an object store's ETag (corpus.root=s3://...); None for a local file

    @property
    def doc_id(self) -> str | None:
        return self.sha256[:16] if self.sha256 else None

    def row(self) -> dict:
        return {**asdict(self), "doc_id": self.doc_id}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def scan_corpus(
    root: Path,
    *,
    max_file_bytes: int,
    ignore_hidden: bool = True,
    cache: Mapping[str, tuple[int, int, str, str]] | None = None,
) -> list[FileEntry]:
    """Walk ``root`` and classify every file. ``cache`` maps source -> (size, mtime_ns, sha256, kind)
    from a previous scan; unchanged files (same size and mtime) are not re-hashed."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"corpus.root={root} is not a directory: create it or pass corpus.root=PATH")
    real_root = root.resolve()
    cache = cache or {}
    entries: list[FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        if ignore_hidden:
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
        dirnames.sort()
        for name in list(dirnames):
            p = d / name
            # symlinked directories inside the root are reachable through their real path
            if p.is_symlink() and not _inside(p.resolve(), real_root):
                entries.append(
                    _bad(p, root, "symlinked directory points outside the corpus root (not followed)")
                )
        for name in sorted(filenames):
            if ignore_hidden and name.startswith("."):
                continue
            entries.append(_classify(d / name, root, real_root, max_file_bytes, cache))
    entries.sort(key=lambda e: e.source)
    mark_duplicates(entries)
    return entries


def _classify(p: Path, root: Path, real_root: Path, max_file_bytes: int, cache: Mapping) -> FileEntry:
    if p.is_symlink():
        target = p.resolve()
        if not target.exists():
            return _bad(p, root, "broken symlink")
        if not _inside(target, real_root):
            return _bad(p, root, "symlink points outside the corpus root (not followed)")
        rel_target = escape_name(target.relative_to(real_root).as_posix())
        return FileEntry(
            _rel(p, root), 0, 0, "unsupported", "duplicate", f"symlink to {rel_target} (indexed there)"
        )
    try:
        st = p.stat()
    except OSError as e:
        return _bad(p, root, f"cannot stat file: {e.strerror or e}")
    if not p.is_file():
        return _bad(p, root, "not a regular file")
    source = _rel(p, root)
    if st.st_size == 0:
        return FileEntry(source, 0, st.st_mtime_ns, "unsupported", "quarantined", "empty file (0 bytes)")
    if st.st_size > max_file_bytes:
        return FileEntry(
            source,
            st.st_size,
            st.st_mtime_ns,
            "unsupported",
            "quarantined",
            f"file is {st.st_size:,} bytes, over corpus.max_file_bytes={max_file_bytes:,}",
        )
    hit = cache.get(source)
    try:
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns and hit[2]:
            sha, kind, reason = hit[2], hit[3], None
        else:
            sniffed = sniff_file(p)
            kind, reason = sniffed.kind, sniffed.reason
            sha = sha256_file(p)
    except OSError as e:
        return FileEntry(
            source, st.st_size, st.st_mtime_ns, "unsupported", "quarantined", f"unreadable: {e.strerror or e}"
        )
    if kind == "unsupported":
        return FileEntry(source, st.st_size, st.st_mtime_ns, kind, "quarantined", reason, sha)
    return FileEntry(source, st.st_size, st.st_mtime_ns, kind, "ok", None, sha)


def mark_duplicates(entries: list[FileEntry]) -> None:
    first: dict[str, str] = {}
    for e in entries:
        if e.status != "ok":
            continue
        if e.doc_id in first:
            e.status, e.reason = "duplicate", f"same content as {first[e.doc_id]}"
        else:
            first[e.doc_id] = e.source


def documents(entries: list[FileEntry]) -> dict[str, FileEntry]:
    """doc_id -> the one file that represents it (status ok)."""
    return {e.doc_id: e for e in entries if e.status == "ok" and e.doc_id}


def cache_of(entries: list[FileEntry]) -> dict[str, tuple]:
    """source -> (size, mtime_ns, sha256, kind, etag): what the next scan reuses."""
    return {
        e.source: (e.size, e.mtime_ns, e.sha256, e.kind, e.etag)
        for e in entries
        if e.sha256 and e.status != "quarantined"
    }


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _rel(p: Path, root: Path) -> str:
    return escape_name(p.relative_to(root).as_posix())


def _bad(p: Path, root: Path, reason: str) -> FileEntry:
    return FileEntry(_rel(p, root), 0, 0, "unsupported", "quarantined", reason)

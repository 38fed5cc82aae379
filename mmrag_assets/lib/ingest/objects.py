"""A corpus in an object store (``corpus.root=s3://bucket/prefix``): listing, change detection and a
bounded local cache of the objects one machine reads.

- **Listing by object.** One recursive listing (``ListObjectsV2`` pages through
  ``pyarrow.fs.S3FileSystem``, the client the storage layer already speaks) gives every object's key,
  size and last-modified time. An object's ``source`` is its key below the prefix, escaped like a
  local name (``names.escape_name``), so catalog rows, results and logs read the same as for the same
  files on disk.
- **Change detection: size and mtime, then the ETag, then the content hash.** An object whose size and
  last-modified time equal the last manifest's is unchanged: no request. Otherwise, when the size
  is the same, one HEAD reads its ETag: the same ETag is the same bytes (an object uploaded again
  unchanged), no download. Anything else is downloaded once, streamed through sha256 into the cache,
  and sniffed there; the content hash decides (``doc_id``), as for a local file.
- **A bounded local cache.** Downloads land in ``<storage.cache_dir>/corpus/<bucket>/<prefix>/``,
  one folder per key named by a hash of the key (never by the key itself: a key may hold ``..``,
  a segment longer than any file system's name limit, or be both an object and a "folder" of
  others), with ``meta.json`` (key, size, mtime, ETag, sha256, kind). Each worker fetches only the
  objects of the documents it ingests. The least recently used entries are evicted past
  ``corpus.cache_bytes``; an entry in use (a shared ``flock`` on its lock file, held while a
  document is read) is never evicted, by this process or another on the machine.
- **Names.** What the local scanner skips (dot-files and dot-folders with ``corpus.ignore_hidden``)
  is skipped here by the same rule on every key segment; a key with an empty, ``.`` or ``..``
  segment, which no folder can hold, is quarantined with that reason. There are no symlinks in an
  object store.

Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import posixpath
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmrag_assets.errors import MmragError
from mmrag_assets.lib.ingest.names import escape_name, name_bytes
from mmrag_assets.lib.store.storage import Storage, StorageError
from mmrag_assets.roots import RootUri, cache_dir_of, parse_root

CHUNK = 1 << 20
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,16}")


class SourceChanged(MmragError):
    """The object is no longer what the scan hashed (``what``: ``"changed"`` or ``"vanished"``)."""

    def __init__(self, source: str, what: str) -> None:
        super().__init__(f"{source} {what} after the scan")
        self.source, self.what = source, what


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # below the prefix, exactly as the store names it
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Cached:
    path: Path  # the local copy (read it while the entry is pinned)
    sha256: str
    size: int
    mtime_ns: int
    etag: str | None
    downloaded: bool  # False: it was already in the cache


def key_of(source: str) -> str:
    """The object key (below the prefix) of a ``source``: escaped names turned back into their text."""
    return name_bytes(source).decode("utf-8", "surrogateescape")


def bad_key(key: str) -> str | None:
    """Why a key cannot be a corpus file name (an empty, ``.`` or ``..`` segment), or None."""
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        return "object key has an empty, '.' or '..' path segment: no folder can hold that name (not read)"
    return None


def hidden_key(key: str) -> bool:
    return any(seg.startswith(".") for seg in key.split("/"))


class ObjectCorpus:
    """The objects under one ``s3://bucket/prefix`` corpus root and this machine's cache of them."""

    def __init__(self, uri: RootUri, cache: Path, *, cache_bytes: int, allow_http: bool) -> None:
        self.uri, self.cache, self.cache_bytes = uri, Path(cache), int(cache_bytes)
        self.store = Storage(uri, self.cache, allow_http=allow_http)
        self.stats: Counter[str] = Counter()  # list, head, get, get_bytes, hit, evicted (this process)
        self._lock = threading.Lock()
        self._approx: int | None = (
            None  # the cache's bytes as of the last full look, plus this process's downloads
        )

    # ---- addresses
    def url(self, key: str = "") -> str:
        return self.store.url(key)

    def _path(self, key: str) -> str:
        return "/".join(p for p in (self.uri.bucket, self.uri.prefix, key) if p)

    # ---- listing
    def list(self) -> list[ObjectInfo]:
        """Every object under the prefix (sorted by key). A missing bucket is an error; an empty
        prefix is an empty corpus."""
        from pyarrow import fs as pafs

        self.store.ensure_bucket()
        base = self._path("")
        sel = pafs.FileSelector(base, allow_not_found=True, recursive=True)
        infos = self.store._call(lambda: self.store.fs.get_file_info(sel), "")
        self.stats["list"] += 1
        out = []
        for i in infos:
            if i.type != pafs.FileType.File or not i.path.startswith(base + "/"):
                continue
            out.append(ObjectInfo(i.path[len(base) + 1 :], int(i.size or 0), int(i.mtime_ns or 0)))
        out.sort(key=lambda o: o.key)
        return out

    def head(self, key: str) -> tuple[int, int, str | None] | None:
        """(size, mtime_ns, ETag) of one object (one HEAD), or None when it is gone."""
        try:
            with self.store.fs.open_input_file(self._path(key)) as fh:
                md = fh.metadata()
                size = fh.size()
        except FileNotFoundError:
            return None
        except OSError as e:
            if _not_found(e):
                return None
            raise self.store._error(e, key) from None
        self.stats["head"] += 1
        return size, _mtime_ns(md), _etag(md)

    # ---- the cache
    def _entry(self, key: str) -> Path:
        h = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return self.cache / h[:2] / h

    def cached_meta(self, key: str) -> dict[str, Any] | None:
        """What the cache holds for ``key`` (no request), or None."""
        d = self._entry(key)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("key") != key or not (d / meta.get("file", "-")).is_file():
            return None
        return meta

    @contextlib.contextmanager
    def pinned(self, key: str) -> Iterator[Path]:
        """The cache entry of ``key``, which no process evicts until the block ends."""
        d = self._entry(key)
        while True:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    same = os.fstat(fd).st_ino == os.stat(d / ".lock").st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # evicted between open and lock: take the new entry
                    continue
                os.utime(d / ".lock")  # last use, for the eviction order
                yield d
                return
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def local_copy(
        self, source: str, sha256: str | None = None, listed: ObjectInfo | None = None
    ) -> Iterator[Cached]:
        """A local copy of the object of ``source``, from the cache or downloaded into it, pinned for
        the block. With ``sha256`` (what the scan hashed) a different content raises
        :class:`SourceChanged` ``changed``, a missing object ``vanished``; with ``listed`` the cached
        copy must have that size and mtime."""
        key = key_of(source)
        with self.pinned(key) as d:
            meta = self.cached_meta(key)
            fresh = listed is None or (
                meta is not None and (meta["size"], meta["mtime_ns"]) == (listed.size, listed.mtime_ns)
            )
            if meta is not None and fresh and (sha256 is None or meta["sha256"] == sha256):
                self.stats["hit"] += 1
                yield Cached(
                    d / meta["file"], meta["sha256"], meta["size"], meta["mtime_ns"], meta.get("etag"), False
                )
                return
            got = self._download(key, d)
            if got is None:
                raise SourceChanged(source, "vanished")
            if sha256 is not None and got.sha256 != sha256:
                raise SourceChanged(source, "changed")
            yield got

    def _download(self, key: str, d: Path) -> Cached | None:
        """GET ``key`` into its entry ``d`` (streamed through sha256); None when it is gone."""
        m = _SUFFIX.fullmatch(posixpath.splitext(key)[1] or "-")
        name = "data" + (m.group(0) if m else "")
        tmp = d / f".{name}.{os.getpid()}.{threading.get_ident()}.part"
        h, size = hashlib.sha256(), 0
        try:
            with self.store.fs.open_input_stream(self._path(key)) as fh, open(tmp, "wb") as out:
                md = fh.metadata()
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return None
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if _not_found(e):
                return None
            if isinstance(e, StorageError) or e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise self.store._error(e, key) from None
        self.stats["get"] += 1
        self.stats["get_bytes"] += size
        os.replace(tmp, d / name)
        meta = {
            "key": key,
            "file": name,
            "size": size,
            "mtime_ns": _mtime_ns(md),
            "etag": _etag(md),
            "sha256": h.hexdigest(),
        }
        _write_json(d / "meta.json", meta)
        self._added(size, keep=d)
        return Cached(d / name, meta["sha256"], size, meta["mtime_ns"], meta["etag"], True)

    def remember(self, key: str, **fields: Any) -> None:
        """Add fields (the sniffed kind) to a cached entry's meta.json."""
        d = self._entry(key)
        meta = self.cached_meta(key)
        if meta is not None:
            _write_json(d / "meta.json", {**meta, **fields})

    def _added(self, size: int, keep: Path) -> None:
        """Evict when this download may have taken the cache past its bound: a full look (every entry's
        meta.json) when the running estimate says so, and every 64 downloads (other processes add too)."""
        with self._lock:
            if self._approx is not None and self.stats["get"] % 64:
                self._approx += size
                if self._approx <= self.cache_bytes:
                    return
        self.evict(keep=keep)

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used entries until the cache holds at most ``corpus.cache_bytes``;
        entries in use (pinned by any process) stay. Returns bytes removed."""
        with self._lock:
            entries = []
            for meta_file in self.cache.glob("*/*/meta.json"):
                d = meta_file.parent
                try:
                    size = int(json.loads(meta_file.read_text()).get("size", 0))
                    used = (d / ".lock").stat().st_mtime
                except (OSError, ValueError):
                    continue
                entries.append((used, size, d))
            total = sum(s for _, s, _ in entries)
            freed = 0
            for _used, size, d in sorted(entries, key=lambda e: e[0]):
                if total <= self.cache_bytes:
                    break
                if d == keep or not _try_remove(d):
                    continue
                total -= size
                freed += size
                self.stats["evicted"] += 1
            self._approx = total
            return freed

    def read_head(self, source: str, n: int) -> bytes | None:
        """The first ``n`` bytes of an object (a ranged read), or None when it is gone."""
        key = key_of(source)
        meta = self.cached_meta(key)
        if meta is not None:
            with open(self._entry(key) / meta["file"], "rb") as f:
                return f.read(n)
        try:
            with self.store.fs.open_input_file(self._path(key)) as fh:
                data = fh.read_at(min(n, fh.size()), 0)
        except FileNotFoundError:
            return None
        except OSError as e:
            if _not_found(e):
                return None
            raise self.store._error(e, key) from None
        self.stats["head"] += 1
        self.stats["get"] += 1
        return bytes(data)

    # ---- the scan
    def scan(
        self, *, max_file_bytes: int, ignore_hidden: bool, cache: Mapping[str, tuple] | None = None
    ) -> list[Any]:
        """The manifest entries of every object, by the local scanner's rules (``scan_corpus``).
        ``cache`` maps source -> (size, mtime_ns, sha256, kind[, etag]) from the last manifest."""
        from mmrag_assets.lib.ingest.manifest import FileEntry, mark_duplicates

        cache = cache or {}
        entries: list[FileEntry] = []
        for o in self.list():
            if ignore_hidden and hidden_key(o.key):
                continue
            source = escape_name(o.key)
            if (why := bad_key(o.key)) is not None:
                entries.append(FileEntry(source, o.size, o.mtime_ns, "unsupported", "quarantined", why))
                continue
            if o.size == 0:
                entries.append(
                    FileEntry(source, 0, o.mtime_ns, "unsupported", "quarantined", "empty file (0 bytes)")
                )
                continue
            if o.size > max_file_bytes:
                entries.append(FileEntry(
                    source, o.size, o.mtime_ns, "unsupported", "quarantined",
                    f"file is {o.size:,} bytes, over corpus.max_file_bytes={max_file_bytes:,}",
                ))  # fmt: skip
                continue
            entries.append(self._classify(o, source, cache.get(source)))
        entries.sort(key=lambda e: e.source)
        mark_duplicates(entries)
        return entries

    def _classify(self, o: ObjectInfo, source: str, hit: tuple | None) -> Any:
        from mmrag_assets.lib.ingest.manifest import FileEntry
        from mmrag_assets.lib.ingest.sniff import sniff_file

        def entry(sha: str, kind: str, reason: str | None, etag: str | None) -> FileEntry:
            status = "quarantined" if kind == "unsupported" else "ok"
            return FileEntry(
                source, o.size, o.mtime_ns, kind, status, reason if status != "ok" else None, sha, etag
            )

        old_etag = hit[4] if hit is not None and len(hit) > 4 else None
        if hit and hit[0] == o.size and hit[1] == o.mtime_ns and hit[2]:
            return entry(hit[2], hit[3], None, old_etag)  # unchanged: no request
        meta = self.cached_meta(o.key)
        if meta and meta.get("kind") and meta["size"] == o.size and meta["mtime_ns"] == o.mtime_ns:
            return entry(
                meta["sha256"], meta["kind"], meta.get("reason"), meta.get("etag")
            )  # hashed here before
        # touched or uploaded again with the same size: the ETag says whether the bytes changed
        known = []
        if hit and hit[0] == o.size and hit[2] and old_etag:
            known.append((old_etag, hit[2], hit[3], None))
        if meta and meta.get("kind") and meta["size"] == o.size and meta.get("etag"):
            known.append((meta["etag"], meta["sha256"], meta["kind"], meta.get("reason")))
        if known and (now := self.head(o.key)) is not None:
            for etag, sha, kind, reason in known:
                if now[2] == etag:
                    self.stats["etag_same"] += 1
                    if meta and meta.get("etag") == etag:
                        self.remember(o.key, mtime_ns=o.mtime_ns)
                    return entry(sha, kind, reason, etag)
        try:
            with self.local_copy(source, listed=o) as got:
                if got.downloaded or "kind" not in (self.cached_meta(o.key) or {}):
                    sniffed = sniff_file(got.path)
                    self.remember(o.key, kind=sniffed.kind, reason=sniffed.reason)
                    kind, reason = sniffed.kind, sniffed.reason
                else:
                    m = self.cached_meta(o.key) or {}
                    kind, reason = m["kind"], m.get("reason")
                return entry(got.sha256, kind, reason, got.etag)
        except SourceChanged:
            return FileEntry(
                source,
                o.size,
                o.mtime_ns,
                "unsupported",
                "quarantined",
                "unreadable: the object vanished while it was listed",
            )
        except OSError as e:
            return FileEntry(
                source, o.size, o.mtime_ns, "unsupported", "quarantined", f"unreadable: {e.strerror or e}"
            )

    def changed(self, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """(source, "vanished" | "changed") for manifest rows the store no longer matches (one listing)."""
        now = {escape_name(o.key): o for o in self.list()}
        out = []
        for r in rows:
            o = now.get(r["source"])
            if o is None:
                out.append((r["source"], "vanished"))
            elif o.size != r["size"] or o.mtime_ns != r["mtime_ns"]:
                out.append((r["source"], "changed"))
        return out

    def resolver(self, source: str, stack: contextlib.ExitStack, max_bytes: int):
        """For a converted HTML file: its relative image references as pinned local copies (the
        local rule: inside the corpus root, at most ``max_bytes``), None for anything else."""
        base = posixpath.dirname(key_of(source))

        def resolve(ref: str) -> Path | None:
            if ref.startswith("/"):
                return None
            key = posixpath.normpath(posixpath.join(base, ref))
            if key == ".." or key.startswith("../") or bad_key(key):
                return None
            now = self.head(key)
            if now is None or now[0] > max_bytes:
                return None
            try:
                return stack.enter_context(
                    self.local_copy(escape_name(key), listed=ObjectInfo(key, now[0], now[1]))
                ).path
            except SourceChanged:
                return None

        return resolve


def _try_remove(d: Path) -> bool:
    """Remove a cache entry unless some process holds it pinned."""
    try:
        fd = os.open(d / ".lock", os.O_RDWR)
    except FileNotFoundError:
        shutil.rmtree(d, ignore_errors=True)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        (d / ".lock").unlink(missing_ok=True)  # first: a process that opens it now re-creates the entry
        shutil.rmtree(d, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def _write_json(p: Path, obj: dict[str, Any]) -> None:
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.part")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, p)


def _not_found(e: BaseException) -> bool:
    s = str(e)
    return "NotFound" in s or "does not exist" in s or "NoSuchKey" in s or "Path does not exist" in s


def _etag(md: Any) -> str | None:
    v = md.get("ETag") if md is not None else None
    if v is None:
        return None
    return (v.decode() if isinstance(v, bytes) else str(v)).strip('"') or None


def _mtime_ns(md: Any) -> int:
    from datetime import datetime

    v = md.get("Last-Modified") if md is not None else None
    if not v:
        return 0
    text = v.decode() if isinstance(v, bytes) else str(v)
    try:  # whole seconds, as the listing gives them
        return int(datetime.fromisoformat(text).timestamp()) * 1_000_000_000
    except ValueError:
        pass
    try:  # the HTTP header's own form
        from email.utils import parsedate_to_datetime

        return int(parsedate_to_datetime(text).timestamp()) * 1_000_000_000
    except (TypeError, ValueError):
        return 0


def corpus_objects(rt: Any) -> ObjectCorpus:
    """The object corpus of the runtime's ``corpus.root`` (``lib/store/runtime.Runtime``; one per
    runtime: its cache accounting and pins are shared by the runtime's users)."""
    cfg = rt.cfg

    def build() -> ObjectCorpus:
        uri = parse_root(cfg.corpus.root, key="corpus.root")
        cache = cache_dir_of(uri, cfg.storage.cache_dir)
        return ObjectCorpus(
            uri, cache, cache_bytes=cfg.corpus.cache_bytes, allow_http=bool(cfg.storage.allow_http)
        )

    return rt.handles.get(("corpus_objects", os.getpid()), build)


def stats_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {
        k: int(after.get(k, 0)) - int(before.get(k, 0))
        for k in set(after) | set(before)
        if after.get(k, 0) != before.get(k, 0)
    }

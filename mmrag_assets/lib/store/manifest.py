"""Versions of the search index: manifests, the ``CURRENT`` pointer, verification and GC.

Layout of ``<storage.root>/index/<version_key>/``::

    CURRENT                   "v12": the live version (one small file: what readers poll)
    versions/v12.json         the manifest (below)
    versions/v12.state/       alive.npy (positions not tombstoned), rowaddr.npy (LanceDB row
                              address of every position at the pinned table version), docs.npy
    codebooks/<id>/           the codebook (trained once per embedding version)
    segments/<id>/            immutable segments (``segment.py``)
    LOCK                      one publisher at a time

A manifest records the pinned LanceDB table version (also tagged in LanceDB, so that LanceDB's
own cleanup keeps it), the codebook, the segment list, the number of tombstones, the calibration,
the published documents, and the size and sha256 of every file it references. A publish writes
all of that first and switches ``CURRENT`` last (write + rename), so a reader sees the old version
or the new one, never a half-written one. Old versions are removed by :func:`collect_garbage`
only after a grace period since they stopped being current; segments and codebooks go when no
remaining version references them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.errors import MmragError, NotFound
from mmrag_assets.lib.faults import fault_point
from mmrag_assets.lib.store.files import (
    atomic_write_json,
    atomic_write_text,
    file_info,
    load_array,
    save_array,
    sha256_file,
)

FORMAT = 1
REBUILD = "REBUILD"  # in the index root: the next publish rebuilds instead of patching the live version
TAG_PREFIX = "mmrag-v"


class IndexDamaged(MmragError, RuntimeError):
    """A damaged, missing or locked index."""


@dataclass(frozen=True)
class IndexLocation:
    """Where one embedding version's search index lives: ``<storage_root>/index/<version_key>``."""

    storage_root: Path
    version_key: str

    @classmethod
    def of(cls, storage_root: str | Path, version_key: str) -> IndexLocation:
        return cls(Path(storage_root).resolve(), version_key)

    @property
    def root(self) -> Path:
        return self.storage_root / "index" / self.version_key

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    @property
    def segments(self) -> Path:
        return self.root / "segments"

    @property
    def codebooks(self) -> Path:
        return self.root / "codebooks"

    @property
    def current_file(self) -> Path:
        return self.root / "CURRENT"

    def manifest_path(self, version: int) -> Path:
        return self.versions / f"v{version}.json"

    def state_dir(self, version: int) -> Path:
        return self.versions / f"v{version}.state"


# ---------------------------------------------------------------- reading
def location_for(cfg: Any, version_key: str) -> IndexLocation:
    """Where the index of ``version_key`` under ``cfg``'s storage root lives (here, not in
    ``publish.py``: readers and the store check need it without pandas)."""
    return IndexLocation.of(cfg.storage_root, version_key)


def is_published(location: IndexLocation, allowed_doc_ids: Collection[str]) -> bool:
    """The live version serves exactly ``allowed_doc_ids`` (reads the manifest and the small
    documents array only, never the table): the caller may skip launching a publish."""
    if (location.root / REBUILD).exists():
        return False
    v = current_version(location)
    if v is None:
        return not allowed_doc_ids
    try:
        docs = read_state(location, v)["docs"]
    except (OSError, ValueError, IndexDamaged):
        return False
    return set(docs.astype(str).tolist()) == set(allowed_doc_ids)


def current_version(loc: IndexLocation) -> int | None:
    """The live version number (one small file read), or None before the first publish."""
    try:
        text = loc.current_file.read_text().strip()
    except FileNotFoundError:
        return None
    if not text.startswith("v") or not text[1:].isdigit():
        raise IndexDamaged(f"{loc.current_file} is damaged ({text[:20]!r}): run `mmrag index --verify`")
    return int(text[1:])


def list_versions(loc: IndexLocation) -> list[int]:
    if not loc.versions.exists():
        return []
    out = []
    for p in loc.versions.glob("v*.json"):
        stem = p.stem[1:]
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def read_manifest(loc: IndexLocation, version: int | None = None) -> dict[str, Any]:
    """The manifest of ``version`` (default: the live one)."""
    v = current_version(loc) if version is None else version
    if v is None:
        raise NotFound(f"no published search index under {loc.root}: run `mmrag index`")
    p = loc.manifest_path(v)
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise IndexDamaged(
            f"index version v{v} has no manifest ({p.name}): run `mmrag index --verify`"
        ) from None
    except json.JSONDecodeError as e:
        raise IndexDamaged(f"manifest {p.name} is damaged ({e}): run `mmrag index --verify`") from None
    if m.get("format") != FORMAT or m.get("version") != v:
        raise IndexDamaged(f"manifest {p.name} is not a format-{FORMAT} manifest of v{v}")
    return m


def read_state(loc: IndexLocation, version: int) -> dict[str, np.ndarray]:
    d = loc.state_dir(version)
    return {n: load_array(d / f"{n}.npy") for n in ("alive", "rowaddr", "docs")}


# ---------------------------------------------------------------- writing
def write_version(loc: IndexLocation, manifest: dict[str, Any], state: dict[str, np.ndarray]) -> None:
    """Write a version's state and manifest, then switch ``CURRENT`` to it (the atomic step)."""
    v = int(manifest["version"])
    d = loc.state_dir(v)
    shutil.rmtree(d, ignore_errors=True)
    files = dict(manifest["files"])
    for name, a in state.items():
        files[f"versions/{d.name}/{name}.npy"] = save_array(d / f"{name}.npy", a)
    manifest = {**manifest, "format": FORMAT, "files": files}
    atomic_write_json(loc.manifest_path(v), manifest)
    fault_point("publish.before_current")
    atomic_write_text(loc.current_file, f"v{v}\n")
    fault_point("publish.after_current")


def relative_files(prefix: str, files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{prefix}/{k}": v for k, v in files.items()}


def with_meta_file(
    prefix: str, d: Path, meta_name: str, files: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """A segment's or codebook's files plus its own JSON, under ``prefix``."""
    return {**relative_files(prefix, files), f"{prefix}/{meta_name}": file_info(d / meta_name)}


# ---------------------------------------------------------------- verification
@dataclass
class VerifyReport:
    ok: bool
    version: int | None
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "version": self.version, "problems": self.problems, "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked, "seconds": round(self.seconds, 3)}  # fmt: skip


def verify(
    loc: IndexLocation, version: int | None = None, *, deep: bool = True, table: Any = None
) -> VerifyReport:
    """Check a version's files against the sizes (and, ``deep``, the sha256) its manifest records,
    and that its pinned LanceDB table version can be opened (when ``table`` is given)."""
    t0 = time.perf_counter()
    try:
        m = read_manifest(loc, version)
    except (NotFound, IndexDamaged) as e:
        return VerifyReport(False, version, [str(e)], seconds=time.perf_counter() - t0)
    rep = VerifyReport(True, int(m["version"]))
    for rel, info in sorted(m["files"].items()):
        p = loc.root / rel
        rep.files_checked += 1
        if not p.is_file():
            rep.problems.append(f"{rel}: missing")
            continue
        size = p.stat().st_size
        if size != info["size"]:
            rep.problems.append(f"{rel}: {size} bytes, the manifest records {info['size']}")
            continue
        if deep:
            rep.bytes_checked += size
            if sha256_file(p) != info["sha256"]:
                rep.problems.append(f"{rel}: checksum mismatch (damaged)")
    if table is not None:
        try:
            import lance

            ds = lance.dataset(table.to_lance().uri, version=int(m["table_version"]))
            if ds.count_rows() < int(m["n_alive"]):
                rep.problems.append(
                    f"table version {m['table_version']} holds fewer rows than the index serves"
                )
        except Exception as e:  # noqa: BLE001 - any failure to open the pinned version is the finding
            rep.problems.append(f"pinned table version {m['table_version']} cannot be read: {e}")
    rep.ok = not rep.problems
    rep.seconds = time.perf_counter() - t0
    return rep


# ---------------------------------------------------------------- garbage collection
def collect_garbage(
    loc: IndexLocation, *, grace_s: float, table: Any = None, now: float | None = None
) -> dict[str, Any]:
    """Remove versions that stopped being current more than ``grace_s`` ago (never the live one),
    then segments and codebooks no remaining version references, their LanceDB tags, and (with
    ``table``) LanceDB table versions older than the grace period that no tag keeps.
    Call it with the publisher lock held."""
    now = time.time() if now is None else now
    manifests: dict[int, dict[str, Any] | None] = {}
    for v in list_versions(loc):
        manifests[v] = None
        with contextlib.suppress(IndexDamaged, OSError):
            manifests[v] = read_manifest(loc, v)
    removed = stale_versions(manifests, current_version(loc), grace_s=grace_s, now=now)
    for v in removed:
        loc.manifest_path(v).unlink(missing_ok=True)
        shutil.rmtree(loc.state_dir(v), ignore_errors=True)
    keep_seg, keep_cb = set(), set()
    for v in list_versions(loc):
        with contextlib.suppress(IndexDamaged, OSError):
            m = read_manifest(loc, v)
            keep_seg |= {s["id"] for s in m["segments"]}
            keep_cb.add(m["codebook"])
    dropped = {"segments": _sweep(loc.segments, keep_seg), "codebooks": _sweep(loc.codebooks, keep_cb)}
    for p in loc.versions.glob("*.state") if loc.versions.exists() else []:
        stem = p.name.split(".")[0][1:]
        if stem.isdigit() and int(stem) not in list_versions(loc):
            shutil.rmtree(p, ignore_errors=True)
    out: dict[str, Any] = {"versions_removed": removed, **dropped}
    if table is not None:
        out["table_versions_removed"] = _lance_cleanup(table, set(list_versions(loc)), grace_s)
    return out


def stale_versions(
    manifests: dict[int, dict[str, Any] | None], live: int | None, *, grace_s: float, now: float
) -> list[int]:
    """The versions garbage collection removes, from their manifests (None: unreadable): never the
    live one; a replaced one once its successor has been published for ``grace_s``; at once, one
    that never went live. The one rule for the local index folder and for the object store's copy."""
    published = {v: float(m["published_at"]) for v, m in manifests.items() if m and "published_at" in m}
    parents = {m.get("parent") for m in manifests.values() if m}
    out = []
    for v in sorted(manifests):
        if v == live:
            continue
        newer = [published[w] for w in published if w > v and (live is None or w <= live)]
        # a publish that died before switching CURRENT: never live, so no reader can be on it (a
        # version that was live is the parent of the one that replaced it)
        orphan = live is not None and (v > live or v not in parents)
        if orphan or v not in published or (newer and now - min(newer) >= grace_s):
            out.append(v)
    return out


def _sweep(root: Path, keep: set[str]) -> list[str]:
    if not root.exists():
        return []
    gone = []
    for d in root.iterdir():
        name = d.name.lstrip(".").removesuffix(".tmp")
        if d.is_dir() and (name not in keep or d.name.endswith(".tmp")):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone


def tag_name(version: int) -> str:
    return f"{TAG_PREFIX}{version}"


def tag_table_version(table: Any, version: int, table_version: int) -> None:
    """Tag the pinned table version so that LanceDB's cleanup keeps it while we serve it."""
    tags = table.to_lance().tags
    if tag_name(version) in tags.list():
        tags.delete(tag_name(version))
    tags.create(tag_name(version), table_version)


def _lance_cleanup(table: Any, live_versions: set[int], grace_s: float) -> int:
    ds = table.to_lance()
    for name in list(ds.tags.list()):
        if (
            name.startswith(TAG_PREFIX)
            and name[len(TAG_PREFIX) :].isdigit()
            and int(name[len(TAG_PREFIX) :]) not in live_versions
        ):
            ds.tags.delete(name)
    stats = ds.cleanup_old_versions(older_than=timedelta(seconds=grace_s), error_if_tagged_old_versions=False)
    return int(getattr(stats, "old_versions", 0) or 0)


# ---------------------------------------------------------------- one publisher at a time
@contextlib.contextmanager
def publisher_lock(loc: IndexLocation, *, timeout_s: float = 600.0, say: Any = None) -> Iterator[None]:
    """An exclusive lock on ``LOCK`` (flock: released by the kernel if the process dies)."""
    loc.root.mkdir(parents=True, exist_ok=True)
    path = loc.root / "LOCK"
    fh = open(path, "a+")  # noqa: SIM115 - closed below
    try:
        t0 = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and say is not None:
                    fh.seek(0)
                    say(
                        f"another index publish is in progress ({fh.read().strip() or 'unknown holder'}); waiting"
                    )
                    told = True
                if time.monotonic() - t0 > timeout_s:
                    raise IndexDamaged(
                        f"another index publish has held {path} for over {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()

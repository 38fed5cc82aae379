"""Where the product's shared data lives: a local folder or an object store (``s3://bucket/prefix``).

``storage.root`` names one of the two. On a local root every function here is a no-op: the code
works on the folder itself, as it always did. On an object-store root:

- the LanceDB tables live in the object store itself (LanceDB ``storage_options``): every worker
  and every search replica opens the same tables;
- the search structures (``index/<version_key>/``: immutable segments, codebooks, version
  manifests, ``CURRENT``) and the rendered pages are files that the code writes and memory-maps
  in a local mirror (``storage.cache_dir``) and that move to and from the object store here:
  a publisher uploads a version's files first and its ``CURRENT`` pointer last, so a replica that
  reads ``CURRENT`` finds every file that version names; a replica downloads only the files of
  the version it serves (content-addressed and immutable, so the mirror never goes stale);
- the bytes go through ``pyarrow.fs.S3FileSystem`` (pyarrow is already a dependency: no second S3
  client to keep), configured by the standard ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` settings and ``storage.allow_http``.

Nothing here imports Dagster.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmrag_assets.errors import ConfigError, MmragError
from mmrag_assets.roots import RootUri


class StorageError(MmragError, OSError):
    """The object store refused or lacks something the product needs."""


# ---------------------------------------------------------------- the store
@dataclass(frozen=True)
class RemoteTables:
    """The LanceDB tables of an object-store root: their URI and the ``storage_options`` to open them."""

    uri: str
    storage_options: dict[str, str]


class Storage:
    """The shared data of one storage root: a local folder (``remote`` False: nothing to move) or an
    object store mirrored under ``local``."""

    def __init__(self, uri: RootUri, local: Path, *, allow_http: bool) -> None:
        self.uri, self.local, self.allow_http = uri, Path(local), allow_http
        self.remote = uri.remote
        self._fs: Any = None

    # ---- addresses
    def url(self, rel: str = "") -> str:
        """The address LanceDB (and a user) uses for ``rel``: a URI or a local path."""
        if not self.remote:
            return str(self.local / rel) if rel else str(self.local)
        key = "/".join(p for p in (self.uri.prefix, rel.strip("/")) if p)
        return f"s3://{self.uri.bucket}/{key}" if key else f"s3://{self.uri.bucket}"

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.uri.bucket, self.uri.prefix, rel.strip("/")) if p)

    def tables(self) -> RemoteTables:
        """Where the LanceDB tables are, for readers that open Lance datasets directly."""
        return RemoteTables(self.url("lancedb"), self.lance_options())

    def lance_options(self) -> dict[str, str]:
        """LanceDB / Lance ``storage_options`` for the object store (empty for a local root)."""
        if not self.remote:
            return {}
        env = aws_settings(self.allow_http)
        opts = {"aws_region": env["region"]}
        if env["endpoint"]:
            opts["aws_endpoint"] = env["endpoint"]
        if env["key"]:
            opts["aws_access_key_id"], opts["aws_secret_access_key"] = env["key"], env["secret"]
        if self.allow_http:
            opts["allow_http"] = "true"
        return opts

    @property
    def fs(self) -> Any:
        if self._fs is None:
            from pyarrow import fs as pafs

            env = aws_settings(self.allow_http)
            kw: dict[str, Any] = {"region": env["region"]}
            if env["endpoint"]:
                scheme, _, host = env["endpoint"].partition("://")
                kw.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
            if env["key"]:
                kw.update(access_key=env["key"], secret_key=env["secret"])
            self._fs = pafs.S3FileSystem(**kw)
        return self._fs

    # ---- files
    def exists(self, rel: str) -> bool:
        if not self.remote:
            return (self.local / rel).exists()
        from pyarrow import fs as pafs

        return self._call(lambda: self.fs.get_file_info(self._key(rel)).type != pafs.FileType.NotFound, rel)

    def read_text(self, rel: str) -> str | None:
        """A small object's text, or None when it does not exist."""
        if not self.remote:
            p = self.local / rel
            return p.read_text() if p.exists() else None
        try:
            with self.fs.open_input_stream(self._key(rel)) as fh:
                return fh.read().decode()
        except FileNotFoundError:
            return None
        except OSError as e:
            if "NotFound" in str(e) or "does not exist" in str(e) or "NoSuchKey" in str(e):
                return None
            raise self._error(e, rel) from None

    def put(self, rel: str) -> int:
        """Upload the local mirror's ``rel`` (a file, or a folder with everything under it); returns bytes sent."""
        if not self.remote:
            return 0
        src = self.local / rel
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        sent = 0
        for p in files:
            data = p.read_bytes()
            key = self._key(p.relative_to(self.local).as_posix())
            self._call(lambda k=key, d=data: _write(self.fs, k, d), rel)
            sent += len(data)
        return sent

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` whole: atomically in a local root (temp file and rename), one PUT in an object
        store (readers see the old object or the new one, never a part)."""
        if self.remote:
            key = self._key(rel)
            self._call(lambda: _write(self.fs, key, data), rel)
            return
        p = self.local / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, p)

    def fetch(self, rel: str, size: int | None = None) -> Path:
        """The local mirror's path of ``rel``, downloaded first when missing (or of another ``size``)."""
        p = self.local / rel
        if not self.remote or (p.is_file() and (size is None or p.stat().st_size == size)):
            return p
        try:
            with self.fs.open_input_stream(self._key(rel)) as fh:
                data = fh.read()
        except (FileNotFoundError, OSError) as e:
            if isinstance(e, FileNotFoundError) or "NotFound" in str(e) or "NoSuchKey" in str(e):
                return p  # the caller reports the missing file as it would a local one
            raise self._error(e, rel) from None
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p

    def delete(self, rel: str) -> None:
        """Remove ``rel`` (a folder: everything under it) from the object store."""
        if not self.remote:
            return
        key = self._key(rel)
        from pyarrow import fs as pafs

        info = self.fs.get_file_info(key)
        if info.type == pafs.FileType.Directory:
            self._call(lambda: self.fs.delete_dir(key), rel)
        elif info.type == pafs.FileType.File:
            self._call(lambda: self.fs.delete_file(key), rel)

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the folders directly under ``rel``."""
        if not self.remote:
            d = self.local / rel
            return sorted(x.name for x in d.iterdir() if x.is_dir()) if d.is_dir() else []
        from pyarrow import fs as pafs

        sel = pafs.FileSelector(self._key(rel), allow_not_found=True, recursive=False)
        infos = self._call(lambda: self.fs.get_file_info(sel), rel)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def list_files(self, rel: str) -> dict[str, int]:
        """Every object under ``rel`` (recursively) as {path relative to the root: size}."""
        if not self.remote:
            d = self.local / rel
            return {
                p.relative_to(self.local).as_posix(): p.stat().st_size for p in d.rglob("*") if p.is_file()
            }
        from pyarrow import fs as pafs

        sel = pafs.FileSelector(self._key(rel), allow_not_found=True, recursive=True)
        infos = self._call(lambda: self.fs.get_file_info(sel), rel)
        base = self._key("")
        return {i.path[len(base) :].lstrip("/"): i.size for i in infos if i.type == pafs.FileType.File}

    def ensure_bucket(self) -> None:
        """Fail early, with what to do, when the bucket cannot be reached."""
        if not self.remote:
            return
        from pyarrow import fs as pafs

        info = self._call(lambda: self.fs.get_file_info(self.uri.bucket), "")
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"bucket {self.uri.bucket!r} does not exist at {self.url()}: create it first")

    def _call(self, fn: Any, rel: str) -> Any:
        try:
            return fn()
        except OSError as e:
            raise self._error(e, rel) from None

    def _error(self, e: BaseException, rel: str) -> StorageError:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return StorageError(
            f"object store {self.url(rel)}: {first} (check AWS_ENDPOINT_URL, the credentials and storage.allow_http)"
        )


def _write(fs: Any, key: str, data: bytes) -> None:
    with fs.open_output_stream(key) as out:
        out.write(data)


def aws_settings(allow_http: bool) -> dict[str, str]:
    """The standard AWS environment settings; an ``http://`` endpoint needs ``storage.allow_http``."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint.startswith("http://") and not allow_http:
        raise ConfigError(
            f"AWS_ENDPOINT_URL={endpoint} is plain http: set storage.allow_http=true (local emulators only)"
        )
    return {
        "endpoint": endpoint,
        "key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }


# ---------------------------------------------------------------- the search index's files
def index_prefix(version_key: str) -> str:
    return f"index/{version_key}"


def pull_index(store: Storage, version_key: str) -> int | None:
    """Mirror the object store's live version of one index locally (its manifest and every file it
    names, then ``CURRENT``); returns that version, or None before the first publish."""
    if not store.remote:
        return None
    base = index_prefix(version_key)
    cur = store.read_text(f"{base}/CURRENT")
    if cur is None:
        return None
    text = cur.strip()
    if not text.startswith("v") or not text[1:].isdigit():
        raise StorageError(
            f"{store.url(base)}/CURRENT is damaged ({text[:20]!r}): run `mmrag index --verify`"
        )
    v = int(text[1:])
    mpath = store.fetch(f"{base}/versions/v{v}.json")
    if not mpath.is_file():
        raise StorageError(
            f"{store.url(base)}/CURRENT names v{v}, whose manifest is missing from the object store"
        )
    manifest = json.loads(mpath.read_text())
    for rel, info in sorted(manifest.get("files", {}).items()):
        store.fetch(f"{base}/{rel}", size=int(info["size"]))
    local_cur = store.local / base / "CURRENT"
    if not local_cur.exists() or local_cur.read_text().strip() != text:
        from mmrag_assets.lib.store.files import atomic_write_text

        atomic_write_text(local_cur, f"{text}\n")
    return v


def push_index(store: Storage, version_key: str) -> int:
    """Upload the local live version's files the object store lacks, then its manifest, then
    ``CURRENT`` (last: readers follow it); returns bytes sent."""
    if not store.remote:
        return 0
    base = index_prefix(version_key)
    cur_path = store.local / base / "CURRENT"
    if not cur_path.exists():
        return 0
    v = cur_path.read_text().strip()
    manifest = json.loads((store.local / base / "versions" / f"{v}.json").read_text())
    from pyarrow import fs as pafs

    sent = 0
    for rel in sorted(manifest.get("files", {})):
        info = store._call(lambda r=rel: store.fs.get_file_info(store._key(f"{base}/{r}")), rel)
        if info.type == pafs.FileType.File and info.size == manifest["files"][rel]["size"]:
            continue  # immutable files already there (segments and codebooks are content-named)
        sent += store.put(f"{base}/{rel}")
    sent += store.put(f"{base}/versions/{v}.json")
    sent += store.put(f"{base}/CURRENT")
    return sent


def gc_remote_index(
    store: Storage, version_key: str, grace_s: float, now: float | None = None
) -> dict[str, Any]:
    """Garbage collection of the object store's copy of one index, by the rule of the local folder
    (``manifest.stale_versions``): the manifests of versions past their grace period, then every
    object under the index that no remaining manifest names. Run by the publisher (its pool holds
    one slot), after ``push_index``: no other writer adds files meanwhile. Replicas mirror a version
    whole when they switch to it, so one still serving a removed version keeps its local copy."""
    if not store.remote:
        return {}
    from mmrag_assets.lib.store.manifest import stale_versions

    now = time.time() if now is None else now
    base = index_prefix(version_key)
    objects = store.list_files(base)
    manifests: dict[int, dict[str, Any] | None] = {}
    for rel in objects:
        m = re.fullmatch(rf"{re.escape(base)}/versions/v(\d+)\.json", rel)
        if m:
            try:
                manifests[int(m.group(1))] = json.loads(store.read_text(rel) or "null")
            except ValueError:
                manifests[int(m.group(1))] = None  # unreadable: removed like a version that never went live
    live = remote_version(store, version_key)
    if live is None or manifests.get(live) is None:
        return {}  # nothing published, or CURRENT / its manifest damaged (`mmrag index --verify`): delete nothing
    stale = set(stale_versions(manifests, live, grace_s=grace_s, now=now))
    keep = {f"{base}/CURRENT"}
    for v, m in manifests.items():
        if v not in stale:
            keep.add(f"{base}/versions/v{v}.json")
            keep |= {f"{base}/{r}" for r in (m or {}).get("files", {})}
    gone = sorted(rel for rel in objects if rel not in keep)
    for v in sorted(stale):  # manifests first: a version without one is never read
        store.delete(f"{base}/versions/v{v}.json")

    def parents(rel: str) -> set[str]:
        parts = rel[len(base) + 1 :].split("/")[:-1]
        return {"/".join([base, *parts[: i + 1]]) for i in range(len(parts))}

    # whole folders (segments/<id>, versions/v<n>.state) in one call each: a folder delete also drops
    # the directory marker objects S3 clients leave, which a file-by-file delete would not
    live_dirs = set().union(*(parents(r) for r in keep))
    dead = {d for r in gone for d in parents(r)} - live_dirs
    tops = sorted(d for d in dead if not any(d.startswith(p + "/") for p in dead))
    for d in tops:
        store.delete(d)
    done = {f"{base}/versions/v{v}.json" for v in stale}
    for rel in gone:
        if rel not in done and not any(rel.startswith(d + "/") for d in tops):
            store.delete(rel)
    return {
        "versions_removed": sorted(stale),
        "objects_removed": len(gone),
        "bytes_removed": sum(objects[r] for r in gone),
    }


def remote_version(store: Storage, version_key: str) -> int | None:
    """The object store's live version number (one small read), or None."""
    text = (store.read_text(f"{index_prefix(version_key)}/CURRENT") or "").strip()
    return int(text[1:]) if text.startswith("v") and text[1:].isdigit() else None

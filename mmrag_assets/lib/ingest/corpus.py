"""Corpus-level operations shared by the manifest asset, the sensor and the CLI."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mmrag_assets.lib.ingest.manifest import FileEntry, cache_of, documents, scan_corpus
from mmrag_assets.lib.ingest.names import source_path
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime


@dataclass
class ScanResult:
    entries: list[FileEntry]
    docs: dict[str, FileEntry]  # doc_id -> representative file

    @property
    def quarantined(self) -> list[FileEntry]:
        return [e for e in self.entries if e.status == "quarantined"]


def scan(rt: Runtime, catalog: Catalog | None = None, cache: dict | None = None) -> ScanResult:
    """Scan the corpus, re-hashing only files whose size or mtime changed since the last manifest
    (an object store's corpus: whose size and mtime, then ETag, changed; ``lib/ingest/objects.py``)."""
    c = rt.cfg.corpus
    if cache is None and catalog is not None:
        cache = {
            r["source"]: (r["size"], r["mtime_ns"], r["sha256"], r["kind"], r["etag"])
            for r in catalog.scan_cache_rows()
        }
    if rt.corpus_remote:
        from mmrag_assets.lib.ingest.objects import corpus_objects

        entries = corpus_objects(rt).scan(
            max_file_bytes=c.max_file_bytes, ignore_hidden=c.ignore_hidden, cache=cache
        )
    else:
        entries = scan_corpus(
            rt.corpus_root,
            max_file_bytes=c.max_file_bytes,
            ignore_hidden=c.ignore_hidden,
            cache=cache,
        )
    return ScanResult(entries, documents(entries))


def scan_cache(result: ScanResult) -> dict:
    return cache_of(result.entries)


def record_scan(catalog: Catalog, result: ScanResult) -> None:
    catalog.replace_manifest([e.row() for e in result.entries])
    catalog.replace_scan_quarantine(
        [{"source": e.source, "doc_id": e.doc_id, "reason": e.reason} for e in result.quarantined]
    )


UNREFERENCED_MARKER = ".unreferenced"  # written when a page folder is first found unreferenced
SHARD_KEYS = tuple("0123456789abcdef")  # a document's shard is the first hex digit of its content key


def shard_of(doc_id: str) -> str:
    return doc_id[0]


@dataclass
class IngestPlan:
    """What one ingest step over some shards has to do, from the manifest and the catalog."""

    todo: list[FileEntry]  # new content, or rows made with other settings
    renamed: list[FileEntry]  # same content and settings under a new name: only the source changes
    unchanged: int
    changed_on_disk: list[FileEntry]  # vanished or changed since the manifest (``reason`` says which)


def plan_ingest(rt: Runtime, catalog: Catalog, shards: set[str] | None = None) -> IngestPlan:
    """Split the manifest's documents in ``shards`` (all when None) by what ingestion must do."""
    from mmrag_assets.lib.ingest.document import fingerprint

    rows = catalog.manifest_ok()
    have = catalog.document_states()
    plan = IngestPlan([], [], 0, [])
    fingerprints: dict[str, str] = {}  # per kind: the config is the same for every row
    for r in rows:
        if shards is not None and shard_of(r["doc_id"]) not in shards:
            continue
        e = FileEntry(r["source"], r["size"], r["mtime_ns"], r["kind"], "ok", None, r["sha256"])
        if (what := since_scan(rt, e)) is not None:
            e.reason = what
            plan.changed_on_disk.append(e)
            continue
        old = have.get(r["doc_id"])
        if e.kind not in fingerprints:
            fingerprints[e.kind] = fingerprint(rt.cfg, e.kind)
        if old is None or old["sha256"] != e.sha256 or old["fingerprint"] != fingerprints[e.kind]:
            plan.todo.append(e)
        elif old["source"] != e.source:
            plan.renamed.append(e)
        else:
            plan.unchanged += 1
    return plan


def since_scan(rt: Runtime, e: FileEntry | dict) -> str | None:
    """What happened to a manifest file since its scan: ``"vanished"`` (gone or unreadable),
    ``"changed"`` (another size or mtime), or None. Always None for an object-store corpus: there
    the download itself checks the content against the scan's hash (``objects.SourceChanged``),
    and a stat per object would be a request per object."""
    if rt.corpus_remote:
        return None
    if isinstance(e, FileEntry):
        size, mtime_ns, source = e.size, e.mtime_ns, e.source
    else:
        size, mtime_ns, source = e["size"], e["mtime_ns"], e["source"]
    try:
        st = source_path(rt.corpus_root, source).stat()
    except OSError:
        return "vanished"
    return "changed" if st.st_size != size or st.st_mtime_ns != mtime_ns else None


def since_scan_line(source: str, what: str) -> str:
    """The run-log / status line of a file that vanished or changed after the scan."""
    if what == "vanished":
        return f"{source} vanished after the scan: not ingested; the next run drops it from the index"
    return f"{source} changed after the scan: not ingested this run (its previous rows, if any, stay); the next run ingests it"


def changed_since_scan(rt: Runtime, catalog: Catalog) -> list[dict[str, str]]:
    """Every file of the last manifest (status ok) that vanished or changed since that scan: what
    ``mmrag status`` lists. One ``stat`` per file (a local corpus), one listing (an object store)."""
    out = []
    rows = catalog.manifest_files()
    if rt.corpus_remote:
        from mmrag_assets.lib.ingest.objects import corpus_objects

        return [
            {"source": s, "what": w, "line": since_scan_line(s, w)}
            for s, w in corpus_objects(rt).changed(rows)
        ]
    for r in rows:
        what = since_scan(rt, r)
        if what is not None:
            out.append({"source": r["source"], "what": what, "line": since_scan_line(r["source"], what)})
    return out


def purge_documents(rt: Runtime, catalog: Catalog, doc_ids: set[str] | list[str]) -> int:
    """Remove the catalog and index rows of documents that left the corpus. Their page images stay
    until the next published version no longer references them (``gc_pages``)."""
    doc_ids = sorted(doc_ids)
    if not doc_ids:
        return 0
    n = catalog.delete_documents(doc_ids)
    from mmrag_assets.lib.store.table import delete_documents

    delete_documents(rt, doc_ids)
    return n


def gc_pages(rt: Runtime, catalog: Catalog, referenced: set[str], grace_s: float) -> list[str]:
    """Delete rendered page folders (``pages/<doc>/<fingerprint>/``) that neither a catalog row nor a
    live index version references, ``grace_s`` after they were first found unreferenced (a marker
    file records when), so a reader still on the previous version keeps its images; returns what
    was removed."""
    import time

    store = rt.storage
    if not store.remote and not rt.pages_dir.is_dir():
        return []
    keep = set(referenced)
    for image_path in catalog.page_image_paths():
        keep.add(Path(image_path).parent.as_posix())
    if store.remote:
        return _gc_remote_pages(store, keep, grace_s, time.time())
    removed = []
    now = time.time()
    for doc_dir in [d for d in rt.pages_dir.iterdir() if d.is_dir()]:
        for d in [x for x in doc_dir.iterdir() if x.is_dir()]:
            rel = d.relative_to(rt.storage_root).as_posix()
            marker = d / UNREFERENCED_MARKER
            if rel in keep:
                marker.unlink(missing_ok=True)
            elif not marker.exists():
                marker.write_text(str(now))
            elif now - marker.stat().st_mtime >= grace_s:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(rel)
        if not any(doc_dir.iterdir()):
            doc_dir.rmdir()
    return removed


def _gc_remote_pages(store, keep: set[str], grace_s: float, now: float) -> list[str]:
    """``gc_pages`` on an object-store root: the folders and the markers are objects there, so any
    worker's publish collects what any other worker rendered."""
    removed = []
    for doc in store.list_dirs("pages"):
        for fp in store.list_dirs(f"pages/{doc}"):
            rel = f"pages/{doc}/{fp}"
            marker = f"{rel}/{UNREFERENCED_MARKER}"
            seen = store.read_text(marker)
            if rel in keep:
                if seen is not None:
                    store.delete(marker)
                    (store.local / marker).unlink(missing_ok=True)
            elif seen is None:
                (store.local / rel).mkdir(parents=True, exist_ok=True)
                (store.local / marker).write_text(str(now))
                store.put(marker)
            elif now - float(seen or 0) >= grace_s:
                store.delete(rel)
                shutil.rmtree(store.local / rel, ignore_errors=True)
                removed.append(rel)
    return removed

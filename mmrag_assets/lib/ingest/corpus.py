"""Corpus-level operations shared by the manifest asset, the sensor and the CLI."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import NotFound
from mmrag_assets.lib.catalog import Catalog
from mmrag_assets.lib.ingest.manifest import FileEntry, cache_of, documents, scan_corpus


@dataclass
class ScanResult:
    entries: list[FileEntry]
    docs: dict[str, FileEntry]  # doc_id -> representative file

    @property
    def quarantined(self) -> list[FileEntry]:
        return [e for e in self.entries if e.status == "quarantined"]


def scan(cfg: MmragConfig, catalog: Catalog | None = None, cache: dict | None = None) -> ScanResult:
    """Scan the corpus, re-hashing only files whose size or mtime changed since the last manifest."""
    if cache is None and catalog is not None:
        cache = {
            r["source"]: (r["size"], r["mtime_ns"], r["sha256"], r["kind"])
            for r in catalog.query("SELECT source, size, mtime_ns, sha256, kind FROM manifest WHERE status <> 'quarantined'")
        }
    entries = scan_corpus(
        cfg.corpus_root, max_file_bytes=cfg.corpus.max_file_bytes, ignore_hidden=cfg.corpus.ignore_hidden, cache=cache
    )
    return ScanResult(entries, documents(entries))


def scan_cache(result: ScanResult) -> dict:
    return cache_of(result.entries)


def record_scan(catalog: Catalog, result: ScanResult) -> None:
    catalog.replace_manifest([e.row() for e in result.entries])
    catalog.replace_scan_quarantine(
        [{"source": e.source, "doc_id": e.doc_id, "reason": e.reason} for e in result.quarantined]
    )


def locate(cfg: MmragConfig, catalog: Catalog, doc_id: str) -> FileEntry:
    """The file holding document ``doc_id``: from the manifest if still valid, else by rescanning."""
    row = catalog.manifest_entry(doc_id)
    if row is not None:
        p = cfg.corpus_root / row["source"]
        try:
            st = p.stat()
            if st.st_size == row["size"] and st.st_mtime_ns == row["mtime_ns"]:
                return FileEntry(row["source"], row["size"], row["mtime_ns"], row["kind"], "ok", None, row["sha256"])
        except OSError:
            pass
    result = scan(cfg, catalog)
    if doc_id not in result.docs:
        raise NotFound(f"document {doc_id} is no longer in the corpus at {cfg.corpus_root}")
    return result.docs[doc_id]


def purge_documents(cfg: MmragConfig, catalog: Catalog, doc_ids: set[str] | list[str]) -> int:
    """Remove every trace of documents that left the corpus (catalog rows, images, index rows)."""
    doc_ids = sorted(doc_ids)
    if not doc_ids:
        return 0
    n = catalog.delete_documents(doc_ids)
    for d in doc_ids:
        shutil.rmtree(cfg.pages_dir / d, ignore_errors=True)
    from mmrag_assets.lib.index.table import delete_documents

    delete_documents(cfg, doc_ids)
    return n

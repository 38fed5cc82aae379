"""Embedding rows written anywhere, committed once: Lance's distributed write for the items table.

Any number of embedding steps (one per shard range, on as many GPU workers) write their rows as
Lance fragments straight into the table's ``data/`` folder (``lance.fragment.write_fragments``:
files no table version references yet, so no reader sees them) and record each chunk as a *staged
batch*: a small JSON object under ``staging/<table>/`` of the storage root (a local folder or the
object store) holding the fragments' metadata and, per document, the ingest fingerprint and item
ids of its rows. The single publisher (``search_index``, one slot) then commits every valid batch
in ONE Lance transaction (``LanceOperation.Update``: the documents' old rows deleted by deletion
vectors, the staged fragments added), the pattern Lance documents for Ray and Spark. So:

- N workers embed at once (nothing they do conflicts: they never commit), and the table still
  moves from one version to the next atomically;
- a worker killed mid-write leaves fragments no version references and, at most, complete staged
  batches of its finished chunks: no row of its range is visible; the rerun embeds only the
  documents no valid batch holds (a GPU-day is not redone for one lost machine);
- idempotent per item id: a document's rows are replaced by its newest batch only, a batch already
  committed (the publisher died before removing its JSON) is recognised by its data files, and a
  batch whose documents changed since (another ingest fingerprint, removed) is dropped, never
  committed.

The embeddings contract reads staged rows before the commit through a detached Lance version
(:func:`staged_rows`): a version outside the table's history that only a reader naming it sees.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmrag_assets.lib.store.storage import Storage

log = logging.getLogger(__name__)

STAGING_DIR = "staging"
COMMIT_RETRIES = 5  # Lance reports a conflicting concurrent write (a purge's delete) as retryable


@dataclass
class StagedBatch:
    """One chunk of staged rows: its fragments and what they hold per document."""

    id: str  # "<ns since epoch>-<uuid>": sorts in staging order
    table: str
    fragments: list[dict[str, Any]]  # lance FragmentMetadata.to_json() of each fragment
    # doc_id -> {"fp": ingest fingerprint of its rows (None: it has none now), "items": [item ids of its rows]}
    docs: dict[str, dict[str, Any]]
    rows: int
    run_id: str = ""
    staged_at: float = 0.0

    def files(self) -> list[str]:
        """The data files of the batch, relative to the table's ``data/`` folder."""
        return [f["path"] for fr in self.fragments for f in fr.get("files", [])]

    def state(self) -> dict[str, dict[str, str]]:
        """doc_id -> {item_id: ingest fingerprint}: what :func:`table.table_state` says once committed."""
        return {d: dict.fromkeys(v["items"], v["fp"]) for d, v in self.docs.items()}


@dataclass
class CommitResult:
    batches: int = 0  # staged batches committed
    documents: int = 0
    rows_added: int = 0
    rows_deleted: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)  # batches not committed, and why
    already: int = 0  # batches found committed already (their JSON removed now)
    version_before: int | None = None
    version_after: int | None = None
    conflicts: int = 0  # commit attempts a concurrent writer pre-empted (then retried)
    seconds: float = 0.0
    forgotten_gates: list[str] = field(default_factory=list)  # documents whose embeddings gate was reset

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self) | {"seconds": round(self.seconds, 3)}


class Staging:
    """The staged batches of one items table, under ``staging/<table>/`` of the storage root."""

    def __init__(self, store: Storage, table: str) -> None:
        self.store, self.table = store, table
        self.dir = f"{STAGING_DIR}/{table}"

    # ---- write (any worker)
    def stage(
        self, tbl: Any, data: pa.Table | None, docs: dict[str, dict[str, Any]], run_id: str = ""
    ) -> StagedBatch:
        """Write ``data`` (rows of the documents ``docs``; None when none of them has rows) as
        fragments of ``tbl`` that no version references, then record the batch (last: a batch
        record always names complete files)."""
        from lance.fragment import write_fragments

        from mmrag_assets.lib.faults import fault_point

        frags: list[dict[str, Any]] = []
        if data is not None and data.num_rows:
            ds = tbl.to_lance() if hasattr(tbl, "to_lance") else tbl
            # the dataset object, not its URI: the files get its format version and object-store settings
            frags = [f.to_json() for f in write_fragments(data, ds, schema=ds.schema)]
        fault_point("embed.written")
        batch = StagedBatch(
            f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}", self.table, frags, docs,
            int(data.num_rows) if data is not None else 0, run_id, time.time(),
        )  # fmt: skip
        self.store.write_bytes(f"{self.dir}/{batch.id}.json", json.dumps(asdict(batch)).encode())
        return batch

    # ---- read
    def batches(self) -> list[StagedBatch]:
        """Every staged batch, oldest first (an unreadable record is skipped and logged)."""
        out = []
        for rel in sorted(self.store.list_files(self.dir)):
            if not rel.endswith(".json"):
                continue
            try:
                raw = json.loads(self.store.read_text(rel) or "null")
                out.append(StagedBatch(**raw))
            except (ValueError, TypeError) as e:
                log.warning("staged batch %s is unreadable (%s): ignored", rel, e)
        return sorted(out, key=lambda b: b.id)

    def remove(self, batch: StagedBatch) -> None:
        """Forget a batch's record (its files stay: committed, or deleted by :meth:`discard`)."""
        rel = f"{self.dir}/{batch.id}.json"
        self.store.delete(rel)
        (self.store.local / rel).unlink(missing_ok=True)

    def discard(self, tbl: Any, batch: StagedBatch) -> None:
        """Delete a batch that will never be committed: its data files (no version references them),
        then its record."""
        base = _data_dir(tbl)
        for f in batch.files():
            _delete(self.store, base, f)
        self.remove(batch)


def staging_for(rt: Any, tbl: Any) -> Staging:
    """The staged batches of ``tbl`` in the runtime's store (``lib/store/runtime.Runtime``)."""
    return Staging(rt.storage, tbl.name)


# ---------------------------------------------------------------- selection
def current(batches: list[StagedBatch]) -> tuple[list[StagedBatch], list[StagedBatch]]:
    """(batches to commit, superseded ones): a document's newest batch wins, and a batch any of whose
    documents a newer batch holds is superseded whole (its other documents, if any, are embedded
    again by the next run: a batch is committed all or nothing)."""
    newest: dict[str, str] = {}
    for b in batches:  # oldest first: the last one seen wins
        for d in b.docs:
            newest[d] = b.id
    keep, old = [], []
    for b in batches:
        (keep if all(newest[d] == b.id for d in b.docs) else old).append(b)
    return keep, old


def staged_state(batches: list[StagedBatch]) -> dict[str, dict[str, str]]:
    """doc_id -> {item_id: ingest fingerprint} of the documents the current batches hold."""
    out: dict[str, dict[str, str]] = {}
    for b in current(batches)[0]:
        out.update(b.state())
    return out


# ---------------------------------------------------------------- the commit (the publisher)
def commit_staged(tbl: Any, staging: Staging, catalog: Any, *, version_key: str = "") -> CommitResult:
    """Commit every valid staged batch of ``tbl`` in one Lance transaction; drop the others.

    Valid: the newest batch of each of its documents, its data files present, and every document
    still in the catalog with the ingest fingerprint its rows were made from. The embeddings gates
    of documents whose rows are dropped are reset (``version_key``), so the next run embeds them
    again instead of trusting a check of rows that were never committed."""
    import lance

    t0 = time.perf_counter()
    out = CommitResult()
    batches = staging.batches()
    if not batches:
        return out
    tbl.checkout_latest()
    ds = tbl.to_lance()
    out.version_before = int(ds.version)
    committed_files = _referenced_files(ds)
    keep, superseded = current(batches)
    for b in superseded:
        out.dropped.append({"batch": b.id, "reason": "a newer batch holds some of its documents"})
        staging.discard(tbl, b)
    fps = catalog.live_fingerprints(sorted({d for b in keep for d in b.docs}))
    todo: list[StagedBatch] = []
    lost: set[str] = set()
    for b in keep:
        files = b.files()
        if files and all(f in committed_files for f in files):
            out.already += 1  # committed by a publisher that died before removing the record
            staging.remove(b)
            continue
        why = _invalid(b, fps, staging.store, _data_dir(tbl))
        if why:
            out.dropped.append({"batch": b.id, "reason": why})
            if why.startswith("data file"):
                lost |= {d for d, v in b.docs.items() if v["fp"] is not None and fps.get(d) == v["fp"]}
            staging.discard(tbl, b)
            continue
        todo.append(b)
    if lost and version_key:
        catalog.forget_checks(sorted(lost), "embeddings_contract", version_key)
        out.forgotten_gates = sorted(lost)
    if not todo:
        out.seconds = time.perf_counter() - t0
        return out
    from lance.fragment import FragmentMetadata

    new = [FragmentMetadata.from_json(json.dumps(f)) for b in todo for f in b.fragments]
    docs = sorted({d for b in todo for d in b.docs})
    for attempt in range(COMMIT_RETRIES + 1):
        tbl.checkout_latest()  # the handle may be pinned to the version it was opened at
        ds = tbl.to_lance()
        removed, updated, deleted = _delete_rows(ds, docs)
        op = lance.LanceOperation.Update(
            removed_fragment_ids=removed, updated_fragments=updated, new_fragments=new
        )
        try:
            lance.LanceDataset.commit(ds, op, read_version=ds.version, max_retries=0)
            break
        except OSError as e:  # lance.commit.CommitConflictError: a concurrent delete touched a fragment
            if "conflict" not in str(e).lower() or attempt == COMMIT_RETRIES:
                raise
            out.conflicts += 1
            time.sleep(0.2 * (attempt + 1))
    tbl.checkout_latest()
    from mmrag_assets.lib.faults import fault_point

    fault_point("embed.committed")
    for b in todo:
        staging.remove(b)
    out.batches, out.documents = len(todo), len(docs)
    out.rows_added, out.rows_deleted = sum(b.rows for b in todo), deleted
    out.version_after = int(tbl.version)
    out.seconds = time.perf_counter() - t0
    return out


def _invalid(b: StagedBatch, fps: dict[str, str], store: Storage, data_dir: str) -> str | None:
    for d, v in sorted(b.docs.items()):
        if d not in fps:
            return f"document {d} is no longer in the catalog"
        if v["fp"] is not None and fps[d] != v["fp"]:
            return f"document {d} was re-ingested since (ingest fingerprint {fps[d]} != {v['fp']})"
    for f in b.files():
        if not _exists(store, data_dir, f):
            return f"data file {f} is missing"
    return None


def _delete_rows(ds: Any, doc_ids: list[str]) -> tuple[list[int], list[Any], int]:
    """(fragments left empty, fragments with new deletion vectors, rows deleted): the rows of
    ``doc_ids`` in ``ds``, found through the ``doc_id`` index where there is one."""
    from mmrag_assets.lib.store.table import doc_filter

    if not doc_ids:
        return [], [], 0
    pred = doc_filter(doc_ids)
    hit = ds.to_table(columns=[], filter=pred, with_row_address=True).column("_rowaddr").to_numpy()
    frag_ids = sorted({int(a) >> 32 for a in hit})  # a row address is (fragment id << 32) | offset
    removed, updated = [], []
    for fid in frag_ids:
        meta = ds.get_fragment(fid).delete(pred)  # writes a deletion file; commits nothing
        if meta is None:
            removed.append(fid)
        else:
            updated.append(meta)
    return removed, updated, len(hit)


def _referenced_files(ds: Any) -> set[str]:
    return {f.path for fr in ds.get_fragments() for f in fr.metadata.files}


def _data_dir(tbl: Any) -> str:
    ds = tbl.to_lance() if hasattr(tbl, "to_lance") else tbl
    return f"{str(ds.uri).rstrip('/')}/data"


def _exists(store: Storage, data_dir: str, name: str) -> bool:
    if "://" not in data_dir:
        return (Path(data_dir) / name).is_file()
    from pyarrow import fs as pafs

    return store.fs.get_file_info(_key(data_dir, name)).type == pafs.FileType.File


def _delete(store: Storage, data_dir: str, name: str) -> None:
    if "://" not in data_dir:
        (Path(data_dir) / name).unlink(missing_ok=True)
        return
    with contextlib.suppress(FileNotFoundError):
        store.fs.delete_file(_key(data_dir, name))


def _key(data_dir: str, name: str) -> str:
    return f"{data_dir.split('://', 1)[1]}/{name}"  # pyarrow's S3 paths: bucket/key


# ---------------------------------------------------------------- reading staged rows (the contract)
@contextlib.contextmanager
def staged_rows(tbl: Any, staging: Staging, doc_ids: list[str]) -> Iterator[tuple[Any, set[str]]]:
    """``(dataset, docs)``: a detached Lance version holding only the current staged batches of
    ``doc_ids`` and which of those documents it holds (``(None, set())`` when none is staged).
    A detached version is outside the table's history (no reader of the table sees it); its manifest
    is removed on exit."""
    import lance

    want = set(doc_ids)
    batches = [b for b in current(staging.batches())[0] if want & set(b.docs)]
    if not batches or not any(b.fragments for b in batches):
        yield None, {d for b in batches for d in b.docs} & want
        return
    from lance.fragment import FragmentMetadata

    ds = tbl.to_lance()
    frags = [FragmentMetadata.from_json(json.dumps(f)) for b in batches for f in b.fragments]
    view = lance.LanceDataset.commit(
        ds, lance.LanceOperation.Overwrite(ds.schema, frags), read_version=ds.version, detached=True
    )
    try:
        yield view, {d for b in batches for d in b.docs} & want
    finally:
        # Lance names a detached version's manifest d<version>.manifest; nothing else reads it
        name = f"{str(ds.uri).rstrip('/')}/_versions/d{view.version}.manifest"
        try:
            _delete(staging.store, name.rsplit("/", 1)[0], name.rsplit("/", 1)[1])
        except OSError as e:  # left behind: a few hundred bytes no reader opens
            log.warning("could not remove the detached manifest %s: %s", name, e)

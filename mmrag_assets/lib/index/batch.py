"""Embedding many documents at once: plan from the catalog, the table and the staged batches, embed
in chunks, stage each chunk's rows as Lance fragments (``staging.py``: the publisher commits them, in
one transaction with every other worker's). One document's failure is isolated: a chunk that fails
is retried document by document, and only the failing document is recorded as failed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.lib.faults import fault_point
from mmrag_assets.lib.index.vectors import stored_payloads
from mmrag_assets.lib.progress import Progress
from mmrag_assets.lib.store import table as lx

log = logging.getLogger(__name__)


@dataclass
class EmbedPlan:
    todo: dict[str, list[dict[str, Any]]]  # doc_id -> embeddable items whose rows are missing or stale
    unchanged: list[str]  # documents whose rows (committed or staged) already match their items
    held: dict[str, str]  # doc_id -> why it is not embedded (a failed blocking check upstream)
    staged: list[str] = field(default_factory=list)  # of ``unchanged``: staged rows, not committed yet
    # of ``todo``: documents whose rows match their items but carry another source name (the file
    # was renamed or moved): rewritten with the vectors the table holds, nothing is embedded again
    relabel: set[str] = field(default_factory=set)


@dataclass
class EmbedRun:
    written: int = 0
    deleted: int = 0
    tokens: list[int] = field(default_factory=list)
    bytes_written: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # per item: NaN/inf, wrong dim
    failed: dict[str, str] = field(default_factory=dict)  # doc_id -> error (the document was not written)
    embedded_docs: list[str] = field(default_factory=list)
    batches: int = 0  # staged batches written
    seconds: float = 0.0


def plan_embeddings(
    catalog,
    tbl,
    embedder,
    doc_ids: list[str],
    held: dict[str, str],
    staged: dict[str, dict[str, str]] | None = None,
) -> EmbedPlan:
    """Which of ``doc_ids`` need (re-)embedding; ``held`` documents are skipped on purpose. ``staged``
    (:func:`staging.staged_state`) counts rows a killed or unpublished run staged: a rerun resumes."""
    shards = {d[0] for d in doc_ids}
    state = lx.table_state(tbl, shards)
    items = lx.documents_items(catalog, [d for d in doc_ids if d not in held])
    plan = EmbedPlan({}, [], dict(held))
    for doc_id, its in items.items():
        its = [it for it in its if lx.embeddable(it, embedder)]
        want = {it["item_id"]: it["ingest_fp"] for it in its}
        if staged and doc_id in staged:
            if staged[doc_id] == want:
                plan.unchanged.append(doc_id)
                plan.staged.append(doc_id)
            else:
                plan.todo[doc_id] = its  # a newer batch supersedes the staged one
        elif state.fps.get(doc_id, {}) != want:
            plan.todo[doc_id] = its
        elif its and state.sources.get(doc_id) != {its[0]["source"]}:
            plan.todo[doc_id] = its
            plan.relabel.add(doc_id)
        else:
            plan.unchanged.append(doc_id)
    return plan


def embed_and_write(
    tbl,
    embedder,
    todo: dict[str, list[dict[str, Any]]],
    storage_root: Path,
    *,
    chunk_items: int = 512,
    say: Callable[[str], None] | None = None,
    store: Any = None,
    staging: Any = None,
    run_id: str = "",
    reuse: set[str] | frozenset[str] = frozenset(),
) -> EmbedRun:
    """Embed the planned documents in chunks of about ``chunk_items`` items and stage each chunk
    (``staging``: a :class:`staging.Staging`; None writes the table directly, one merge-insert commit
    per chunk: benchmarks that measure the embedding alone). Documents in ``reuse`` (a plan's
    ``relabel``) are written with the vectors the table already holds for their items."""
    out = EmbedRun()
    t0 = time.perf_counter()
    docs = sorted(todo)
    chunks: list[list[str]] = [[]]
    n = 0
    for d in docs:
        if chunks[-1] and n + len(todo[d]) > chunk_items:
            chunks.append([])
            n = 0
        chunks[-1].append(d)
        n += len(todo[d])
    progress = Progress("embedded", sum(len(v) for v in todo.values()), say, unit="items")
    for chunk in [c for c in chunks if c]:
        try:
            _write(tbl, embedder, chunk, todo, storage_root, out, store, staging, run_id, reuse)
        except Exception as e:  # noqa: BLE001 - isolate the failing document, keep the others
            log.warning("embedding a chunk of %d documents failed (%s): retrying one by one", len(chunk), e)
            for d in chunk:
                try:
                    _write(tbl, embedder, [d], todo, storage_root, out, store, staging, run_id, reuse)
                except Exception as e1:  # noqa: BLE001
                    out.failed[d] = f"{type(e1).__name__}: {e1}"
        progress.step(sum(len(todo[d]) for d in chunk))
        fault_point("embed.chunk")
    progress.done(f"{len(out.failed)} documents failed" if out.failed else "")
    out.seconds = time.perf_counter() - t0
    return out


def _write(
    tbl,
    embedder,
    doc_ids: list[str],
    todo,
    storage_root: Path,
    out: EmbedRun,
    store: Any = None,
    staging: Any = None,
    run_id: str = "",
    reuse: set[str] | frozenset[str] = frozenset(),
) -> None:
    items = [it for d in doc_ids for it in todo[d]]
    fresh = [it for it in items if it["doc_id"] not in reuse]
    got = dict(
        zip(
            [it["item_id"] for it in fresh],
            lx.embed_items(embedder, fresh, storage_root, store) if fresh else [],
            strict=True,
        )
    )
    got |= stored_payloads(tbl, [d for d in doc_ids if d in reuse])
    vecs: list[np.ndarray | None] = [got.get(it["item_id"]) for it in items]
    if staging is None:
        res = lx.upsert_documents(tbl, doc_ids, items, vecs, embedder.dim)
    else:
        data, res = lx.prepare_rows(items, vecs, tbl.schema, embedder.dim)
        ids = data.column("item_id").to_pylist() if data is not None else []
        fps = {it["doc_id"]: it["ingest_fp"] for it in items}
        # fp None: a document without embeddable items now, whose batch only deletes its old rows
        docs: dict[str, dict[str, Any]] = {d: {"fp": fps.get(d), "items": []} for d in doc_ids}
        for item_id, d in zip(
            ids, data.column("doc_id").to_pylist() if data is not None else [], strict=True
        ):
            docs[d]["items"].append(item_id)
        staging.stage(tbl, data, docs, run_id)
        out.batches += 1
    out.written += res.written
    out.deleted += res.deleted
    out.tokens += res.tokens
    out.bytes_written += res.bytes_written
    out.quarantined += res.quarantined
    out.embedded_docs += doc_ids

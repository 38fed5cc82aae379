"""Which document shards a run must cover: the corpus scan against the catalog's gates.

The CLI and the corpus sensor ask this before launching a run, so that a run covers the shards
with new, changed or unfinished documents and not the whole corpus. It is a cheap look (a scan
that re-hashes only files whose size or mtime changed, and two catalog queries); the assets
themselves still decide per document what to do, so a plan that covers too much costs only
skipped documents, never wrong rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmrag_assets.lib.ingest.corpus import SHARD_KEYS, ScanResult, scan, shard_of
from mmrag_assets.lib.ingest.document import fingerprint
from mmrag_assets.lib.quality.gates import CATALOG_CHECKS, EMBEDDINGS_CHECK, gate_keys
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime


@dataclass
class RunPlan:
    shards: list[str]  # sorted shard keys with work to do
    new_documents: int = 0  # new or changed content, or other ingest settings
    unchecked: int = 0  # ingested but some gate has no result for the current rows (e.g. after a crash)
    unembedded: int = 0  # passed the catalog gates, no embeddings gate for this embedding version
    renamed: int = 0  # same content and settings under another name: the catalog and index relabel it
    removed: int = 0  # in the catalog, no longer in the corpus
    documents: int = 0
    scan: ScanResult | None = field(default=None, repr=False)

    @property
    def range(self) -> tuple[str, str] | None:
        """The contiguous shard range of a single run covering every shard with work."""
        return (self.shards[0], self.shards[-1]) if self.shards else None

    def describe(self) -> str:
        parts = [f"{self.documents} documents"]
        for n, what in (
            (self.new_documents, "new or changed"),
            (self.unchecked, "not yet checked"),
            (self.unembedded, "to embed"),
            (self.renamed, "renamed"),
            (self.removed, "removed"),
        ):
            if n:
                parts.append(f"{n} {what}")
        return ", ".join(parts)


def plan_run(
    rt: Runtime, catalog: Catalog, *, version_key: str | None = None, result: ScanResult | None = None
) -> RunPlan:
    """Shards with documents to ingest or check, and, when ``version_key`` is given, to embed."""
    cfg = rt.cfg
    result = result or scan(rt, catalog)
    docs = catalog.document_states()
    gates = catalog.gate_results(version_key or "", gate_keys(cfg.checks.contracts, cfg.model.dim))
    plan = RunPlan([], documents=len(result.docs), scan=result)
    todo: set[str] = set()
    for doc_id, e in result.docs.items():
        have = docs.get(doc_id)
        if have is None or have["sha256"] != e.sha256 or have["fingerprint"] != fingerprint(cfg, e.kind):
            plan.new_documents += 1
            todo.add(shard_of(doc_id))
            continue
        if have["source"] != e.source:  # its rows are kept; the catalog and the index take the new name
            plan.renamed += 1
            todo.add(shard_of(doc_id))
            continue
        catalog_gates = [gates.get((doc_id, c)) for c in CATALOG_CHECKS.values()]
        if any(g is None for g in catalog_gates):
            plan.unchecked += 1
            todo.add(shard_of(doc_id))
        elif (
            version_key
            and all(catalog_gates)
            and have["status"] != "quarantined"
            and gates.get((doc_id, EMBEDDINGS_CHECK)) is None
        ):
            plan.unembedded += 1
            todo.add(shard_of(doc_id))
    plan.removed = len(set(docs) - set(result.docs))
    plan.shards = sorted(todo, key=SHARD_KEYS.index)
    return plan

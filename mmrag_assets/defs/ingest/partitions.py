from __future__ import annotations

import dagster as dg

# One partition per document, keyed by content (sha256[:16]); never by path or page.
documents_partitions = dg.DynamicPartitionsDefinition(name="documents")


def reconcile_partitions(instance: dg.DagsterInstance, doc_ids: set[str]) -> tuple[list[str], list[str]]:
    """Make the registered partitions equal ``doc_ids``; returns (added, removed)."""
    name = documents_partitions.name
    existing = set(instance.get_dynamic_partitions(name))
    added, removed = sorted(doc_ids - existing), sorted(existing - doc_ids)
    if added:
        instance.add_dynamic_partitions(name, added)
    for key in removed:
        instance.delete_dynamic_partition(name, key)
    return added, removed

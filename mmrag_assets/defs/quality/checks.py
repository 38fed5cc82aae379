"""Contract checks: one blocking Great Expectations suite per table, run per document as a gate.

The catalog tables are written by ``document_content`` and the embeddings by ``item_embeddings``,
both partitioned by shard and run over many shards in one step. Each check validates the
documents of the run's shards that have no result for their current rows yet (one suite run per
table for all of them, see ``lib/quality/gates.py``) and records one gate row per document in the
catalog (``document_checks``). The gate is what blocks: ``item_embeddings`` skips documents whose
catalog gates failed, and ``search_index`` publishes only documents whose every gate passed, so a
bad document is never served while the others are.

In Dagster a check result covers the step's shards: it fails with WARN severity when some
documents were held back (the rest go on), with ERROR when every checked document failed (then
there is nothing for downstream steps to do, and Dagster's blocking skips them).
"""

from typing import Any

import dagster as dg

from mmrag_assets.config import MmragConfig
from mmrag_assets.defs.shared import WRITER, md_table
from mmrag_assets.lib.quality.gates import (
    CATALOG_CHECKS,
    EMBEDDINGS_CHECK,
    GateOutcome,
    gate_keys,
    gate_rows,
    validate_documents,
)
from mmrag_assets.resources import CatalogResource, EmbedderResource, LanceStoreResource, MmragConfigResource

CATALOG_ASSET = {"documents": "page_images", "pages": "page_images", "segments": "transcript_segments"}


def gate_result(
    cfg: MmragConfig, outcome: GateOutcome, sources: dict[str, str], **key: Any
) -> dg.AssetCheckResult:
    """A gate outcome as a check result: which documents failed, on which rows, and why."""
    failed = outcome.failed
    rows = [
        {
            "source": sources.get(d, d),
            "doc_id": d,
            "failed_checks": ", ".join(f["check"] for f in r.failures),
            "offending_ids": ", ".join(i for f in r.failures for i in f["offending_ids"][:5]),
        }
        for d, r in sorted(failed.items(), key=lambda kv: sources.get(kv[0], kv[0]))
    ]
    checked = len(outcome.results)
    all_failed = bool(checked) and len(failed) == checked
    blocking_error = cfg.checks.severity == "error" and all_failed
    return dg.AssetCheckResult(
        **key,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if blocking_error else dg.AssetCheckSeverity.WARN,
        description=None if not failed else f"{len(failed)} of {checked} documents held back from the index",
        metadata={
            "documents_checked": checked,
            "documents_failed": len(failed),
            "rows": outcome.rows,
            "failed_documents": md_table(rows, ["source", "doc_id", "failed_checks", "offending_ids"]),
            "offending_ids": dg.MetadataValue.json(
                {
                    d: {f["check"]: f["offending_ids"] for f in r.failures}
                    for d, r in list(failed.items())[:50]
                }
            ),
        },
    )


CATALOG_SPECS = [
    dg.AssetCheckSpec(
        check,
        asset=CATALOG_ASSET[table],
        blocking=True,
        description=f"Data contract of the catalog table `{table}` (data_contracts/{table}.py), per document: "
        "a document that fails it is not embedded or published.",
    )
    for table, check in CATALOG_CHECKS.items()
]


@dg.multi_asset_check(specs=CATALOG_SPECS, name="catalog_contracts", can_subset=False, pool=WRITER)
def catalog_contracts(
    context: dg.AssetCheckExecutionContext, mmrag: MmragConfigResource, catalog: CatalogResource
):
    """One step for the three catalog tables of the run's shards."""
    from mmrag_assets.lib.quality.frames import catalog_frame, contract_params

    cfg, cat = mmrag.cfg, catalog.catalog
    shards = _shards_of(context)
    params = contract_params(cfg.checks.contracts, cfg.model.dim)
    keys = gate_keys(cfg.checks.contracts, cfg.model.dim)
    sources = cat.sources()
    for table, check in CATALOG_CHECKS.items():
        todo = cat.unchecked_documents(check, "", shards, keys[0])
        outcome = validate_documents(
            table, check, lambda ids, t=table: catalog_frame(cat, t, ids), list(todo), params
        )
        cat.record_checks(gate_rows(outcome, todo, "", context.run.run_id))
        for d in outcome.failed:
            context.log.error(
                f"{sources.get(d, d)}: {check} failed; the document is held back from the index"
            )
        yield gate_result(cfg, outcome, sources, check_name=check, asset_key=CATALOG_ASSET[table])


@dg.asset_check(
    asset="item_embeddings",
    name=EMBEDDINGS_CHECK,
    blocking=True,
    pool=WRITER,
    description="Data contract of the LanceDB items table (data_contracts/embeddings.py), per document: "
    "a document that fails it is not published.",
)
def embeddings_contract(
    context: dg.AssetCheckExecutionContext,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    lance: LanceStoreResource,
    embedder: EmbedderResource,
) -> dg.AssetCheckResult:
    from mmrag_assets.lib.index.staging import staged_rows, staging_for
    from mmrag_assets.lib.quality.frames import contract_params, embeddings_frame

    cfg, cat = mmrag.cfg, catalog.catalog
    vk = embedder.version_key
    tbl = lance.table()
    todo = cat.unchecked_documents(
        EMBEDDINGS_CHECK, vk, _shards_of(context), gate_keys(cfg.checks.contracts, cfg.model.dim)[1]
    )
    live = {r["doc_id"] for r in cat.live_documents()}
    todo = {d: fp for d, fp in todo.items() if d in live}
    # rows the embedding step staged are in no table version yet: read through a detached version
    with staged_rows(tbl, staging_for(mmrag.runtime, tbl), list(todo)) as (view, staged):

        def frame_of(ids):
            import pandas as pd

            mine = [d for d in ids if d in staged]
            rest = [d for d in ids if d not in staged]
            parts = [embeddings_frame(view, mine)] if mine and view is not None else []
            if rest or not parts:
                parts.append(embeddings_frame(tbl, rest))
            return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

        outcome = validate_documents(
            "embeddings",
            EMBEDDINGS_CHECK,
            frame_of,
            list(todo),
            contract_params(cfg.checks.contracts, cfg.model.dim),
        )
    cat.record_checks(gate_rows(outcome, todo, vk, context.run.run_id))
    sources = cat.sources()
    for d in outcome.failed:
        context.log.error(
            f"{sources.get(d, d)}: {EMBEDDINGS_CHECK} failed; the document is held back from the index"
        )
    return gate_result(cfg, outcome, sources)


def _shards_of(context: dg.AssetCheckExecutionContext) -> list[str]:
    """The shards of the step (a check on a shard-partitioned asset runs over the run's range)."""
    from mmrag_assets.defs.shared import shards
    from mmrag_assets.lib.ingest.corpus import SHARD_KEYS

    tags = context.run.tags
    start, end = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    if start and end:
        return list(shards.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    return list(SHARD_KEYS)  # an unpartitioned launch (a check run on its own): every shard


CONTRACT_CHECKS = [catalog_contracts, embeddings_contract]

"""Contract checks: one blocking Great Expectations suite per table, on the asset that writes the table.

The catalog tables are written per document by the ``document_content`` multi-asset (partitioned by
document), and the embeddings per document by ``item_embeddings``. The checks share that
partitioning and validate the partition's rows, the batch that was just written: a check result
then belongs to one document, a failure blocks that document's downstream steps in the same run
(and, through the automation conditions, in later runs) without blocking unrelated documents, and a
later good run of the same document clears it. Row ids are content keys prefixed by the doc id and
the tables' primary keys enforce uniqueness across documents, so no check needs the whole table.
"""

import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg

from mmrag_assets.config import MmragConfig
from mmrag_assets.defs.ingest.partitions import documents_partitions
from mmrag_assets.resources.mmrag import MmragResource


def severity_of(cfg: MmragConfig) -> dg.AssetCheckSeverity:
    """``checks.severity``: error (blocks downstream) or warn (reports only)."""
    return (
        dg.AssetCheckSeverity.WARN
        if cfg.checks.severity.lower().startswith("warn")
        else dg.AssetCheckSeverity.ERROR
    )


def contract_check_result(
    result, severity: dg.AssetCheckSeverity, extra: Mapping[str, Any], **key: str
) -> dg.AssetCheckResult:
    """A ``data_contracts.ContractResult`` as check metadata: the failing expectations and their rows."""
    offending = {f["check"]: f["offending_ids"] for f in result.failures}
    lines = ["| check | column | rows | offending ids |", "|---|---|---|---|"]
    for f in result.failures:
        ids = ", ".join(f"`{i}`" for i in f["offending_ids"][:20]) + (
            " ..." if len(f["offending_ids"]) > 20 else ""
        )
        lines.append(
            f"| {f['check']} | {f['column']} | {f['count']} | {ids}{' (' + f['error'] + ')' if f['error'] else ''} |"
        )
    stats = result.statistics
    return dg.AssetCheckResult(
        **key,  # check_name / asset_key inside a multi-check
        passed=result.passed,
        severity=severity,
        description=None if result.passed else result.describe(),
        metadata={
            "suite": f"{result.suite}@{result.version}",
            "rows": int(stats.get("rows", 0)),
            "failed_checks": ", ".join(offending) or "(none)",
            "offending_ids": dg.MetadataValue.json(offending),
            "offending_rows": int(sum(f["count"] for f in result.failures)),
            "failures": dg.MetadataValue.md("\n".join(lines) if result.failures else "all expectations met"),
            "elapsed_s": round(float(stats.get("elapsed_s", 0.0)), 3),
            **extra,
        },
    )


CATALOG_TABLES = {"documents": "page_images", "pages": "page_images", "segments": "transcript_segments"}

with (
    warnings.catch_warnings()
):  # partitioned checks are a Dagster preview feature; used on purpose (see above)
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CATALOG_SPECS = [
        dg.AssetCheckSpec(
            f"{table}_contract",
            asset=asset,
            blocking=True,
            partitions_def=documents_partitions,
            description=f"Data contract of the catalog table `{table}` (data_contracts/{table}.py) on this document's rows.",
        )
        for table, asset in CATALOG_TABLES.items()
    ]


@dg.multi_asset_check(specs=CATALOG_SPECS, name="catalog_contracts", can_subset=False)
def catalog_contracts(context: dg.AssetCheckExecutionContext, mmrag: MmragResource):
    """One step for the three catalog tables a document run writes (a step per check cost ~1 s each)."""
    from data_contracts import validate_table
    from mmrag_assets.lib.catalog import Catalog
    from mmrag_assets.lib.quality.frames import catalog_frame, contract_params

    cfg = mmrag.config()
    catalog, params, severity = Catalog(cfg.catalog_path), contract_params(cfg), severity_of(cfg)
    doc_id = context.partition_key
    for table, asset in CATALOG_TABLES.items():
        result = validate_table(table, catalog_frame(catalog, table, doc_id), params)
        yield contract_check_result(
            result,
            severity,
            {"doc_id": doc_id, "table": table},
            check_name=f"{table}_contract",
            asset_key=asset,
        )


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(
        asset="item_embeddings",
        name="embeddings_contract",
        blocking=True,
        partitions_def=documents_partitions,
        description="Data contract of the LanceDB items table (data_contracts/embeddings.py) on this document's rows.",
    )
    def embeddings_contract(
        context: dg.AssetCheckExecutionContext, mmrag: MmragResource
    ) -> dg.AssetCheckResult:
        from data_contracts import validate_table
        from mmrag_assets.lib.index import table as lx
        from mmrag_assets.lib.index.embedding import version_key_for
        from mmrag_assets.lib.quality.frames import contract_params, embeddings_frame

        cfg = mmrag.config()
        doc_id = context.partition_key
        tbl = lx.open_table(cfg, version_key_for(cfg.model), cfg.model.dim, create=False)
        result = validate_table("embeddings", embeddings_frame(tbl, doc_id), contract_params(cfg))
        return contract_check_result(
            result, severity_of(cfg), {"doc_id": doc_id, "table": tbl.name, "table_version": int(tbl.version)}
        )


CONTRACT_CHECKS = [catalog_contracts, embeddings_contract]

"""Batch search as an asset: the queries in ``search.queries_file``, results into DuckDB."""

import time

import dagster as dg
from dagster import AssetExecutionContext

from mmrag_assets.defs.shared import EMBED_TAGS, WRITER, config_metadata, text
from mmrag_assets.lib.search.searcher import read_queries
from mmrag_assets.resources import CatalogResource, MmragConfigResource, SearcherResource


@dg.asset(deps=["search_index"], group_name="search", kinds={"duckdb"}, pool=WRITER, op_tags=EMBED_TAGS)
def search_results(
    context: AssetExecutionContext,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    searcher: SearcherResource,
) -> dg.MaterializeResult:
    """Ranked results of every query in ``search.queries_file`` (one query a line, or JSON Lines
    with a ``query`` field), replaced in the DuckDB table ``search_results`` on each run."""
    cfg = mmrag.cfg
    if not cfg.search.queries_file:
        raise dg.Failure("search.queries_file is not set: pass search.queries_file=PATH as an override")
    queries = read_queries(cfg.search.queries_file)
    searcher.index_version()  # no published index: fail here, before the catalog's results are replaced
    rows, errors, latencies = [], [], []
    run_id = context.run.run_id
    for qid, q in queries:
        t = time.perf_counter()
        try:
            resp = searcher.search(q)
        except Exception as e:  # noqa: BLE001 - one bad query is recorded, the batch goes on
            errors.append({"qid": qid, "error": str(e)})
            continue
        latencies.append((time.perf_counter() - t) * 1000)
        rows += [{"run_id": run_id, "qid": qid, "query": q, **r.public()} for r in resp.results]
    catalog.catalog.replace_search_results(rows)
    index = searcher.index_version()
    for e in errors:
        context.log.warning(f"query {e['qid']} failed: {e['error']}")
    latencies.sort()
    return dg.MaterializeResult(
        metadata={
            "queries": len(queries),
            "failed_queries": len(errors),
            "results": len(rows),
            "p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else 0.0,
            "index_table": index.table,
            "index_version": text(index.table_version),
            **config_metadata(cfg),
        }
    )

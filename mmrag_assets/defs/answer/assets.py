"""Batch answers as an asset: the questions in ``answer.questions_file``, answers into the catalog."""

import time

import dagster as dg
from dagster import AssetExecutionContext

from mmrag_assets.defs.shared import EMBED_TAGS, WRITER, config_metadata, text
from mmrag_assets.lib.answer.batch import answer_all, preview_md
from mmrag_assets.lib.answer.pipeline import Answerer
from mmrag_assets.lib.search.searcher import read_queries
from mmrag_assets.resources import CatalogResource, MmragConfigResource, RuntimeSearcherResource


@dg.asset(deps=["search_index"], group_name="search", kinds={"duckdb"}, pool=WRITER, op_tags=EMBED_TAGS)
def answers(
    context: AssetExecutionContext,
    mmrag: MmragConfigResource,
    catalog: CatalogResource,
    searcher: RuntimeSearcherResource,  # the answerer reads the items' text from its index view
) -> dg.MaterializeResult:
    """Cited answers to every question in ``answer.questions_file`` (one question a line, or JSON
    Lines with a ``query`` field) from the configured generator, replaced in the catalog table
    ``answers`` on each run: the answer, whether it abstained, its checked citations and sources."""
    cfg = mmrag.cfg
    if not cfg.answer.questions_file:
        raise dg.Failure("answer.questions_file is not set: pass answer.questions_file=PATH as an override")
    questions = read_queries(cfg.answer.questions_file)
    t0 = time.perf_counter()
    out = answer_all(Answerer(mmrag.runtime, searcher=searcher.searcher), questions, context.run.run_id)
    catalog.catalog.replace_answers(out.rows)
    for e in out.errors:
        context.log.warning(f"question {e['qid']} failed: {e['error']}")
    index = searcher.index_version()
    return dg.MaterializeResult(
        metadata={
            **out.summary(),
            "generator": cfg.answer.generator,
            "rerank": cfg.rerank.kind,
            "seconds": round(time.perf_counter() - t0, 2),
            "preview": dg.MetadataValue.md(preview_md(out.rows)),
            "index_table": index.table,
            "index_version": text(index.table_version),
            **config_metadata(cfg),
        }
    )

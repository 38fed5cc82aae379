"""Retrieval experiments as an asset: launch a config (or a Hydra sweep of configs) from the UI
and compare runs there, in DuckDB (``experiments``) and in the Markdown report."""

import base64
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import Field

from mmrag_assets.defs.shared import EMBED_TAGS, WRITER
from mmrag_assets.lib.evaluation.evaluate import HEADLINE
from mmrag_assets.resources import MmragConfigResource


class RetrievalExperimentsConfig(dg.Config):
    """Launchpad: ``ops: {retrieval_experiments: {config: {sweep: ["model=lite,tiny"]}}}``; the
    resource's ``overrides`` hold what every config shares."""

    sweep: list[str] = Field(
        default_factory=list
    )  # Hydra multirun overrides: a=x,y  choice()  range()  glob()
    name: str | None = None  # report name; default sweep-<sweep id>


@dg.asset(deps=["search_index"], group_name="evaluation", kinds={"duckdb"}, pool=WRITER, op_tags=EMBED_TAGS)
def retrieval_experiments(
    context: AssetExecutionContext, config: RetrievalExperimentsConfig, mmrag: MmragConfigResource
) -> dg.MaterializeResult:
    """Quality (nDCG, recall, MRR; first stage and reranked; per channel) and latency of each
    config of the sweep on the labelled query set ``eval.queries``, one row per config appended
    to the DuckDB table ``experiments``, plus a Markdown report and a quality-vs-latency plot.
    Configs must be indexed already (``mmrag index`` with their overrides)."""
    from mmrag_assets.lib.evaluation import report
    from mmrag_assets.lib.evaluation.experiments import run_grid

    out = run_grid(
        [*mmrag.overrides, *config.sweep],
        origin=f"dagster:{context.run.run_id}",
        name=config.name,
        progress=context.log.info,
    )
    runs, failed = out["runs"], out["failed"]
    for f in failed:
        context.log.error(f"{f['label']}: {f['error']}")
    if not runs:
        raise dg.Failure(f"every config failed; first: {failed[0]['error'] if failed else 'empty sweep'}")
    first = runs[0]
    png = base64.b64encode(Path(out["plot"]).read_bytes()).decode()
    numbers = {
        **{k: first["metrics"]["reranked"].get(k) for k in HEADLINE},
        **{f"{k} first_stage": first["metrics"]["first_stage"].get(k) for k in HEADLINE},
        "p50_ms": first["latency_ms"]["total"]["p50"],
        "p95_ms": first["latency_ms"]["total"]["p95"],
    }
    return dg.MaterializeResult(
        metadata={
            "metrics": dg.MetadataValue.md(report.markdown_table(runs) + "\n\n" + report.channel_table(runs)),
            "plot": dg.MetadataValue.md(f"![quality against latency](data:image/png;base64,{png})"),
            "report": dg.MetadataValue.path(out["report"]),
            "plot_path": dg.MetadataValue.path(out["plot"]),
            "sweep_id": out["sweep_id"],
            "run_ids": dg.MetadataValue.json([r["run_id"] for r in runs]),
            "configs": len(runs),
            "failed_configs": len(failed),
            "queries": first["queries"],
            "queries_evaluated": first["metrics"]["reranked"]["n_queries_evaluated"],
            "first_config": first["label"],
            # the first config's figures, as floats: the UI plots them across materialisations
            **{k: round(float(v), 4) for k, v in numbers.items() if v is not None},
            "resolved_config": dg.MetadataValue.json(first["config"]),
            "overrides": " ".join(first["overrides"]) or "(none)",
        }
    )

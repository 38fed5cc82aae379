"""Retrieval evaluation definitions (see assets.py)."""

import dagster as dg

from mmrag_assets.defs.evaluation.assets import retrieval_experiments

retrieval_experiments_job = dg.define_asset_job(
    "retrieval_experiments_job", selection=[retrieval_experiments]
)

EVAL_ASSETS: list = [retrieval_experiments]
EVAL_JOBS: list = [retrieval_experiments_job]

"""Retrieval evaluation definitions (see assets.py)."""

EVAL_ASSETS: list = []
EVAL_JOBS: list = []

"""Data-quality definitions: contract and drift asset checks, baseline job (see checks.py)."""

QUALITY_ASSETS: list = []
QUALITY_CHECKS: list = []
QUALITY_JOBS: list = []
QUALITY_SENSORS: list = []

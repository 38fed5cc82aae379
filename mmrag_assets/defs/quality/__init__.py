"""Data-quality definitions: blocking contract checks (checks.py), drift and modality-gap checks and the
baselines they compare against (drift.py), automation conditions (automation.py), job and sensor (jobs.py)."""

from mmrag_assets.defs.quality.checks import CONTRACT_CHECKS
from mmrag_assets.defs.quality.drift import drift_baselines, index_quality
from mmrag_assets.defs.quality.jobs import automation_sensor, drift_baseline_job

QUALITY_ASSETS: list = [drift_baselines]
QUALITY_CHECKS: list = [*CONTRACT_CHECKS, index_quality]
QUALITY_JOBS: list = [drift_baseline_job]
QUALITY_SENSORS: list = [automation_sensor]

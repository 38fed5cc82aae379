"""The baseline job and the sensor that evaluates the automation conditions."""

from __future__ import annotations

import dagster as dg

drift_baseline_job = dg.define_asset_job(
    "drift_baseline_job",
    selection=["drift_baselines"],
    description="Set or rotate the drift baselines on purpose; say why in ops.drift_baselines.config.reason.",
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "mmrag_automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    emit_backfills=False,  # one run per document, like the corpus sensor's ingest runs
    description="Embeds changed documents and rebuilds the index (automation conditions in defs/index/automation.py).",
)

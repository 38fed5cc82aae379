"""What every stage's definitions share: the document shards, the writer pools, metadata helpers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mmrag_assets.config import MmragConfig
from mmrag_assets.lib.ingest.corpus import SHARD_KEYS

# Documents are grouped into 16 shards by the first hex digit of their content key. A Dagster
# partition per document costs two storage events per asset per document (planned +
# materialised, ~17 ms each on this machine even on tmpfs, ~50 ms on disk): at 1,000 documents
# and three assets that is minutes of bookkeeping for a minute of work. Shards keep the events
# per run bounded (16 x assets), give a distributed executor 16 units to spread, and per-document
# outcomes live in the catalog and in each materialisation's metadata table.
shards = dg.StaticPartitionsDefinition(list(SHARD_KEYS))
SINGLE_RUN = dg.BackfillPolicy.single_run()

# Concurrency pools (limits in the instance's dagster.yaml): every step that writes the catalog,
# the rendered pages or the LanceDB table claims WRITER; building and publishing a search version
# claims PUBLISHER. The CLI's runs, daemon-launched runs and UI launches all go through them.
WRITER = "mmrag_writer"
PUBLISHER = "mmrag_publisher"


def config_metadata(cfg: MmragConfig) -> dict[str, Any]:
    return {"resolved_config": dg.MetadataValue.json(cfg.to_dict()), "overrides": " ".join(cfg.overrides) or "(none)"}


def when(ts: float | None = None) -> dg.MetadataValue:
    """A timestamp the UI shows as a date, not an epoch number."""
    return dg.MetadataValue.timestamp(ts if ts is not None else datetime.now(UTC).timestamp())


def md_table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str], limit: int = 200) -> dg.MetadataValue:
    """Rows as a Markdown table (at most ``limit``, with the total said), for the UI."""
    cols = list(columns)
    if not rows:
        return dg.MetadataValue.md("(none)")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows[:limit]:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    if len(rows) > limit:
        lines.append(f"\n{len(rows) - limit} more rows not shown ({len(rows)} in all).")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        v = round(v, 3)
    return str(v).replace("|", "\\|").replace("\n", " ")[:200]


def text(value: Any) -> dg.MetadataValue:
    """A value the UI must not plot (a constant, a version number)."""
    return dg.MetadataValue.text(str(value))


# ---------------------------------------------------------------- console output of CLI runs
class _CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        return str(meta.get("orig_message") or record.getMessage())


@dg.logger(
    {"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="Compact stderr lines for mmrag's CLI: asset log messages only; Dagster's own events with -v.",
)
def cli_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.Logger("mmrag_cli", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CliFormatter())
    log.addHandler(handler)
    return log

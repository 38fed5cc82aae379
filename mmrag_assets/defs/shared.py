"""What every stage's definitions share: the document shards, the writer pools, metadata helpers."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
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
# backfill_policy on assets is marked beta in Dagster 1.13; we rely on it on purpose (one run, many shards)
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

# Concurrency pools (limits in the instance's dagster.yaml): every step that writes the catalog,
# the rendered pages or the LanceDB table claims WRITER; building and publishing a search version
# claims PUBLISHER. The CLI's runs, daemon-launched runs and UI launches all go through them.
WRITER = "mmrag_writer"
PUBLISHER = "mmrag_publisher"
# Embedding loads the model and stages Lance fragments that only the publisher commits (no table
# commit, so no conflict between embedding steps): its own pool, limit = the writer pool's (it writes
# catalog rows), i.e. orchestration.workers with catalog=postgres.
EMBED = "mmrag_embed"
# Steps that load the model (embedding, and publishing, which embeds the probe queries) go to this
# celery queue: GPU workers consume it, CPU workers only `dagster`, so they never load a visual model.
EMBED_QUEUE = "mmrag-embed"
EMBED_TAGS = {"dagster-celery/queue": EMBED_QUEUE}


def config_metadata(cfg: MmragConfig) -> dict[str, Any]:
    return {
        "resolved_config": dg.MetadataValue.json(cfg.to_dict()),
        "overrides": " ".join(cfg.overrides) or "(none)",
    }


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


def previews(paths: Sequence[tuple[str, Path]], px: int = 96, limit: int = 4) -> dg.MetadataValue:
    """A few tiny inline JPEG previews (title, image path) as Markdown: metadata lives in the event
    log, so each is downscaled to ``px`` (a few KB) and there are at most ``limit``."""
    import base64
    import io

    from PIL import Image

    cells = []
    for title, path in list(paths)[:limit]:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((px, px))
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=70)
        except OSError:
            continue
        b64 = base64.b64encode(buf.getvalue()).decode()
        cells.append(f"![{_cell(title)}](data:image/jpeg;base64,{b64})")
    return dg.MetadataValue.md(" ".join(cells) if cells else "(no pages)")


def text(value: Any) -> dg.MetadataValue:
    """A value the UI must not plot (a constant, a version number)."""
    return dg.MetadataValue.text(str(value))


# ---------------------------------------------------------------- console output of CLI runs
_PROGRESS = re.compile(r"^(?P<what>\w+) (?P<n>\d+)/(?P<total>\d+)(?: (?P<unit>\w+))?, [\d.]+/s, ETA")
_DONE = re.compile(r"^(?P<what>\w+) (?P<n>\d+)/(?P<total>\d+)(?: (?P<unit>\w+))? in [\d.]+ s")


class _CliHandler(logging.Handler):
    """Asset log messages as plain lines on stderr; on a terminal, the progress lines of
    ``lib/progress.py`` become live ``rich`` progress bars (rate and ETA) instead."""

    def __init__(self) -> None:
        super().__init__()
        self.live = sys.stderr.isatty()
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        msg = str(meta.get("orig_message") or record.getMessage())
        m, d = _PROGRESS.match(msg), _DONE.match(msg)
        if self.live and (m or d):
            self._bar(m or d, done=d is not None)
            if m:
                return
        if self._bars is not None and not self._tasks:
            self._bars.stop()
            self._bars = None
        print(msg, file=sys.stderr, flush=True)

    def _bar(self, m: re.Match, *, done: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self._bars is None:
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._bars.start()
        what = m["what"]
        if what not in self._tasks:
            self._tasks[what] = self._bars.add_task(
                f"{what} {m['unit'] or ''}".strip(), total=int(m["total"])
            )
        self._bars.update(self._tasks[what], completed=int(m["n"]))
        if done:
            self._bars.remove_task(self._tasks.pop(what))


@dg.logger(
    {"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="Compact stderr lines for mmrag's CLI: asset log messages only; Dagster's own events with -v.",
)
def cli_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    # a fresh Logger per run, not the process-wide one of getLogger(): each run's level and handler
    log = logging.Logger("mmrag_cli", level=init_context.logger_config["log_level"])  # noqa: LOG001
    log.addHandler(_CliHandler())
    return log

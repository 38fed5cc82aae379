"""What the catalog holds, as one JSON-ready dict (``mmrag status --json``)."""

from __future__ import annotations

from typing import Any

from mmrag_assets.config import MmragConfig
from mmrag_assets.lib.catalog import Catalog

KINDS = ("pdf", "image", "audio", "video")


def catalog_status(cfg: MmragConfig) -> dict[str, Any]:
    if not Catalog.exists(cfg.catalog_url):
        return {
            "documents": dict.fromkeys(KINDS, 0), "pages": 0, "segments": 0, "quarantined": [], "held_back": [], "index": None,
        }
    cat = Catalog(cfg.catalog_url)
    by_kind = {
        r["kind"]: r["n"]
        for r in cat.query("SELECT kind, count(*) AS n FROM documents WHERE status <> 'quarantined' GROUP BY kind")
    }
    quarantined = cat.query("SELECT DISTINCT source, reason FROM quarantine ORDER BY source, reason")
    return {
        "documents": {k: int(by_kind.get(k, 0)) for k in KINDS},
        "pages": int(cat.scalar("SELECT count(*) FROM pages")),
        "segments": int(cat.scalar("SELECT count(*) FROM segments")),
        "quarantined": [{"source": q["source"], "reason": q["reason"]} for q in quarantined],
        "held_back": held_back(cfg, cat),
        "index": index_status(cfg),
    }


def held_back(cfg: MmragConfig, cat: Catalog) -> list[dict[str, Any]]:
    """Documents a failed blocking check keeps out of the served index."""
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.quality.gates import gate_keys

    return [
        {"source": r["source"], "check": r["check_name"]}
        for r in cat.failing_checks(version_key_for(cfg.model), gate_keys(cfg))
    ]


def index_status(cfg: MmragConfig) -> dict[str, Any] | None:
    """The LanceDB table of the configured embedding version, or None before `mmrag index`."""
    from mmrag_assets.lib.index import table as lx
    from mmrag_assets.lib.index.embedding import version_key_for

    if not lx.has_tables(cfg):
        return None
    db = lx.connect(cfg)
    name = lx.table_name(version_key_for(cfg.model))
    if name not in lx.list_item_tables(db):
        return None
    return lx.table_stats(db.open_table(name))

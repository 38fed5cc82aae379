"""What the catalog holds, as one JSON-ready dict (``mmrag status --json``)."""

from __future__ import annotations

from typing import Any

from mmrag_assets.lib.ingest.corpus import changed_since_scan
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime

KINDS = ("pdf", "image", "audio", "video", "office", "text")


def catalog_status(rt: Runtime) -> dict[str, Any]:
    if not Catalog.exists(rt.catalog_url):
        return {
            "documents": dict.fromkeys(KINDS, 0),
            "pages": 0,
            "segments": 0,
            "quarantined": [],
            "held_back": [],
            "index": None,
            "problems": [],
            "changed_after_scan": [],
        }
    cat = rt.catalog
    by_kind = cat.live_kind_counts()
    quarantined = cat.quarantine_reasons()
    return {
        "documents": {k: int(by_kind.get(k, 0)) for k in KINDS},
        "pages": cat.count_rows("pages"),
        "segments": cat.count_rows("segments"),
        "quarantined": [{"source": q["source"], "reason": q["reason"]} for q in quarantined],
        "held_back": held_back(rt, cat),
        "index": index_status(rt, cat),
        "problems": store_problems(rt, cat),
        # files of the last scan that vanished or changed since: the index does not reflect them
        "changed_after_scan": changed_since_scan(rt, cat)
        if rt.corpus_remote or not rt.storage_remote
        else [],
    }


def store_problems(rt: Runtime, cat: Catalog) -> list[str]:
    """Damage outside the index: rendered page files the catalog lists that are gone."""
    from mmrag_assets.lib.store.verify import REPAIR, missing_pages

    if rt.storage_remote:
        return []
    gone = missing_pages(rt, cat)
    if not gone:
        return []
    return [
        f"{sum(gone.values())} rendered page files of {len(gone)} documents missing under pages/: run `{REPAIR}`"
    ]


def held_back(rt: Runtime, cat: Catalog) -> list[dict[str, Any]]:
    """Documents a failed blocking check keeps out of the served index."""
    from mmrag_assets.lib.quality.gates import gate_keys

    return [
        {"source": r["source"], "check": r["check_name"]}
        for r in cat.failing_checks(rt.version_key, gate_keys(rt.cfg.checks.contracts, rt.cfg.model.dim))
    ]


def index_status(rt: Runtime, cat: Catalog | None = None) -> dict[str, Any] | None:
    """The LanceDB table of the configured embedding version and its published search version, or
    None before `mmrag index`. ``problems`` lists, one line each, what is incomplete (a killed
    embedding run: "49 of 129 items embedded") or damaged, with the command that repairs it."""
    from mmrag_assets.lib.store import manifest as mf
    from mmrag_assets.lib.store import table as lx
    from mmrag_assets.lib.store.manifest import location_for
    from mmrag_assets.lib.store.verify import lance_problems

    if not lx.has_tables(rt):
        return None
    vk = rt.version_key
    name = lx.table_name(vk)
    if rt.storage_remote:  # an object store: what the table says (the checks below read local files)
        db = lx.connect(rt)
        if name not in lx.list_item_tables(db):
            return None
        return {**lx.table_stats(db.open_table(name)), "published": None, "problems": []}
    uri = rt.lancedb_dir / f"{name}.lance"
    if not uri.exists():
        return None
    out: dict[str, Any] = {"table": name, "version": None, "rows": 0, "bytes_per_item": 0, "published": None}
    problems = lance_problems(rt, vk)
    tbl = None
    if not problems:
        tbl = _LocalTable(uri, name)
        out |= lx.table_stats(tbl)
        dups = lx.duplicate_rows(tbl)
        if len(dups):
            problems.append(
                f"LanceDB table {name}: {dups['item_id'].nunique()} item ids held more than once: run `mmrag index`"
            )
        expected = embeddable_items(rt, cat) if cat is not None else None
        if expected is not None and out["rows"] < expected:
            from mmrag_assets.lib.index.staging import staging_for

            n = sum(b.rows for b in staging_for(rt, tbl).batches())  # committed by the next publish
            staged = f" ({n} more staged, not committed)" if n else ""
            problems.append(
                f"incomplete: {out['rows']} of {expected} items embedded{staged}: run `mmrag index`"
            )
    loc = location_for(rt, vk)
    try:
        live = mf.current_version(loc)
    except mf.IndexDamaged as e:
        live = None
        problems.append(str(e))
    if live is not None:
        rep = mf.verify(loc, deep=False, table=tbl)
        if rep.ok:
            m = mf.read_manifest(loc, live)
            out["published"] = {
                "version": live,
                "items": int(m["n_alive"]),
                "documents": int(m["n_documents"]),
            }
        else:
            problems += [f"index version v{live}: {p}: run `mmrag index --verify`" for p in rep.problems]
    out["problems"] = problems
    return out


class _LocalTable:
    """The reads above of a local table (rows, version, files, duplicate ids), through pylance:
    importing lancedb for them was ~2.5 s of a no-op `mmrag index` on a loaded machine (issue 23)."""

    def __init__(self, uri: Any, name: str) -> None:
        import lance

        self._ds = lance.dataset(str(uri))
        self.name = name
        self.version = int(self._ds.version)

    def count_rows(self) -> int:
        return int(self._ds.count_rows())

    def to_lance(self) -> Any:
        return self._ds


def embeddable_items(rt: Runtime, cat: Catalog) -> int:
    """Items the configured tier embeds (the lite tier: items with text) of the documents no catalog
    check holds back."""
    from mmrag_assets.lib.quality.gates import CATALOG_CHECKS, gate_keys

    held = sorted(
        {r["doc_id"] for r in cat.failing_checks(rt.version_key, gate_keys(rt.cfg.checks.contracts, rt.cfg.model.dim))
         if r["check_name"] in CATALOG_CHECKS.values()}
    )  # fmt: skip
    return cat.embeddable_items(held, images=rt.cfg.model.arch != "lite")

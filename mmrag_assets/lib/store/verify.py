"""Self-verification and repair of a storage root (``mmrag index`` and ``mmrag index --verify``).

What is checked, cheapest first, and how each finding is repaired (all of it is derived data that
the corpus and the catalog can rebuild, except the catalog's own history):

- ``catalog.duckdb`` opens and answers: a damaged catalog is moved aside (``damaged/``) and
  rebuilt from the corpus by re-ingesting every document; only ``--verify`` does this, because the
  catalog also holds history that cannot be rebuilt (experiments, drift baselines, check results);
- the LanceDB table's latest manifest opens (a truncated manifest is moved aside, so the table
  opens at its newest readable version) and every data file of that version exists with the size
  the manifest records (the fragments of damaged files are dropped in one commit, so their
  documents' rows are missing and re-embedded);
- every rendered page image and thumbnail the catalog lists exists (a document with a missing one
  is marked stale and re-rendered into the same ``pages/<doc>/<fingerprint>/`` folder);
- the live search version's files have the sizes (``--verify``: the sha256) its manifest records
  and its pinned table version opens (otherwise the next publish rebuilds the version from the
  table instead of patching the damaged one: ``manifest.REBUILD``).

After a repair the run covers every shard: the assets then redo exactly what is missing.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.errors import CatalogDamaged

if TYPE_CHECKING:
    from mmrag_assets.lib.store.runtime import Runtime

REPAIR = "mmrag index --verify"
U64 = (1 << 64) - 1  # LanceDB's v2 manifest names: u64::MAX - version, so the newest sorts first


@dataclass
class StoreCheck:
    problems: list[str] = field(default_factory=list)  # what was found, one line each
    repaired: list[str] = field(default_factory=list)  # what was done about it
    rerun_all: bool = False  # the run must cover every shard
    seconds: float = 0.0


def _short(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def damaged_dir(rt: Runtime) -> Path:
    return rt.storage_root / "damaged" / time.strftime("%Y%m%dT%H%M%S")


# ---------------------------------------------------------------- catalog
def repair_catalog(rt: Runtime, out: StoreCheck) -> None:
    from mmrag_assets.lib.store.catalog import Catalog

    try:
        Catalog(rt.catalog_path).scalar("SELECT count(*) FROM documents")
        return
    except CatalogDamaged as e:
        out.problems.append(str(e))
    dest = damaged_dir(rt)
    dest.mkdir(parents=True, exist_ok=True)
    for p in rt.catalog_path.parent.glob(rt.catalog_path.name + "*"):  # the file and its .wal
        shutil.move(str(p), dest / p.name)
    Catalog(rt.catalog_path)
    out.repaired.append(
        f"moved the damaged catalog to {dest} and started a new one: every document is re-ingested"
    )
    out.rerun_all = True


# ---------------------------------------------------------------- LanceDB table
def lance_uri(rt: Runtime, version_key: str) -> Path:
    from mmrag_assets.lib.store.table import table_name

    return rt.lancedb_dir / f"{table_name(version_key)}.lance"


def lance_problems(rt: Runtime, version_key: str, *, deep: bool = False) -> list[str]:
    """What is wrong with the table's latest version: its manifest, its data files (``deep``: and
    a full scan of every column)."""
    problems, _ = _lance_findings(rt, version_key, deep=deep)
    return problems


def _lance_findings(rt: Runtime, version_key: str, *, deep: bool) -> tuple[list[str], list[int]]:
    import lance

    uri = lance_uri(rt, version_key)
    name = uri.stem
    if not uri.exists():
        return [], []
    try:
        ds = lance.dataset(str(uri))
    except Exception as e:  # noqa: BLE001 - any failure to open is the finding
        return [
            f"LanceDB table {name}: its latest version cannot be opened ({_short(e)}): run `{REPAIR}`"
        ], []
    problems, bad = [], []
    for fr in ds.get_fragments():
        for f in fr.metadata.files:
            p = uri / "data" / f.path
            size = f.file_size_bytes
            if not p.is_file():
                problems.append(f"LanceDB table {name}: data file data/{f.path} is missing: run `{REPAIR}`")
                bad.append(fr.fragment_id)
            elif size and p.stat().st_size != size:
                problems.append(
                    f"LanceDB table {name}: data file data/{f.path} has {p.stat().st_size} bytes, "
                    f"its manifest records {size}: run `{REPAIR}`"
                )  # fmt: skip
                bad.append(fr.fragment_id)
    if deep and not bad:
        try:
            for _ in ds.to_batches(batch_size=4096):
                pass
        except Exception as e:  # noqa: BLE001
            problems.append(f"LanceDB table {name}: a full scan fails ({_short(e)}): run `{REPAIR}`")
            bad = [fr.fragment_id for fr in ds.get_fragments()]
    return problems, sorted(set(bad))


def repair_lance(rt: Runtime, version_key: str, out: StoreCheck, *, deep: bool = False) -> None:
    import lance

    uri = lance_uri(rt, version_key)
    problems, bad = _lance_findings(rt, version_key, deep=deep)
    if not problems:
        return
    out.problems += problems
    out.rerun_all = True
    mark_rebuild(rt, version_key)
    dest = damaged_dir(rt) / uri.name
    versions = uri / "_versions"
    while not _opens(uri) and versions.exists():
        manifests = sorted(versions.glob("*.manifest"), key=lambda p: p.name)
        if not manifests:
            break
        dest.mkdir(parents=True, exist_ok=True)
        newest = (
            manifests[0]
            if manifests[0].stem.isdigit() and int(manifests[0].stem) > U64 // 2
            else manifests[-1]
        )
        shutil.move(str(newest), dest / newest.name)
        (versions / "latest_version_hint.json").unlink(missing_ok=True)
        out.repaired.append(f"LanceDB table {uri.stem}: moved the unreadable manifest {newest.name} aside")
    if not _opens(uri):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(uri), dest.with_suffix(".table"))
        out.repaired.append(
            f"LanceDB table {uri.stem}: no readable version left; moved aside, every item is re-embedded"
        )
        return
    _, bad = _lance_findings(rt, version_key, deep=deep)
    if bad:
        ds = lance.dataset(str(uri))
        op = lance.LanceOperation.Delete([], bad, "mmrag repair: fragments with damaged data files")
        lance.LanceDataset.commit(str(uri), op, read_version=ds.version)
        out.repaired.append(
            f"LanceDB table {uri.stem}: dropped {len(bad)} fragment(s) with damaged data files; their items are re-embedded"
        )
        # the BM25 and scalar indexes still count the dropped rows (BM25's document statistics would
        # differ from a clean build's): dropped here, the publish recreates them over the whole table
        from mmrag_assets.lib.store import table as lx

        tbl = lx.connect(rt).open_table(lx.table_name(version_key))
        for ix in tbl.list_indices():
            tbl.drop_index(ix.name)


def repair_duplicate_rows(rt: Runtime, version_key: str, out: StoreCheck) -> None:
    import lance
    import pyarrow.compute as pc

    from mmrag_assets.lib.store import table as lx

    uri = lance_uri(rt, version_key)
    if not uri.exists():
        return
    # the check reads one column with pylance (already imported above); lancedb, whose import alone
    # was half of a no-op `mmrag index` (~4 s of 8.5 s under load), only when there is something to repair
    ids = lance.dataset(str(uri)).to_table(columns=["item_id"])["item_id"]
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    tbl = lx.connect(rt).open_table(lx.table_name(version_key))
    ids = lx.repair_duplicates(tbl)
    if ids:
        out.problems.append(f"LanceDB table {tbl.name}: {len(ids)} item ids held more than once")
        out.repaired.append(
            f"LanceDB table {tbl.name}: kept the newest row of each of {len(ids)} repeated item ids"
        )
        out.rerun_all = True


def _opens(uri: Path) -> bool:
    import lance

    try:
        lance.dataset(str(uri)).count_rows()
        return True
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------- rendered pages
def missing_pages(rt: Runtime, cat: Any) -> dict[str, int]:
    """doc_id -> how many of its page images or thumbnails are missing on disk."""
    out: dict[str, int] = {}
    root = rt.storage_root
    for r in cat.query("SELECT doc_id, image_path, thumb_path FROM pages"):
        for rel in (r["image_path"], r["thumb_path"]):
            if rel and not (root / rel).is_file():
                out[r["doc_id"]] = out.get(r["doc_id"], 0) + 1
    return out


def repair_pages(rt: Runtime, cat: Any, out: StoreCheck) -> None:
    gone = missing_pages(rt, cat)
    if not gone:
        return
    srcs = {r["doc_id"]: r["source"] for r in cat.query("SELECT doc_id, source FROM documents")}
    for d, n in sorted(gone.items()):
        out.problems.append(f"{srcs.get(d, d)}: {n} rendered page file(s) missing under pages/")
    with cat.connect() as con:  # a stale fingerprint: the next ingest step re-renders the document
        con.execute(
            "UPDATE documents SET fingerprint = 'damaged:pages' WHERE doc_id IN (SELECT unnest(?))",
            [sorted(gone)],
        )
    out.repaired.append(f"{len(gone)} document(s) with missing page images marked for re-rendering")


# ---------------------------------------------------------------- the search index
def mark_rebuild(rt: Runtime, version_key: str) -> None:
    from mmrag_assets.lib.store.files import atomic_write_text
    from mmrag_assets.lib.store.manifest import REBUILD, location_for

    loc = location_for(rt, version_key)
    atomic_write_text(loc.root / REBUILD, f"requested {time.strftime('%Y-%m-%d %H:%M:%S')}\n")


def repair_index(rt: Runtime, version_key: str, out: StoreCheck, *, deep: bool) -> None:
    from mmrag_assets.lib.store import manifest as mf
    from mmrag_assets.lib.store.manifest import location_for

    loc = location_for(rt, version_key)
    try:
        live = mf.current_version(loc)
    except mf.IndexDamaged as e:
        out.problems.append(str(e))
        loc.current_file.unlink(missing_ok=True)
        live = None
        out.rerun_all = True
        mark_rebuild(rt, version_key)
    if live is None:
        return
    rep = mf.verify(loc, deep=deep)
    if rep.ok:
        return
    out.problems += [f"index version v{live}: {p}" for p in rep.problems]
    mark_rebuild(rt, version_key)
    out.repaired.append(f"index version v{live} is rebuilt from the table by this run's publish")
    out.rerun_all = True


def check_and_repair(rt: Runtime, version_key: str | None, *, deep: bool) -> StoreCheck:
    """Everything above, in order (the catalog only with ``deep``; otherwise a damaged catalog
    raises :class:`CatalogDamaged` naming the command that repairs it). A local storage root only."""
    t0 = time.perf_counter()
    out = StoreCheck()
    if rt.storage_remote:  # an object store keeps its own checksums; these checks read local files
        return out
    if deep and rt.cfg.catalog.backend == "duckdb":
        repair_catalog(rt, out)
    cat = rt.catalog
    cat.scalar("SELECT count(*) FROM documents")
    repair_pages(rt, cat, out)
    if version_key is not None:
        repair_lance(rt, version_key, out, deep=deep)
        repair_duplicate_rows(rt, version_key, out)
        repair_index(rt, version_key, out, deep=deep)
    out.seconds = time.perf_counter() - t0
    return out


def diagnose(rt: Runtime, version_key: str) -> str | None:
    """The first thing wrong with the store that serves ``version_key`` (cheap checks), or None:
    what a reader reports instead of a traceback."""
    from mmrag_assets.lib.store import manifest as mf
    from mmrag_assets.lib.store.manifest import location_for

    if rt.storage_remote:
        return None
    problems = lance_problems(rt, version_key)
    if problems:
        return problems[0]
    loc = location_for(rt, version_key)
    try:
        live = mf.current_version(loc)
    except mf.IndexDamaged as e:
        return str(e)
    if live is not None:
        rep = mf.verify(loc, deep=False)
        if not rep.ok:
            return f"index version v{live}: {rep.problems[0]}: run `{REPAIR}`"
    return None

"""The kill -9 suite: a small corpus (6 PDFs, 18 pages, lite tier, OCR off), one clean reference
run, then each case kills ``mmrag index`` at a named moment (``lib/faults.py``) and reruns it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.lib.store.runtime import Runtime

FAST = [
    "model=lite",
    "ingest.dpi=30",
    "ocr=none",
    "index.write_chunk_items=4",
    "storage.gc_grace_s=0",
    "index.gc_grace_s=0",
]
WORDS = [
    "tidal",
    "turbines",
    "ocean",
    "bees",
    "waggle",
    "dance",
    "volcano",
    "basalt",
    "glacier",
    "ice",
    "river",
    "delta",
]
QUERIES = ["waggle dance of bees", "basalt volcano", "river delta page 2", "document 4 topic 28"]


def make_corpus(root: Path, n: int = 6, pages: int = 3) -> None:
    """The same bytes every time (fixed metadata, no new file id): document ids are content hashes,
    so every case and the clean run must see identical files."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        doc = pymupdf.open()
        for p in range(pages):
            w1, w2 = WORDS[(i * 2) % len(WORDS)], WORDS[(i * 2 + 1) % len(WORDS)]
            doc.new_page().insert_text((72, 72), f"{w1} {w2} document {i} page {p + 1} topic {i * 7}")
        doc.set_metadata(
            {"creationDate": "D:20260101000000", "modDate": "D:20260101000000", "producer": "mmrag tests"}
        )
        doc.save(root / f"doc{i}.pdf", no_new_id=True)


def cfg_for(base: Path, *extra: str) -> MmragConfig:
    return load_config([f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", *FAST, *extra])


def mmrag(
    cfg: MmragConfig, *args: str, fault: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``mmrag <args>`` in a fresh process (``fault``: MMRAG_FAULT_AT for it)."""
    env = {k: v for k, v in os.environ.items() if k != "MMRAG_FAULT_AT"}
    if fault:
        env["MMRAG_FAULT_AT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "mmrag_assets.cli", *args, *cfg.overrides],
        check=False, capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def snapshot(cfg: MmragConfig) -> dict[str, Any]:
    """What a user can observe: table rows, the served items, search results and status."""
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.index.publish import location_for
    from mmrag_assets.lib.search.searcher import Searcher
    from mmrag_assets.lib.status import catalog_status
    from mmrag_assets.lib.store import manifest as mf
    from mmrag_assets.lib.store import table as lx

    vk = version_key_for(cfg.model)
    tbl = lx.open_table(Runtime(cfg), vk, lx.model_schema(cfg.model), create=False)
    t = tbl.to_arrow().select(["item_id", "doc_id", "item_fp"]).to_pylist()
    loc = location_for(cfg, vk)
    served = sorted(mf.read_state(loc, mf.current_version(loc))["docs"].astype(str).tolist())
    searcher = Searcher(Runtime(cfg))
    results = {q: [(r.item_id, round(r.score, 4)) for r in searcher.search(q, k=5).results] for q in QUERIES}
    st = catalog_status(Runtime(cfg))
    ix = st.pop("index")
    return {
        "item_ids": sorted(r["item_id"] for r in t),
        "rows": sorted((r["item_id"], r["item_fp"]) for r in t),
        "served_documents": served,
        "results": results,
        "status": st,
        "index_items": (ix["rows"], ix["published"]["items"], ix["published"]["documents"], ix["problems"]),
    }


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted reference: the same corpus indexed once, in this process."""
    from mmrag_assets.orchestration.launch import index

    base = tmp_path_factory.mktemp("clean")
    make_corpus(base / "corpus")
    cfg = cfg_for(base)
    index(cfg)
    return snapshot(cfg)

"""Catalog's document queries the assets use (the SQL stays in lib/store), on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

from mmrag_assets.lib.store.catalog import Catalog


def _doc(doc_id: str, source: str, status: str = "ok") -> dict:
    return {"doc_id": doc_id, "source": source, "kind": "pdf", "sha256": doc_id * 8, "size": 1,
            "n_pages": 0, "n_segments": 0, "duration_s": None, "status": status, "fingerprint": "f"}  # fmt: skip


def test_sources_live_documents_and_relabel(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.duckdb")
    for d in (_doc("b", "zeta.pdf"), _doc("a", "alpha.pdf"), _doc("q", "bad.pdf", "quarantined")):
        cat.write_document(d)
    assert cat.sources() == {"a": "alpha.pdf", "b": "zeta.pdf", "q": "bad.pdf"}
    assert cat.live_documents() == [
        {"doc_id": "a", "source": "alpha.pdf"},
        {"doc_id": "b", "source": "zeta.pdf"},
    ]
    cat.relabel([("b", "renamed/aardvark.pdf")])
    cat.relabel([])  # nothing renamed: no connection, no change
    assert [r["source"] for r in cat.live_documents()] == ["alpha.pdf", "renamed/aardvark.pdf"]
    assert cat.document("b")["sha256"] == "b" * 8  # the rows stay, only the name changes

"""Text layers with control characters (a PDF whose font maps glyphs to U+0000): the catalog keeps
them as spaces, so PostgreSQL takes the rows. Before, one such PDF failed the catalog write of its
shard, and with it the whole run: no file of the corpus was indexed (`catalog=postgres`)."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.ingest.document import catalog_text
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.status import catalog_status
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.launch import index
from tests.integration.test_orchestration import FAST
from tests.scale.services import fresh_database, postgres_available

NUL_TEXT = "the pump\x00manual says\x01prime the pump first"


def _pdf_with_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), text)
    doc.save(path)


def test_catalog_text_replaces_what_no_catalog_takes() -> None:
    assert catalog_text("plain words") == "plain words"
    assert catalog_text("tabs\tand\nlines\r\n") == "tabs\tand\nlines\r\n"  # kept: they are text
    assert catalog_text("a\x00b\x08c\x1bd\x7fe") == "a b c d e"
    assert catalog_text("broken \ud835 map") == "broken \ufffd map"
    assert catalog_text(catalog_text("a\x00b")).encode("utf-8")  # encodable, and stable


def test_a_text_layer_with_nuls_is_kept_as_text(make_cfg, tmp_path: Path) -> None:
    from mmrag_assets.lib.ingest.document import ingest_document

    cfg = make_cfg(*FAST)
    _pdf_with_text(Path(cfg.corpus.root) / "nul.pdf", NUL_TEXT)
    assert "\x00" in pymupdf.open(Path(cfg.corpus.root) / "nul.pdf")[0].get_text()  # the layer holds it
    res = ingest_document(Runtime(cfg), source="nul.pdf", doc_id="d1", kind="pdf", sha256="0" * 64, size=1)
    assert res.status == "ok"
    assert res.pages[0]["text"] == "the pump manual says prime the pump first"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not postgres_available(), reason="needs the Postgres server on 127.0.0.1:5432 (.ci/run starts it)"
)
def test_postgres_catalog_indexes_a_pdf_with_nuls_and_the_other_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _pdf_with_text(corpus / "nul.pdf", NUL_TEXT)
    _pdf_with_text(corpus / "ok.pdf", "error E04 means the grid voltage is out of range")
    with fresh_database() as db:
        cfg = load_config([f"corpus.root={corpus}", f"storage.root={tmp_path / 's'}", *FAST,
                           "catalog=postgres", f"catalog.url={db}"])  # fmt: skip
        index(cfg)  # raised MmragError (document_content: "PostgreSQL text fields cannot contain NUL") before
        rt = Runtime(cfg)
        try:
            st = catalog_status(rt)
            assert st["documents"]["pdf"] == 2 and st["pages"] == 2 and not st["quarantined"]
            hits = get_searcher(rt).search("prime the pump").results
            assert hits and hits[0].source == "nul.pdf"
        finally:
            rt.close()

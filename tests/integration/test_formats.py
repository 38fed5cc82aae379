"""A folder with every listed format and the hostile cases, indexed by one real `mmrag index` run
(real LibreOffice, real Dagster, real LanceDB): each file searchable or quarantined with a reason."""

from __future__ import annotations

import time

import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.lib.status import catalog_status
from mmrag_assets.lib.store.runtime import Runtime
from tests.formats_corpus import DIAGRAM_WORD, NOTES_WORD, WORDS, formats_corpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def indexed_formats(tmp_path_factory: pytest.TempPathFactory) -> tuple[MmragConfig, dict, dict]:
    from mmrag_assets.orchestration.launch import index

    root, expected = formats_corpus(tmp_path_factory)
    storage = tmp_path_factory.mktemp("formats-storage")
    cfg = load_config([f"corpus.root={root}", f"storage.root={storage}", "model=lite"])
    summary = index(cfg)
    return cfg, expected, summary


def _reasons(cfg: MmragConfig) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for q in catalog_status(Runtime(cfg))["quarantined"]:
        out.setdefault(q["source"], []).append(q["reason"])
    return out


def test_every_file_is_searchable_or_quarantined_with_its_reason(indexed_formats) -> None:
    from mmrag_assets.lib.search.searcher import search

    cfg, expected, _ = indexed_formats
    reasons = _reasons(cfg)
    status = catalog_status(Runtime(cfg))
    assert status["documents"].get("office", 0) >= 10 and status["documents"].get("text", 0) >= 8, status[
        "documents"
    ]
    for source, (want, what) in expected.items():
        if want == "quarantined":
            assert any(what in r for r in reasons.get(source, [])), (
                f"{source}: {reasons.get(source)} lacks {what!r}"
            )
            continue
        if want == "partial":
            assert any(what in r for r in reasons.get(source, [])), (
                f"{source}: {reasons.get(source)} lacks {what!r}"
            )
            continue
        top = search(what, k=3, cfg=cfg).results
        sources = [r.source for r in top]
        assert source in sources, f"{what!r} -> {[(r.source, r.page) for r in top]}"
        # first, unless behind hostile/macros.docm: the docx with a macro part added (same words, a tie)
        assert sources[0] == source or (source, sources[0]) == ("office/docx.docx", "hostile/macros.docm"), (
            sources
        )
        hit = top[sources.index(source)]
        assert hit.page is not None and hit.modality == "page"


def test_slides_notes_and_diagram_text_are_found_on_their_slide(indexed_formats) -> None:
    from mmrag_assets.lib.search.searcher import search

    cfg, _, _ = indexed_formats
    notes = search(NOTES_WORD, k=10, cfg=cfg).results
    assert {(r.source, r.page) for r in notes[:3]} >= {
        ("office/pptx.pptx", 1),
        ("office/odp.odp", 1),
        ("office/ppt.ppt", 1),
    }
    diagram = search(DIAGRAM_WORD.lower(), k=10, cfg=cfg).results
    assert ("office/pptx.pptx", 2) in {(r.source, r.page) for r in diagram[:3]}
    sheet = search(f"{WORDS['xls']} walrus headcount", k=3, cfg=cfg).results
    assert (sheet[0].source, sheet[0].page) == ("office/xls.xls", 2)  # sheet 2 of the workbook


def test_results_of_converted_files_link_the_original(indexed_formats) -> None:
    from fastapi.testclient import TestClient

    from mmrag_assets.api.app import create_app

    cfg, _, _ = indexed_formats
    with TestClient(create_app(cfg), base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 300
        while client.get("/readyz").status_code != 200:  # the index loads in the background
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.5)
        body = client.get("/search", params={"q": WORDS["pptx"], "k": 3}).json()
        top = body["results"][0]
        assert (
            top["source"] == "office/pptx.pptx" and top["original_url"] == f"/items/{top['item_id']}/original"
        )
        got = client.get(top["original_url"])
        assert got.status_code == 200 and got.content == (cfg.corpus_root / "office/pptx.pptx").read_bytes()
        assert got.headers["content-disposition"].startswith("attachment")
        html = client.get("/search", params={"q": WORDS["html"], "k": 1}).json()["results"][0]
        page = client.get(html["original_url"])
        assert (
            page.headers["content-disposition"].startswith("attachment")
            and page.headers["content-security-policy"] == "sandbox"
        )

"""``corpus.root=s3://bucket/prefix`` on a real S3 emulator (moto's server on 127.0.0.1): the sample
corpus (and an HTML page whose picture is another object) indexed from the bucket gives the rows and
the top-10 results of the same files on local disk; each object is downloaded once, a changed object
is re-indexed, an unchanged one (even uploaded again) is not downloaded again, and a result's links
serve the object."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.fixtures.sample_corpus import DIAGRAM, REPORT, build_sample_corpus
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.launch import index
from tests.hostile_corpus import _pdf
from tests.scale.services import counting_gets, s3_emulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "mmrag-test"
PREFIX = "team/docs"
QUERIES = ["what does error E04 mean", "how do I mount the solar inverter on the wall", "router firmware reset",
           "home network diagram", "quarterly revenue", "set up the garden sprinkler"]  # fmt: skip
ROWS = {
    "documents": "SELECT doc_id, source, kind, status, n_pages, n_segments, sha256 FROM documents ORDER BY doc_id",
    "pages": "SELECT item_id, doc_id, page, modality, image_path, text, text_source FROM pages ORDER BY item_id",
    "segments": "SELECT item_id, doc_id, start_s, end_s, text FROM segments ORDER BY item_id",
    "quarantine": "SELECT source, doc_id, stage, reason FROM quarantine ORDER BY source, stage, reason",
    "manifest": "SELECT source, doc_id, sha256, size, kind, status, reason FROM manifest ORDER BY source",
    "checks": "SELECT doc_id, check_name, version_key, passed FROM document_checks ORDER BY doc_id, check_name, version_key",
}


def _rows(cfg) -> dict[str, list[tuple]]:
    cat = Catalog(cfg.catalog_url)
    return {k: [tuple(r.values()) for r in cat.query(sql)] for k, sql in ROWS.items()}


def _hits(cfg) -> dict[str, list[tuple]]:
    s = get_searcher(Runtime(cfg))
    return {
        q: [(r.item_id, r.source, r.page, r.start_s, r.score) for r in s.search(q, k=10).results]
        for q in QUERIES
    }


@pytest.fixture
def gets() -> Iterator[collections.Counter]:
    """Every object GET the emulator answers (it runs in this process): key -> count."""
    with counting_gets() as seen:
        yield seen


def _upload(s3, corpus: Path) -> dict[str, str]:
    keys = {}
    for p in sorted(corpus.rglob("*")):
        if p.is_file():
            rel = p.relative_to(corpus).as_posix()
            keys[rel] = f"{PREFIX}/{rel}"
            s3.put_object(Bucket=BUCKET, Key=keys[rel], Body=p.read_bytes())
    return keys


def test_s3_corpus_indexes_like_local_disk_and_downloads_only_what_changed(
    tmp_path: Path, monkeypatch, gets
) -> None:
    import boto3

    corpus = tmp_path / "corpus"
    build_sample_corpus(corpus)
    # a converted page whose picture is another object: the worker fetches it beside the document
    (corpus / "notes").mkdir()
    (corpus / "notes" / "setup.html").write_text(
        f"<html><body><h1>Garden sprinkler setup</h1><p>Set up the garden sprinkler before the first frost.</p>"
        f'<img src="../{DIAGRAM}"></body></html>'
    )
    local = load_config([f"corpus.root={corpus}", f"storage.root={tmp_path / 'local'}", "model=lite"])
    s_local = index(local)
    assert not s_local["failed"] and s_local["ingested"] >= 6

    with s3_emulator(BUCKET) as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3")
        keys = _upload(s3, corpus)
        gets.clear()
        common = [f"corpus.root=s3://{BUCKET}/{PREFIX}", "storage.allow_http=true", "model=lite"]
        remote = load_config(
            [*common, f"storage.root={tmp_path / 'remote'}", f"storage.cache_dir={tmp_path / 'cache'}"]
        )
        s_remote = index(remote)
        assert (s_remote["ingested"], s_remote["embedded"], s_remote["failed"]) == (
            s_local["ingested"],
            s_local["embedded"],
            [],
        )
        # each object downloaded once, by the scan that hashed it; ingestion read this machine's cache
        assert gets == {k: 1 for k in keys.values()}, gets

        rows_local, rows_remote = _rows(local), _rows(remote)
        assert rows_remote == rows_local
        assert any("setup.html" in r[1] for r in rows_local["documents"])
        h_local, h_remote = _hits(local), _hits(remote)
        assert h_remote == h_local and all(h_local.values())

        # a result's links serve the object (the recording, the HTML original) through the API
        from fastapi.testclient import TestClient

        from mmrag_assets.api.app import create_app

        with TestClient(create_app(remote), base_url="http://127.0.0.1") as client:
            deadline = time.monotonic() + 300
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").json()
                time.sleep(0.5)
            rec = next(
                r
                for r in client.get("/search", params={"q": "router reset", "k": 10}).json()["results"]
                if r["media_url"]
            )
            got = client.get(rec["media_url"])
            assert got.status_code == 200 and got.content == (corpus / rec["source"]).read_bytes()
            part = client.get(rec["media_url"], headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == got.content[:100]
            page = next(r for r in client.get("/search", params={"q": "garden sprinkler", "k": 10}).json()["results"]
                        if r["source"] == "notes/setup.html")  # fmt: skip
            orig = client.get(page["original_url"])
            assert orig.content == (corpus / "notes" / "setup.html").read_bytes()
            assert orig.headers["content-disposition"].startswith("attachment")

        # a changed object, and one uploaded again with the same bytes (a new Last-Modified, the same ETag)
        time.sleep(1.1)
        changed = corpus / REPORT
        changed.write_bytes(
            _pdf(
                "error E04 means the grid voltage is out of range; see the revised quarterly report", pages=3
            )
        )
        s3.put_object(Bucket=BUCKET, Key=keys[REPORT], Body=changed.read_bytes())
        s3.put_object(Bucket=BUCKET, Key=keys[DIAGRAM], Body=(corpus / DIAGRAM).read_bytes())
        gets.clear()
        again = index(remote)
        assert again["ingested"] == 1 and not again["failed"]
        assert gets == {keys[REPORT]: 1}, gets  # the touched one was told apart by its ETag, no download
        assert index(local)["ingested"] == 1
        assert _rows(remote) == _rows(local)
        assert _hits(remote) == _hits(local)

        # another machine with an empty cache and nothing to ingest downloads nothing (the photo, which
        # the lite tier cannot embed, makes every run publish, locally too)
        gets.clear()
        other = load_config(
            [*common, f"storage.root={tmp_path / 'remote'}", f"storage.cache_dir={tmp_path / 'other-cache'}"]
        )
        last = index(other)
        assert (last["ingested"], last["embedded"]) == (0, 0) and not gets

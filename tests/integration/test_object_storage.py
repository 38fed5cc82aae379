"""An s3:// storage root on a real S3 emulator (moto's server on 127.0.0.1): the LanceDB table,
the search index and the page images live in the object store, and a search replica with an
empty local mirror serves the same results as a run on local disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.status import catalog_status
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.launch import index
from tests.integration.test_orchestration import FAST, _pdf
from tests.scale.services import fresh_database, postgres_available, s3_emulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not postgres_available(), reason="needs the Postgres server on 127.0.0.1:5432 (.ci/run starts it)"
    ),
]


def _hits(cfg, q: str) -> list[tuple]:
    return [(r.item_id, r.source, r.page, r.score) for r in get_searcher(Runtime(cfg)).search(q).results]


def _keys(prefix: str) -> set[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket="mmrag-test", Prefix=prefix)
    return {o["Key"] for p in pages for o in p.get("Contents", [])}


def test_s3_root_collects_the_buckets_old_index_versions(tmp_path: Path, monkeypatch) -> None:
    """The object store's copy of the index follows the local folder's garbage-collection rule: past
    index.gc_grace_s a replaced version's manifest and the files only it named leave the bucket, the
    live version's files all stay, and a replica with an empty mirror still serves it."""
    import json

    import boto3

    corpus = tmp_path / "corpus"
    _pdf(corpus / "a.pdf", "the solar inverter mounts on a concrete wall with four anchor bolts", pages=2)
    with s3_emulator() as env, fresh_database() as db:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        remote = [f"corpus.root={corpus}", *FAST, "storage.root=s3://mmrag-test/store", "storage.allow_http=true",
                  "catalog=postgres", f"catalog.url={db}", "index.gc_grace_s=0"]  # fmt: skip
        worker = load_config([*remote, f"storage.cache_dir={tmp_path / 'worker-cache'}"])
        index(worker)
        first = _keys("store/index/")
        (v1,) = [k for k in first if k.endswith("/versions/v1.json")]
        base = v1.rsplit("/versions/", 1)[0]
        _pdf(corpus / "b.pdf", "error E04 means the grid voltage is out of range", pages=1)
        (corpus / "a.pdf").unlink()
        index(worker)
        now = _keys("store/index/")
        cur = (
            boto3.client("s3")
            .get_object(Bucket="mmrag-test", Key=f"{base}/CURRENT")["Body"]
            .read()
            .decode()
            .strip()
        )
        assert cur == "v2"
        live = json.loads(
            boto3.client("s3").get_object(Bucket="mmrag-test", Key=f"{base}/versions/v2.json")["Body"].read()
        )
        files = {k for k in now if not k.endswith("/")}  # keys ending in "/": the S3 client's folder markers
        assert files == {f"{base}/CURRENT", f"{base}/versions/v2.json"} | {
            f"{base}/{r}" for r in live["files"]
        }
        only_v1 = first - now
        assert v1 in only_v1 and any(
            "/versions/v1.state/" in k for k in only_v1
        )  # v1's manifest and state went
        assert not any("/v1.state" in k for k in now)  # folder markers included
        folders = {k.split("/")[4] for k in now if "/segments/" in k} - {""}  # "": the segments/ marker
        assert folders == {r.split("/")[1] for r in live["files"] if r.startswith("segments/")}
        replica = load_config([*remote, f"storage.cache_dir={tmp_path / 'replica-cache'}"])
        hits = get_searcher(Runtime(replica)).search("what does error E04 mean").results
        assert hits and hits[0].source == "b.pdf" and all(r.source != "a.pdf" for r in hits)


def test_s3_root_needs_a_concurrent_catalog(tmp_path: Path) -> None:
    from mmrag_assets.errors import ConfigError

    with pytest.raises(ConfigError, match="catalog=postgres"):
        load_config([f"corpus.root={tmp_path}", "storage.root=s3://mmrag-test/store"])


def test_s3_root_indexes_and_serves_like_local_disk(tmp_path: Path, monkeypatch) -> None:
    import boto3

    corpus = tmp_path / "corpus"
    _pdf(corpus / "a.pdf", "the solar inverter mounts on a concrete wall with four anchor bolts", pages=2)
    _pdf(corpus / "b.pdf", "error E04 means the grid voltage is out of range", pages=1)
    with s3_emulator() as env, fresh_database() as db:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        common = [f"corpus.root={corpus}", *FAST]
        remote = [
            *common,
            "storage.root=s3://mmrag-test/store",
            "storage.allow_http=true",
            "catalog=postgres",
            f"catalog.url={db}",
        ]
        local = load_config([*common, f"storage.root={tmp_path / 'local'}"])
        worker = load_config([*remote, f"storage.cache_dir={tmp_path / 'worker-cache'}"])
        s_local, s_remote = index(local), index(worker)
        assert s_remote["ingested"] == s_local["ingested"] == 2 and s_remote["embedded"] == 2
        keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="mmrag-test")["Contents"]}
        assert any(k.startswith("store/lancedb/") for k in keys)
        assert any(k.startswith("store/pages/") and k.endswith(".png") for k in keys)
        assert any(k.startswith("store/index/") and k.endswith("/CURRENT") for k in keys)
        assert not (Path.cwd() / "s3:").exists()
        # a replica on another machine: an empty mirror, everything from the object store
        replica = load_config([*remote, f"storage.cache_dir={tmp_path / 'replica-cache'}"])
        q = "what does error E04 mean"
        assert _hits(replica, q) == _hits(local, q) != []
        top = get_searcher(Runtime(replica)).search(q).results[0]
        img = get_searcher(Runtime(replica)).image_path(top.item_id)
        assert img.is_file() and str(tmp_path / "replica-cache") in str(img)
        # a running replica follows what a worker publishes later (it reads CURRENT every storage.refresh_s)
        live = load_config(
            [*remote, f"storage.cache_dir={tmp_path / 'replica-cache'}", "storage.refresh_s=0"]
        )
        replica_rt = Runtime(live)  # one running replica
        before = get_searcher(replica_rt).search("tidal turbines ocean currents").results
        assert all(r.source != "c.pdf" for r in before)
        _pdf(corpus / "c.pdf", "tidal turbines harvest energy from ocean currents", pages=1)
        assert index(worker)["ingested"] == 1
        after = get_searcher(replica_rt).search("tidal turbines ocean currents").results
        assert after and after[0].source == "c.pdf"
        # within index.gc_grace_s (600 s by default) the replaced version stays in the bucket too
        manifests = {
            k.rsplit("/", 1)[1] for k in _keys("store/index/") if "/versions/v" in k and k.endswith(".json")
        }
        assert {"v1.json", "v2.json"} <= manifests
        (corpus / "c.pdf").unlink()
        index(worker)
        index(local)
        # the local default: a second index is a no-op on both
        assert index(worker)["run_id"] is None and index(local)["run_id"] is None
        st_local, st_remote = catalog_status(Runtime(local)), catalog_status(Runtime(worker))
        for k in ("documents", "pages", "segments", "quarantined", "held_back"):
            assert st_remote[k] == st_local[k]
        assert st_remote["index"]["rows"] == st_local["index"]["rows"] > 0

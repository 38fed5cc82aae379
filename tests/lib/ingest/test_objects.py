"""An object-store corpus (lib/ingest/objects.py) against a real S3 emulator on loopback (moto's
server): the local scanner's name rules on keys, change detection by size/mtime, then ETag, then
content hash, and the bounded cache that never evicts an object in use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.ingest.corpus import scan, scan_cache
from mmrag_assets.lib.ingest.objects import ObjectCorpus, SourceChanged, corpus_objects
from mmrag_assets.lib.store.runtime import Runtime
from tests.hostile_corpus import _pdf
from tests.scale.services import s3_emulator

BUCKET = "mmrag-test"


@pytest.fixture
def s3(monkeypatch):
    import boto3

    with s3_emulator(BUCKET) as env:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield boto3.client("s3")


def _cfg(tmp_path: Path, *more: str):
    return load_config([f"corpus.root=s3://{BUCKET}/docs", "storage.allow_http=true", f"storage.root={tmp_path / 'store'}",
                        f"storage.cache_dir={tmp_path / 'cache'}", "model=lite", *more])  # fmt: skip


def test_corpus_root_is_a_uri_never_a_folder(tmp_path: Path) -> None:
    from mmrag_assets.errors import ConfigError

    cfg = _cfg(tmp_path)
    assert cfg.corpus.root == f"s3://{BUCKET}/docs" and cfg.corpus_remote
    assert cfg.corpus_root == tmp_path / "cache" / "corpus" / BUCKET / "docs"
    with pytest.raises(
        ConfigError, match=r"corpus.root=gs://b/x is not valid: the gs: scheme is not supported"
    ):
        load_config(["corpus.root=gs://b/x"])


def test_keys_follow_the_local_name_rules(s3, tmp_path: Path) -> None:
    put = {
        "docs/a.pdf": _pdf("alpha"), "docs/sub/ünï (1).pdf": _pdf("unicode"), "docs/.hidden/h.pdf": _pdf("hidden"),
        "docs/x//y.pdf": _pdf("empty segment"), "docs/../up.pdf": _pdf("dot dot"), "docs/zero.pdf": b"",
        "docs/a.pdf/inner.pdf": _pdf("object and folder"), "docs/" + "l" * 300 + ".pdf": _pdf("long"),
        "docs/copy.pdf": _pdf("alpha"), "elsewhere/b.pdf": _pdf("outside the prefix"),
    }  # fmt: skip
    for k, v in put.items():
        s3.put_object(Bucket=BUCKET, Key=k, Body=v)
    entries = {e.source: e for e in scan(Runtime(_cfg(tmp_path))).entries}
    assert {s for s, e in entries.items() if e.status == "ok"} == {
        "a.pdf",
        "sub/ünï (1).pdf",
        "a.pdf/inner.pdf",
        "l" * 300 + ".pdf",
    }
    assert entries["copy.pdf"].status == "duplicate" and entries["zero.pdf"].reason == "empty file (0 bytes)"
    assert "empty, '.' or '..' path segment" in entries["x//y.pdf"].reason
    assert not any(s.startswith((".", "..")) or "/." in s for s in entries)  # hidden: skipped, as on disk
    shown = {e.source: e for e in scan(Runtime(_cfg(tmp_path, "corpus.ignore_hidden=false"))).entries}
    assert shown[".hidden/h.pdf"].status == "ok" and "'..' path segment" in shown["../up.pdf"].reason
    # every cached copy is inside the cache, named by a hash of its key (never by the key)
    cache = _cfg(tmp_path).corpus_root
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files and all(cache in p.parents and len(p.name) < 40 for p in files)


def test_change_detection_size_mtime_then_etag_then_hash(s3, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="docs/a.pdf", Body=_pdf("first version"))
    s3.put_object(Bucket=BUCKET, Key="docs/b.pdf", Body=_pdf("stays the same"))
    cfg = _cfg(tmp_path)
    rt = Runtime(cfg)
    objects = corpus_objects(rt)
    first = scan(rt)
    assert objects.stats["get"] == 2
    cache = scan_cache(first)
    assert all(len(v) == 5 and v[4] for v in cache.values())  # the ETag is kept for the next scan
    # another machine (empty cache), same manifest: nothing read
    other = ObjectCorpus(objects.uri, tmp_path / "other-cache", cache_bytes=10**9, allow_http=True)
    kw = {"max_file_bytes": 10**9, "ignore_hidden": True}
    assert [e.sha256 for e in other.scan(cache=cache, **kw)] == [e.sha256 for e in first.entries]
    assert (other.stats["get"], other.stats["head"]) == (0, 0)
    time.sleep(1.1)  # S3's Last-Modified has whole seconds
    s3.put_object(Bucket=BUCKET, Key="docs/b.pdf", Body=_pdf("stays the same"))  # uploaded again, same bytes
    changed = _pdf("first version")
    changed = changed[:-40] + bytes([changed[-40] ^ 1]) + changed[-39:]  # same size, other bytes
    s3.put_object(Bucket=BUCKET, Key="docs/a.pdf", Body=changed)
    again = {e.source: e for e in other.scan(cache=cache, **kw)}
    assert other.stats["etag_same"] == 1 and other.stats["get"] == 1 and other.stats["head"] == 2
    assert again["b.pdf"].sha256 == cache["b.pdf"][2] and again["b.pdf"].mtime_ns != cache["b.pdf"][1]
    import hashlib

    assert again["a.pdf"].sha256 == hashlib.sha256(changed).hexdigest() != cache["a.pdf"][2]
    # what a worker reads is checked against the scan's hash
    with pytest.raises(SourceChanged, match="changed"), other.local_copy("b.pdf", "0" * 64):
        pass
    s3.delete_object(Bucket=BUCKET, Key="docs/b.pdf")
    third = ObjectCorpus(objects.uri, tmp_path / "third", cache_bytes=10**9, allow_http=True)
    with pytest.raises(SourceChanged, match="vanished"), third.local_copy("b.pdf"):
        pass


def test_cache_is_bounded_and_never_evicts_what_is_in_use(s3, tmp_path: Path) -> None:
    bodies = {f"{c}.pdf": _pdf(c * 40) for c in "abcd"}
    for k, v in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=f"docs/{k}", Body=v)
    size = max(len(v) for v in bodies.values())
    objects = corpus_objects(Runtime(_cfg(tmp_path, f"corpus.cache_bytes={2 * size}")))

    def cached() -> set[str]:
        return {k for k in bodies if objects.cached_meta(k) is not None}

    with objects.local_copy("a.pdf") as a:
        for k in ("b.pdf", "c.pdf", "d.pdf"):
            with objects.local_copy(k) as got:
                assert got.downloaded and got.path.read_bytes() == bodies[k]
            time.sleep(0.02)  # distinct last-use times
        assert "a.pdf" in cached() and a.path.read_bytes() == bodies["a.pdf"]  # pinned: kept over the bound
        assert cached() == {"a.pdf", "d.pdf"}
    with objects.local_copy("b.pdf"):
        pass
    assert cached() == {"d.pdf", "b.pdf"}  # a, no longer in use, was the least recently used
    with objects.local_copy("d.pdf") as d:
        assert not d.downloaded and objects.stats["hit"] == 1
    assert sum(os.path.getsize(p) for p in objects.cache.rglob("data*")) <= 2 * size

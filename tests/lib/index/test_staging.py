"""Staged embedding rows (lib/index/staging.py) on a real LanceDB table and a real catalog: batches
written by several workers at once are invisible until one commit makes them the table's next
version, with exactly the rows a direct write gives; a retried batch never duplicates a row; a
worker killed mid-write leaves nothing visible; stale, superseded and half-committed batches."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import lancedb
import numpy as np
import pytest

from mmrag_assets.lib.index import staging as st
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.storage import Storage
from mmrag_assets.roots import RootUri

DIM = 16


def doc_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def items_of(name: str, n: int, fp: str = "fp1") -> list[dict]:
    d = doc_id(name)
    return [
        {"item_id": f"{d}:{p}", "doc_id": d, "source": name, "modality": "page", "page": p, "start_s": None,
         "end_s": None, "text": f"{name} page {p}", "image_path": None, "thumb_path": None, "ingest_fp": fp}
        for p in range(1, n + 1)
    ]  # fmt: skip


def vectors(name: str, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(int(doc_id(name)[:8], 16) + seed)
    out = []
    for _ in range(n):
        v = rng.standard_normal((5, DIM))
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return out


class Env:
    def __init__(self, tmp: Path) -> None:
        self.db = lancedb.connect(str(tmp / "lancedb"))
        self.tbl = self.db.create_table("items__t", schema=lx.schema(DIM))
        self.cat = Catalog(tmp / "catalog.duckdb")
        self.staging = st.Staging(
            Storage(RootUri("file", "", str(tmp)), tmp, allow_http=False), self.tbl.name
        )

    def add_doc(self, name: str, fp: str = "fp1") -> None:
        with self.cat.connect() as con:
            con.execute("DELETE FROM documents WHERE doc_id = ?", [doc_id(name)])
            con.execute(
                "INSERT INTO documents (doc_id, source, kind, sha256, status, fingerprint) VALUES (?, ?, 'pdf', ?, 'ok', ?)",
                [doc_id(name), name, doc_id(name) * 4, fp],
            )

    def stage(self, names: dict[str, int], seed: int = 0, fp: str = "fp1") -> st.StagedBatch:
        """What embed_and_write stages for one chunk of these documents (name -> pages)."""
        items = [it for n, k in names.items() for it in items_of(n, k, fp)]
        vecs = [v for n, k in names.items() for v in vectors(n, k, seed)]
        data, _ = lx.prepare_rows(items, vecs, self.tbl.schema, DIM)
        docs = {
            doc_id(n): {"fp": fp, "items": [f"{doc_id(n)}:{p}" for p in range(1, k + 1)]}
            for n, k in names.items()
        }
        return self.staging.stage(self.tbl, data, docs, run_id="r")

    def rows(self, tbl=None) -> list[tuple[str, bytes]]:
        tbl = tbl or self.tbl
        tbl.checkout_latest()
        t = tbl.to_arrow()
        vec = [np.asarray(v, dtype=np.float16).tobytes() for v in t.column("vector").to_pylist()]
        return sorted(zip(t.column("item_id").to_pylist(), vec, strict=True))

    def commit(self) -> st.CommitResult:
        return st.commit_staged(self.tbl, self.staging, self.cat, version_key="vk")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    for n in ("a.pdf", "b.pdf", "c.pdf", "d.pdf"):
        e.add_doc(n)
    return e


def direct(tmp: Path, names: dict[str, int], seed: int = 0) -> list[tuple[str, bytes]]:
    """The same documents written directly (one merge-insert per document): the reference rows."""
    tbl = lancedb.connect(str(tmp / "ref")).create_table("ref", schema=lx.schema(DIM))
    for n, k in names.items():
        lx.upsert_documents(tbl, [doc_id(n)], items_of(n, k), vectors(n, k, seed), DIM)
    t = tbl.to_arrow()
    vec = [np.asarray(v, dtype=np.float16).tobytes() for v in t.column("vector").to_pylist()]
    return sorted(zip(t.column("item_id").to_pylist(), vec, strict=True))


def test_two_workers_stage_at_once_and_one_commit_publishes_both(env: Env, tmp_path: Path) -> None:
    env.stage({"d.pdf": 1})
    env.commit()  # an existing row before the run
    v0 = env.tbl.version
    ranges = [{"a.pdf": 3, "b.pdf": 2}, {"c.pdf": 4}]
    threads = [threading.Thread(target=env.stage, args=(r,)) for r in ranges]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    env.tbl.checkout_latest()
    assert env.tbl.version == v0 and env.tbl.count_rows() == 1  # staged: no version holds them yet
    assert len(env.staging.batches()) == 2
    res = env.commit()
    assert (res.batches, res.documents, res.rows_added, res.rows_deleted) == (2, 3, 9, 0)
    assert (res.version_before, res.version_after) == (v0, v0 + 1)  # one transaction
    assert env.rows() == direct(tmp_path, {"d.pdf": 1, "a.pdf": 3, "b.pdf": 2, "c.pdf": 4})
    assert env.staging.batches() == []
    assert env.commit().batches == 0  # nothing left: a second commit changes nothing
    assert env.tbl.version == v0 + 1


def test_a_retried_range_replaces_rows_never_duplicates(env: Env, tmp_path: Path) -> None:
    env.stage({"a.pdf": 3})
    env.commit()
    env.stage({"a.pdf": 3, "b.pdf": 2}, seed=1)  # first attempt of a range (not committed)
    env.stage({"a.pdf": 3, "b.pdf": 2}, seed=2)  # its retry: the newest batch of each document wins
    res = env.commit()
    assert res.batches == 1 and res.rows_deleted == 3 and len(res.dropped) == 1
    assert env.rows() == direct(tmp_path, {"a.pdf": 3, "b.pdf": 2}, seed=2)
    ids = [r[0] for r in env.rows()]
    assert len(ids) == len(set(ids)) == 5


def test_a_document_that_lost_pages_loses_their_rows(env: Env) -> None:
    env.stage({"a.pdf": 3})
    env.commit()
    env.stage({"a.pdf": 1})
    env.commit()
    assert [r[0] for r in env.rows()] == [f"{doc_id('a.pdf')}:1"]
    env.staging.stage(env.tbl, None, {doc_id("a.pdf"): {"fp": None, "items": []}})  # no embeddable item now
    res = env.commit()
    assert res.rows_deleted == 1 and env.rows() == []


def test_a_worker_killed_mid_write_leaves_nothing_visible(env: Env) -> None:
    from lance.fragment import write_fragments

    env.stage({"c.pdf": 1})
    env.commit()
    v0 = env.tbl.version
    data, _ = lx.prepare_rows(items_of("a.pdf", 3), vectors("a.pdf", 3), env.tbl.schema, DIM)
    write_fragments(
        data, env.tbl.to_lance(), schema=env.tbl.schema
    )  # its files written, then SIGKILL: no batch
    assert env.commit().batches == 0
    env.tbl.checkout_latest()
    assert env.tbl.version == v0 and env.tbl.count_rows() == 1


def test_stale_and_damaged_batches_are_dropped_not_committed(env: Env) -> None:
    stale = env.stage({"a.pdf": 2})
    env.add_doc("a.pdf", fp="fp2")  # re-ingested with other settings after the batch was staged
    lost = env.stage({"b.pdf": 2})
    data = Path(env.tbl.to_lance().uri) / "data"
    (data / lost.files()[0]).unlink()  # its data file gone (a cleanup, a damaged disk)
    env.cat.record_checks([{"doc_id": doc_id("b.pdf"), "check_name": "embeddings_contract", "version_key": "vk",
                            "fingerprint": "fp1:k", "passed": True, "detail": None, "run_id": "r"}])  # fmt: skip
    res = env.commit()
    assert res.batches == 0 and {d["batch"] for d in res.dropped} == {stale.id, lost.id}
    assert "re-ingested" in " ".join(d["reason"] for d in res.dropped)
    assert not (data / stale.files()[0]).exists()  # never-committed files deleted with their batch
    assert res.forgotten_gates == [doc_id("b.pdf")]  # the check passed rows that no longer exist
    assert env.cat.scalar("SELECT count(*) FROM document_checks") == 0
    assert env.rows() == [] and env.staging.batches() == []


def test_a_batch_committed_before_a_crash_is_not_committed_twice(env: Env) -> None:
    b = env.stage({"a.pdf": 2})
    record = (env.staging.store.local / env.staging.dir / f"{b.id}.json").read_text()
    env.commit()
    (env.staging.store.local / env.staging.dir / f"{b.id}.json").write_text(
        record
    )  # the publisher died before removing it
    res = env.commit()
    assert (res.batches, res.already) == (0, 1)
    assert len(env.rows()) == 2 and env.staging.batches() == []


def test_a_concurrent_delete_is_retried_not_lost(env: Env, monkeypatch) -> None:
    env.stage({"a.pdf": 2, "b.pdf": 2})
    env.commit()
    env.stage({"a.pdf": 1})
    real = st._delete_rows
    calls = []

    def racing(ds, docs):
        out = real(ds, docs)
        if not calls:  # another writer (a purge) commits to the same fragment meanwhile
            env.db.open_table(env.tbl.name).delete(f"item_id = '{doc_id('b.pdf')}:2'")
        calls.append(1)
        return out

    monkeypatch.setattr(st, "_delete_rows", racing)
    res = env.commit()
    assert res.conflicts == 1 and len(calls) == 2
    assert [r[0] for r in env.rows()] == sorted([f"{doc_id('a.pdf')}:1", f"{doc_id('b.pdf')}:1"])


def test_staged_rows_are_readable_before_the_commit_through_a_detached_version(env: Env) -> None:
    from mmrag_assets.lib.index.vectors import iter_item_vectors

    env.stage({"d.pdf": 1})
    env.commit()
    env.stage({"a.pdf": 2})
    env.stage({"b.pdf": 1})
    versions = Path(env.tbl.to_lance().uri) / "_versions"
    before = sorted(p.name for p in versions.iterdir())
    with st.staged_rows(env.tbl, env.staging, [doc_id("a.pdf"), doc_id("c.pdf")]) as (view, staged):
        assert staged == {doc_id("a.pdf")}
        a = doc_id("a.pdf")
        got = [
            i
            for b, _ in iter_item_vectors(view, ["item_id"], filter=f"doc_id = '{a}'")
            for i in b.column("item_id").to_pylist()
        ]
        assert sorted(got) == [f"{a}:1", f"{a}:2"]
        env.tbl.checkout_latest()
        assert env.tbl.count_rows() == 1  # the table itself is unchanged
    assert sorted(p.name for p in versions.iterdir()) == before  # the detached manifest removed


def test_plan_resumes_from_staged_batches(env: Env) -> None:
    from mmrag_assets.lib.index.batch import plan_embeddings

    class Emb:
        supports_images = False

    with env.cat.connect() as con:
        for n, k in (("a.pdf", 2), ("b.pdf", 2)):
            for it in items_of(n, k):
                con.execute(
                    "INSERT INTO pages (item_id, doc_id, page, modality, image_path, text) VALUES (?, ?, ?, 'page', 'x', ?)",
                    [it["item_id"], it["doc_id"], it["page"], it["text"]],
                )
    env.stage({"a.pdf": 2})
    plan = plan_embeddings(
        env.cat,
        env.tbl,
        Emb(),
        [doc_id("a.pdf"), doc_id("b.pdf")],
        {},
        st.staged_state(env.staging.batches()),
    )
    assert plan.staged == [doc_id("a.pdf")] and list(plan.todo) == [doc_id("b.pdf")]


def test_batch_records_are_json_with_the_fragments(env: Env) -> None:
    b = env.stage({"a.pdf": 2})
    raw = json.loads((env.staging.store.local / env.staging.dir / f"{b.id}.json").read_text())
    assert raw["rows"] == 2 and raw["docs"][doc_id("a.pdf")]["items"] == [
        f"{doc_id('a.pdf')}:1",
        f"{doc_id('a.pdf')}:2",
    ]
    assert all(f.endswith(".lance") for f in b.files())

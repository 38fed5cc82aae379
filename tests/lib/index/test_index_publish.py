"""Publishing versions of the search index from a real LanceDB table (vector storage, as the visual
tiers write it): incremental deltas, the retrain and compaction policy, one copy of the vectors,
atomic versions, pinned readers, garbage collection and the allowed-documents gate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import lancedb
import numpy as np
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.index.encode import IndexParams
from mmrag_assets.lib.index.publish import IndexLocation, params_from_config, publish, verify
from mmrag_assets.lib.search.index_reader import IndexReader
from mmrag_assets.lib.search.rerank import rerank_maxsim
from mmrag_assets.lib.store import manifest as mf
from mmrag_assets.lib.store import table as lx

DIM = 32
TOKENS = 24


class FakeEmbedder:
    """A vector tier without a model: queries are unit vectors derived from the text."""

    dim = DIM
    version_key = "synthetic__test__v1__p1__d32"

    def vocabulary(self) -> None:
        return None

    def embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for t in texts:
            rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            out.append(_unit(rng.standard_normal((4, DIM))))
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def doc_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def page_vectors(name: str, n_pages: int, shift: float = 0.0, tokens: int = TOKENS) -> list[np.ndarray]:
    rng = np.random.default_rng(int(doc_id(name)[:8], 16))
    centre = _unit(rng.standard_normal(DIM))
    return [_unit(0.6 * centre + rng.standard_normal((tokens, DIM)) + shift) for _ in range(n_pages)]


def write_doc(tbl, name: str, n_pages: int = 3, shift: float = 0.0, tokens: int = TOKENS) -> list[np.ndarray]:
    d = doc_id(name)
    vecs = page_vectors(name, n_pages, shift, tokens)
    items = [
        {"item_id": f"{d}:{p}", "doc_id": d, "source": name, "modality": "page", "page": p, "start_s": None,
         "end_s": None, "text": f"{name} page {p} words", "image_path": None, "thumb_path": None, "ingest_fp": "fp"}
        for p in range(1, n_pages + 1)
    ]  # fmt: skip
    out = lx.upsert_documents(tbl, [d], items, vecs, DIM)
    assert out.written == n_pages
    return vecs


@pytest.fixture
def env(tmp_path: Path):
    db = lancedb.connect(str(tmp_path / "lancedb"))
    tbl = db.create_table(lx.table_name(FakeEmbedder.version_key), schema=lx.schema(DIM))
    loc = IndexLocation.of(tmp_path, FakeEmbedder.version_key)
    return db, tbl, loc


def params(**policy) -> IndexParams:
    """The configured parameters (conf/index), on a small scale, with some policy values replaced."""
    p = params_from_config(load_config(["corpus.root=unused", "storage.root=unused"], resolve_paths=False))
    return dataclasses.replace(p, n_centroids=64, calibration_items=50, gc_grace_s=3600,
                               policy=dataclasses.replace(p.policy, **policy))  # fmt: skip


def files_state(root: Path) -> dict[str, tuple[str, int, int]]:
    """relative path -> (sha256, inode, mtime_ns) of every file under root (the lock file aside)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and p.name != "LOCK":
            st = p.stat()
            out[str(p.relative_to(root))] = (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                st.st_ino,
                st.st_mtime_ns,
            )
    return out


def reader(db, loc, **kw) -> IndexReader:
    return IndexReader(loc, FakeEmbedder(), db, **kw)


def best_item(r: IndexReader, q: np.ndarray, k: int = 3) -> list[str]:
    v = r.view()
    cand, _ = v.first_stage("plaid").search(q, 50, v.allowed_mask({}))
    idx, _ = rerank_maxsim(q, v.vectors, cand, k)
    return [v.items["item_id"][i] for i in idx]


def test_adding_and_deleting_documents_rebuilds_nothing_else(env) -> None:
    db, tbl, loc = env
    for i in range(6):
        write_doc(tbl, f"doc{i}.pdf")
    first = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    assert first.action == "initial" and first.items == 18
    before = files_state(loc.root)
    m1 = mf.read_manifest(loc)
    new_vecs = write_doc(tbl, "new.pdf", n_pages=2)
    tbl.delete(f"doc_id = '{doc_id('doc3.pdf')}'")
    res = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    assert res.action == "delta" and (res.added, res.removed) == (2, 3), res.reason
    after = files_state(loc.root)
    # the codebook and the first version's segment are byte for byte untouched (same inode, mtime)
    for rel, st in before.items():
        if rel.startswith(("codebooks/", "segments/")):
            assert after[rel] == st, rel
    m2 = mf.read_manifest(loc)
    assert m2["codebook"] == m1["codebook"] and m2["segments"][0] == m1["segments"][0]
    assert (
        len(m2["segments"]) == 2 and m2["segments"][1]["n_items"] == 2
    )  # the delta holds only the new pages
    assert m2["n_items"] - m2["n_alive"] == 3  # the deleted document is tombstoned
    r = reader(db, loc)
    assert best_item(r, new_vecs[1][:4])[0] == f"{doc_id('new.pdf')}:2"  # the new item is found
    gone = page_vectors("doc3.pdf", 3)
    assert not any(i.startswith(doc_id("doc3.pdf")) for i in best_item(r, gone[0][:4], k=18))
    assert verify(loc).ok


def test_unchanged_table_publishes_nothing(env) -> None:
    _, tbl, loc = env
    write_doc(tbl, "a.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    before = files_state(loc.root)
    res = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    assert not res.changed and res.action == "none" and res.version == 1
    assert files_state(loc.root) == before


def test_a_changed_item_is_reencoded_and_its_old_codes_tombstoned(env) -> None:
    db, tbl, loc = env
    write_doc(tbl, "a.pdf")
    write_doc(tbl, "b.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    moved = write_doc(tbl, "a.pdf", shift=0.5)  # same item ids, other vectors (a re-embedding)
    res = publish(loc, tbl, FakeEmbedder(), params(max_tombstone_share=0.5), allowed_doc_ids=None)
    assert res.action == "delta" and (res.added, res.removed) == (3, 3)
    v = reader(db, loc).view()
    assert v.n_alive == 6 and len(v.alive) == 9
    _, scores = rerank_maxsim(moved[0][:4], v.vectors, np.flatnonzero(v.alive), 1)
    np.testing.assert_allclose(
        scores[0], (moved[0][:4] @ moved[0].astype(np.float16).astype(np.float32).T).max(1).sum(), rtol=1e-3
    )


def test_retrain_happens_when_the_policy_says_so(env) -> None:
    _, tbl, loc = env
    for i in range(4):
        write_doc(tbl, f"doc{i}.pdf")
    publish(loc, tbl, FakeEmbedder(), params(retrain_delta_share=0.5), allowed_doc_ids=None)
    cb1 = mf.read_manifest(loc)["codebook"]
    write_doc(tbl, "more0.pdf")  # 3 items on 12: 25% < 50%
    res = publish(loc, tbl, FakeEmbedder(), params(retrain_delta_share=0.5), allowed_doc_ids=None)
    assert res.action == "delta" and mf.read_manifest(loc)["codebook"] == cb1
    for i in range(1, 3):  # 6 more: 9 encoded since training on 12 = 75% > 50%
        write_doc(tbl, f"more{i}.pdf")
    res = publish(loc, tbl, FakeEmbedder(), params(retrain_delta_share=0.5), allowed_doc_ids=None)
    assert res.action == "retrain" and "retrain_delta_share" in res.reason
    m = mf.read_manifest(loc)
    assert m["codebook"] != cb1 and len(m["segments"]) == 1 and m["n_alive"] == 21
    assert m["encoded_since_train"] == 0 and res.recalibrated


def test_retrain_on_quantisation_error(env) -> None:
    _, tbl, loc = env
    for i in range(
        4
    ):  # tokens around one direction: a held-out token of the same kind is close to a centroid
        write_doc(tbl, f"doc{i}.pdf", shift=3.0)
    p = params(retrain_delta_share=10.0, retrain_error_factor=1.2, min_error_tokens=10)
    publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    rng = np.random.default_rng(9)
    far = [
        _unit(rng.standard_normal((TOKENS, DIM)) * np.r_[np.ones(4) * 9, np.ones(DIM - 4) * 0.1])
        for _ in range(3)
    ]
    d = doc_id("far.pdf")
    items = [{"item_id": f"{d}:{i}", "doc_id": d, "source": "far.pdf", "modality": "page", "page": i, "start_s": None, "end_s": None,
              "text": "far", "image_path": None, "thumb_path": None, "ingest_fp": "fp"} for i in (1, 2, 3)]  # fmt: skip
    lx.upsert_documents(tbl, [d], items, far, DIM)
    res = publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    assert res.action == "retrain" and "quantisation error" in res.reason, res.reason


def test_tokens_like_the_training_data_do_not_trigger_a_retrain(env) -> None:
    """The error baseline is measured on held-out tokens, not on the sample the centroids were fit to
    (with few tokens per centroid an in-sample baseline made every delta look drifted)."""
    _, tbl, loc = env
    for i in range(4):
        write_doc(tbl, f"doc{i}.pdf", shift=3.0)
    p = params(retrain_delta_share=10.0, retrain_error_factor=1.5, min_error_tokens=10)
    publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    cb = json.loads(next(loc.codebooks.glob("*/codebook.json")).read_text())["stats"]
    assert cb["held_out_tokens"] > 0 and cb["train_error"] > cb["fit_error"]
    write_doc(tbl, "more.pdf", shift=3.0)
    res = publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    assert res.action == "delta", res.reason


def test_compaction_merges_segments_without_reading_vectors(env) -> None:
    db, tbl, loc = env
    write_doc(tbl, "base.pdf", n_pages=6)
    p = params(max_segments=2, retrain_delta_share=10.0)
    publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    base_seg = mf.read_manifest(loc)["segments"][0]
    for i in range(2):
        write_doc(tbl, f"d{i}.pdf", n_pages=1)
        res = publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    assert res.action == "compact" and res.decision["compact"] == "deltas"
    m = mf.read_manifest(loc)
    assert m["segments"][0] == base_seg and len(m["segments"]) == 2 and m["n_alive"] == 8
    tbl.delete(f"doc_id = '{doc_id('base.pdf')}'")  # 6 of 8 tombstoned: merge everything
    res = publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    assert res.action == "compact" and res.decision["compact"] == "all"
    v = reader(db, loc).view()
    assert v.n_alive == len(v.alive) == 2 and len(v.segments) == 1


def test_vectors_exist_once_on_disk(env) -> None:
    """The LanceDB table is the only copy: the index holds codes (a small fraction of the float16
    vectors) and no file anywhere under the index root could hold a copy of them."""
    _, tbl, loc = env
    tokens = 200  # a page-sized multi-vector (12.8 KB of float16 at d = 32)
    for i in range(20):
        write_doc(tbl, f"doc{i}.pdf", n_pages=5, tokens=tokens)
    res = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    payload = 100 * tokens * DIM * 2  # float16 bytes of every item's vectors
    table_bytes = lx.storage_bytes(tbl)
    assert payload <= table_bytes <= 1.15 * payload  # the vectors once, plus text and metadata
    index_files = [p for p in loc.root.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in index_files) < 0.35 * payload
    assert max(p.stat().st_size for p in index_files) < 0.1 * payload
    assert res.index_bytes < 0.35 * payload


def test_half_written_version_is_never_read(env) -> None:
    db, tbl, loc = env
    write_doc(tbl, "a.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    r = reader(db, loc)
    # a publish that died before switching CURRENT: its manifest and a partial segment are on disk
    (loc.versions / "v2.json").write_text('{"format": 1, "version": 2, "segme')
    (loc.segments / ".s-partial.tmp").mkdir()
    assert r.view().version == 1 and mf.current_version(loc) == 1
    # a damaged pointer is reported, and a running reader keeps answering from what it has
    loc.current_file.write_text("v9")
    assert r.view().version == 1 and "v9" in (r.refresh_error or "")
    with pytest.raises(Exception, match="v9"):
        reader(db, loc)
    loc.current_file.write_text("v1\n")
    # the next publish cleans the debris up and does not reuse a damaged manifest
    write_doc(tbl, "b.pdf")
    res = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    assert res.version == 3 and verify(loc).ok and not (loc.segments / ".s-partial.tmp").exists()
    assert mf.list_versions(loc) == [1, 3]  # the orphan v2 is gone; its number is not reused
    assert r.view().version == 3


def test_verify_finds_damage(env) -> None:
    _, tbl, loc = env
    write_doc(tbl, "a.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    assert verify(loc, table=tbl).ok
    m = mf.read_manifest(loc)
    seg = loc.root / next(k for k in m["files"] if k.endswith("plaid/inv_items.npy"))
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    rep = verify(loc)
    assert not rep.ok and "checksum mismatch" in rep.problems[0]
    seg.write_bytes(bytes(data[:-4]))
    assert "bytes, the manifest records" in verify(loc, deep=False).problems[0]
    seg.unlink()
    assert "missing" in verify(loc, deep=False).problems[0]


def test_pinned_reader_answers_after_newer_versions_and_gc_keeps_what_live_versions_need(env) -> None:
    db, tbl, loc = env
    vecs = write_doc(tbl, "a.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    pinned = reader(db, loc, version=1)
    q = vecs[0][:4]
    want = best_item(pinned, q)
    tbl.delete(f"doc_id = '{doc_id('a.pdf')}'")
    write_doc(tbl, "b.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)  # v2: a.pdf gone
    assert best_item(pinned, q) == want  # v1 (and its pinned table version) still answer
    assert not any(i.startswith(doc_id("a.pdf")) for i in best_item(reader(db, loc), q))
    # grace 0: the next publish drops v1 and v2 at once, keeps everything v3 references
    write_doc(tbl, "c.pdf")
    res = publish(loc, tbl, FakeEmbedder(), dataclasses.replace(params(), gc_grace_s=0), allowed_doc_ids=None)
    assert res.gc["versions_removed"] == [1, 2]
    assert mf.list_versions(loc) == [3] and verify(loc, table=tbl).ok
    tags = tbl.to_lance().tags.list()
    assert set(tags) == {mf.tag_name(3)}
    m = mf.read_manifest(loc)
    on_disk = {str(p.relative_to(loc.root)) for p in loc.root.rglob("*") if p.is_file()}
    assert set(m["files"]) <= on_disk
    assert not {p for p in on_disk if p.startswith("segments/")} - set(
        m["files"]
    )  # nothing unreferenced left


def test_rows_of_documents_not_allowed_are_never_published(env) -> None:
    db, tbl, loc = env
    write_doc(tbl, "ok.pdf")
    staged = write_doc(tbl, "failed.pdf")
    res = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=[doc_id("ok.pdf")])
    assert res.items == 3 and res.not_allowed == 3 and res.documents == 1
    v = reader(db, loc).view()
    assert not any(i.startswith(doc_id("failed.pdf")) for i in v.items["item_id"])
    assert not any(i.startswith(doc_id("failed.pdf")) for i in best_item(reader(db, loc), staged[0][:4], k=3))
    assert mf.read_state(loc, res.version)["docs"].tolist() == [doc_id("ok.pdf")]
    # once its checks pass, the next publish adds it as a delta
    res = publish(
        loc,
        tbl,
        FakeEmbedder(),
        params(retrain_delta_share=10),
        allowed_doc_ids=[doc_id("ok.pdf"), doc_id("failed.pdf")],
    )
    assert res.action == "delta" and res.added == 3
    assert best_item(reader(db, loc), staged[0][:4])[0].startswith(doc_id("failed.pdf"))


def test_publish_sees_writes_made_through_another_table_handle(env) -> None:
    db, tbl, loc = env
    write_doc(tbl, "a.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    write_doc(db.open_table(tbl.name), "b.pdf")  # another process's handle
    res = publish(loc, tbl, FakeEmbedder(), params(retrain_delta_share=10), allowed_doc_ids=None)
    assert res.added == 3 and res.items == 6


def test_duplicate_rows_are_served_once(env) -> None:
    _, tbl, loc = env
    write_doc(tbl, "a.pdf")
    t = tbl.to_lance().to_table()
    tbl.add(t.slice(0, 1))  # a second writer appended a row that already exists
    res = publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    assert res.duplicates == 1 and res.items == 3


def test_manifest_records_what_the_version_serves(env) -> None:
    _, tbl, loc = env
    write_doc(tbl, "a.pdf")
    publish(loc, tbl, FakeEmbedder(), params(), allowed_doc_ids=None)
    m = json.loads(loc.manifest_path(1).read_text())
    assert m["table_version"] == tbl.to_lance().tags.get_version(mf.tag_name(1))
    assert {"codebook", "segments", "calibration", "files", "n_documents", "strategies"} <= set(m)
    assert all({"size", "sha256"} <= set(f) for f in m["files"].values())
    assert m["calibration"]["modalities"]["page"]["n_items"] == 3


def test_compressed_rerank_codes_are_written_per_segment_and_exact_vectors_stay_in_lancedb(env) -> None:
    db, tbl, loc = env
    for i in range(4):
        write_doc(tbl, f"doc{i}.pdf")
    p = dataclasses.replace(params(retrain_delta_share=10), codec="residual2", rescore=5)
    publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    new = write_doc(tbl, "new.pdf")
    publish(loc, tbl, FakeEmbedder(), p, allowed_doc_ids=None)
    v = reader(db, loc).view()
    assert v.rescore == 5 and type(v.vectors).__name__ == "CompressedVectors" and len(v.segments) == 2
    assert all("rerank" in s.fields for s in v.segments)  # the delta segment has its own codes
    q = new[0][:4]
    cand = np.flatnonzero(v.alive)
    approx_idx, _ = rerank_maxsim(q, v.vectors, cand, 5)
    exact_idx, exact_sc = rerank_maxsim(
        q, v.exact_vectors, approx_idx, 5
    )  # what search() returns for the top
    assert v.items["item_id"][exact_idx[0]] == f"{doc_id('new.pdf')}:1"
    want = (q @ new[0].astype(np.float16).astype(np.float32).T).max(1).sum()
    np.testing.assert_allclose(exact_sc[0], want, rtol=1e-3)
    codes_bytes = sum(s.strategy_bytes("rerank") for s in v.segments)
    assert codes_bytes < 0.25 * lx.storage_bytes(tbl)  # 2 bits per dimension + a code per token


def test_a_table_of_many_small_fragments_is_compacted_without_encoding_anything(env) -> None:
    """Every ingest commit writes a fragment of its own: past ``index.table_small_fragments`` a publish
    compacts the table (LanceDB's compact_files, deleted rows dropped), publishes a version pinned to
    the compacted table with the row addresses refreshed and the codebook and segments untouched, and
    search, the vectors read by row address and the BM25 index still find every item."""
    db, tbl, loc = env
    no_retrain = params(retrain_delta_share=10, retrain_error_factor=1e9)  # this test is about the table
    keep = dataclasses.replace(no_retrain, table_small_fragments=100, table_target_rows=64)
    for i in range(3):
        write_doc(tbl, f"doc{i}.pdf")
    assert (
        publish(loc, tbl, FakeEmbedder(), keep, allowed_doc_ids=None).action == "initial"
    )  # BM25 index made
    new = [write_doc(tbl, f"new{i}.pdf") for i in range(3)]
    tbl.delete(f"doc_id = '{doc_id('doc0.pdf')}'")
    res = publish(loc, tbl, FakeEmbedder(), keep, allowed_doc_ids=None)
    assert res.action == "delta" and not res.decision["table_compaction"]["compacted"]
    n_frags = len(tbl.to_lance().get_fragments())
    assert n_frags == 5  # one per commit; doc0's whole fragment went with its delete
    before, m_before = files_state(loc.root), mf.read_manifest(loc)
    rowaddr_before = mf.read_state(loc, m_before["version"])["rowaddr"]

    compact = dataclasses.replace(keep, table_small_fragments=2)
    res = publish(loc, tbl, FakeEmbedder(), compact, allowed_doc_ids=None)
    tc = res.decision["table_compaction"]
    # (LanceDB keeps the rows its BM25 index covers and the newer ones in separate groups: 5 -> 2 here)
    assert tc["compacted"] and tc["fragments"] == n_frags and tc["fragments_after"] <= 2, tc
    assert (
        res.action == "delta"
        and "row addresses refreshed" in res.reason
        and (res.added, res.removed) == (0, 0)
    )
    m = mf.read_manifest(loc)
    assert m["codebook"] == m_before["codebook"] and m["segments"] == m_before["segments"]  # nothing encoded
    after = files_state(loc.root)
    assert all(after[rel] == st for rel, st in before.items() if rel.startswith(("codebooks/", "segments/")))
    assert not np.array_equal(mf.read_state(loc, m["version"])["rowaddr"], rowaddr_before)  # the rows moved

    r = reader(db, loc)
    assert r.view().table_version == tbl.version
    assert best_item(r, new[2][1][:4])[0] == f"{doc_id('new2.pdf')}:2"
    assert best_item(r, page_vectors("doc1.pdf", 3)[0][:4])[0] == f"{doc_id('doc1.pdf')}:1"
    hits = tbl.search("doc1", query_type="fts").limit(10).to_list()  # the BM25 index was remapped, not lost
    assert sorted(h["item_id"] for h in hits) == [f"{doc_id('doc1.pdf')}:{p}" for p in (1, 2, 3)]
    assert verify(loc).ok
    again = publish(loc, tbl, FakeEmbedder(), compact, allowed_doc_ids=None)
    assert again.action == "none" and not again.decision["table_compaction"]["compacted"]


def test_table_compaction_that_loses_a_commit_race_changes_nothing(env) -> None:
    """A writer deletes rows while a compaction is under way (here: the compaction starts from a
    handle that has not seen the delete): LanceDB refuses the commit of the rewrite that conflicts,
    ``compact_table`` reports it, and the table holds every row as the writer left it, none lost,
    none back, none twice (the rewrites that did not conflict may have committed)."""
    db, tbl, _ = env
    for i in range(4):
        write_doc(tbl, f"doc{i}.pdf")
    stale = db.open_table(tbl.name)  # at the version before the delete below
    tbl.delete(f"item_id = '{doc_id('doc1.pdf')}:2'")  # one row of one fragment
    tbl.checkout_latest()
    want = sorted(tbl.to_lance().to_table(columns=["item_id"]).column("item_id").to_pylist())
    out = lx.compact_table(stale, max_small_fragments=1, target_rows=64)
    assert not out["compacted"] and "conflict" in out["skipped"].lower(), out
    tbl.checkout_latest()
    assert sorted(tbl.to_lance().to_table(columns=["item_id"]).column("item_id").to_pylist()) == want
    assert len(want) == 11 and f"{doc_id('doc1.pdf')}:2" not in want

"""Real Dagster runs on real files: the sample corpus next to every hostile input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pymupdf
import pytest

from mmrag_assets.lib.status import catalog_status
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.instance import open_instance
from mmrag_assets.orchestration.launch import ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrag_assets.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ},
        timeout=600,
    )


HOSTILE = [
    "empty.pdf",
    "truncated.pdf",
    "encrypted.pdf",
    "not-really.pdf",
    "noise.wav",
    "silence.wav",
    "big.png",
    "bomb.png",
    "notes.xyz",
    "link-to-outside.pdf",
    "Ça va #1 (draft).pdf",
]


def _reasons(cfg) -> dict[str, list[str]]:
    reasons: dict[str, list[str]] = {}
    for q in catalog_status(Runtime(cfg))["quarantined"]:
        reasons.setdefault(q["source"], []).append(q["reason"])
    return reasons


@pytest.mark.parametrize("name", HOSTILE)
def test_each_hostile_input_gets_its_specific_outcome(ingested, hostile_corpus, name: str) -> None:
    cfg, _ = ingested
    source = f"hostile/{name}"
    want = hostile_corpus[2][source]
    reasons = _reasons(cfg)
    if want in ("ok", "silence"):
        assert source not in reasons, f"{source} should not be quarantined: {reasons.get(source)}"
        doc = Catalog(cfg.catalog_path).query("SELECT * FROM documents WHERE source = ?", [source])
        assert doc and doc[0]["status"] == "ok"
    else:
        assert source in reasons, f"{source} was not quarantined"
        assert any(want in r for r in reasons[source]), f"{source}: {reasons[source]} lacks {want!r}"


def test_every_good_file_is_processed_and_every_bad_one_quarantined(ingested, hostile_corpus) -> None:
    cfg, _summary = ingested
    assert sorted(hostile_corpus[2]) == sorted(f"hostile/{n}" for n in HOSTILE)
    st = catalog_status(Runtime(cfg))
    cat = Catalog(cfg.catalog_path)
    # every good PDF page was rendered, with its text layer and an image on disk
    assert max(len(p["text"]) for p in cat.query("SELECT text FROM pages")) > 300
    for d in cat.query("SELECT * FROM documents WHERE kind = 'pdf' AND status = 'ok'"):
        with pymupdf.open(cfg.corpus_root / d["source"]) as pdf:
            assert d["n_pages"] == pdf.page_count
        pages = cat.query("SELECT * FROM pages WHERE doc_id = ? ORDER BY page", [d["doc_id"]])
        assert [p["page"] for p in pages] == list(range(1, d["n_pages"] + 1))
        assert all((cfg.storage_root / p["image_path"]).is_file() for p in pages)
        assert all(p["item_id"] == f"{d['doc_id']}:{p['page']}" for p in pages)
        assert all(p["text"] for p in pages)
    assert st["documents"]["pdf"] >= 3 and st["documents"]["image"] >= 2 and st["documents"]["audio"] >= 1
    # speech became timestamped windows; silence became zero segments without an error
    speech = cat.query(
        "SELECT d.source, s.* FROM segments s JOIN documents d USING (doc_id) WHERE d.kind = 'audio'"
    )
    assert speech and all(0 <= s["start_s"] < s["end_s"] for s in speech)
    words = " ".join(s["text"].lower() for s in speech)
    assert "router" in words or "firmware" in words
    silent = [s for s, w in hostile_corpus[2].items() if w == "silence"]
    for s in silent:
        row = cat.query("SELECT * FROM documents WHERE source = ?", [s])
        assert row and row[0]["status"] == "ok" and row[0]["n_segments"] == 0


def test_rerun_is_idempotent(ingested) -> None:
    cfg, _ = ingested
    cat = Catalog(cfg.catalog_path)
    before = cat.query("SELECT item_id, image_path, width FROM pages ORDER BY item_id")
    mtimes = {p["image_path"]: (cfg.storage_root / p["image_path"]).stat().st_mtime_ns for p in before}
    again = ingest(cfg)
    assert again["ingested"] == 0
    assert cat.query("SELECT item_id, image_path, width FROM pages ORDER BY item_id") == before
    assert {k: (cfg.storage_root / k).stat().st_mtime_ns for k in mtimes} == mtimes


def test_status_json_is_one_object_with_relative_sources(ingested) -> None:
    cfg, _ = ingested
    r = _cli("status", "--json", f"corpus.root={cfg.corpus.root}", f"storage.root={cfg.storage.root}")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)  # exactly one JSON document on stdout
    assert set(obj) >= {"documents", "pages", "segments", "quarantined"}
    assert set(obj["documents"]) == {"pdf", "image", "audio", "video", "office", "text"}
    assert obj["pages"] > 0 and obj["segments"] > 0
    assert obj["quarantined"] and all(not q["source"].startswith("/") for q in obj["quarantined"])


def test_change_and_delete_replace_rows(make_cfg, tmp_path: Path) -> None:
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus

    corpus = tmp_path / "corpus"
    files = build_sample_corpus(corpus, video=False)
    for f in files:  # keep two PDFs only: this test is about bookkeeping, not decoding
        if f.suffix != ".pdf":
            f.unlink()
    pdfs = sorted(corpus.rglob("*.pdf"))
    cfg = make_cfg(corpus=corpus)
    ingest(cfg)
    cat = Catalog(cfg.catalog_path)
    old = {d["source"]: d["doc_id"] for d in cat.query("SELECT source, doc_id FROM documents")}
    changed, deleted = pdfs
    rel_changed = changed.relative_to(corpus).as_posix()
    with pymupdf.open(changed) as doc:
        doc.new_page().insert_text((72, 72), "An appended page about tidal turbines.")
        data = doc.tobytes()
    changed.write_bytes(data)
    deleted.unlink()
    summary = ingest(cfg)
    assert summary["ingested"] == 1
    docs = {d["source"]: d for d in cat.query("SELECT * FROM documents")}
    assert set(docs) == {rel_changed}
    new_id = docs[rel_changed]["doc_id"]
    assert new_id != old[rel_changed]
    assert cat.scalar("SELECT count(*) FROM pages WHERE doc_id NOT IN (SELECT doc_id FROM documents)") == 0
    assert (
        "tidal turbines"
        in cat.query("SELECT text FROM pages WHERE doc_id = ? ORDER BY page DESC LIMIT 1", [new_id])[0][
            "text"
        ]
    )
    # the old rendering stays on disk for readers of the live index version until a publish GCs it
    assert cat.scalar("SELECT count(*) FROM pages WHERE doc_id = ?", [old[rel_changed]]) == 0


def test_dpi_override_changes_rendering(make_cfg, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    doc = pymupdf.open()
    doc.new_page(width=612, height=792).insert_text((72, 72), "DPI test page")
    doc.save(corpus / "one.pdf")
    widths = {}
    for dpi in (72, 144):
        cfg = make_cfg(f"ingest.dpi={dpi}", corpus=corpus)
        ingest(cfg)
        widths[dpi] = Catalog(cfg.catalog_path).scalar("SELECT width FROM pages")
    assert widths == {72: 612, 144: 1224}


def test_sensor_requests_one_run_over_the_shards_with_work(make_cfg, tmp_path: Path) -> None:
    from mmrag_assets.definitions import build_definitions
    from mmrag_assets.defs.ingest.sensors import RANGE_END, RANGE_START, corpus_sensor
    from mmrag_assets.lib.ingest.corpus import shard_of
    from mmrag_assets.resources import MmragConfigResource

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b"):
        d = pymupdf.open()
        d.new_page().insert_text((72, 72), f"document {name}")
        d.save(corpus / f"{name}.pdf")
    cfg = make_cfg(corpus=corpus)
    res = MmragConfigResource(overrides=list(cfg.overrides))
    defs = build_definitions(cfg.overrides)

    def tick(instance, cursor=None):
        # a context manager: the mmrag resource tears its runtime down (as the daemon's tick does)
        with dg.build_sensor_context(instance=instance, resources={"mmrag": res}, cursor=cursor) as ctx:
            return corpus_sensor(ctx)

    def run(instance, request) -> None:
        result = defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance, tags=request.tags
        )
        assert result.success

    with open_instance(cfg) as instance:
        r1 = tick(instance)
        assert [rr.job_name for rr in r1.run_requests] == ["index_job"]
        tags = r1.run_requests[0].tags
        ids = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in corpus.iterdir()}
        shards = sorted(shard_of(i) for i in ids.values())
        assert (tags[RANGE_START], tags[RANGE_END]) == (shards[0], shards[-1])
        run(instance, r1.run_requests[0])
        r2 = tick(instance, r1.cursor)
        assert not r2.run_requests and "up to date" in r2.skip_reason.skip_message
        (corpus / "a.pdf").unlink()
        r3 = tick(instance, r2.cursor)
        assert [rr.job_name for rr in r3.run_requests] == ["publish_job"]  # only a removal: nothing to ingest
        run(instance, r3.run_requests[0])
        assert Catalog(cfg.catalog_path).doc_ids() == {ids["b"]}
        # an earlier corpus state that comes back gets new run keys (Dagster skips a used one),
        # while the ticks of one state repeat theirs
        d = pymupdf.open()
        d.new_page().insert_text((72, 72), "document a")
        d.save(corpus / "a.pdf")
        r4 = tick(instance, r3.cursor)
        r4b = tick(instance, r4.cursor)  # its run has not run yet: the same request
        assert [rr.job_name for rr in r4.run_requests] == ["index_job"]
        assert r4.run_requests[0].run_key != r1.run_requests[0].run_key
        assert r4b.run_requests[0].run_key == r4.run_requests[0].run_key
        run(instance, r4.run_requests[0])
        idle = tick(instance, r4b.cursor)
        assert not idle.run_requests
        (corpus / "a.pdf").unlink()
        r5 = tick(instance, idle.cursor)
        assert [rr.job_name for rr in r5.run_requests] == ["publish_job"]
        assert r5.run_requests[0].run_key != r3.run_requests[0].run_key
        run(instance, r5.run_requests[0])
        assert Catalog(cfg.catalog_path).doc_ids() == {ids["b"]}


def test_sensor_skips_with_a_reason_when_the_corpus_is_missing(make_cfg, tmp_path: Path) -> None:
    from mmrag_assets.defs.ingest.sensors import corpus_sensor
    from mmrag_assets.resources import MmragConfigResource

    cfg = make_cfg()
    res = MmragConfigResource(
        overrides=[f"corpus.root={tmp_path / 'nowhere'}", f"storage.root={cfg.storage.root}"]
    )
    with (
        open_instance(cfg) as instance,
        dg.build_sensor_context(instance=instance, resources={"mmrag": res}) as ctx,
    ):
        out = corpus_sensor(ctx)
    assert isinstance(out, dg.SkipReason) and "is not a directory" in out.skip_message


def test_cli_ingest_exits_zero_with_quarantined_inputs(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "fake.pdf").write_text("not a pdf")
    (corpus / "empty.wav").write_bytes(b"")
    d = pymupdf.open()
    d.new_page().insert_text((72, 72), "good")
    d.save(corpus / "good (1) #é.pdf")
    r = _cli("ingest", f"corpus.root={corpus}", f"storage.root={tmp_path / 's'}")
    assert r.returncode == 0, r.stderr
    assert "quarantined: 2" in r.stdout
    bad = _cli("ingest", f"corpus.root={tmp_path / 'missing'}", f"storage.root={tmp_path / 's'}")
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
    shutil.rmtree(tmp_path / "s")


def test_the_corpus_sensor_ticks_at_the_configured_interval() -> None:
    """orchestration.sensor_interval_s sets how often the daemon evaluates the corpus sensor."""
    from mmrag_assets.definitions import build_definitions

    for seconds in (5, 17):
        sensor = build_definitions([f"orchestration.sensor_interval_s={seconds}"]).get_sensor_def(
            "corpus_sensor"
        )
        assert sensor.minimum_interval_seconds == seconds


def test_queued_runs_are_dequeued_every_second(make_cfg) -> None:
    """A run the sensor requests waits at most ~1 s in the run queue (Dagster's default: 5 s),
    and the queue still runs at most 4 at once."""
    with open_instance(make_cfg()) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4

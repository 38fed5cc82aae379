"""The distributed setup on loopback, for real: moto's S3 server (random port) holding both the corpus
(``corpus.root=s3://...``) and the storage root, a fresh Postgres database each for the catalog and the
Dagster instance, the Redis broker and three celery workers (`mmrag worker`: one on the CPU queue, two on
the embedding queue, as GPU workers would be).

A mixed corpus (PDFs, an image, a photo, a recording, a video and a truncated PDF) is indexed through
them while one whole worker (its main process and its pool: a lost machine) is SIGKILLed mid-ingestion;
the launcher's watch fails the step that died with it instead of waiting forever, a replacement worker
starts, the rerun completes, and the rows, the search results and `mmrag status` are those of a plain
local run on the same files on disk. Then new documents in two shard ranges are embedded by the two
embedding workers at once (their `item_embeddings` steps overlap in the runs' event logs: both are held
inside their writes until both got there), one of those workers is killed there, no row of the new
documents becomes visible, and the rerun ends with exactly the local run's table (ids and vectors).
Only new objects are downloaded from the corpus bucket, and a run with nothing to do downloads none."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest

from mmrag_assets.config import load_config
from mmrag_assets.errors import MmragError
from mmrag_assets.fixtures.sample_corpus import build_sample_corpus
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.instance import dagster_home
from mmrag_assets.orchestration.launch import index
from tests.hostile_corpus import _pdf
from tests.scale.services import counting_gets, fresh_database, postgres_available, s3_emulator

pytestmark = [
    pytest.mark.scale,
    pytest.mark.integration,
    pytest.mark.skipif(
        not postgres_available(), reason="needs the Postgres server on 127.0.0.1:5432 (.ci/run starts it)"
    ),
]

HANG_S = 1500
HANG_DUMP = Path(tempfile.gettempdir()) / "mmrag-scale-hang.txt"
QUERIES = ["what does error E04 mean", "how do I mount the solar inverter on the wall", "router firmware reset",
           "tidal turbine blade pitch inspection"]  # fmt: skip
CORPUS_PREFIX = "corpus"
ROWS = {
    "documents": "SELECT doc_id, source, kind, status, n_pages, n_segments FROM documents ORDER BY doc_id",
    "pages": "SELECT item_id, doc_id, page, modality, image_path, text, text_source FROM pages ORDER BY item_id",
    "segments": "SELECT item_id, doc_id, start_s, end_s, text FROM segments ORDER BY item_id",
    "quarantine": "SELECT source, doc_id, stage, reason FROM quarantine ORDER BY source, stage, reason",
    "checks": "SELECT doc_id, check_name, version_key, passed FROM document_checks ORDER BY doc_id, check_name, version_key",
}


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping())
    except Exception:  # noqa: BLE001
        return False


def _rows(cfg) -> dict[str, list[tuple]]:
    cat = Catalog(cfg.catalog_url)
    return {k: [tuple(r.values()) for r in cat.query(sql)] for k, sql in ROWS.items()}


def _status(cfg_overrides: list[str]) -> dict:
    from mmrag_assets.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["status", "--json", *cfg_overrides]) == 0
    return json.loads(buf.getvalue())


def _hits(cfg) -> dict[str, list[tuple]]:
    s = get_searcher(Runtime(cfg))
    return {q: [(r.item_id, r.rank, r.score) for r in s.search(q).results] for q in QUERIES}


def _worker(
    name: str, queues: list[str], overrides: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen:
    args = [sys.executable, "-m", "mmrag_assets.cli", "worker", "--name", name]
    for q in queues:
        args += ["--queue", q]
    return subprocess.Popen([*args, *overrides], stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **env})  # fmt: skip


def _table(path: str, options: dict[str, str] | None = None) -> list[dict]:
    """Every row of a LanceDB items table (latest version), by item id: ids, payload, everything."""
    import lance

    return lance.dataset(path, storage_options=options or None).to_table().sort_by("item_id").to_pylist()


TOPICS = [
    "tidal turbine blade pitch inspection: measure the pitch angle of every blade at slack water",
    "replacing the yaw brake pads of the nacelle after ten thousand operating hours",
    "finding a seal leak in the gearbox from the oil level trend and the bilge alarm",
    "anchor chain corrosion survey with an underwater drone and a caliper",
]


def _new_documents() -> dict[str, bytes]:
    """Four PDFs on distinct topics whose documents fall into at least two shards: two shard ranges,
    two embedding steps (the last one's revision number moves it to another shard when needed)."""
    docs: dict[str, bytes] = {}
    for i, topic in enumerate(TOPICS):
        rev = 0
        while True:
            data = _pdf(f"{topic} (procedure {i + 1}, revision {rev})", pages=2)
            firsts = {hashlib.sha256(d).hexdigest()[0] for d in [*docs.values(), data]}
            if i < len(TOPICS) - 1 or len(firsts) >= 2:
                break
            rev += 1
        docs[f"tidal/procedure {i + 1}.pdf"] = data
    return docs


def _kill_when_embedding(
    barrier: Path, workers: dict[str, subprocess.Popen], out: dict, stop: threading.Event, replace
) -> None:
    """Once two embedding steps wait inside their writes (``MMRAG_FAULT_WAIT=embed.written``: each wrote
    its fragments, no batch recorded), SIGKILL the whole worker of the first, start a replacement, and
    let the other go on."""
    arrived: list[Path] = []
    deadline = time.monotonic() + 600
    while not stop.is_set() and time.monotonic() < deadline:
        arrived = sorted(barrier.glob("*.arrived"), key=lambda p: p.stat().st_mtime)
        if len(arrived) >= 2:
            break
        time.sleep(0.2)
    try:
        pids = [int(p.name.split(".")[0]) for p in arrived]
        owners: dict[int, str] = {}
        for name, w in workers.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                kids = {c.pid for c in psutil.Process(w.pid).children(recursive=True)}
                owners.update({pid: name for pid in pids if pid in kids})
        out["waiting"] = [owners.get(pid) for pid in pids]
        victim = owners.get(pids[0]) if len(pids) >= 2 else None
        if victim is not None:
            os.killpg(workers[victim].pid, signal.SIGKILL)
            out.update(worker=victim, process=workers[victim])
            workers[victim] = replace(victim)
    finally:
        (barrier / "go").touch()


def _embedding_steps(cfg, since: float) -> list[dict]:
    """The ``item_embeddings`` steps of shard runs started after ``since``: worker, start, end (the
    step's success or failure; the watch's failure for a lost worker), from the runs' event logs."""
    steps = []
    with dg.DagsterInstance.from_config(str(dagster_home(cfg))) as inst:
        for run in inst.get_runs(dg.RunsFilter(job_name="shard_index_job_celery")):
            step: dict = {"run_id": run.run_id, "worker": None, "start": None, "end": float("inf")}
            for rec in inst.all_logs(run.run_id):
                ev = rec.dagster_event
                if ev is None or ev.step_key != "item_embeddings":
                    continue
                if ev.event_type_value == "STEP_START":
                    step["start"] = rec.timestamp
                elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                    step["end"] = min(step["end"], rec.timestamp)
                if "in celery worker" in (rec.message or ""):
                    host = str(getattr(ev.event_specific_data.metadata.get("Celery worker"), "value", ""))
                    step["worker"] = host.split("@")[0]
            if step["start"] is not None and step["start"] >= since:
                steps.append(step)
    return steps


def _kill_when_ingesting(
    cfg, workers: dict[str, subprocess.Popen], out: dict, stop: threading.Event, replace
) -> None:
    """SIGKILL the whole worker (its main process and its pool: a machine lost) that executes an
    ingestion step, as soon as one does, and start a replacement (a new machine takes its place: the
    other shard run's steps on that worker's queues need one)."""
    home = dagster_home(cfg)
    while not (home / "dagster.yaml").exists() and not stop.is_set():  # `index` creates the instance
        time.sleep(0.2)
    with dg.DagsterInstance.from_config(str(home)) as inst:
        while not stop.is_set():
            for run in inst.get_runs(
                dg.RunsFilter(job_name="shard_index_job_celery", statuses=[dg.DagsterRunStatus.STARTED])
            ):
                for rec in inst.all_logs(run.run_id):
                    ev = rec.dagster_event
                    if (
                        ev is None
                        or ev.step_key != "document_content"
                        or "in celery worker" not in (rec.message or "")
                    ):
                        continue
                    host = str(getattr(ev.event_specific_data.metadata.get("Celery worker"), "value", ""))
                    name = host.split("@")[0]
                    if name in workers:
                        time.sleep(1.0)  # mid-step: the step has started writing its documents
                        pids = [
                            workers[name].pid,
                            *(c.pid for c in psutil.Process(workers[name].pid).children()),
                        ]
                        os.killpg(workers[name].pid, signal.SIGKILL)
                        out.update(worker=name, run_id=run.run_id, killed=pids, process=workers[name])
                        workers[name] = replace(name)
                        return
            time.sleep(0.3)


@pytest.mark.skipif(not _redis_up(), reason="needs the Redis server on 127.0.0.1:6379 (.ci/run starts it)")
def test_distributed_run_matches_local_and_survives_a_killed_worker(tmp_path: Path, monkeypatch) -> None:
    import faulthandler

    import boto3

    # a hang must not hold CI for its whole budget: after HANG_S every thread's stack goes to HANG_DUMP
    # (a file: pytest captures this process's stderr, and a dump there dies with the process) and the
    # process ends; .ci/run prints the file. A passing run took 320-350 s at a load average of 8-11 on 2 cores.
    HANG_DUMP.unlink(missing_ok=True)
    with HANG_DUMP.open("w") as dump:
        faulthandler.dump_traceback_later(HANG_S, exit=True, file=dump)
        try:
            _scenario(tmp_path, monkeypatch, boto3)
        finally:
            faulthandler.cancel_dump_traceback_later()
    HANG_DUMP.unlink(missing_ok=True)


def _scenario(tmp_path: Path, monkeypatch, boto3) -> None:
    corpus = tmp_path / "corpus"
    build_sample_corpus(corpus)
    good = (corpus / "reports").glob("*.pdf").__next__().read_bytes()
    (corpus / "bad").mkdir()
    (corpus / "bad" / "truncated.pdf").write_bytes(good[: len(good) // 3])

    local_ovr = [f"corpus.root={corpus}", "model=lite", f"storage.root={tmp_path / 'local'}"]
    local = load_config(local_ovr)
    s_local = index(local)
    assert s_local["ingested"] == 7 and not s_local["failed"]

    with (
        s3_emulator() as env,
        fresh_database() as catalog_db,
        fresh_database() as dagster_db,
        counting_gets() as gets,
    ):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3")

        def upload(files: dict[str, bytes]) -> set[str]:
            for rel, data in files.items():
                s3.put_object(Bucket="mmrag-test", Key=f"{CORPUS_PREFIX}/{rel}", Body=data)
            return {f"{CORPUS_PREFIX}/{rel}" for rel in files}

        old_keys = upload(
            {p.relative_to(corpus).as_posix(): p.read_bytes() for p in corpus.rglob("*") if p.is_file()}
        )
        remote_ovr = [
            f"corpus.root=s3://mmrag-test/{CORPUS_PREFIX}", "model=lite",
            "storage.root=s3://mmrag-test/team", "storage.allow_http=true", "orchestration.celery.worker_lost_s=15",
            f"storage.cache_dir={tmp_path / 'launcher-cache'}", "catalog=postgres", f"catalog.url={catalog_db}",
            "orchestration=celery", f"orchestration.postgres_url={dagster_db}",
            f"orchestration.celery.key_prefix=mmrag-test-{uuid.uuid4().hex[:8]}:",
        ]  # fmt: skip
        cfg = load_config(remote_ovr)
        logs = tmp_path / "logs"
        logs.mkdir()
        barrier = tmp_path / "embed-barrier"
        barrier.mkdir()
        # a CPU worker and two GPU workers (the embedding queue only: which worker ingests is then no
        # matter of chance); the embedding steps wait inside their writes once the barrier is armed
        # (lib/faults.py MMRAG_FAULT_WAIT)
        queues = {"cpu": ["dagster"], "gpu-a": ["mmrag-embed"], "gpu-b": ["mmrag-embed"]}
        wait_env = {"MMRAG_FAULT_WAIT": f"embed.written:{barrier}"}

        def start(name: str, log: str) -> subprocess.Popen:
            return _worker(
                name,
                queues[name],
                [*remote_ovr, f"storage.cache_dir={tmp_path / (name + '-cache')}"],
                logs / log,
                wait_env,
            )

        workers = {name: start(name, f"{name}.log") for name in queues}
        lost = []
        try:
            # ---- 1. a worker lost mid-ingestion; the rerun completes; everything equals the local run
            killed: dict = {}
            stop = threading.Event()
            killer = threading.Thread(
                target=_kill_when_ingesting,
                args=(cfg, workers, killed, stop, lambda n: start(n, f"{n}-replacement.log")),
                daemon=True,
            )
            killer.start()
            try:
                with pytest.raises(MmragError, match="failed"):
                    index(cfg)
            finally:
                stop.set()
                killer.join(30)
            assert killed, "no worker was killed: the run finished before an ingestion step started"
            # the launcher did not wait forever for the dead worker's task: its watch failed the step
            dead = killed["worker"]
            with dg.DagsterInstance.from_config(str(dagster_home(cfg))) as inst:
                said = [
                    r.message
                    for r in inst.all_logs(killed["run_id"])
                    if "was lost while running" in (r.message or "")
                ]
            assert said and f"celery worker {dead}@" in said[0] and "document_content" in said[0], said
            lost.append(killed["process"])
            again = index(cfg)
            assert not again["failed"] and again["ingested"] >= 1  # the killed range, redone
            third = index(cfg)  # and then nothing left to ingest or embed (the photo, which the lite tier
            assert (third["ingested"], third["embedded"]) == (
                0,
                0,
            )  # cannot embed, makes every run re-publish, locally too)
            _same_as_local(cfg, local, remote_ovr, local_ovr)
            # each object: downloaded by the launcher's scan, by the worker that ingested it (and by the
            # rerun's worker after the kill), never by the manifest step (the launcher recorded the hashes)
            assert max(gets[k] for k in old_keys) <= 3 and all(gets[k] >= 1 for k in old_keys), gets
            with dg.DagsterInstance.from_config(str(dagster_home(cfg))) as inst:
                manifests = inst.fetch_materializations(dg.AssetKey("corpus_manifest"), limit=20).records
                got = [r.asset_materialization.metadata["objects_downloaded"].value for r in manifests]
            assert got and set(got) == {0}, got

            # ---- 2. new documents in two shard ranges: two embedding workers at once, one killed in its write
            new = _new_documents()
            before = dict(gets)
            new_keys = upload(new)
            for rel, data in new.items():
                (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
                (corpus / rel).write_bytes(data)
            new_docs = {hashlib.sha256(d).hexdigest()[:16] for d in new.values()}
            (barrier / "armed").touch()
            since = time.time()
            killed = {}
            stop = threading.Event()
            killer = threading.Thread(
                target=_kill_when_embedding,
                args=(barrier, workers, killed, stop, lambda n: start(n, f"{n}-replacement-2.log")),
                daemon=True,
            )
            killer.start()
            try:
                with pytest.raises(MmragError, match="failed"):
                    index(cfg)
            finally:
                stop.set()
                killer.join(30)
            assert killed.get("worker"), f"two embedding steps never waited in their writes at once: {killed}"
            lost.append(killed["process"])
            steps = _embedding_steps(cfg, since)
            assert len(steps) == 2 and {s["worker"] for s in steps} == {"gpu-a", "gpu-b"}, steps
            assert max(s["start"] for s in steps) < min(s["end"] for s in steps), steps  # they overlapped
            # nothing of the new documents is visible: the killed range wrote data files no version names,
            # the other range's batch waits for the publisher, which a failed shard run does not start

            store = Runtime(cfg).storage
            table = _status(remote_ovr)["index"]["table"]
            url, opts = store.url(f"lancedb/{table}.lance"), store.lance_options()
            assert not {r["doc_id"] for r in _table(url, opts)} & new_docs
            assert not [
                r
                for r in get_searcher(Runtime(cfg)).search("tidal turbine blade pitch", k=10).results
                if r.source.startswith("tidal/")
            ]
            rerun = index(cfg)
            assert not rerun["failed"] and rerun["embedded"] >= 1
            assert index(local)["ingested"] == len(new)
            _same_as_local(cfg, local, remote_ovr, local_ovr)
            # the table ends with exactly the local run's rows: ids, token payloads, text, paths
            remote_rows, local_rows = _table(url, opts), _table(str(local.lancedb_dir / f"{table}.lance"))
            assert remote_rows == local_rows and {r["doc_id"] for r in remote_rows} >= new_docs
            # only the new objects were downloaded in this phase; a run with nothing to do downloads nothing
            assert {
                k for k in gets if k.startswith(f"{CORPUS_PREFIX}/") and gets[k] != before.get(k, 0)
            } <= new_keys, gets
            before = dict(gets)
            last = index(cfg)
            assert (last["ingested"], last["embedded"]) == (0, 0)
            assert not [k for k in gets if k.startswith(f"{CORPUS_PREFIX}/") and gets[k] != before.get(k, 0)]

            # embedding and publishing ran on the workers that consume the embedding queue, never the CPU one
            placed: dict[str, set[str]] = {}
            with dg.DagsterInstance.from_config(str(dagster_home(cfg))) as inst:
                for run in inst.get_runs():
                    for rec in inst.all_logs(run.run_id):
                        msg = rec.message or ""
                        if rec.dagster_event and "in celery worker" in msg:
                            meta = rec.dagster_event.event_specific_data.metadata
                            host = str(getattr(meta.get("Celery worker"), "value", ""))
                            placed.setdefault(rec.dagster_event.step_key or "", set()).add(host.split("@")[0])
            for step in ("item_embeddings", "search_index", "index_quality"):  # the steps that load the model
                assert placed[step] <= {"gpu-a", "gpu-b"}, (step, placed[step])
            assert placed["document_content"] == {"cpu"}  # ingestion on the CPU worker only
        except BaseException:
            for f in sorted(logs.iterdir()):
                print(f"---- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-40:]))
            raise
        finally:
            (barrier / "go").touch()
            for w in workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.pid, signal.SIGTERM)
            for w in lost:
                w.wait(30)
            for w in workers.values():
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)


def _same_as_local(cfg, local, remote_ovr: list[str], local_ovr: list[str]) -> None:
    """The same catalog rows, search results and status as the local run: nothing lost, nothing twice."""
    import boto3

    assert _rows(cfg) == _rows(local)
    pg = Catalog(cfg.catalog_url)
    for table, key in (("pages", "item_id"), ("segments", "item_id"), ("documents", "doc_id")):
        assert pg.scalar(f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0
    assert any(r[0] == "bad/truncated.pdf" for r in _rows(cfg)["quarantine"])
    # the same items in the same order; scores equal to float32 rounding (the rerun's index is laid
    # out in two segments where the local one has one: sums in another order, seen 0.908595 vs 0.908594)
    h_remote, h_local = _hits(cfg), _hits(local)
    assert {q: [r[:2] for r in h] for q, h in h_remote.items()} == {
        q: [r[:2] for r in h] for q, h in h_local.items()
    }
    for q in QUERIES:
        assert [r[2] for r in h_remote[q]] == pytest.approx([r[2] for r in h_local[q]], rel=1e-5, abs=1e-6), q
    assert any(h_local.values())
    st_remote, st_local = _status(remote_ovr), _status(local_ovr)
    ri, li = st_remote.pop("index"), st_local.pop("index")
    assert st_remote == st_local
    assert (ri["table"], ri["rows"]) == (
        li["table"],
        li["rows"],
    )  # the table version counts commits, not rows

    # the LanceDB table in the object store holds each item once

    store = Runtime(cfg).storage
    ids = [r["item_id"] for r in _table(store.url(f"lancedb/{ri['table']}.lance"), store.lance_options())]
    assert len(ids) == len(set(ids)) == li["rows"]
    keys = {
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="mmrag-test", MaxKeys=1000)["Contents"]
    }
    assert any(k.startswith("team/pages/") for k in keys) and any(k.endswith("/CURRENT") for k in keys)

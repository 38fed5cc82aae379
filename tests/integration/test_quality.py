"""Data quality through real Dagster runs: blocking contracts, drift against baselines, `mmrag checks`,
`mmrag baseline`, and the automation path from a new corpus file to a search result."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pymupdf
import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.lib.catalog import Catalog
from mmrag_assets.runner import _quiet_run_config, ingest, materialize, open_instance

pytestmark = pytest.mark.integration

# Cheap search structures: these tests are about quality gates, not first stages.
FAST = ["model=lite", "ingest.dpi=30", "search.prebuild=[pooled]", "search.first_stage=pooled"]
WORDS = [
    *[
        "inverter",
        "battery",
        "voltage",
        "panel",
        "roof",
        "mounting",
        "bracket",
        "torque",
        "firmware",
        "router",
        "reset",
        "wifi",
        "password",
    ],
    *[
        "revenue",
        "quarter",
        "region",
        "sales",
        "cookware",
        "steel",
        "lighthouse",
        "coast",
        "night",
        "diagram",
        "network",
        "cable",
        "switch",
    ],
    *[
        "install",
        "warranty",
        "safety",
        "ground",
        "fault",
        "meter",
        "breaker",
        "solar",
        "grid",
        "export",
        "tariff",
    ],
]


def make_pdf(path: Path, pages: int, seed: int, *, lines: list[str] | None = None) -> Path:
    """A text PDF: each page a bag of words from a few topics (or the given lines on one page)."""
    rng = np.random.default_rng(seed)
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page(width=420, height=595)
        if lines is not None:
            for i, line in enumerate(lines):
                page.insert_text((20, 20 + 6 * i), line, fontsize=4)
            continue
        topic = rng.choice(len(WORDS), size=6, replace=False)
        words = [WORDS[j] for j in rng.choice(topic, size=int(rng.integers(20, 60)))]
        page.insert_textbox(pymupdf.Rect(20, 20, 400, 575), " ".join(words), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    return path


def check_evals(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def run_assets(
    cfg: MmragConfig, selection: list[str], partition_key: str | None = None
) -> dg.ExecuteInProcessResult:
    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.resources.mmrag import MmragResource

    with open_instance(cfg) as instance:
        return dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=selection,
            partition_key=partition_key,
            instance=instance,
            resources={"mmrag": MmragResource(overrides=cfg.overrides)},
            run_config=_quiet_run_config(),
            raise_on_error=False,
        )


def mmrag_cli(*args: str) -> subprocess.CompletedProcess:
    """The `mmrag` console script (mmrag_assets.cli:main) in a fresh interpreter."""
    code = "import sys; from mmrag_assets.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
    )


# ---------------------------------------------------------------- contracts
def test_contract_violation_blocks_downstream_and_names_the_row(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    make_pdf(corpus / "manual.pdf", 3, seed=1)
    cfg = load_config([f"corpus.root={corpus}", f"storage.root={tmp_path / 'storage'}", *FAST])
    ingest(cfg)  # manifest, then the document with its contract checks: all pass
    cat = Catalog(cfg.catalog_path)
    doc = cat.query("SELECT doc_id FROM documents")[0]["doc_id"]
    bad = f"{doc}:2"
    with cat.connect() as con:  # a corrupted row: page 2 claims to be page 99 of a 3-page document
        con.execute("UPDATE pages SET page = 99 WHERE item_id = ?", [bad])

    r = run_assets(cfg, ["page_images", "transcript_segments", "item_embeddings", "search_index"], doc)
    assert not r.success
    assert materialized(r) == {
        "page_images",
        "transcript_segments",
    }  # the document is unchanged: not rewritten
    evals = check_evals(r)
    pages = evals["pages_contract"]
    assert not pages.passed and pages.severity == dg.AssetCheckSeverity.ERROR
    assert pages.metadata["offending_ids"].value == {"page_le_doc_n_pages": [bad]}
    assert bad in pages.metadata["failures"].value
    assert evals["documents_contract"].passed and evals["segments_contract"].passed
    assert "embeddings_contract" not in evals and "embedding_drift" not in evals  # never ran
    with open_instance(cfg) as instance:
        assert not instance.get_materialized_partitions(dg.AssetKey("item_embeddings"))
        assert instance.get_latest_materialization_event(dg.AssetKey("search_index")) is None

    # `mmrag checks --json`: one JSON object; the failing document is the latest result of its check
    out = mmrag_cli("checks", "--json", *cfg.overrides)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert list(obj) == ["checks"]
    by_name = {(c["asset"], c["check"]): c for c in obj["checks"]}
    assert set(by_name) >= {
        ("page_images", "documents_contract"),
        ("page_images", "pages_contract"),
        ("transcript_segments", "segments_contract"),
        ("item_embeddings", "embeddings_contract"),
        ("search_index", "embedding_drift"),
        ("search_index", "modality_gap"),
    }
    pc = by_name[("page_images", "pages_contract")]
    assert (pc["passed"], pc["severity"], pc["failing_partitions"]) == (False, "ERROR", [doc])
    assert pc["metadata"]["offending_ids"] == {"page_le_doc_n_pages": [bad]} and pc["blocking"] is True
    assert by_name[("page_images", "documents_contract")]["passed"] is True
    assert by_name[("page_images", "documents_contract")]["severity"] == "OK"
    assert by_name[("search_index", "embedding_drift")]["passed"] is None  # never ran

    # repaired: the catalog contracts pass; an embeddings contract violation then blocks search_index
    with cat.connect() as con:
        con.execute("UPDATE pages SET page = 2 WHERE item_id = ?", [bad])
    strict = load_config([*cfg.overrides, "checks.contracts.max_tokens=5"])  # every page has > 5 tokens
    r = run_assets(strict, ["page_images", "transcript_segments", "item_embeddings", "search_index"], doc)
    evals = check_evals(r)
    assert evals["pages_contract"].passed and "item_embeddings" in materialized(r)
    emb = evals["embeddings_contract"]
    assert not emb.passed and "search_index" not in materialized(r)
    assert sorted(emb.metadata["offending_ids"].value["n_tokens_in_bounds"]) == [
        f"{doc}:{p}" for p in (1, 2, 3)
    ]


# ---------------------------------------------------------------- drift and baselines
@pytest.fixture(scope="module")
def drift_index(tmp_path_factory: pytest.TempPathFactory) -> MmragConfig:
    """A 40-page corpus indexed with lite (the first drift check creates the first baseline)."""
    from mmrag_assets.runner import index

    base = tmp_path_factory.mktemp("drift")
    make_pdf(base / "corpus" / "handbook.pdf", 40, seed=3)
    cfg = load_config([f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", *FAST])
    index(cfg)
    return cfg


def test_baseline_records_who_when_why_and_an_unchanged_index_passes(
    drift_index: MmragConfig, capsys
) -> None:
    from mmrag_assets.cli import main
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.quality.baselines import baseline_log

    cfg = drift_index
    vk = version_key_for(cfg.model)
    cat = Catalog(cfg.catalog_path)
    auto = baseline_log(cat, vk)
    assert [(r["action"], r["user_name"]) for r in auto] == [
        ("set", "mmrag (automatic)")
    ]  # by the first index

    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)  # the catalog stores naive UTC
    assert main(["baseline", "--reason", "handbook v2 is the reference", "--json", *cfg.overrides]) == 0
    printed = json.loads(capsys.readouterr().out)
    log = baseline_log(cat, vk)
    assert len(log) == 2 and log[0]["baseline_id"] == printed["baselines"][0]["baseline_id"]
    assert log[0]["action"] == "rotate" and log[0]["previous_id"] == auto[0]["baseline_id"]
    assert log[0]["user_name"] == getpass.getuser() and log[0]["reason"] == "handbook v2 is the reference"
    assert log[0]["logged_at"] >= before and log[0]["n_items"] == 40
    with open_instance(cfg) as instance:  # the same event in Dagster's asset history
        mat = instance.get_latest_materialization_event(dg.AssetKey("drift_baselines")).asset_materialization
        assert mat.metadata["set_by"].value == getpass.getuser()
        assert mat.metadata["reason"].value == "handbook v2 is the reference"

    r = run_assets(cfg, ["search_index"])
    drift = check_evals(r)["embedding_drift"]
    assert drift.passed, drift.metadata["drift"].value
    plot = Path(drift.metadata["page_plot"].value)
    assert plot.is_file() and plot.is_relative_to(cfg.storage_root / "reports" / "drift")
    assert drift.metadata["page_plot_inline"].value.startswith("![drift page](data:image/png;base64,")
    gap = check_evals(r)["modality_gap"]
    assert gap.passed and 0 < gap.metadata["page_distance"].value <= 2
    assert cat.scalar("SELECT count(*) FROM modality_gap_history") >= 2  # first index, baseline, this run


def test_drift_check_flags_a_switched_model_tier_until_a_baseline_accepts_it(
    drift_index: MmragConfig,
) -> None:
    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.runner import index

    old_vk = version_key_for(drift_index.model)
    cfg = load_config([*drift_index.overrides, "model.dim=128"])  # another lite embedding version
    index(cfg)  # embeds into a new table; its drift check compares with the lite-256 baseline
    with open_instance(cfg) as instance:
        rec = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("search_index"), "embedding_drift")]
        )
        drift = next(iter(rec.values())).evaluation
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    assert drift.metadata["page_severity"].value == "ERROR"
    assert drift.metadata["baselines"].value["page"]["version_key"] == old_vk
    assert "mmrag baseline" in drift.metadata["notes"].value

    from mmrag_assets.cli import main

    assert main(["baseline", "--reason", "switched to 128-d lite on purpose", *cfg.overrides]) == 0
    r = run_assets(cfg, ["search_index"])
    assert check_evals(r)["embedding_drift"].passed

    # a model revision swapped in under the same version key: same items, vectors in a rotated space
    rotate_vectors_in_place(cfg)
    drift = check_evals(run_assets(cfg, ["search_index"]))["embedding_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    assert "| page | all | 40 |" in drift.metadata["drift"].value


def rotate_vectors_in_place(cfg: MmragConfig) -> None:
    import pyarrow as pa

    from mmrag_assets.lib.index import table as lx
    from mmrag_assets.lib.index.embedding import version_key_for

    d = cfg.model.dim
    tbl = lx.open_table(cfg, version_key_for(cfg.model), d, create=False)
    t = tbl.to_arrow().combine_chunks()
    vec = t.column("vector").chunk(0)
    flat = vec.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))  # (d, d) orthogonal
    inner = pa.FixedSizeListArray.from_arrays(pa.array((flat @ q).astype(np.float16).reshape(-1)), d)
    rotated = pa.ListArray.from_arrays(vec.offsets, inner).cast(vec.type)
    t = t.set_column(t.schema.get_field_index("vector"), "vector", rotated)
    tbl.merge_insert("item_id").when_matched_update_all().execute(t)


# ---------------------------------------------------------------- automation
def test_new_corpus_file_becomes_searchable_through_sensor_and_automation(tmp_path: Path) -> None:
    from mmrag_assets.definitions import build_definitions
    from mmrag_assets.defs.ingest.sensors import corpus_sensor
    from mmrag_assets.lib.search.searcher import search
    from mmrag_assets.resources.mmrag import MmragResource

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # a page over the contract's text limit: its blocking check fails, so it must never be embedded
    cfg = load_config(
        [
            f"corpus.root={corpus}",
            f"storage.root={tmp_path / 'storage'}",
            *FAST,
            "checks.contracts.max_text_chars=1500",
        ]
    )
    defs = build_definitions(cfg.overrides)
    with open_instance(cfg) as instance:
        # the daemon is already running: its first tick (an empty corpus) requests nothing
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=dg.AssetSelection.all()
        )
        assert first.total_requested == 0
        cursor = first.cursor
        make_pdf(
            corpus / "airships.pdf",
            2,
            seed=0,
            lines=["The zeppelin hangar at Friedrichshafen", "airship mooring mast"],
        )
        long_lines = [" ".join(WORDS[i : i + 8]) for i in range(0, len(WORDS), 8)] * 10
        make_pdf(corpus / "overlong.pdf", 1, seed=0, lines=long_lines)  # ~2,700 characters on one page
        ctx = dg.build_sensor_context(
            instance=instance, resources={"mmrag": MmragResource(overrides=cfg.overrides)}
        )
        sensed = corpus_sensor(ctx)
        for req in sensed.dynamic_partitions_requests:  # what the daemon does with the sensor's result
            if isinstance(req, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        jobs = [rr.job_name for rr in sensed.run_requests]
        assert jobs[0] == "corpus_manifest_job" and jobs.count("ingest_job") == 2
        for rr in sensed.run_requests:
            defs.resolve_job_def(rr.job_name).execute_in_process(
                instance=instance,
                partition_key=rr.partition_key,
                tags=rr.tags,
                run_config=_quiet_run_config(),
                raise_on_error=False,
            )
        cat = Catalog(cfg.catalog_path)
        ids = {d["source"]: d["doc_id"] for d in cat.query("SELECT source, doc_id FROM documents")}
        good, bad = ids["airships.pdf"], ids["overlong.pdf"]

        requested: list[tuple[str, set]] = []
        for _ in range(4):  # daemon ticks, each followed by the runs it requested
            res = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=cursor
            )
            cursor = res.cursor
            emb = res.get_requested_partitions(dg.AssetKey("item_embeddings"))
            idx = res.get_requested_partitions(dg.AssetKey("search_index"))
            requested.append((f"emb={sorted(emb)} idx={sorted(map(str, idx))}", emb | idx))
            for pk in sorted(emb):
                materialize(instance, cfg.overrides, ["item_embeddings"], partition_key=pk)
            if idx:
                materialize(instance, cfg.overrides, ["search_index"])
        assert [r[1] for r in requested] == [{good}, {None}, set(), set()], [r[0] for r in requested]

    resp = search("zeppelin hangar", k=3, cfg=cfg)
    assert resp.results and resp.results[0].source == "airships.pdf"
    assert all(r.doc_id != bad for r in resp.results)

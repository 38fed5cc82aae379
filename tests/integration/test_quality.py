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
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.lib.store.runtime import Runtime
from mmrag_assets.orchestration.instance import open_instance
from mmrag_assets.orchestration.launch import index

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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
    """Materialise some assets (and their checks) in one run, as a UI launch does."""
    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.resources import resources_for

    with open_instance(cfg) as instance:
        return dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=selection,
            partition_key=partition_key,
            instance=instance,
            resources=resources_for(cfg.overrides),
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
LONG = [" ".join(WORDS[i : i + 8]) for i in range(0, len(WORDS), 8)] * 10  # ~2,700 characters on one page


def gated_corpus(corpus: Path) -> None:
    make_pdf(corpus / "manual.pdf", 3, seed=1)
    make_pdf(corpus / "zeppelins.pdf", 1, seed=0, lines=["The zeppelin hangar at Friedrichshafen", *LONG])


def test_a_document_that_fails_a_blocking_contract_is_not_searchable_through_mmrag_index(
    tmp_path: Path,
) -> None:
    from mmrag_assets.lib.search.searcher import search

    corpus = tmp_path / "corpus"
    gated_corpus(corpus)
    overrides = [
        f"corpus.root={corpus}",
        f"storage.root={tmp_path / 'storage'}",
        *FAST,
        "checks.contracts.max_text_chars=1500",
    ]
    r = mmrag_cli("index", *overrides)
    assert r.returncode == 1, r.stderr  # a document failed: reported, the rest indexed
    assert "FAILED zeppelins.pdf: pages_contract failed" in r.stderr
    cfg = load_config(overrides)
    cat = Catalog(cfg.catalog_path)
    bad = cat.query("SELECT doc_id FROM documents WHERE source = 'zeppelins.pdf'")[0]["doc_id"]
    resp = search("zeppelin hangar Friedrichshafen", k=10, cfg=cfg)
    assert resp.results and all(x.source == "manual.pdf" for x in resp.results)
    assert search("inverter battery voltage", k=3, cfg=cfg).results[0].source == "manual.pdf"

    # `mmrag checks --json`: the check's latest result and the held-back document with its row
    out = mmrag_cli("checks", "--json", *overrides)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
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
    assert (pc["passed"], pc["severity"], pc["blocking"]) == (
        False,
        "WARN",
        True,
    )  # held back, the rest went on
    assert pc["metadata"]["offending_ids"] == {bad: {"text_length": [f"{bad}:1"]}}
    assert obj["held_back"] == [
        {
            "source": "zeppelins.pdf",
            "doc_id": bad,
            "check": "pages_contract",
            "detail": obj["held_back"][0]["detail"],
            "run_id": pc["run_id"],
        }
    ]
    assert f"{bad}:1" in obj["held_back"][0]["detail"]

    # fixed (the limit raised): the next `mmrag index` checks it again and publishes it
    fixed = [*overrides[:-1], "checks.contracts.max_text_chars=100000"]
    assert mmrag_cli("index", *fixed).returncode == 0
    assert (
        search("zeppelin hangar Friedrichshafen", k=1, cfg=load_config(fixed)).results[0].source
        == "zeppelins.pdf"
    )


def test_a_document_that_fails_a_blocking_contract_is_not_searchable_through_a_dagster_launched_run(
    tmp_path: Path,
) -> None:
    """The same gate when the run is launched by Dagster itself (its CLI, as the UI's launcher does)."""
    from mmrag_assets.lib.search.searcher import search

    corpus, storage = tmp_path / "corpus", tmp_path / "storage"
    gated_corpus(corpus)
    overrides = [
        f"corpus.root={corpus}",
        f"storage.root={storage}",
        *FAST,
        "checks.contracts.max_text_chars=1500",
    ]
    cfg = load_config(overrides)
    with open_instance(cfg) as instance:
        home = instance.root_directory
    env = {**os.environ, "DAGSTER_HOME": home, "MMRAG_OVERRIDES": json.dumps(overrides)}
    tags = json.dumps({"dagster/asset_partition_range_start": "0", "dagster/asset_partition_range_end": "f"})
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "mmrag_assets.definitions",
            "-a",
            "defs",
            "-j",
            "index_job",
            "--tags",
            tags,
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    resp = search("zeppelin hangar Friedrichshafen", k=10, cfg=cfg)
    assert resp.results and all(x.source == "manual.pdf" for x in resp.results)
    from mmrag_assets.lib.quality.gates import gate_keys

    assert (
        Catalog(cfg.catalog_path).failing_checks("", gate_keys(cfg.checks.contracts, cfg.model.dim))[0][
            "source"
        ]
        == "zeppelins.pdf"
    )


def test_an_embeddings_contract_failing_for_every_document_blocks_the_publish(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    make_pdf(corpus / "manual.pdf", 3, seed=1)
    cfg = load_config(
        [
            f"corpus.root={corpus}",
            f"storage.root={tmp_path / 'storage'}",
            *FAST,
            "checks.contracts.max_tokens=5",
        ]
    )
    summary = index(cfg)  # every page has more than 5 tokens
    assert [f["error"] for f in summary["failed"]] == [
        "embeddings_contract failed (held back from the index)"
    ]
    with open_instance(cfg) as instance:
        ev = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("item_embeddings"), "embeddings_contract")]
        )
        emb = next(iter(ev.values())).evaluation
        assert (
            not emb.passed and emb.severity == dg.AssetCheckSeverity.ERROR
        )  # all failed: Dagster blocks downstream
        assert instance.get_latest_materialization_event(dg.AssetKey("search_index")) is None
    doc = Catalog(cfg.catalog_path).query("SELECT doc_id FROM documents")[0]["doc_id"]
    assert sorted(emb.metadata["offending_ids"].value[doc]["n_tokens_in_bounds"]) == [
        f"{doc}:{p}" for p in (1, 2, 3)
    ]


# ---------------------------------------------------------------- drift and baselines
@pytest.fixture(scope="module")
def drift_index(tmp_path_factory: pytest.TempPathFactory) -> MmragConfig:
    """A 40-page corpus indexed with lite (the first drift check creates the first baseline)."""
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
    """Same items, other vectors: a vector table's vectors are rotated; a token table (lite) has
    its token ids mapped through a fixed permutation of the vocabulary (every token now looks up
    another token's vector, which moves the items as far as a model swap would)."""
    import pyarrow as pa

    from mmrag_assets.lib.index.embedding import version_key_for
    from mmrag_assets.lib.store import table as lx

    d = cfg.model.dim
    tbl = lx.open_table(Runtime(cfg), version_key_for(cfg.model), d, create=False)
    t = tbl.to_arrow().combine_chunks()
    if "tokens" in t.schema.names:
        tok = t.column("tokens").chunk(0)
        perm = np.random.default_rng(0).permutation(32_000).astype(np.uint16)
        ids = perm[tok.values.to_numpy(zero_copy_only=False).astype(np.int64)]
        moved = pa.ListArray.from_arrays(tok.offsets, pa.array(ids, pa.uint16())).cast(tok.type)
        t = t.set_column(t.schema.get_field_index("tokens"), "tokens", moved)
    else:
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
    from mmrag_assets.resources import MmragConfigResource

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # a page over the contract's text limit: its blocking check fails, so it must never be served
    cfg = load_config(
        [
            f"corpus.root={corpus}",
            f"storage.root={tmp_path / 'storage'}",
            *FAST,
            "checks.contracts.max_text_chars=1500",
        ]
    )
    defs = build_definitions(cfg.overrides)
    res = {"mmrag": MmragConfigResource(overrides=cfg.overrides)}
    with open_instance(cfg) as instance:
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=dg.AssetSelection.all()
        )
        assert first.total_requested == 0  # the daemon's first tick on an empty corpus requests nothing
        make_pdf(
            corpus / "airships.pdf",
            2,
            seed=0,
            lines=["The zeppelin hangar at Friedrichshafen", "airship mooring mast"],
        )
        make_pdf(corpus / "overlong.pdf", 1, seed=0, lines=LONG)
        with dg.build_sensor_context(instance=instance, resources=res) as ctx:
            sensed = corpus_sensor(ctx)
        assert [rr.job_name for rr in sensed.run_requests] == ["index_job"]  # one run for both documents
        rr = sensed.run_requests[0]
        assert defs.resolve_job_def(rr.job_name).execute_in_process(instance=instance, tags=rr.tags).success
        # everything was materialised in that one run: the automation conditions have nothing left to do
        after = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=dg.AssetSelection.all(), cursor=first.cursor
        )
        assert after.total_requested == 0
        bad = Catalog(cfg.catalog_path).query("SELECT doc_id FROM documents WHERE source = 'overlong.pdf'")[
            0
        ]["doc_id"]
        with dg.build_sensor_context(instance=instance, resources=res, cursor=sensed.cursor) as ctx:
            again = corpus_sensor(ctx)
        assert not again.run_requests  # the held-back document is not retried on every tick
    resp = search("zeppelin hangar", k=3, cfg=cfg)
    assert resp.results and resp.results[0].source == "airships.pdf"
    assert all(r.doc_id != bad for r in resp.results)

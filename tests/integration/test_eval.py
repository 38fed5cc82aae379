"""``mmrag eval`` / ``mmrag calibrate`` and the ``retrieval_experiments`` asset on the real sample
corpus (without the video, to keep ASR short), indexed once with the bundled lite model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmrag_assets import config
from mmrag_assets.cli import main
from mmrag_assets.config import load_config
from mmrag_assets.fixtures.sample_corpus import VIDEO, build_sample_corpus
from mmrag_assets.lib.evaluation.experiments import load_experiments

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    base = tmp_path_factory.mktemp("eval")
    build_sample_corpus(base / "corpus", video=False)
    return [
        f"corpus.root={base / 'corpus'}",
        f"storage.root={base / 'storage'}",
        "model=lite",
        "search.prebuild=[plaid,binary]",
    ]


@pytest.fixture(scope="module")
def sweep(env: list[str]) -> dict[str, Any]:
    """``mmrag eval -m`` over two first stages; nothing is indexed yet, so it indexes first."""
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["eval", "-m", "--json", *env, "search.first_stage=plaid,binary"])
    assert rc == 0
    (line,) = buf.getvalue().splitlines()  # exactly one JSON object
    return json.loads(line)


def test_sweep_of_two_configs_writes_two_experiment_rows_and_a_report(
    env: list[str], sweep: dict[str, Any]
) -> None:
    cfg = load_config(env)
    assert sweep["varying"] == ["search.first_stage"] and sweep["failed"] == []
    labels = [r["label"] for r in sweep["runs"]]
    assert labels == ["search.first_stage=plaid", "search.first_stage=binary"]
    rows = load_experiments(cfg.catalog_path, sweep_id=sweep["sweep_id"])
    assert sorted(r["run_id"] for r in rows) == sorted(r["run_id"] for r in sweep["runs"])
    assert {r["config"]["search"]["first_stage"] for r in rows} == {"plaid", "binary"}
    assert all(len(r["per_query"]) == r["metrics"]["n_queries"] for r in rows)
    report, plot = Path(sweep["report"]), Path(sweep["plot"])
    assert report.parent == cfg.storage_root / "reports" and plot.read_bytes()[:4] == b"\x89PNG"
    text = report.read_text()
    assert all(f"| {label} |" in text for label in labels)
    for run in sweep["runs"]:
        m, by = run["metrics"], run["by_channel"]
        assert set(m) == {"first_stage", "reranked"} and run["latency_ms"]["total"]["p50"] > 0
        assert by["page"]["reranked"]["ndcg@10"] > 0.5  # the text layer answers most page queries
        # OCR reads the diagram's labels, so lite finds it; the photo has no text: an honest miss
        assert 0.0 < by["image"]["reranked"]["recall@100"] < 1.0
        assert run["sources_not_in_corpus"] == [VIDEO]  # built with video=False


def test_single_eval_prints_one_json_object_and_stores_the_run(env: list[str], sweep, capsys) -> None:
    assert main(["eval", "--json", *env, "search.k=5"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("ndcg@5", "ndcg@10", "recall@10", "recall@100", "mrr"):
        assert (
            0.0 <= out["metrics"]["first_stage"][key] <= 1.0 and 0.0 <= out["metrics"]["reranked"][key] <= 1.0
        )
    assert set(out["by_channel"]) == {"page", "image", "segment"}
    assert set(out["latency_ms"]) == {"encode", "first_stage", "lexical", "dense", "rerank", "total"}
    assert out["config"]["search"]["k"] == 5 and "per_query" not in out
    (row,) = load_experiments(load_config(env).catalog_path, run_ids=[out["run_id"]])
    assert row["sweep_id"] is None and row["overrides"][-1] == "search.k=5"
    assert main(["eval", *env, "search.k=5"]) == 0  # without --json: a readable table, not a JSON dump
    text = capsys.readouterr().out
    assert "best in column" in text and not text.lstrip().startswith("{") and len(text.splitlines()) < 40


def test_eval_breaks_down_by_tags_of_the_query_file(env: list[str], sweep, tmp_path: Path, capsys) -> None:
    """The bundled set, each query tagged with its source's top folder: `--by` groups the real run."""
    from mmrag_assets.lib.evaluation.query_set import BUNDLED_QUERIES

    tagged = tmp_path / "tagged.jsonl"
    lines = []
    for line in BUNDLED_QUERIES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            q = json.loads(line)
            q["folder"] = sorted({j["source"].split("/")[0] for j in q["relevant"]}) or "unjudged"
            lines.append(json.dumps(q))
    tagged.write_text("\n".join(lines) + "\n")
    assert main(["eval", "--json", "--by", "folder", *env, f"queries={tagged}"]) == 0
    out = json.loads(capsys.readouterr().out)
    folders = out["by_tag"]["folder"]
    assert "unjudged" in folders and sum(g["n_queries"] for g in folders.values()) >= out["n_queries"]
    for group in folders.values():
        for view in ("mixed", "restricted"):
            m = group[view]["reranked"]
            assert m["n_queries"] == group["n_queries"]
            assert m["mrr"] is None or 0.0 <= m["mrr"] <= 1.0
    pdfs = [g for name, g in folders.items() if name not in ("unjudged",) and g["mixed"]["reranked"]["mrr"]]
    assert pdfs  # some folder's queries are answered
    # restricting to the answer's modality can only move relevant items up
    for g in folders.values():
        if g["mixed"]["reranked"]["mrr"] is not None:
            assert g["restricted"]["reranked"]["mrr"] >= g["mixed"]["reranked"]["mrr"] - 1e-9


def test_eval_refuses_a_sweep_without_multirun(env: list[str], capsys) -> None:
    assert main(["eval", *env, "search.first_stage=plaid,binary"]) == 2
    assert "add -m" in capsys.readouterr().err


def test_experiment_asset_takes_overrides_and_a_sweep(env: list[str], sweep) -> None:
    import dagster as dg

    from mmrag_assets.defs.evaluation.assets import retrieval_experiments
    from mmrag_assets.resources import resources_for

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [retrieval_experiments],
            instance=instance,
            resources=resources_for(env),
            run_config={
                "ops": {"retrieval_experiments": {"config": {"sweep": ["search.lexical=true,false"]}}}
            },
        )
    assert result.success
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    md = mat.metadata["metrics"].value
    assert "| search.lexical=True |" in md and "| search.lexical=False |" in md  # Hydra's sweep strings
    assert mat.metadata["plot"].value.startswith("![quality against latency](data:image/png;base64,")
    assert 0.0 <= mat.metadata["ndcg@10"].value <= 1.0 and mat.metadata["configs"].value == 2
    rows = load_experiments(load_config(env).catalog_path, sweep_id=mat.metadata["sweep_id"].value)
    assert len(rows) == 2 and all(r["origin"] == f"dagster:{result.run_id}" for r in rows)


def test_calibrate_writes_a_search_option_that_eval_uses(
    env: list[str], sweep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    assert main(["eval", "--calibrate", "calibrated_lite", "--json", *env]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(conf / "search" / "calibrated_lite.yaml")
    assert (
        out["pairs"]["text_page"]["relevant_hits"] > 0 and out["pairs"]["text_page"]["kept_relevant"] >= 0.95
    )
    assert out["pairs"]["text_image"]["relevant_hits"] > 0  # lite reaches the diagram through its OCR text
    cfg = load_config([*env, "search=calibrated_lite"])
    assert cfg.search.thresholds == out["thresholds"]
    assert main(["eval", "--json", *env, "search=calibrated_lite"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["config"]["search"]["thresholds"] == out["thresholds"]
    # the same call trained the learned fusion on those queries, and the option selects it
    fusion = out["fusion"]
    assert fusion["path"] == str(conf / "fusion" / "calibrated_lite.json")
    assert fusion["positives"] > 0 and fusion["n_queries"] > 0 and 0 <= fusion["cv_mrr@10"] <= 1
    model = json.loads((conf / "fusion" / "calibrated_lite.json").read_text())
    assert model["trained"]["queries_sha256"] and model["tier"]["arch"] == "lite"
    assert cfg.search.fusion == "learned" and cfg.search.fusion_model == "calibrated_lite"
    assert run["config"]["search"]["fusion"] == "learned"
    from mmrag_assets.lib.search.learned import FEATURES
    from mmrag_assets.lib.search.searcher import search

    resp = search("how do I reset the router", cfg=cfg)
    assert resp.fusion["method"] == "learned" and resp.fusion["model"] == "calibrated_lite"
    assert resp.results and all(0 < r.score < 1 for r in resp.results)  # probabilities of relevance
    assert all(set(r.why) <= {*FEATURES, "bias"} for r in resp.results)
    # --only fusion leaves the thresholds alone; a file that is not a model is never overwritten
    (conf / "fusion" / "notamodel.json").write_text("{}")
    assert main(["eval", "--calibrate", "notamodel", "--only", "fusion", *env]) == 2
    assert "is not an mmrag-fusion/1 model" in capsys.readouterr().err

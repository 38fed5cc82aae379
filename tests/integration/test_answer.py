"""Answers over the indexed sample corpus: the real search, the real LanceDB texts, the extractive
generator (the offline default), the CLI."""

from __future__ import annotations

import json
import re

import pytest

from mmrag_assets.config import MmragConfig
from mmrag_assets.lib.answer.pipeline import Answerer
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.store.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the sample index (`indexed`): 27-45 s to build


def test_answer_quotes_the_page_that_holds_it_and_every_citation_was_retrieved(indexed: MmragConfig) -> None:
    q = "what torque should the anchor bolts of the mounting bracket be tightened to"
    ans = Answerer(Runtime(indexed)).answer(q)
    assert not ans.abstained and ans.generator == "extractive"
    assert "12 Nm" in ans.text
    retrieved = {r.item_id for r in get_searcher(Runtime(indexed)).search(q, k=indexed.answer.k).results}
    assert ans.citations and {c.item_id for c in ans.citations} <= retrieved
    first = ans.citations[0]
    assert first.source.startswith("manuals/") and first.page == 1 and "12 Nm" in (first.quote or "")
    quote = {c.n: c.quote or "" for c in ans.citations}
    for line in ans.text.splitlines():  # each citation carries every quote of its source
        m = re.fullmatch(r"\u201c(.*)\u201d(?: \(.*\))? \[(\d+)\]", line)
        assert m and m.group(1) in quote[int(m.group(2))]
    assert set(ans.timings_ms) >= {"retrieve_ms", "evidence_ms", "generate_ms", "total_ms"}
    assert [s.n for s in ans.sources] == list(range(1, len(ans.sources) + 1))


def test_a_question_the_corpus_cannot_answer_gets_not_found(indexed: MmragConfig) -> None:
    ans = Answerer(Runtime(indexed)).answer("who won the football world cup in 1998")
    assert ans.abstained and ans.text == indexed.answer.not_found and ans.citations == []
    assert ans.sources  # the closest results are still listed


def test_a_question_about_a_tool_the_corpus_never_mentions_says_so(indexed: MmragConfig) -> None:
    ans = Answerer(Runtime(indexed)).answer("how do I set up a Kubernetes ingress for the inverter dashboard")
    assert ans.abstained and ans.text.startswith(indexed.answer.not_found) and "kubernetes" in ans.text
    assert ans.citations == []


def test_spoken_answers_cite_the_moment(indexed: MmragConfig) -> None:
    ans = Answerer(
        Runtime(indexed),
    ).answer("how do I reset my wireless router", filters={"modality": "segment"})
    assert not ans.abstained
    assert all(
        c.start_s is not None and c.end_s is not None and c.modality == "segment" for c in ans.citations
    )
    assert any("reset" in (c.quote or "").lower() for c in ans.citations)


def test_mmrag_ask_json(indexed: MmragConfig, capsys: pytest.CaptureFixture[str]) -> None:
    from mmrag_assets.cli import main

    args = [f"corpus.root={indexed.corpus.root}", f"storage.root={indexed.storage.root}", "model=lite"]
    assert main(["ask", "--json", "what does error E04 mean", *args]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["citations"] and "E04" in out["answer"] and not out["abstained"]
    assert main(["ask", "what does error E04 mean", *args]) == 0
    text = capsys.readouterr().out
    assert "sources:" in text and "[1] manuals/SunVolt SV-5000 installation manual.pdf p.4 (page)" in text
    assert main(["ask", "   ", *args]) == 2


def test_answers_through_the_mllm_reranker(indexed: MmragConfig, tmp_path) -> None:
    """rerank=mllm in the answer path, with a tiny random Qwen2-VL + LoRA adapter (order is random:
    the test checks the stage runs, scores the budgeted candidates and citations stay checked)."""
    from mmrag_assets.config import load_config
    from mmrag_assets.fixtures.tiny_models import tiny_lora_adapter, tiny_qwen2_vl

    base = tiny_qwen2_vl(tmp_path / "base")
    adapter = tiny_lora_adapter(base, tmp_path / "adapter")
    cfg = load_config(
        [
            *indexed.overrides,
            "rerank=mllm",
            f"rerank.path={adapter}",
            f"rerank.base_path={base}",
            "rerank.device=cpu",
            "rerank.candidates=4",
            "rerank.batch_size=2",
        ]
    )
    q = "what torque should the anchor bolts of the mounting bracket be tightened to"
    ans = Answerer(Runtime(cfg)).answer(q)
    assert "rerank_ms" in ans.timings_ms
    scored = [s for s in ans.sources if s.rerank_score is not None]
    assert 1 <= len(scored) <= 4 and all(0 < s.rerank_score < 1 for s in scored)
    retrieved = {r.item_id for r in get_searcher(Runtime(indexed)).search(q, k=indexed.answer.k).results}
    assert {c.item_id for c in ans.citations} <= retrieved


def test_answers_asset_writes_one_row_per_question_with_metadata(indexed: MmragConfig, tmp_path) -> None:
    """The ``answers`` asset over a questions file (plain lines and JSON Lines with qids): answered,
    abstained and failed questions counted in the metadata, one catalog row per question."""
    import dagster as dg

    from mmrag_assets.config import load_config
    from mmrag_assets.definitions import ASSET_CHECKS, ASSETS
    from mmrag_assets.lib.store.catalog import Catalog
    from mmrag_assets.orchestration.instance import open_instance
    from mmrag_assets.resources import resources_for

    qfile = tmp_path / "questions.jsonl"
    qfile.write_text(
        json.dumps({"qid": "torque", "query": "what torque should the anchor bolts be tightened to"}) + "\n"
        + "# a comment\n"
        + json.dumps({"qid": "e04", "query": "what does error E04 mean"}) + "\n"
        + json.dumps({"qid": "worldcup", "query": "who won the football world cup in 1998"}) + "\n"
        + json.dumps({"qid": "long", "query": "why " * 600}) + "\n"  # over answer.max_question_chars
    )  # fmt: skip
    overrides = [*indexed.overrides, f"answer.questions_file={qfile}"]
    cfg = load_config(overrides)
    with open_instance(cfg) as instance:
        r = dg.materialize([*ASSETS, *ASSET_CHECKS], selection=["answers"], instance=instance,
                           resources=resources_for(overrides))  # fmt: skip
        assert r.success
    (mat,) = [e.materialization for e in r.get_asset_materialization_events()]
    md = {k: v.value for k, v in mat.metadata.items()}
    assert (md["questions"], md["answered"], md["abstained"], md["failed"]) == (4, 2, 1, 1)
    assert md["dropped_citations"] == 0 and md["citations"] >= 2 and md["generator"] == "extractive"
    assert (
        md["retrieve_p50_ms"] > 0
        and md["evidence_p50_ms"] > 0
        and md["total_p50_ms"] >= md["retrieve_p50_ms"]
    )
    assert "| torque |" in md["preview"] and "12 Nm" in md["preview"]
    rows = {r["qid"]: r for r in Catalog(cfg.catalog_path).query("SELECT * FROM answers")}
    assert set(rows) == {"torque", "e04", "worldcup"}  # the failed question is in the metadata and the log
    assert rows["worldcup"]["abstained"] and rows["worldcup"]["answer"] == cfg.answer.not_found
    assert "12 Nm" in rows["torque"]["answer"] and "E04" in rows["e04"]["answer"]
    cites = json.loads(rows["e04"]["citations"])
    sources = {s["item_id"] for s in json.loads(rows["e04"]["sources"])}
    assert cites and {c["item_id"] for c in cites} <= sources and rows["e04"]["n_citations"] == len(cites)
    assert {r["run_id"] for r in rows.values()} == {r.run_id}

    bad = [*indexed.overrides]  # no questions file: a clear failure, not a crash
    with open_instance(cfg) as instance:
        r = dg.materialize([*ASSETS, *ASSET_CHECKS], selection=["answers"], instance=instance,
                           resources=resources_for(bad), raise_on_error=False)  # fmt: skip
    (failure,) = [e for e in r.all_events if e.is_step_failure]
    assert "answer.questions_file is not set" in failure.event_specific_data.error.message

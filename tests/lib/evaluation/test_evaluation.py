"""Evaluation runs, the experiments table, sweeps and reports, on a fake searcher (no index)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mmrag_assets.errors import ConfigError, QueryError
from mmrag_assets.lib.evaluation import report, sweep
from mmrag_assets.lib.evaluation.evaluate import (
    evaluate,
    judgeable,
    judgement_channels,
    latency_summary,
    summary,
)
from mmrag_assets.lib.evaluation.experiments import load_experiments, store_experiment
from mmrag_assets.lib.evaluation.metrics import is_relevant
from mmrag_assets.lib.evaluation.query_set import load_query_set

P1 = {"source": "m.pdf", "page": 1, "modality": "page", "item_id": "d:1"}
P2 = {"source": "m.pdf", "page": 2, "modality": "page", "item_id": "d:2"}
SEG = {"source": "a.ogg", "start_s": 0.0, "end_s": 12.0, "modality": "segment", "item_id": "a:t0-12000"}
LOG2_3 = 1 / math.log2(3)  # DCG of one relevant result at rank 2


@dataclass
class Response:
    results: list[dict[str, Any]]
    timings_ms: dict[str, float]
    dropped_below_threshold: int = 0


@dataclass
class FakeSearcher:
    """query -> (first-stage ranking, reranked ranking); scores fall with rank."""

    rankings: dict[str, tuple[list[dict], list[dict]]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def search(self, query: str, k: int | None = None, filters: Any = None, **kw: Any) -> Response:
        self.calls.append({"query": query, "k": k, **kw})
        if query == "boom":
            raise QueryError("query has no tokens the model can embed")
        first = kw.get("reranker") == "none"
        ranked = self.rankings[query][0 if first else 1][:k]
        results = [{**r, "rank": i + 1, "score": 10.0 - i} for i, r in enumerate(ranked)]
        timings = {
            "encode_ms": 1.0,
            "first_stage_ms": 2.0,
            "rerank_ms": 0.0 if first else 4.0,
            "total_ms": 3.0 if first else 7.0,
        }
        return Response(results, timings)


@pytest.fixture
def query_file(tmp_path: Path) -> Path:
    rows = [
        {"qid": "q1", "query": "page two", "relevant": [{"source": "m.pdf", "page": 2}]},
        {
            "qid": "q2",
            "query": "the recording",
            "relevant": [{"source": "a.ogg", "start_s": 10, "end_s": 20}],
        },
        {"qid": "q3", "query": "nothing", "relevant": []},
        {"qid": "q4", "query": "boom", "relevant": [{"source": "img.png", "page": 1}]},
    ]
    p = tmp_path / "q.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p


@pytest.fixture
def fake() -> FakeSearcher:
    return FakeSearcher(
        {"page two": ([P1, P2], [P2, P1]), "the recording": ([], [SEG]), "nothing": ([P1], [P1])}
    )


def test_evaluate_scores_both_stages_channels_and_latency(
    make_cfg, query_file: Path, fake: FakeSearcher
) -> None:
    cfg = make_cfg(f"queries={query_file}")
    rec = evaluate(cfg, fake, load_query_set(cfg.eval.queries), kinds={"m.pdf": "pdf", "a.ogg": "audio"})
    fs, rr = rec["metrics"]["first_stage"], rec["metrics"]["reranked"]
    # q1: relevant at rank 2 before the rerank, rank 1 after; q2: missed, then found; q4 failed: zero
    assert (
        fs["n_queries_evaluated"] == rr["n_queries_evaluated"] == 3 and rr["n_queries_without_relevant"] == 1
    )
    assert fs["ndcg@10"] == pytest.approx(LOG2_3 / 3) and rr["ndcg@10"] == pytest.approx(2 / 3)
    assert fs["mrr"] == pytest.approx(0.5 / 3) and rr["recall@100"] == pytest.approx(2 / 3)
    by = rec["by_channel"]
    assert (
        by["page"]["first_stage"]["ndcg@5"] == pytest.approx(LOG2_3)
        and by["page"]["reranked"]["ndcg@5"] == 1.0
    )
    assert by["segment"]["reranked"]["recall@10"] == 1.0 and by["segment"]["first_stage"]["recall@10"] == 0.0
    assert by["image"]["reranked"]["n_queries_evaluated"] == 1 and by["image"]["reranked"]["mrr"] == 0.0
    assert rec["n_failed"] == 1 and rec["sources_not_in_corpus"] == ["img.png"]
    assert rec["latency_ms"]["rerank"]["p50"] == 4.0 and rec["first_stage_latency_ms"]["total"]["p95"] == 3.0
    q1 = next(q for q in rec["per_query"] if q["qid"] == "q1")
    assert [t["grade"] for t in q1["top"]] == [1.0, 0.0]
    # the first stage is the configured search with the reranker off and no thresholds
    assert {"reranker": "none", "apply_thresholds": False} in [
        {k: c[k] for k in ("reranker", "apply_thresholds") if k in c} for c in fake.calls
    ]
    assert all(c["k"] == 100 for c in fake.calls)
    assert fake.calls[0]["query"] == "page two"  # one unmeasured warm-up search comes first
    out = summary(rec)
    assert "per_query" not in out and out["config"]["eval"]["queries"] == str(query_file)
    json.dumps(out, allow_nan=False)


def test_keyframes_match_time_spans_through_their_item_id() -> None:
    frame = {"source": "v.mp4", "page": 3, "modality": "image", "item_id": "abc:k20000", "start_s": None}
    assert judgeable(frame)["t_s"] == 20.0
    assert is_relevant(judgeable(frame), {"source": "v.mp4", "start_s": 19.0, "end_s": 25.4}) == 1.0
    assert is_relevant(judgeable(frame), {"source": "v.mp4", "start_s": 0.0, "end_s": 13.5}) == 0.0
    assert "t_s" not in judgeable({**frame, "item_id": "abc:3"})


@pytest.mark.parametrize(
    ("judgement", "kinds", "channels"),
    [
        ({"source": "a.pdf", "page": 2}, {"a.pdf": "pdf"}, {"page"}),
        ({"source": "x/b.bin"}, {"x/b.bin": "image"}, {"image"}),
        ({"source": "c.ogg", "start_s": 0, "end_s": 1}, {}, {"segment"}),
        ({"source": "v.mp4", "start_s": 0, "end_s": 1}, {}, {"segment", "image"}),
        ({"source": "v.mp4", "page": 2}, {}, {"image"}),
        ({"source": "notes.txt"}, {}, {"page", "image", "segment"}),
    ],
)
def test_judgement_channels(judgement: dict, kinds: dict, channels: set[str]) -> None:
    assert judgement_channels(judgement, kinds) == channels


def test_latency_summary_percentiles() -> None:
    lat = latency_summary([{"total_ms": float(v), "encode_ms": 1.0} for v in range(1, 101)])
    assert lat["total"] == {"p50": 50.5, "p95": 95.05, "mean": 50.5}
    assert lat["lexical"] == {"p50": None, "p95": None, "mean": None}


def test_experiments_table_round_trip(make_cfg, query_file: Path, fake: FakeSearcher, tmp_path: Path) -> None:
    cfg = make_cfg(f"queries={query_file}", "search.k=7")
    rec = evaluate(cfg, fake, load_query_set(cfg.eval.queries))
    rec["label"] = "search.k=7"
    db = tmp_path / "catalog.duckdb"
    store_experiment(db, rec, sweep_id="s1")
    (row,) = load_experiments(db, sweep_id="s1")
    assert row["run_id"] == rec["run_id"] and row["origin"] == "cli"
    assert row["overrides"][-1] == "search.k=7" and row["config"]["search"]["k"] == 7
    assert row["metrics"]["reranked"]["ndcg@10"] == pytest.approx(2 / 3)
    assert {q["qid"] for q in row["per_query"]} == {"q1", "q2", "q3", "q4"}
    back = report.as_record(row)
    assert back["label"] == "search.k=7" and back["metrics"] == rec["metrics"]
    assert "0.667*" in report.text_table([back, back]).splitlines()[2]  # a stored run reads back into a table
    from mmrag_assets.lib.store.catalog import Catalog

    (sql,) = Catalog(db).query(
        """SELECT metrics->>'$.label' AS run, CAST(metrics->>'$.reranked."ndcg@10"' AS DOUBLE) AS ndcg10,
                  CAST(metrics->>'$.latency_ms.total.p50' AS DOUBLE) AS p50 FROM experiments"""
    )
    assert sql == {"run": "search.k=7", "ndcg10": pytest.approx(2 / 3), "p50": 7.0}


# ---------------------------------------------------------------- sweeps


def test_sweep_expands_like_hydra_multirun() -> None:
    grid = sweep.expand(
        [
            "model=lite,tiny",
            "search.first_stage=choice(plaid,binary)",
            "search.k=range(5,15,5)",
            "ingest.dpi=72",
        ]
    )
    assert len(grid) == 8
    assert grid[0] == ["model=lite", "search.first_stage=plaid", "search.k=5", "ingest.dpi=72"]
    assert grid[-1] == ["model=tiny", "search.first_stage=binary", "search.k=10", "ingest.dpi=72"]
    keys = sweep.varying(grid)
    assert keys == ["model", "search.first_stage", "search.k"]
    assert sweep.label(grid[3], keys) == "model=lite search.first_stage=binary search.k=10"
    assert sweep.expand([]) == [[]] and sweep.expand(["search.k=3"]) == [["search.k=3"]]
    assert sweep.expand(["model=glob(colq*)"]) == [["model=colqwen2_5"], ["model=colqwen3"]]
    assert sweep.is_sweep(["model=lite,tiny"]) and not sweep.is_sweep(["search.k=3"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.k=interval(0,1)"], "does not support"),
        (["model=glob(nope*)"], "expands to no runs"),
        (["search.k=)"], "cannot expand"),
    ],
)
def test_sweep_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep.expand(overrides)


# ---------------------------------------------------------------- reports


def _run(label: str, ndcg: float, p50: float) -> dict[str, Any]:
    m = {
        "ndcg@5": ndcg,
        "ndcg@10": ndcg,
        "recall@10": 1.0,
        "recall@100": 1.0,
        "mrr": ndcg,
        "n_queries_evaluated": 2,
    }
    lat = {
        s: {"p50": p50, "p95": p50 * 2, "mean": p50}
        for s in ("encode", "first_stage", "lexical", "rerank", "total")
    }
    return {
        "label": label,
        "run_id": f"r-{label}",
        "queries": "q.jsonl",
        "queries_sha256": "abc",
        "n_queries": 2,
        "metrics": {"first_stage": {**m, "ndcg@10": ndcg / 2}, "reranked": m},
        "by_channel": {"page": {"reranked": m}},
        "latency_ms": lat,
        "first_stage_latency_ms": lat,
    }


def test_comparison_table_marks_the_best_of_each_column() -> None:
    runs = [_run("model=lite", 0.5, 10.0), _run("model=tiny", 0.8, 40.0)]
    lines = report.text_table(runs).splitlines()
    lite, tiny = lines[2], lines[3]
    assert "0.800*" in tiny and "0.500*" not in lite  # quality: highest wins
    assert "10.0*" in lite and "40.0*" not in tiny  # latency: lowest wins
    assert "1.000*" in lite and "1.000*" in tiny  # ties are all marked
    md = report.markdown_table(runs)
    assert "| model=tiny | **0.800** |" in md
    assert report.text_table(runs[:1]).count("*") == 1  # one run: nothing to mark (only the legend)


def test_report_writes_markdown_and_png(tmp_path: Path) -> None:
    runs = [_run("a", 0.5, 10.0), _run("b", 0.8, 400.0)]
    md, png = report.write_report(runs, tmp_path / "reports", "sweep-x", fixed=["model=lite"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "![quality against latency](sweep-x.png)" in text and "`r-a`, `r-b`" in text
    assert "best nDCG@10: b (0.800)" in text and "fastest (p50): a (10.0)" in text
    assert "| a | 0.500 (n=2) | - | - |" in text


def test_breakdown_by_tags_mixed_and_restricted(make_cfg, tmp_path: Path) -> None:
    """The mixed ranking buries the segment under two pages; the restricted view drops the pages."""
    rows = [
        {
            "qid": "p",
            "query": "page two",
            "relevant": [{"source": "m.pdf", "page": 2}],
            "channel": "page",
            "kind": "literal",
        },
        {
            "qid": "a",
            "query": "the recording",
            "relevant": [{"source": "a.ogg", "start_s": 0, "end_s": 5}],
            "channel": "audio",
            "kind": ["literal", "paraphrase"],
        },
        {"qid": "n", "query": "nothing", "relevant": [{"source": "m.pdf", "page": 1}]},
    ]
    p = tmp_path / "tags.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    fake = FakeSearcher(
        {"page two": ([P1, P2], [P2, P1]), "the recording": ([P1], [P1, P2, SEG]), "nothing": ([P2], [P2])}
    )
    cfg = make_cfg(f"queries={p}")
    rec = evaluate(
        cfg, fake, load_query_set(p), kinds={"m.pdf": "pdf", "a.ogg": "audio"}, by=["channel", "kind", "kind"]
    )
    by = rec["by_tag"]
    assert list(by) == ["channel", "kind"]  # a repeated tag is broken down once
    assert set(by["channel"]) == {"page", "audio", "(none)"}
    audio = by["channel"]["audio"]
    assert audio["n_queries"] == 1
    assert audio["mixed"]["reranked"]["mrr"] == pytest.approx(1 / 3)  # third, behind two pages
    assert audio["restricted"]["reranked"]["mrr"] == 1.0  # first among segments
    assert (
        audio["mixed"]["first_stage"]["recall@10"] == 0.0 == audio["restricted"]["first_stage"]["recall@10"]
    )
    page = by["channel"]["page"]
    assert page["mixed"]["reranked"]["mrr"] == 1.0 and page["mixed"]["first_stage"]["mrr"] == 0.5
    assert by["channel"]["(none)"]["mixed"]["reranked"]["mrr"] == 0.0
    # a list tag counts the query in each of its values
    assert by["kind"]["literal"]["n_queries"] == 2 and by["kind"]["paraphrase"]["n_queries"] == 1
    assert by["kind"]["literal"]["mixed"]["reranked"]["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    # the mixed figures of all queries together are the run's metrics
    assert rec["metrics"]["reranked"]["mrr"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    (a,) = [q for q in rec["per_query"] if q["qid"] == "a"]
    assert a["tags"] == {"channel": "audio", "kind": ["literal", "paraphrase"]}
    db = tmp_path / "catalog.duckdb"
    rec["label"] = "tags"
    store_experiment(db, rec)
    (row,) = load_experiments(db)
    assert row["metrics"]["by_tag"]["channel"]["audio"]["restricted"]["reranked"]["mrr"] == 1.0
    json.dumps(summary(rec), allow_nan=False)

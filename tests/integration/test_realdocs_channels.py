"""bench/realdocs/channels.py against a real index: the captured channel lists are the ones the
search fuses, and replaying them with the configured weights gives the search's own top 10."""

from __future__ import annotations

import json

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.lib.evaluation.query_set import load_query_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # the sample index (`indexed`): 27-45 s to build

MANUAL = "manuals/SunVolt SV-5000 installation manual.pdf"


def test_capture_and_replay_agree_with_the_search(indexed, tmp_path) -> None:
    from bench.realdocs.channels import capture, replay

    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        "\n".join(
            json.dumps(q)
            for q in [
                {
                    "qid": "e04",
                    "query": "what does error E04 mean",
                    "relevant": [{"source": MANUAL, "page": 4}],
                    "channel": "page",
                    "kind": "literal",
                },
                {
                    "qid": "router",
                    "query": "how do I reset my wireless router",
                    "relevant": [{"source": MANUAL, "page": 4}],
                    "channel": "page",
                    "kind": "paraphrase",
                },
            ]
        )
        + "\n"
    )
    cfg = load_config([*indexed.overrides, "search.fusion=score"])
    rows = capture(cfg, load_query_set(qfile))
    e04 = rows[0]
    assert {"maxsim", "lexical"} <= set(e04["channels"])
    lex = e04["channels"]["lexical"]
    assert lex and lex[0][2] == 1.0 and lex[0][3] == "page"  # BM25 lists the manual's page 4 first, graded
    assert all(g == 0.0 for _, _, g, _ in e04["channels"]["lexical"][1:])
    assert replay(rows, None) == [r["top10"] for r in rows]  # each query's own weights
    # the coverage moved the weights towards the dense channel, each within its semantic factor
    sem = cfg.search.coverage_weights.semantic
    for r in rows:
        w = r["weights"]
        assert cfg.search.weights["dense"] <= w["dense"] <= cfg.search.weights["dense"] * sem["dense"] + 1e-9
        assert (
            cfg.search.weights["lexical"] * sem["lexical"] - 1e-9
            <= w["lexical"]
            <= cfg.search.weights["lexical"]
        )
    assert replay(rows[:1], rows[0]["weights"]) == [rows[0]["top10"]]

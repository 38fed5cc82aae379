"""bench/answers_eval.py's pure parts: the unanswerable set and its split, the rates at a threshold,
the threshold rule, the labelled-unit match and the targets table (computed, never marked by hand)."""

from __future__ import annotations

import json

from bench.answers_eval import (
    UNANSWERABLE,
    choose_threshold,
    in_sources,
    rates,
    read_jsonl,
    report,
    unanswerable,
)


def rec(kind: str, conf: float, holds: bool = False, quotes: bool = True) -> dict:
    return {"kind": kind, "confidence": conf, "holds": holds, "has_quotes": quotes}


def test_unanswerable_set_is_hand_written_split_and_checked_against_the_corpus() -> None:
    qs = read_jsonl(UNANSWERABLE)
    assert len(qs) >= 20 and len({q["qid"] for q in qs}) == len(qs)
    assert all(q["absent"] and q["near"] and q["query"].strip() for q in qs)
    dev, test, out = unanswerable(["a page about scons builders", "a talk on git rebase"])
    assert out == [] and len(dev) + len(test) == len(qs)
    assert round(0.4 * len(qs)) == len(dev)  # labels.split's dev share
    again = unanswerable(["a page about scons builders", "a talk on git rebase"])
    assert [q["qid"] for q in again[0]] == [q["qid"] for q in dev]  # a hash rule: stable
    # a rebuilt corpus that now holds a question's word leaves that question out, named
    dev2, test2, out2 = unanswerable(["Meson builds static libraries with static_library()"])
    assert out2 == ["unans-meson-static (the corpus holds meson)"]
    assert "unans-meson-static" not in {q["qid"] for q in dev2 + test2}


def test_rates_and_threshold() -> None:
    dev = [
        rec("literal", 0.9, True),
        rec("literal", 0.5, True),
        rec("paraphrase", 0.6, True),
        rec("paraphrase", 0.7, False),
        rec("unanswerable", 0.3),
        rec("unanswerable", 0.4),
        rec("unanswerable", 0.55),
        rec("unanswerable", 0.2),
        rec("unanswerable", 0.1, quotes=False),
    ]
    r = rates(dev, 0.45)
    assert (r["literal"], r["paraphrase"], r["unanswerable"]) == (1.0, 0.5, 0.8)
    assert rates(dev, 0.8)["literal"] == 0.5 and rates(dev, 0.0)["unanswerable"] == 0.2  # no quotes: abstains
    t, why = choose_threshold(dev, 0.8)
    assert 0.4 < t <= 0.4001 and "lowest" in why  # just above the 4th unanswerable confidence
    t, why = choose_threshold([rec("literal", 0.5, True), rec("unanswerable", 0.9)], 0.8)
    assert 0.9 < t <= 0.9001 and "lowest" in why  # the answerable pay: the rule favours abstaining
    t, why = choose_threshold([rec("literal", 0.5, True), rec("paraphrase", 0.7, True)], 0.8)
    assert t == 0.0 and "best mean" in why  # no unanswerable question on dev


def test_labelled_unit_in_sources() -> None:
    page = {"relevant": [{"source": "a.pdf", "page": 3}]}
    assert in_sources(page, [{"source": "a.pdf", "page": 3}]) and not in_sources(
        page, [{"source": "a.pdf", "page": 4}]
    )
    span = {"relevant": [{"source": "t.ogg", "start_s": 40.0, "end_s": 60.0}]}
    assert in_sources(span, [{"source": "t.ogg", "page": None, "start_s": 50.0, "end_s": 75.0}])
    assert not in_sources(span, [{"source": "t.ogg", "page": None, "start_s": 60.0, "end_s": 75.0}])


def test_report_marks_targets_from_the_figures() -> None:
    t = {
        "literal": 0.85,
        "paraphrase": 0.55,
        "unanswerable": 0.9,
        "literal_n": 20,
        "paraphrase_n": 10,
        "unanswerable_n": 18,
        "literal_abstained": 0.1,
        "paraphrase_abstained": 0.2,
    }
    lat = {"retrieve": 80.0, "rerank": None, "evidence": 40.0, "generate": 0.1, "added": 45.0, "total": 130.0}
    r = {
        "commit": "abc",
        "items": 1000,
        "overrides": "",
        "threshold": 0.7,
        "threshold_rule": "x",
        "shipped_threshold": 0.75,
        "load_avg": 3.0,
        "seconds": 60.0,
        "dev": t,
        "test": t,
        "dev_curve": {0.7: t},
        "citations": 200,
        "citations_to_retrieved": 199,
        "markers_ok": True,
        "unanswerable_left_out": [],
        "by_channel": [],
        "latency": {"extractive (CPU)": lat},
    }
    rows = {
        line.split("|")[1].strip(): line.split("|")[5].strip()
        for line in report(r).splitlines()
        if line.startswith("| ") and line.count("|") == 6
    }
    assert rows["evidence holds the answer, literal (test n=20)"] == "met"
    assert rows["evidence holds the answer, paraphrase (n=10)"] == "**not met**"
    assert (
        rows["citations naming a retrieved item (200 citations, dev + test)"] == "**not met**"
    )  # 199 of 200
    assert rows["p50 added latency (evidence + generate), ms"] == "met"
    assert json.dumps(r)  # the record is JSON (the --json output)


def test_near_match_allows_one_transcript_slip_only() -> None:
    from bench.answers_eval import near_match

    phrase = "git at each stage whether the version"
    assert near_match(
        phrase, ["continue like this telling good at each stage whether the version it gives"]
    )  # substituted
    assert near_match(phrase, ["telling git at each stage whether version it gives"])  # one left out
    assert not near_match(phrase, ["telling good at each phase if the version it gives"])  # three differ

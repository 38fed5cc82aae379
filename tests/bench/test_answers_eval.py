"""bench/answers_eval.py's pure parts: the unanswerable set and its split, the rates at a threshold,
the threshold rules, the gate fit and its cross-validation, the labelled-unit match and the targets
table (computed, never marked by hand)."""

from __future__ import annotations

import json

import pytest

from bench.answers_eval import (
    UNANSWERABLE,
    choose_threshold,
    cross_validate,
    fit_gate,
    in_sources,
    rates,
    read_jsonl,
    regated,
    report,
    unanswerable,
)


def rec(kind: str, conf: float, holds: bool = False, quotes: bool = True, **features: float) -> dict:
    return {"kind": kind, "confidence": conf, "holds": holds, "near_holds": holds, "has_quotes": quotes,
            "features": features}  # fmt: skip


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
    t, why = choose_threshold(dev, 0.8, "lowest")
    assert (
        t == pytest.approx(0.45) and "lowest" in why
    )  # between the 4th unanswerable confidence and the next one
    assert choose_threshold(dev, 0.8)[0] == pytest.approx(
        0.45
    )  # the middle: a higher one loses the literal at 0.5
    t, why = choose_threshold([rec("literal", 0.5, True), rec("unanswerable", 0.9)], 0.8)
    assert t > 0.9 and "middle" in why  # the answerable pay: the rule favours abstaining
    t, why = choose_threshold([rec("literal", 0.5, True), rec("paraphrase", 0.7, True)], 0.8)
    assert t < 0.5 and "best mean" in why  # no unanswerable question on dev


def test_the_middle_rule_keeps_away_from_the_edge_of_the_dev_unanswerable() -> None:
    dev = [rec("literal", 0.9, True), rec("literal", 0.8)] + [
        rec("unanswerable", c) for c in (0.1, 0.2, 0.3, 0.4, 0.85)
    ]
    assert choose_threshold(dev, 0.8, "lowest")[0] == pytest.approx(
        0.6
    )  # just past the 4th unanswerable (0.4)
    t, why = choose_threshold(dev, 0.8)  # anywhere in (0.4, 0.9] keeps the one held answer: its middle
    assert t == pytest.approx((0.6 + 0.875) / 2) and "middle" in why


def answerable_or_not(n: int) -> list[dict]:
    """Answerable questions cover the question and name nothing unknown; unanswerable ones mostly do not."""
    out = []
    for i in range(n):
        out.append(
            rec(
                "literal",
                0.0,
                holds=i % 2 == 0,
                score=2.0 + i % 3 * 0.2,
                unknown=0.0,
                coverage=0.8 + i % 3 * 0.1,
            )
        )
        out.append(
            rec(
                "unanswerable",
                0.0,
                score=1.5 + i % 3 * 0.3,
                unknown=float(i % 4 != 0),
                coverage=0.1 + i % 3 * 0.1,
            )
        )
    return out  # fmt: skip


def test_the_gate_is_fit_as_log_odds_in_raw_feature_units() -> None:
    recs = answerable_or_not(20)
    gate = fit_gate(recs, ("score", "unknown", "coverage"))
    assert set(gate) == {"bias", "score", "unknown", "coverage"}
    assert gate["unknown"] < 0 < gate["coverage"]
    conf = regated(recs, gate)  # bias + sum(weight x feature), the product's extractive.confidence
    f = recs[1]["features"]
    assert conf[1]["confidence"] == pytest.approx(sum(gate[k] * f[k] for k in f) + gate["bias"])
    assert min(r["confidence"] for r in conf if r["kind"] == "literal") > max(
        r["confidence"] for r in conf if r["kind"] == "unanswerable"
    )
    assert (
        regated([rec("literal", 0.0)], gate)[0]["confidence"] == gate["bias"]
    )  # no evidence: as the product


def test_cross_validation_judges_the_gate_on_held_out_folds() -> None:
    recs = answerable_or_not(20)
    cv = cross_validate(recs, lambda rs: fit_gate(rs, ("score", "unknown", "coverage")), "middle", repeats=2)
    assert cv["unanswerable"] >= 0.8 and cv["kept"] == 1.0  # separable: every fold abstains and answers right
    blind = cross_validate(recs, lambda rs: {"bias": 1.0}, "middle", repeats=2)  # a gate that sees nothing
    assert blind["unanswerable"] + blind["kept"] <= 1.0


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
        "literal_near": 0.9,
        "paraphrase_near": 0.6,
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

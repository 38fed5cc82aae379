"""The targets table of the real-document report (bench/realdocs_eval.py): computed from the run's
figures, so a target is never marked met by hand."""

from __future__ import annotations

from bench.realdocs_eval import targets


def system(name: str, p50: float, restricted: dict | None = None, **groups: tuple[float, float]) -> dict:
    def cells(gs: dict) -> dict:
        return {
            g.replace("__", "="): {"n_queries_evaluated": 10, "hit@10": h, "mrr@10": m}
            for g, (h, m) in gs.items()
        }

    return {
        "name": name,
        "latency_ms": {"p50": p50},
        "groups": {"mixed": cells(groups), "restricted": cells(restricted or {})},
    }


def rows(md: str) -> dict[str, list[str]]:
    out = {}
    for line in md.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells[1:]
    return out


def test_targets_compare_the_default_with_ocr_bm25_per_channel() -> None:
    base = system("OCR + BM25", 2.0, all=(0.74, 0.67), channel__page=(0.68, 0.64), channel__video=(0.71, 0.71),
                  channel__audio=(0.9, 0.6))  # fmt: skip
    prod = system(
        "product: default",
        60.0,
        {"channel__audio": (0.95, 0.8), "channel__video": (0.74, 0.7)},
        all=(0.81, 0.67),
        channel__page=(0.74, 0.59),
        channel__video=(0.71, 0.71),
        channel__audio=(0.85, 0.7),
        kind__paraphrase=(0.86, 0.54),
        kind__literal=(0.97, 0.9),
    )
    before = system("product: score fusion", 30.0)
    t = rows(targets([base, prod, before]))
    assert t["all >= OCR + BM25 on hit@10 and MRR@10"] == [
        "0.81 / 0.67 vs 0.74 / 0.67",
        "yes",
    ]  # equal is not below
    assert t["page >= OCR + BM25 on hit@10 and MRR@10"][1] == "**no**"  # MRR below the baseline's
    assert t["audio >= OCR + BM25 on hit@10 and MRR@10"][1] == "**no**"  # hit@10 below
    assert t["audio: mixed hit@10 within 0.05 of restricted"] == ["0.85 vs 0.95 (gap 0.10)", "**no**"]
    assert t["video: mixed hit@10 within 0.05 of restricted"][1] == "yes"
    assert t["paraphrases: hit@10 >= 0.85 and MRR@10 >= 0.55"] == ["0.86 / 0.54", "**no**"]  # MRR short
    assert t["literal: hit@10 >= 0.97"] == ["0.97", "yes"]
    key = "search p50 at most 1.5x the default before this change (score fusion)"
    assert t[key] == ["60.0 ms vs 30.0 ms (2.00x)", "**no**"]


def test_missing_rows_give_no_table() -> None:
    base = system("OCR + BM25", 2.0, all=(0.8, 0.7))
    prod = system("product: default", 40.0, all=(0.8, 0.7))
    t = rows(targets([base, prod, system("product: score fusion", 30.0)]))
    assert t["all >= OCR + BM25 on hit@10 and MRR@10"][1] == "yes"
    assert t["search p50 at most 1.5x the default before this change (score fusion)"][1] == "yes"
    assert targets([prod]) == ""


def test_channel_report_counts_answers_each_channel_lists() -> None:
    from bench.realdocs.channels import first_hit, report_channels

    assert first_hit([7, 3, 9], {3: 1.0}) == 2
    assert first_hit([7, 9], {3: 1.0}) is None
    far = [[i, 1.0 / (i + 1), 0.0, "page"] for i in range(20)] + [[99, 0.01, 1.0, "page"]]  # the answer 21st
    rows = [
        {
            "qid": "a",
            "tags": {"channel": "page", "kind": "literal"},
            "channels": {"lexical": [[5, 9.0, 1.0, "page"]], "dense": far},
        },
        {
            "qid": "b",
            "tags": {"channel": "audio", "kind": "paraphrase"},
            "channels": {"lexical": [[1, 2.0, 0.0, "page"]], "dense": [[4, 0.5, 1.0, "segment"]]},
        },
    ]
    t = rows_of(report_channels(rows))
    assert t["all (2)"] == ["0.50 / 1.00", "0.50 / 0.50"]  # dense @10 / @200, lexical @10 / @200
    assert t["channel=page (1)"] == ["0.00 / 1.00", "1.00 / 1.00"]
    assert t["kind=paraphrase (1)"] == ["1.00 / 1.00", "0.00 / 0.00"]


def rows_of(md: str) -> dict[str, list[str]]:
    return rows(md)


def test_replay_refuses_captured_lists_with_the_products_fusion() -> None:
    from bench.realdocs.channels import replay, replay_table

    dump = [
        {
            "qid": "a",
            "tags": {"channel": "page", "kind": "literal"},
            # BM25's winner (7, the answer) far ahead; the dense channel prefers a near-miss (3)
            "channels": {
                "lexical": [[7, 30.0, 1.0, "page"], [3, 5.0, 0.0, "page"], [4, 4.0, 0.0, "page"]],
                "dense": [[3, 0.61, 0.0, "page"], [4, 0.60, 0.0, "page"], [7, 0.50, 1.0, "page"]],
            },
        }
    ]
    assert replay(dump, {"lexical": 2.0, "dense": 1.0})[0][0] == 7  # score fusion keeps BM25's lead
    assert replay(dump, {"lexical": 2.0, "dense": 3.0})[0][0] == 3  # a heavy dense weight does not
    assert replay(dump, {"lexical": 1.0, "dense": 1.0}, "rrf", 60)[0][0] == 3  # ranks only: 3 is 1st + 2nd
    t = rows(replay_table(dump, [("lex", {"lexical": 1.0}, "score"), ("dense", {"dense": 1.0}, "score")], 60))
    assert t["lex"][0] == "1.00 / 1.00" and t["dense"][0] == "1.00 / 0.33"

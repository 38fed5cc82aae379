from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmrag_assets.fixtures import sample_corpus as sc
from mmrag_assets.lib.evaluation.query_set import BUNDLED_QUERIES, QuerySetError, load_query_set

MANUAL = {"source": "manuals/m.pdf", "page": 2}


def write(tmp_path: Path, *lines: str | dict) -> Path:
    p = tmp_path / "q.jsonl"
    p.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8"
    )
    return p


def test_bundled_set_covers_every_sample_source_and_channel() -> None:
    qs = load_query_set(None)
    assert qs.path == BUNDLED_QUERIES and 20 <= len(qs) <= 30
    assert qs.sources == {sc.MANUAL, sc.REPORT, sc.DIAGRAM, sc.PHOTO, sc.AUDIO, sc.VIDEO}
    judged = [j for q in qs.queries for j in q.relevant]
    for pdf, pages in ((sc.MANUAL, {1, 2, 3, 4}), (sc.REPORT, {1, 2, 3})):
        assert {j["page"] for j in judged if j["source"] == pdf} == pages
    assert any("start_s" in j for j in judged if j["source"] == sc.AUDIO)
    assert any("start_s" in j for j in judged if j["source"] == sc.VIDEO)
    assert sum("visual" in q.notes for q in qs.queries) >= 4  # answers only pixels carry
    assert any(j.get("grade", 1) > 1 for j in judged)  # graded relevance is exercised
    assert any(not q.relevant for q in qs.queries)  # and a query nobody can answer


def test_valid_lines_comments_and_grades(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "# a comment",
        "",
        {"qid": "a", "query": "x", "relevant": [MANUAL]},
        {"qid": 7, "query": "y", "relevant": [{"source": "a/b.ogg", "start_s": 1, "end_s": 2.5, "grade": 2}]},
        {"qid": "c", "query": "z", "relevant": [{"source": "img.png"}], "notes": "whole source"},
    )
    qs = load_query_set(p)
    assert [q.qid for q in qs.queries] == ["a", "7", "c"]
    assert [q.line for q in qs.queries] == [3, 4, 5]
    assert qs.queries[1].relevant == ({"source": "a/b.ogg", "start_s": 1.0, "end_s": 2.5, "grade": 2.0},)
    assert len(qs.sha256) == 16


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"qid": "a", "query": "x", "relevant": [}', r"q\.jsonl:2: not valid JSON"),
        ('["a"]', r":2: expected a JSON object"),
        ({"qid": "a", "query": "x", "relevant": [], "qery": 1}, r":2: unknown key 'qery'"),
        ({"query": "x", "relevant": []}, r":2: missing 'qid'"),
        ({"qid": "a", "relevant": []}, r":2: missing 'query'"),
        ({"qid": "a", "query": "x"}, r":2: missing 'relevant'"),
        ({"qid": "", "query": "x", "relevant": []}, r"'qid' must be a non-empty string"),
        ({"qid": "a", "query": "  ", "relevant": []}, r"'query' must be a non-empty string"),
        ({"qid": "a", "query": "x", "relevant": MANUAL}, r"'relevant' must be a list"),
        ({"qid": "a", "query": "x", "relevant": ["m.pdf"]}, r"relevant\[0\]: a judgement is an object"),
        ({"qid": "a", "query": "x", "relevant": [{"page": 1}]}, r"relevant\[0\]: 'source' must be"),
        ({"qid": "a", "query": "x", "relevant": [{"source": "m.pdf", "pgae": 1}]}, r"unknown key 'pgae'"),
        (
            {"qid": "a", "query": "x", "relevant": [{"source": "m.pdf", "page": 0}]},
            r"'page' must be an integer >= 1",
        ),
        (
            {"qid": "a", "query": "x", "relevant": [{"source": "m.pdf", "page": True}]},
            r"'page' must be an integer",
        ),
        (
            {"qid": "a", "query": "x", "relevant": [{"source": "a.ogg", "start_s": 1}]},
            r"give both 'start_s' and 'end_s'",
        ),
        (
            {"qid": "a", "query": "x", "relevant": [{"source": "a.ogg", "start_s": 3, "end_s": 1}]},
            r"0 <= start_s <= end_s",
        ),
        (
            {"qid": "a", "query": "x", "relevant": [{"source": "a.ogg", "start_s": "1", "end_s": 2}]},
            r"'start_s' must be a finite number",
        ),
        (
            {
                "qid": "a",
                "query": "x",
                "relevant": [{"source": "v.mp4", "page": 1, "start_s": 0, "end_s": 1}],
            },
            r"a 'page' or a 'start_s'/'end_s' span, not both",
        ),
        ({"qid": "a", "query": "x", "relevant": [{"source": "m.pdf", "grade": -1}]}, r"'grade' must be >= 0"),
        ({"qid": "a", "query": "x", "relevant": [{"source": "/abs/m.pdf"}]}, r"relative to corpus\.root"),
        ({"qid": "a", "query": "x", "relevant": [{"source": "../m.pdf"}]}, r"relative to corpus\.root"),
        ({"qid": "ok", "query": "x", "relevant": []}, r":2: qid 'ok' already used on line 1"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str | dict, message: str) -> None:
    p = write(tmp_path, {"qid": "ok", "query": "fine", "relevant": [MANUAL]}, line)
    with pytest.raises(QuerySetError, match=message):
        load_query_set(p)


def test_missing_empty_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(QuerySetError, match="does not exist: pass queries=PATH"):
        load_query_set(tmp_path / "nope.jsonl")
    with pytest.raises(QuerySetError, match="no queries"):
        load_query_set(write(tmp_path, "# only a comment"))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"qid": "a", "query": "r\xe9sum\xe9", "relevant": []}'.encode("latin-1"))
    with pytest.raises(QuerySetError, match="not UTF-8"):
        load_query_set(bad)


def test_query_set_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_query_set(write(tmp_path, "{"))


def test_extra_keys_are_tags(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        {
            "qid": "a",
            "query": "x",
            "relevant": [MANUAL],
            "channel": "scanned",
            "kind": "literal",
            "difficulty": 3,
        },
        {"qid": "b", "query": "y", "relevant": [], "channel": ["audio", "video"], "hard": True},
        {"qid": "c", "query": "z", "relevant": [MANUAL]},
    )
    a, b, c = load_query_set(p).queries
    assert a.tags == {"channel": "scanned", "kind": "literal", "difficulty": 3}
    assert a.tag_values("difficulty") == ("3",) and a.tag_values("kind") == ("literal",)
    assert b.tag_values("channel") == ("audio", "video") and b.tag_values("hard") == ("true",)
    assert c.tags == {} and c.tag_values("channel") == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"relevent": []}, r"unknown key 'relevent' \(did you mean 'relevant'\?\)"),
        ({"note": "n"}, r"did you mean 'notes'"),
        ({"channel": {"a": 1}}, r"tag 'channel' must be a string, number or boolean"),
        ({"channel": []}, r"tag 'channel' must be"),
        ({"channel": [1, [2]]}, r"tag 'channel' must be"),
        ({"channel": None}, r"tag 'channel' must be"),
    ],
)
def test_tag_typos_and_bad_values_fail(tmp_path: Path, extra: dict, message: str) -> None:
    with pytest.raises(QuerySetError, match=message):
        load_query_set(write(tmp_path, {"qid": "a", "query": "x", "relevant": [MANUAL], **extra}))

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest

from data_contracts import documents, embeddings, pages, segments
from data_contracts.embeddings import vector_stats
from data_contracts.params import ContractParams
from data_contracts.runner import TABLES, ContractResult, get_suite, validate_table
from mmrag_assets.errors import ConfigError, NotFound

PARAMS = ContractParams(
    dim=8, min_tokens=2, max_tokens=64, max_text_chars=200, duration_tolerance_s=0.5, max_offending_ids=50
)


def _doc_id(n: int) -> str:
    return hashlib.sha256(f"doc{n}".encode()).hexdigest()[:16]


PDF, AUDIO = _doc_id(1), _doc_id(2)


def good_documents() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "doc_id": PDF,
                "source": "a.pdf",
                "kind": "pdf",
                "sha256": hashlib.sha256(b"doc1").hexdigest(),
                "size": 100,
                "n_pages": 3,
                "n_segments": 0,
                "duration_s": None,
                "status": "ok",
            },
            {
                "doc_id": AUDIO,
                "source": "b.wav",
                "kind": "audio",
                "sha256": hashlib.sha256(b"doc2").hexdigest(),
                "size": 50,
                "n_pages": 0,
                "n_segments": 2,
                "duration_s": 60.0,
                "status": "ok",
            },
        ]
    )


def good_pages() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "item_id": f"{PDF}:{p}",
                "doc_id": PDF,
                "page": p,
                "modality": "page",
                "image_path": f"pages/{PDF}/{p}.png",
                "width": 100,
                "height": 140,
                "text": f"page {p}",
                "text_source": "layer",
                "doc_n_pages": 3,
            }
            for p in (1, 2, 3)
        ]
    )


def good_segments() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "item_id": f"{AUDIO}:t0",
                "doc_id": AUDIO,
                "start_s": 0.0,
                "end_s": 30.0,
                "text": "hello there",
                "n_words": 2,
                "doc_duration_s": 60.0,
            },
            {
                "item_id": f"{AUDIO}:t25000",
                "doc_id": AUDIO,
                "start_s": 25.0,
                "end_s": 60.2,
                "text": "bye",
                "n_words": 1,
                "doc_duration_s": 60.0,
            },  # 0.2 s past the end: inside the default tolerance
        ]
    )


def good_embeddings() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    vecs = [rng.normal(size=(n, 8)).astype(np.float16) for n in (4, 4, 4, 3, 3)]
    rows = [
        {
            "item_id": f"{PDF}:{p}",
            "doc_id": PDF,
            "source": "a.pdf",
            "modality": "page",
            "page": p,
            "start_s": None,
            "end_s": None,
            "text": f"page {p}",
        }
        for p in (1, 2, 3)
    ]
    rows += [
        {
            "item_id": f"{AUDIO}:t{t}",
            "doc_id": AUDIO,
            "source": "b.wav",
            "modality": "segment",
            "page": None,
            "start_s": t / 1000,
            "end_s": t / 1000 + 30,
            "text": "hi",
        }
        for t in (0, 25000)
    ]
    return pd.concat([pd.DataFrame(rows), vector_stats(vecs)], axis=1)


GOOD = {
    "documents": good_documents,
    "pages": good_pages,
    "segments": good_segments,
    "embeddings": good_embeddings,
}


def _failed(res: ContractResult, check: str) -> dict:
    hits = [f for f in res.failures if f["check"] == check]
    assert hits, f"expected {check} to fail; got {res.describe()}"
    return dict(hits[0])


@pytest.mark.parametrize("table", TABLES)
def test_good_frames_pass(table: str) -> None:
    res = validate_table(table, GOOD[table](), PARAMS)
    assert res.passed, res.describe()
    assert res.failures == []
    assert res.statistics["unsuccessful_expectations"] == 0
    assert res.statistics["evaluated_expectations"] >= 8


def test_suites_are_versioned_and_named() -> None:
    for mod in (documents, pages, segments, embeddings):
        suite = mod.build_suite(PARAMS)
        assert suite.meta["version"] == mod.SUITE_VERSION
        assert suite.name == f"mmrag.{mod.SUITE_NAME}"
        checks = [e.meta["check"] for e in suite.expectations]
        assert len(checks) == len(set(checks)), "check names must be unique within a suite"
    res = validate_table("pages", good_pages(), PARAMS)
    assert (res.suite, res.version) == ("pages", pages.SUITE_VERSION)


@pytest.mark.parametrize("table", ["pages", "segments", "embeddings"])
def test_duplicate_item_id_is_named(table: str) -> None:
    df = GOOD[table]()
    dup = df.loc[0, "item_id"]
    df.loc[1, "item_id"] = dup
    f = _failed(validate_table(table, df, PARAMS), "item_id_unique")
    assert f["offending_ids"] == [dup] and f["count"] == 2


def test_duplicate_and_null_doc_id_in_documents() -> None:
    df = pd.concat([good_documents(), good_documents().iloc[[0]]], ignore_index=True)
    df.loc[1, "doc_id"] = None
    res = validate_table("documents", df, PARAMS)
    assert _failed(res, "doc_id_unique")["offending_ids"] == [PDF]
    assert _failed(res, "doc_id_not_null")["offending_ids"] == ["<null doc_id>@row1"]


def test_null_item_id_is_named_by_row() -> None:
    df = good_pages()
    df.loc[2, "item_id"] = None
    f = _failed(validate_table("pages", df, PARAMS), "item_id_not_null")
    assert f["offending_ids"] == ["<null item_id>@row2"] and f["count"] == 1


def test_page_beyond_document_page_count() -> None:
    df = good_pages()
    df.loc[2, "page"] = 4  # documents.n_pages is 3
    res = validate_table("pages", df, PARAMS)
    f = _failed(res, "page_le_doc_n_pages")
    assert f["offending_ids"] == [f"{PDF}:3"] and f["count"] == 1 and f["column"] == "page"
    assert f["expectation"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert [x["check"] for x in res.failures] == ["page_le_doc_n_pages"]


def test_page_zero_and_orphan_page() -> None:
    df = good_pages()
    df.loc[0, "page"] = 0
    df.loc[1, "doc_n_pages"] = None  # no such document
    res = validate_table("pages", df, PARAMS)
    assert _failed(res, "page_ge_1")["offending_ids"] == [f"{PDF}:1"]
    assert _failed(res, "doc_known")["offending_ids"] == [f"{PDF}:2"]


def test_text_source_must_be_known() -> None:
    df = good_pages()
    df.loc[1, "text_source"] = "guess"
    df.loc[2, "text_source"] = None
    res = validate_table("pages", df, PARAMS)
    assert _failed(res, "text_source_allowed")["offending_ids"] == [f"{PDF}:2"]
    assert _failed(res, "text_source_not_null")["offending_ids"] == [f"{PDF}:3"]


def test_segment_start_not_before_end() -> None:
    df = good_segments()
    df.loc[0, "end_s"] = df.loc[0, "start_s"]  # start == end
    f = _failed(validate_table("segments", df, PARAMS), "start_lt_end")
    assert f["offending_ids"] == [f"{AUDIO}:t0"] and f["count"] == 1


def test_segment_past_duration() -> None:
    df = good_segments()
    df.loc[1, "end_s"] = 61.0  # duration 60 + 0.5 s tolerance
    f = _failed(validate_table("segments", df, PARAMS), "end_le_duration")
    assert f["offending_ids"] == [f"{AUDIO}:t25000"] and f["column"] == "end_s"
    # The same frame passes when the tolerance says so: the limit is a parameter, not a literal.
    assert validate_table(
        "segments", df, ContractParams.from_mapping(PARAMS.to_dict(), duration_tolerance_s=2.0)
    ).passed


def test_negative_start_and_unknown_duration() -> None:
    df = good_segments()
    df.loc[0, "start_s"] = -1.0
    df.loc[1, "doc_duration_s"] = None
    res = validate_table("segments", df, PARAMS)
    assert _failed(res, "start_s_non_negative")["offending_ids"] == [f"{AUDIO}:t0"]
    assert _failed(res, "doc_duration_known")["offending_ids"] == [f"{AUDIO}:t25000"]


def test_wrong_dim() -> None:
    df = good_embeddings()
    df.loc[3, "dim"] = 16
    f = _failed(validate_table("embeddings", df, PARAMS), "dim_matches_tier")
    assert f["offending_ids"] == [f"{AUDIO}:t0"]
    assert (
        validate_table("embeddings", good_embeddings(), dataclasses.replace(PARAMS, dim=16)).passed is False
    )


def test_vector_column_is_tolerated() -> None:
    df = good_embeddings()
    df["vector"] = [np.zeros((4, 8), dtype=np.float16)] * len(df)
    assert validate_table("embeddings", df, PARAMS).passed


def test_nan_vectors() -> None:
    vecs = [np.ones((4, 8)), np.ones((4, 8)), np.ones((4, 8)), np.ones((3, 8)), np.ones((3, 8))]
    vecs[1][2, 5] = np.nan
    vecs[4][0, 0] = np.inf
    df = good_embeddings().drop(columns=["n_tokens", "dim", "n_nonfinite"])
    df = pd.concat([df, vector_stats(vecs)], axis=1)
    f = _failed(validate_table("embeddings", df, PARAMS), "vectors_finite")
    assert f["offending_ids"] == [f"{PDF}:2", f"{AUDIO}:t25000"] and f["count"] == 2


@pytest.mark.parametrize("n_tokens,bad", [(1, True), (2, False), (64, False), (65, True)])
def test_token_count_bounds(n_tokens: int, bad: bool) -> None:
    df = good_embeddings()
    df.loc[0, "n_tokens"] = n_tokens
    res = validate_table("embeddings", df, PARAMS)
    assert res.passed is not bad
    if bad:
        assert _failed(res, "n_tokens_in_bounds")["offending_ids"] == [f"{PDF}:1"]


def test_text_too_long_and_bad_modality() -> None:
    df = good_pages()
    df.loc[1, "text"] = "x" * 201
    df.loc[2, "modality"] = "segment"
    res = validate_table("pages", df, PARAMS)
    assert _failed(res, "text_length")["offending_ids"] == [f"{PDF}:2"]
    assert _failed(res, "modality_allowed")["offending_ids"] == [f"{PDF}:3"]


def test_document_kind_status_and_sha() -> None:
    df = good_documents()
    df.loc[0, "kind"] = "docx"
    df.loc[1, "status"] = "weird"
    df.loc[1, "sha256"] = "nothex"
    res = validate_table("documents", df, PARAMS)
    assert _failed(res, "kind_allowed")["offending_ids"] == [PDF]
    assert _failed(res, "status_allowed")["offending_ids"] == [AUDIO]
    assert _failed(res, "sha256_format")["offending_ids"] == [AUDIO]


def test_segment_embedding_without_interval_and_page_without_number() -> None:
    df = good_embeddings()
    df.loc[0, "page"] = None
    df.loc[4, "start_s"] = None
    res = validate_table("embeddings", df, PARAMS)
    assert _failed(res, "visual_has_page")["offending_ids"] == [f"{PDF}:1"]
    assert _failed(res, "segment_has_start_s")["offending_ids"] == [f"{AUDIO}:t25000"]


def test_offending_ids_are_capped_but_counted() -> None:
    n = 120
    df = pd.DataFrame(
        {
            "item_id": [f"{PDF}:{i}" for i in range(1, n + 1)],
            "doc_id": PDF,
            "page": range(1, n + 1),
            "modality": "page",
            "image_path": "x.png",
            "width": 1,
            "height": 1,
            "text": "",
            "text_source": "none",
            "doc_n_pages": 3,
        }
    )
    f = _failed(
        validate_table("pages", df, dataclasses.replace(PARAMS, max_offending_ids=50)), "page_le_doc_n_pages"
    )
    assert f["count"] == n - 3 and len(f["offending_ids"]) == 50 and f["offending_ids"][0] == f"{PDF}:4"


def test_missing_column_fails_without_gx_error() -> None:
    res = validate_table("pages", good_pages().drop(columns=["doc_n_pages"]), PARAMS)
    assert not res.passed
    assert [(f["check"], f["column"]) for f in res.failures] == [("doc_n_pages_exists", "doc_n_pages")]


def test_unknown_table_and_bad_params() -> None:
    with pytest.raises(NotFound, match="contracts exist"):
        validate_table("nope", good_pages(), PARAMS)
    with pytest.raises(ConfigError, match="unknown"):
        ContractParams.from_mapping({"dims": 3})
    with pytest.raises(ConfigError):
        dataclasses.replace(PARAMS, min_tokens=10, max_tokens=5)
    assert ContractParams.from_mapping({**PARAMS.to_dict(), "doc_kinds": ["pdf"]}).doc_kinds == ("pdf",)


def test_vector_stats_ragged_and_empty() -> None:
    stats = vector_stats([np.zeros((2, 8)), [[0.0] * 8, [0.0] * 7], None])
    assert stats.to_dict("list") == {"n_tokens": [2, 2, 0], "dim": [8, -1, -1], "n_nonfinite": [0, 0, 0]}


def test_suite_cache_and_large_frame() -> None:
    assert get_suite("pages", PARAMS) is get_suite("pages", PARAMS)
    rng = np.random.default_rng(1)
    n = 5000
    df = pd.DataFrame(
        {
            "item_id": [f"{PDF}:{i}" for i in range(n)],
            "doc_id": PDF,
            "source": "a.pdf",
            "modality": "page",
            "page": rng.integers(1, 50, n),
            "start_s": None,
            "end_s": None,
            "text": "t",
            "n_tokens": 8,
            "dim": 8,
            "n_nonfinite": 0,
        }
    )
    res = validate_table("embeddings", df, PARAMS)
    assert res.passed, res.describe()
    assert res.statistics["rows"] == n


def test_conditional_document_checks() -> None:
    df = good_documents()
    df.loc[0, "n_pages"] = 0  # an ingested pdf without pages
    df.loc[1, "duration_s"] = None  # an ingested recording without duration
    res = validate_table("documents", df, PARAMS)
    assert _failed(res, "ok_visual_has_pages")["offending_ids"] == [PDF]
    assert _failed(res, "ok_recording_has_duration")["offending_ids"] == [AUDIO]
    df["status"] = "quarantined"  # the same rows are fine for documents that never got through
    assert validate_table("documents", df, PARAMS).passed


def test_keyframe_interval_is_not_a_segment_interval() -> None:
    df = good_embeddings()
    df.loc[0, ["modality", "start_s", "end_s"]] = ["image", 10.0, 10.0]  # video keyframe at t=10 s
    assert validate_table("embeddings", df, PARAMS).passed
    df.loc[0, "modality"] = "segment"
    assert _failed(validate_table("embeddings", df, PARAMS), "start_lt_end")["offending_ids"] == [f"{PDF}:1"]


def test_expectation_that_cannot_run_is_a_failure_with_its_error() -> None:
    df = good_pages()
    df["page"] = ["1", "2", "3"]  # strings where numbers belong: GX cannot compare them
    res = validate_table("pages", df, PARAMS)
    f = _failed(res, "page_ge_1")
    assert f["error"] and "type" in f["error"] and f["count"] == 0 and not res.passed
    assert f["error"] in res.describe()

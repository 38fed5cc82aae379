"""Contract of the ``documents`` table: one row per ingested source document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from data_contracts._expect import add, doc_ref_checks, id_checks, new_suite, rows_where

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite

    from data_contracts.params import ContractParams

SUITE_NAME = "documents"
SUITE_VERSION = "1.0.0"  # bump on any change to the expectations below
ID_COLUMN = "doc_id"
REQUIRED_COLUMNS = (
    "doc_id",
    "source",
    "kind",
    "sha256",
    "size",
    "n_pages",
    "n_segments",
    "duration_s",
    "status",
)
SOURCE_SQL = "SELECT * FROM documents"


def prepare(df: pd.DataFrame, params: ContractParams) -> pd.DataFrame:
    return df


def build_suite(params: ContractParams) -> ExpectationSuite:
    suite = new_suite(SUITE_NAME, SUITE_VERSION, params)
    id_checks(suite, "doc_id")
    doc_ref_checks(suite, params)
    add(suite, "ExpectColumnValuesToNotBeNull", "source_not_null", "source", column="source")
    add(
        suite,
        "ExpectColumnValuesToBeInSet",
        "kind_allowed",
        "kind",
        column="kind",
        value_set=list(params.doc_kinds),
    )
    add(
        suite,
        "ExpectColumnValuesToBeInSet",
        "status_allowed",
        "status",
        column="status",
        value_set=list(params.doc_statuses),
    )
    add(suite, "ExpectColumnValuesToNotBeNull", "sha256_not_null", "sha256", column="sha256")
    add(
        suite,
        "ExpectColumnValuesToMatchRegex",
        "sha256_format",
        "sha256",
        column="sha256",
        regex=params.sha256_regex,
    )
    for col in ("size", "n_pages", "n_segments", "duration_s"):
        add(suite, "ExpectColumnValuesToBeBetween", f"{col}_non_negative", col, column=col, min_value=0)
    # A fully ingested visual document has at least one page; a recording has a duration.
    add(
        suite,
        "ExpectColumnValuesToBeBetween",
        "ok_visual_has_pages",
        "n_pages",
        column="n_pages",
        min_value=1,
        row_condition=rows_where("kind", ("pdf", "image", "office", "text"), status="ok"),
    )
    add(
        suite,
        "ExpectColumnValuesToNotBeNull",
        "ok_recording_has_duration",
        "duration_s",
        column="duration_s",
        row_condition=rows_where("kind", ("audio", "video"), status="ok"),
    )
    return suite

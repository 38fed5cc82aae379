"""Contract of the ``segments`` table (transcript windows of audio and video).

The caller joins ``documents.duration_s`` in as ``doc_duration_s`` (see ``SOURCE_SQL``). The check
``0 <= start_s < end_s <= doc_duration_s + duration_tolerance_s`` is split in three so that each failure
names its own rows; the tolerance absorbs ASR timestamps rounded past the end of the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data_contracts._expect import (
    add,
    doc_ref_checks,
    id_checks,
    new_suite,
    text_length_check,
    time_span_checks,
)

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite

    from data_contracts.params import ContractParams

SUITE_NAME = "segments"
SUITE_VERSION = "1.0.0"  # bump on any change to the expectations below
ID_COLUMN = "item_id"
REQUIRED_COLUMNS = ("item_id", "doc_id", "start_s", "end_s", "text", "n_words", "doc_duration_s")
SOURCE_SQL = (
    "SELECT s.*, d.duration_s AS doc_duration_s FROM segments s LEFT JOIN documents d ON d.doc_id = s.doc_id"
)
END_LIMIT = "_end_limit_s"  # derived: doc_duration_s + duration_tolerance_s


def prepare(df: pd.DataFrame, params: ContractParams) -> pd.DataFrame:
    return df.assign(**{END_LIMIT: df["doc_duration_s"].astype("float64") + params.duration_tolerance_s})


def build_suite(params: ContractParams) -> ExpectationSuite:
    suite = new_suite(SUITE_NAME, SUITE_VERSION, params)
    id_checks(suite, "item_id")
    doc_ref_checks(suite, params)
    time_span_checks(suite)
    add(
        suite,
        "ExpectColumnValuesToNotBeNull",
        "doc_duration_known",
        "doc_duration_s",
        column="doc_duration_s",
    )
    add(
        suite,
        "ExpectColumnPairValuesAToBeGreaterThanB",
        "end_le_duration",
        "end_s",
        column_A=END_LIMIT,
        column_B="end_s",
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )
    add(suite, "ExpectColumnValuesToNotBeNull", "text_not_null", "text", column="text")
    text_length_check(suite, params)
    add(
        suite,
        "ExpectColumnValuesToBeBetween",
        "n_words_non_negative",
        "n_words",
        column="n_words",
        min_value=0,
    )
    return suite

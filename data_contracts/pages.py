"""Contract of the ``pages`` table (page images, standalone images, video keyframes).

The caller joins ``documents.n_pages`` in as ``doc_n_pages`` (see ``SOURCE_SQL``); a page whose
document is missing has a NULL ``doc_n_pages`` and fails ``doc_known``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data_contracts._expect import add, doc_ref_checks, id_checks, new_suite, text_length_check

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite

    from data_contracts.params import ContractParams

SUITE_NAME = "pages"
SUITE_VERSION = "1.1.0"  # bump on any change to the expectations below
ID_COLUMN = "item_id"
REQUIRED_COLUMNS = (
    "item_id",
    "doc_id",
    "page",
    "modality",
    "image_path",
    "width",
    "height",
    "text",
    "text_source",
    "doc_n_pages",
)
TEXT_SOURCES = ("layer", "ocr", "layer+ocr", "none")  # where pages.text came from (lib/ingest/ocr_pages.py)
SOURCE_SQL = "SELECT p.*, d.n_pages AS doc_n_pages FROM pages p LEFT JOIN documents d ON d.doc_id = p.doc_id"


def prepare(df: pd.DataFrame, params: ContractParams) -> pd.DataFrame:
    return df


def build_suite(params: ContractParams) -> ExpectationSuite:
    suite = new_suite(SUITE_NAME, SUITE_VERSION, params)
    id_checks(suite, "item_id")
    doc_ref_checks(suite, params)
    add(suite, "ExpectColumnValuesToNotBeNull", "page_not_null", "page", column="page")
    add(suite, "ExpectColumnValuesToBeBetween", "page_ge_1", "page", column="page", min_value=1)
    add(suite, "ExpectColumnValuesToNotBeNull", "doc_known", "doc_n_pages", column="doc_n_pages")
    add(
        suite,
        "ExpectColumnPairValuesAToBeGreaterThanB",
        "page_le_doc_n_pages",
        "page",
        column_A="doc_n_pages",
        column_B="page",
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )
    add(
        suite,
        "ExpectColumnValuesToBeInSet",
        "modality_allowed",
        "modality",
        column="modality",
        value_set=list(params.page_modalities),
    )
    add(suite, "ExpectColumnValuesToNotBeNull", "image_path_not_null", "image_path", column="image_path")
    for col in ("width", "height"):
        add(suite, "ExpectColumnValuesToBeBetween", f"{col}_positive", col, column=col, min_value=1)
    add(
        suite,
        "ExpectColumnValuesToBeInSet",
        "text_source_allowed",
        "text_source",
        column="text_source",
        value_set=list(TEXT_SOURCES),
    )
    add(suite, "ExpectColumnValuesToNotBeNull", "text_source_not_null", "text_source", column="text_source")
    text_length_check(suite, params)
    return suite

"""Small builders shared by the suites. great_expectations is imported here, lazily, on first use.

Every expectation carries ``meta={"check": <stable name>, "column": <column the reader should look at>}``
so that a failure reads "page_le_doc_n_pages on page" rather than a GX class name, and derived helper
columns (``_end_limit_s``) never leak into reports.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

    from data_contracts.params import ContractParams


LOCK = threading.RLock()  # GX contexts are not documented as thread-safe
_context: list[Any] = []


def gx_context() -> Any:
    """The process's ephemeral GX context (analytics and progress bars off), created on first use.

    GX needs an active context even to build a suite, so every suite builder calls this first.
    """
    with LOCK:
        if not _context:
            import logging

            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            for name in ("great_expectations", "great_expectations.data_context.types.base"):
                logging.getLogger(name).setLevel(
                    logging.WARNING
                )  # "Created temporary directory ... docs site"

            ctx = gx.get_context(mode="ephemeral")
            ctx.enable_analytics(False)
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            _context.append(ctx)
        return _context[0]


def new_suite(name: str, version: str, params: ContractParams) -> ExpectationSuite:
    import great_expectations as gx

    gx_context()
    return gx.ExpectationSuite(
        name=f"mmrag.{name}", meta={"version": version, "table": name, "params": params.to_dict()}
    )


def add(suite: ExpectationSuite, kind: str, check: str, subject: str, **kwargs: Any) -> None:
    """Append ``great_expectations.expectations.<kind>(**kwargs)`` tagged with a stable check name and the
    column a reader should look at (``subject``)."""
    import great_expectations.expectations as gxe

    suite.add_expectation(getattr(gxe, kind)(meta={"check": check, "column": subject}, **kwargs))


def rows_where(column: str, values: Sequence[str], **equal: str) -> Any:
    """A GX row condition: ``column`` is one of ``values`` (and each ``equal`` column has its value)."""
    from great_expectations.expectations.row_conditions import Column

    cond = Column(column).is_in(list(values))
    for col, value in equal.items():
        cond = cond & (Column(col) == value)
    return cond


def id_checks(suite: ExpectationSuite, column: str) -> None:
    add(suite, "ExpectColumnValuesToNotBeNull", f"{column}_not_null", column, column=column)
    add(suite, "ExpectColumnValuesToBeUnique", f"{column}_unique", column, column=column)


def doc_ref_checks(suite: ExpectationSuite, params: ContractParams) -> None:
    """Rows that point at a document: doc_id present and shaped like a content key."""
    add(suite, "ExpectColumnValuesToNotBeNull", "doc_id_not_null", "doc_id", column="doc_id")
    add(
        suite,
        "ExpectColumnValuesToMatchRegex",
        "doc_id_format",
        "doc_id",
        column="doc_id",
        regex=params.doc_id_regex,
    )


def text_length_check(suite: ExpectationSuite, params: ContractParams, column: str = "text") -> None:
    add(
        suite,
        "ExpectColumnValueLengthsToBeBetween",
        f"{column}_length",
        column,
        column=column,
        min_value=0,
        max_value=params.max_text_chars,
    )


def time_span_checks(
    suite: ExpectationSuite, *, row_condition: Any = None, null_check: str = "{col}_not_null"
) -> None:
    """``start_s``/``end_s`` present, ``start_s >= 0`` and ``start_s < end_s`` (where ``row_condition`` holds)."""
    cond = {} if row_condition is None else {"row_condition": row_condition}
    for col in ("start_s", "end_s"):
        add(suite, "ExpectColumnValuesToNotBeNull", null_check.format(col=col), col, column=col, **cond)
    add(
        suite,
        "ExpectColumnValuesToBeBetween",
        "start_s_non_negative",
        "start_s",
        column="start_s",
        min_value=0,
    )
    add(
        suite,
        "ExpectColumnPairValuesAToBeGreaterThanB",
        "start_lt_end",
        "end_s",
        column_A="end_s",
        column_B="start_s",
        or_equal=False,
        ignore_row_if="either_value_is_missing",
        **cond,
    )

"""Contract of the LanceDB ``embeddings`` table (one row per item, a multivector per row).

GX checks scalar columns, so the caller reduces each multivector to three numbers first: ``n_tokens``
(outer length), ``dim`` (inner length; -1 when the rows are ragged) and ``n_nonfinite`` (NaN/inf
count). ``vector_stats`` computes them; drop the ``vector`` column before validating.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from data_contracts._expect import (
    add,
    doc_ref_checks,
    id_checks,
    new_suite,
    rows_where,
    text_length_check,
    time_span_checks,
)
from mmrag_assets.lib.store.items import CONTRACT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite

    from data_contracts.params import ContractParams

SUITE_NAME = "embeddings"
SUITE_VERSION = "1.0.0"  # bump on any change to the expectations below
ID_COLUMN = "item_id"
STATS_COLUMNS = ("n_tokens", "dim", "n_nonfinite")  # measured on each multivector (vector_stats)
# the item columns the suite checks as stored (mmrag_assets/lib/store/items.py), then the measured ones
REQUIRED_COLUMNS = (*CONTRACT_COLUMNS, *STATS_COLUMNS)


def vector_stats(vectors: Iterable[Any]) -> pd.DataFrame:
    """``n_tokens``, ``dim``, ``n_nonfinite`` per multivector (each (n_tokens, dim), any float dtype)."""
    import numpy as np
    import pandas as pd

    rows: list[tuple[int, int, int]] = []
    for v in vectors:
        if v is None:
            rows.append((0, -1, 0))
            continue
        if isinstance(v, np.ndarray) and v.ndim == 2:  # (n_tokens, dim): no per-token loop
            rows.append((v.shape[0], v.shape[1], int((~np.isfinite(v)).sum())))
            continue
        toks = [np.asarray(t, dtype=np.float32).ravel() for t in v]
        dims = {t.shape[0] for t in toks}
        nonfinite = int(sum(int((~np.isfinite(t)).sum()) for t in toks))
        rows.append((len(toks), dims.pop() if len(dims) == 1 else -1, nonfinite))
    return pd.DataFrame(rows, columns=list(STATS_COLUMNS))


def prepare(df: pd.DataFrame, params: ContractParams) -> pd.DataFrame:
    # The multivector itself is summarised by vector_stats; GX has no use for (and chokes on) the lists.
    return df.drop(columns=["vector", "tokens"], errors="ignore")


def build_suite(params: ContractParams) -> ExpectationSuite:
    suite = new_suite(SUITE_NAME, SUITE_VERSION, params)
    id_checks(suite, "item_id")
    doc_ref_checks(suite, params)
    add(suite, "ExpectColumnValuesToNotBeNull", "source_not_null", "source", column="source")
    add(
        suite,
        "ExpectColumnValuesToBeInSet",
        "modality_allowed",
        "modality",
        column="modality",
        value_set=list(params.embedding_modalities),
    )
    add(
        suite,
        "ExpectColumnValuesToBeBetween",
        "dim_matches_tier",
        "dim",
        column="dim",
        min_value=params.dim,
        max_value=params.dim,
    )
    add(
        suite,
        "ExpectColumnValuesToBeBetween",
        "n_tokens_in_bounds",
        "n_tokens",
        column="n_tokens",
        min_value=params.min_tokens,
        max_value=params.max_tokens,
    )
    add(
        suite,
        "ExpectColumnValuesToBeBetween",
        "vectors_finite",
        "n_nonfinite",
        column="n_nonfinite",
        min_value=0,
        max_value=0,
    )
    for col in ("dim", "n_tokens", "n_nonfinite"):  # a NULL would slip through the range checks above
        add(suite, "ExpectColumnValuesToNotBeNull", f"{col}_not_null", col, column=col)
    visual = rows_where("modality", ("page", "image"))
    add(
        suite, "ExpectColumnValuesToNotBeNull", "visual_has_page", "page", column="page", row_condition=visual
    )
    add(suite, "ExpectColumnValuesToBeBetween", "page_ge_1", "page", column="page", min_value=1)
    # segments only: keyframes may carry t_s twice
    time_span_checks(
        suite, row_condition=rows_where("modality", ("segment",)), null_check="segment_has_{col}"
    )
    text_length_check(suite, params)
    return suite

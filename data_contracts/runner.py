"""Validate a table's DataFrame against its versioned suite and name the offending rows.

One ephemeral GX context per process, created on first use (great_expectations costs ~5 s to
import; after that a table validates in ~0.1-0.5 s for a few rows up to ~10k rows: GX spends ~10 ms
per expectation whatever the row count). Suites are
built once per ``(table, ContractParams)``. Offending ids come from GX's ``unexpected_index_list``
(``result_format=COMPLETE`` with ``unexpected_index_column_names=[id, _row]``); a row whose id is
itself NULL is named ``<null item_id>@row<N>`` (N: 0-based position in the frame).
"""

from __future__ import annotations

import functools
import importlib
import math
import time
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

from data_contracts._expect import LOCK, gx_context
from data_contracts.params import ContractParams
from mmrag_assets.errors import NotFound

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite

TABLES = ("documents", "pages", "segments", "embeddings")
ROW_COLUMN = "_row"  # positional row number added to the validated frame

_batch_definitions: dict[str, Any] = {}


class ContractFailure(TypedDict):
    expectation: str  # GX expectation type, e.g. expect_column_pair_values_a_to_be_greater_than_b
    check: str  # stable name from the suite, e.g. page_le_doc_n_pages
    column: str
    offending_ids: list[str]  # distinct ids in row order, at most ContractParams.max_offending_ids
    count: int  # number of offending rows (all of them, not capped)
    error: str | None  # set when the expectation could not be evaluated (e.g. wrong column type)


@dataclass
class ContractResult:
    passed: bool
    suite: str
    version: str
    failures: list[ContractFailure] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, max_ids: int = 5) -> str:
        """One line per failure, for logs and check descriptions."""
        head = f"{self.suite}@{self.version}: " + (
            "passed" if self.passed else f"{len(self.failures)} check(s) failed"
        )
        lines = [head]
        for f in self.failures:
            ids = ", ".join(f["offending_ids"][:max_ids]) + (
                " ..." if len(f["offending_ids"]) > max_ids else ""
            )
            why = f" ({f['error']})" if f["error"] else ""
            lines.append(f"  {f['check']} on {f['column']}: {f['count']} row(s){why} {ids}".rstrip())
        return "\n".join(lines)


def suite_module(name: str) -> ModuleType:
    if name not in TABLES:
        raise NotFound(f"no data contract for table {name!r}; contracts exist for {list(TABLES)}")
    return importlib.import_module(f"data_contracts.{name}")


@functools.lru_cache(maxsize=64)
def get_suite(name: str, params: ContractParams) -> ExpectationSuite:
    """The (cached) suite of ``name`` for these params; do not mutate the returned object."""
    return suite_module(name).build_suite(params)


def _batch_definition(name: str) -> Any:
    """One pandas data source and one asset per table in the process's context, created once."""
    with LOCK:
        if name not in _batch_definitions:
            ctx = gx_context()
            if "__source__" not in _batch_definitions:
                _batch_definitions["__source__"] = ctx.data_sources.add_pandas("mmrag_contracts")
            asset = _batch_definitions["__source__"].add_dataframe_asset(name)
            _batch_definitions[name] = asset.add_batch_definition_whole_dataframe(f"{name}_whole")
        return _batch_definitions[name]


def validate_table(name: str, df: pd.DataFrame, params: ContractParams) -> ContractResult:
    """Validate ``df`` (the rows of table ``name``, with the joined columns the suite needs)."""
    module = suite_module(name)
    t0 = time.perf_counter()
    missing = [c for c in module.REQUIRED_COLUMNS if c not in df.columns]
    if missing:  # the schema itself broke: report it as a failure instead of letting GX raise per column
        failures = [_failure("expect_column_to_exist", f"{c}_exists", c, [], 0, None) for c in missing]
        return ContractResult(
            False,
            module.SUITE_NAME,
            module.SUITE_VERSION,
            failures,
            {"rows": len(df), "missing_columns": missing, "elapsed_s": time.perf_counter() - t0},
        )

    frame = module.prepare(df.reset_index(drop=True), params).assign(**{ROW_COLUMN: range(len(df))})
    suite = get_suite(name, params)
    id_col = module.ID_COLUMN
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [id_col, ROW_COLUMN]}
    with LOCK:
        batch = _batch_definition(name).get_batch(batch_parameters={"dataframe": frame})
        res = batch.validate(suite, result_format=result_format)

    order = {e.meta.get("check"): i for i, e in enumerate(suite.expectations)}
    failures = [_to_failure(r, id_col, params.max_offending_ids) for r in res.results if not r.success]
    failures.sort(key=lambda f: order.get(f["check"], len(order)))
    stats = {
        k: res.statistics.get(k)
        for k in (
            "evaluated_expectations",
            "successful_expectations",
            "unsuccessful_expectations",
            "success_percent",
        )
    }
    stats.update(rows=len(frame), elapsed_s=time.perf_counter() - t0)
    return ContractResult(not failures, module.SUITE_NAME, module.SUITE_VERSION, failures, stats)


def _failure(
    expectation: str, check: str, column: str, ids: list[str], count: int, error: str | None
) -> ContractFailure:
    return ContractFailure(
        expectation=expectation, check=check, column=column, offending_ids=ids, count=count, error=error
    )


def _to_failure(r: Any, id_col: str, cap: int) -> ContractFailure:
    cfg = r.expectation_config
    meta = cfg.meta or {}
    result = r.result or {}
    ids: list[str] = []
    seen: set[str] = set()
    for entry in result.get("unexpected_index_list") or []:
        ident = _name_row(entry, id_col)
        if ident not in seen:
            seen.add(ident)
            ids.append(ident)
        if len(ids) >= cap:
            break
    count = result.get("unexpected_count")
    if count is None:
        count = len(result.get("unexpected_index_list") or [])
    column = meta.get("column") or cfg.kwargs.get("column") or cfg.kwargs.get("column_A") or ""
    return _failure(cfg.type, meta.get("check", cfg.type), column, ids, int(count), _exception_message(r))


def _name_row(entry: Any, id_col: str) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    ident = entry.get(id_col)
    if ident is None or (isinstance(ident, float) and math.isnan(ident)) or ident is _pd_na():
        return f"<null {id_col}>@row{int(entry.get(ROW_COLUMN, -1))}"
    return str(ident)


def _pd_na() -> Any:
    import pandas as pd

    return pd.NA


def _exception_message(r: Any) -> str | None:
    info = r.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for v in info.values():  # keyed by metric id when a metric raised
        if isinstance(v, dict) and v.get("raised_exception"):
            return str(v.get("exception_message"))
    return None

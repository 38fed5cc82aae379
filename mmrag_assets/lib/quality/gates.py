"""Blocking data contracts as per-document gates: validate many documents in one suite run, then
say which documents failed which check.

A batch of documents is validated together (one Great Expectations run per table, not one per
document: GX costs tens of milliseconds per call). When the batch passes, every document passed.
When it fails, a failure whose offending rows are all listed is attributed to the documents those
rows belong to (row ids are content keys prefixed by the document id); any other failure (a
table-level expectation) makes the batch be validated again document by document. Only documents
whose every gate passed for their current rows are published (``Catalog.publishable_documents``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from data_contracts.params import ContractParams
    from data_contracts.runner import ContractResult
    from mmrag_assets.config import ContractsConfig

CATALOG_CHECKS = {
    "documents": "documents_contract",
    "pages": "pages_contract",
    "segments": "segments_contract",
}
EMBEDDINGS_CHECK = "embeddings_contract"


@dataclass
class GateOutcome:
    check: str
    table: str
    results: dict[str, ContractResult]  # doc_id -> the result that decided it
    rows: int

    @property
    def failed(self) -> dict[str, ContractResult]:
        return {d: r for d, r in self.results.items() if not r.passed}


def contract_key(params: ContractParams, tables: Sequence[str]) -> str:
    """What a gate result is valid for besides the rows: the contracts' parameters and versions.
    Raising a limit in ``conf/`` re-checks the documents a lower one held back."""
    import hashlib
    import json

    from data_contracts.runner import suite_module

    values = params.to_dict()
    if "embeddings" not in tables:
        values.pop("dim")  # the catalog suites do not depend on the model: a model swap keeps their results
    blob = json.dumps([values, [suite_module(t).SUITE_VERSION for t in tables]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def gate_keys(contracts: ContractsConfig, dim: int) -> tuple[str, str]:
    """(catalog contracts key, embeddings contract key) of ``checks.contracts`` and the tier's ``dim``."""
    from mmrag_assets.lib.quality.frames import contract_params

    params = contract_params(contracts, dim)
    return contract_key(params, list(CATALOG_CHECKS)), contract_key(params, ["embeddings"])


def doc_of(row_id: str) -> str:
    return row_id.split(":", 1)[0]


def validate_documents(
    table: str,
    check: str,
    frame_of: Callable[[Sequence[str]], pd.DataFrame],
    doc_ids: Sequence[str],
    params: ContractParams,
) -> GateOutcome:
    """Gate results of ``table``'s contract for each of ``doc_ids``; ``frame_of(ids)`` gives their rows."""
    from data_contracts import validate_table
    from data_contracts.runner import ContractResult

    doc_ids = list(doc_ids)
    if not doc_ids:
        return GateOutcome(check, table, {}, 0)
    df = frame_of(doc_ids)
    full = dataclasses.replace(params, max_offending_ids=max(len(df), 1))  # list every offending row
    res = validate_table(table, df, full)
    if res.passed:
        return GateOutcome(check, table, dict.fromkeys(doc_ids, res), len(df))
    attributable = all(f["offending_ids"] and len(f["offending_ids"]) >= f["count"] for f in res.failures)
    if not attributable:  # a table-level failure: decide each document on its own rows
        return GateOutcome(
            check, table, {d: validate_table(table, frame_of([d]), params) for d in doc_ids}, len(df)
        )
    out: dict[str, ContractResult] = {}
    for d in doc_ids:
        mine = []
        for f in res.failures:
            ids = [i for i in f["offending_ids"] if doc_of(i) == d]
            if ids:
                mine.append({**f, "offending_ids": ids[: params.max_offending_ids], "count": len(ids)})
        out[d] = ContractResult(not mine, res.suite, res.version, mine, res.statistics)  # type: ignore[arg-type]
    return GateOutcome(check, table, out, len(df))


def gate_rows(
    outcome: GateOutcome, fingerprints: dict[str, str], version_key: str, run_id: str
) -> list[dict[str, object]]:
    """``document_checks`` rows for the catalog."""
    return [
        {
            "doc_id": d,
            "check_name": outcome.check,
            "version_key": version_key,
            "fingerprint": fingerprints[d],
            "passed": r.passed,
            "detail": None if r.passed else r.describe(),
            "run_id": run_id,
        }
        for d, r in outcome.results.items()
        if d in fingerprints
    ]

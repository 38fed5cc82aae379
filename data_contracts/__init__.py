"""Great Expectations suites for the catalog and index tables, one module per table, versioned in code.

Importing this package is cheap: great_expectations is imported on the first validation.
"""

from __future__ import annotations

from data_contracts.params import ContractParams
from data_contracts.runner import TABLES, ContractFailure, ContractResult, validate_table

__all__ = ["TABLES", "ContractFailure", "ContractParams", "ContractResult", "validate_table"]

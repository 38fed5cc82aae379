"""First-stage candidate generators for two-stage late-interaction search, over index segments.

>>> strategy = get_strategy("plaid", nprobe=16)                  # or "binary", "pooled", "muvera"
>>> fields = strategy.encode(EncodeBatch(codes, vectors, codebook))  # at publish, per new item
>>> reader = strategy.open(codebook, parts)                       # at query time, all segments
>>> idx, approx = reader.search(q, n=200, allowed=mask)           # then the exact rerank

Every strategy is incremental: an item's structures depend only on its own tokens and the
version's codebook, so a publish encodes only new items and a compaction only concatenates.
"""

from __future__ import annotations

from typing import Any

from mmrag_assets.lib.index.first_stage.base import (
    EncodeBatch,
    FirstStageError,
    Part,
    Searchable,
    Strategy,
)
from mmrag_assets.lib.index.first_stage.binary import Binary
from mmrag_assets.lib.index.first_stage.dense import Dense, DenseReader
from mmrag_assets.lib.index.first_stage.muvera import Muvera
from mmrag_assets.lib.index.first_stage.plaid import Plaid, PlaidReader
from mmrag_assets.lib.index.first_stage.pooled import Pooled

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Plaid, Binary, Pooled, Muvera, Dense)}
DEFAULT_STRATEGY = "plaid"


def get_strategy(name: str, **params: Any) -> Strategy:
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise FirstStageError(
            f"unknown first stage {name!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        ) from None
    return cls(**params)


__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "Binary",
    "Dense",
    "DenseReader",
    "EncodeBatch",
    "FirstStageError",
    "Muvera",
    "Part",
    "Plaid",
    "PlaidReader",
    "Pooled",
    "Searchable",
    "Strategy",
    "get_strategy",
]

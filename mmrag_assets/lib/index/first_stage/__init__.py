"""First-stage candidate generators for two-stage late-interaction search.

>>> index = build_first_stage("plaid", store, out_dir)        # or "binary", "pooled", "lance", ...
>>> idx, approx = index.search(q, n=200, allowed=mask)         # then rerank_maxsim(q, store, idx, k)
>>> index = load_first_stage(out_dir)                           # any strategy, from its directory
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmrag_assets.lib.index.first_stage.base import FirstStageError, FirstStageIndex, read_meta
from mmrag_assets.lib.index.first_stage.binary import BinaryIndex
from mmrag_assets.lib.index.first_stage.lance import LanceIndex
from mmrag_assets.lib.index.first_stage.muvera import MuveraIndex
from mmrag_assets.lib.index.first_stage.plaid import PlaidIndex
from mmrag_assets.lib.index.first_stage.pooled import PooledIndex
from mmrag_assets.lib.index.vecstore import VecStore

STRATEGIES: dict[str, type[FirstStageIndex]] = {
    cls.name: cls for cls in (BinaryIndex, PooledIndex, PlaidIndex, MuveraIndex, LanceIndex)
}
DEFAULT_STRATEGY = "plaid"


def _strategy(name: str) -> type[FirstStageIndex]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise FirstStageError(f"unknown first stage {name!r}; choose one of {sorted(STRATEGIES)}") from None


def build_first_stage(name: str, store: VecStore, out_dir: str | Path, **params: Any) -> FirstStageIndex:
    """Build strategy ``name`` over ``store`` into ``out_dir`` (replacing what is there)."""
    return _strategy(name).build(store, out_dir, **params)


def load_first_stage(directory: str | Path) -> FirstStageIndex:
    """Reopen whichever strategy was built into ``directory``."""
    return _strategy(read_meta(Path(directory))["name"]).load(directory)


__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "BinaryIndex",
    "FirstStageError",
    "FirstStageIndex",
    "LanceIndex",
    "MuveraIndex",
    "PlaidIndex",
    "PooledIndex",
    "build_first_stage",
    "load_first_stage",
]

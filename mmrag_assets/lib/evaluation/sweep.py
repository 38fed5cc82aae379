"""Hydra multirun expansion without ``@hydra.main``: the same grammar and the same grid as
``python app.py -m a=1,2 b=x,y`` (Hydra's ``OverridesParser`` and ``BasicSweeper.split_arguments``).

``a=x,y`` and ``a=choice(x,y)`` sweep a list, ``a=range(1,4)`` integers, ``model=glob(col*)`` the
options of a config group; anything else is fixed for every run. Continuous sweeps
(``interval(0,1)``) have no grid and are refused, as Hydra's basic sweeper refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmrag_assets.errors import ConfigError


def _parser():
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mmrag_assets import config

    # A config loader lets glob() list the options of a config group (conf/<group>/*.yaml).
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config.conf_dir())))
    return OverridesParser.create(config_loader=loader)


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """The grid of override lists a multirun over ``overrides`` runs, in Hydra's order
    (cartesian product, the first swept key varying slowest)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    try:
        parsed = _parser().parse_overrides(list(overrides))
        batches = BasicSweeper.split_arguments(parsed, None)
    except HydraException as e:
        raise ConfigError(f"cannot expand the sweep {list(overrides)}: {e}") from e
    grid = batches[0] if batches else []
    if not grid:  # an empty product: some glob() or choice() selected nothing
        raise ConfigError(f"the sweep {list(overrides)} expands to no runs (an empty glob or choice?)")
    return [list(g) for g in grid]


def is_sweep(overrides: Sequence[str]) -> bool:
    """True when some override sweeps (so the grid has a dimension)."""
    from hydra.errors import HydraException

    try:
        return any(o.is_sweep_override() for o in _parser().parse_overrides(list(overrides)))
    except HydraException as e:
        raise ConfigError(f"invalid override in {list(overrides)}: {e}") from e


def varying(grid: Sequence[Sequence[str]]) -> list[str]:
    """Override keys whose value differs between the runs of a grid (what labels a run)."""
    values: dict[str, set[str]] = {}
    for run in grid:
        for o in run:
            key, val = _kv(o)
            values.setdefault(key, set()).add(val)
    return [k for k, v in values.items() if len(v) > 1]


def label(overrides: Sequence[str], keys: Sequence[str]) -> str:
    """A run's short name: its values of the varying keys (``model=lite search.first_stage=binary``)."""
    kv = dict(_kv(o) for o in overrides)
    parts = [f"{k}={kv[k]}" for k in keys if k in kv]
    return " ".join(parts) or "(defaults)"


def _kv(o: str) -> tuple[str, str]:
    key, _, val = o.partition("=")
    return key, val

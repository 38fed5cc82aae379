"""The run's composed configuration."""

import dagster as dg
from pydantic import PrivateAttr

from mmrag_assets.config import MmragConfig, load_config


class MmragConfigResource(dg.ConfigurableResource):
    """Hydra overrides (``["model=colsmol", "search.k=20"]``) composed over ``conf/``, once per run."""

    overrides: list[str] = []  # noqa: RUF012 - a pydantic field (copied per instance), not a class attribute
    _cfg: "MmragConfig | None" = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._cfg = load_config(self.overrides)

    @property
    def cfg(self) -> MmragConfig:
        if self._cfg is None:  # used outside a run (a sensor tick, a direct call)
            self._cfg = load_config(self.overrides)
        return self._cfg

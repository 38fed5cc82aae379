"""The run's composed configuration and the runtime built from it."""

import dagster as dg
from pydantic import PrivateAttr

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.lib.store.runtime import Runtime


class MmragConfigResource(dg.ConfigurableResource):
    """Hydra overrides (``["model=colsmol", "search.k=20"]``) composed over ``conf/``, once per run, or
    the resolved config itself (``config_json``, what ``MmragConfig.to_json`` writes): a launch that
    has composed the config already (the CLI, the corpus sensor, a scale-out command) sends it so that
    no step process composes it again. The run's ``Runtime`` (catalog, storage, the loaded embedder
    and readers) is built from it once and closed when the run's execution ends."""

    overrides: list[str] = []  # noqa: RUF012 - a pydantic field (copied per instance), not a class attribute
    config_json: str = ""
    _cfg: "MmragConfig | None" = PrivateAttr(default=None)
    _runtime: "Runtime | None" = PrivateAttr(default=None)

    def _compose(self) -> MmragConfig:
        return MmragConfig.from_json(self.config_json) if self.config_json else load_config(self.overrides)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._cfg = self._compose()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    @property
    def cfg(self) -> MmragConfig:
        if self._cfg is None:  # used outside a run (a sensor tick, a direct call)
            self._cfg = self._compose()
        return self._cfg

    @property
    def runtime(self) -> Runtime:
        """The stores and handles of this run's config (built on first use)."""
        if self._runtime is None:
            self._runtime = Runtime(self.cfg)
        return self._runtime

"""The one resource every asset, sensor and schedule reads its configuration from."""


import dagster as dg

from mmrag_assets.config import MmragConfig, load_config


class MmragResource(dg.ConfigurableResource):
    """Hydra overrides (``["model=colsmol", "search.k=20"]``) composed over ``conf/``.

    In the launchpad: ``resources: {mmrag: {config: {overrides: [ingest.dpi=100]}}}``; this is
    how config-swap experiments run from the UI.
    """

    overrides: list[str] = []

    def config(self) -> MmragConfig:
        return load_config(self.overrides)

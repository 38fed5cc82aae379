"""Typed Dagster resources: one composed config per run, and the stores and models built from it.

``mmrag`` (``MmragConfigResource``) composes the Hydra config once per run from its ``overrides``
(set in the launchpad as ``resources: {mmrag: {config: {overrides: [...]}}}``); ``catalog``,
``lance``, ``embedder`` and ``searcher`` are built from that same config, so a config swap
reaches every one of them.
"""

from mmrag_assets.resources.config import MmragConfigResource
from mmrag_assets.resources.stores import (
    CatalogResource,
    EmbedderResource,
    LanceStoreResource,
    SearcherResource,
)

__all__ = [
    "CatalogResource",
    "EmbedderResource",
    "LanceStoreResource",
    "MmragConfigResource",
    "SearcherResource",
    "resources_for",
]


def resources_for(overrides: list[str]) -> dict[str, object]:
    """The resource set of a Definitions object (and of ``dg.materialize`` in tests)."""
    mmrag = MmragConfigResource.configure_at_launch(overrides=list(overrides))
    return {
        "mmrag": mmrag,
        "catalog": CatalogResource(mmrag=mmrag),
        "lance": LanceStoreResource(mmrag=mmrag),
        "embedder": EmbedderResource(mmrag=mmrag),
        "searcher": SearcherResource(mmrag=mmrag),
    }

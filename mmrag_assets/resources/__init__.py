"""Typed Dagster resources: one composed config per run, and the stores and models built from it.

``mmrag`` (``MmragConfigResource``) composes the Hydra config once per run from its ``overrides``
(set in the launchpad as ``resources: {mmrag: {config: {overrides: [...]}}}``); ``catalog``,
``lance``, ``embedder`` and ``searcher`` are built from that same config, so a config swap
reaches every one of them. The assets declare the abstract bases (``base.py``: what they call);
``resources_for`` gives them the real implementations (``stores.py``); ``fakes.py`` holds the
stand-ins that unit tests pass instead.
"""

from mmrag_assets.resources.base import (
    CatalogResource,
    EmbedderResource,
    IndexVersion,
    LanceStoreResource,
    SearcherResource,
)
from mmrag_assets.resources.config import MmragConfigResource
from mmrag_assets.resources.stores import (
    RuntimeCatalogResource,
    RuntimeEmbedderResource,
    RuntimeLanceStoreResource,
    RuntimeSearcherResource,
)

__all__ = [
    "CatalogResource",
    "EmbedderResource",
    "IndexVersion",
    "LanceStoreResource",
    "MmragConfigResource",
    "RuntimeCatalogResource",
    "RuntimeEmbedderResource",
    "RuntimeLanceStoreResource",
    "RuntimeSearcherResource",
    "SearcherResource",
    "resources_for",
]


def resources_for(overrides: list[str]) -> dict[str, object]:
    """The resource set of a Definitions object (and of ``dg.materialize`` in tests)."""
    mmrag = MmragConfigResource.configure_at_launch(overrides=list(overrides))
    return {
        "mmrag": mmrag,
        "catalog": RuntimeCatalogResource(mmrag=mmrag),
        "lance": RuntimeLanceStoreResource(mmrag=mmrag),
        "embedder": RuntimeEmbedderResource(mmrag=mmrag),
        "searcher": RuntimeSearcherResource(mmrag=mmrag),
    }

"""The catalog, the LanceDB store, the embedder and the searcher of one composed config.

Each is a view of the run's ``Runtime`` (``mmrag.runtime``, built once per run and step process)
handed to the assets that declare it; nothing is cached at module level, so two configs in one
process never share one.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from mmrag_assets.resources.config import MmragConfigResource

if TYPE_CHECKING:  # string annotations below: Dagster inspects the resource fields at class creation
    from mmrag_assets.lib.index.embedding import Embedder
    from mmrag_assets.lib.search.searcher import Searcher
    from mmrag_assets.lib.store.catalog import Catalog


class CatalogResource(dg.ConfigurableResource):
    """The DuckDB catalog (manifest, documents, pages, segments, quarantine, checks, ...)."""

    mmrag: MmragConfigResource

    @property
    def catalog(self) -> "Catalog":
        return self.mmrag.runtime.catalog


class EmbedderResource(dg.ConfigurableResource):
    """The configured model tier, loaded on first use and kept for the rest of the run."""

    mmrag: MmragConfigResource

    @property
    def embedder(self) -> "Embedder":
        from mmrag_assets.lib.index.embedding import embedder_of

        return embedder_of(self.mmrag.runtime)

    @property
    def version_key(self) -> str:
        """The embedding version (LanceDB table key) without loading the model."""
        return self.mmrag.runtime.version_key


class LanceStoreResource(dg.ConfigurableResource):
    """The LanceDB table of the configured embedding version."""

    mmrag: MmragConfigResource

    def table(self, *, create: bool = True) -> Any:
        from mmrag_assets.lib.store import table as lx

        return lx.open_config_table(self.mmrag.runtime, create=create)  # the lite tier's is a token table


class SearcherResource(dg.ConfigurableResource):
    """A searcher over the published index of the configured embedding version."""

    mmrag: MmragConfigResource
    _searcher: "Searcher | None" = PrivateAttr(default=None)

    @property
    def searcher(self) -> "Searcher":
        from mmrag_assets.lib.search.searcher import Searcher

        if self._searcher is None:
            self._searcher = Searcher(self.mmrag.runtime)
        return self._searcher

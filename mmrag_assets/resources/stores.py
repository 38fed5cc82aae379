"""The catalog, the LanceDB store, the embedder and the searcher of one composed config.

Each is created at most once per run (per step process) and handed to the assets that declare
it; nothing is cached at module level, so two configs in one process never share one.
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
    _catalog: "Catalog | None" = PrivateAttr(default=None)

    @property
    def catalog(self) -> "Catalog":
        from mmrag_assets.lib.store.catalog import Catalog

        if self._catalog is None:
            self._catalog = Catalog(self.mmrag.cfg.catalog_url)
        return self._catalog


class EmbedderResource(dg.ConfigurableResource):
    """The configured model tier, loaded on first use and kept for the rest of the run."""

    mmrag: MmragConfigResource
    _embedder: "Embedder | None" = PrivateAttr(default=None)

    @property
    def embedder(self) -> "Embedder":
        from mmrag_assets.lib.index.embedding import load_embedder

        if self._embedder is None:
            cfg = self.mmrag.cfg
            self._embedder = load_embedder(cfg.model, cfg.models_dir)
        return self._embedder

    @property
    def version_key(self) -> str:
        """The embedding version (LanceDB table key) without loading the model."""
        from mmrag_assets.lib.index.embedding import version_key_for

        return version_key_for(self.mmrag.cfg.model)


class LanceStoreResource(dg.ConfigurableResource):
    """The LanceDB table of the configured embedding version."""

    mmrag: MmragConfigResource

    def table(self, *, create: bool = True) -> Any:
        from mmrag_assets.lib.store import table as lx

        return lx.open_config_table(self.mmrag.cfg, create=create)  # the lite tier's is a token table


class SearcherResource(dg.ConfigurableResource):
    """A searcher over the published index of the configured embedding version."""

    mmrag: MmragConfigResource
    _searcher: "Searcher | None" = PrivateAttr(default=None)

    @property
    def searcher(self) -> "Searcher":
        from mmrag_assets.lib.search.searcher import Searcher

        if self._searcher is None:
            self._searcher = Searcher(self.mmrag.cfg)
        return self._searcher

"""The catalog, the LanceDB store, the embedder and the searcher of one composed config.

Each implements its interface in ``base.py`` as a view of the run's ``Runtime`` (``mmrag.runtime``,
built once per run and step process) handed to the assets that declare it; nothing is cached at
module level, so two configs in one process never share one.
"""

from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from mmrag_assets.resources.base import (
    CatalogResource,
    EmbedderResource,
    IndexVersion,
    LanceStoreResource,
    SearcherResource,
)
from mmrag_assets.resources.config import MmragConfigResource

if TYPE_CHECKING:  # string annotations below: Dagster inspects the resource fields at class creation
    from mmrag_assets.lib.index.embedding import Embedder
    from mmrag_assets.lib.search.results import SearchResponse
    from mmrag_assets.lib.search.searcher import Searcher
    from mmrag_assets.lib.store.catalog import Catalog


class RuntimeCatalogResource(CatalogResource):
    """The catalog of the run's config (DuckDB file or Postgres)."""

    mmrag: MmragConfigResource

    @property
    def catalog(self) -> "Catalog":
        return self.mmrag.runtime.catalog


class RuntimeEmbedderResource(EmbedderResource):
    """The configured model tier, loaded on first use and kept by the run's runtime."""

    mmrag: MmragConfigResource

    @property
    def embedder(self) -> "Embedder":
        from mmrag_assets.lib.index.embedding import embedder_of

        return embedder_of(self.mmrag.runtime)

    @property
    def version_key(self) -> str:
        return self.mmrag.runtime.version_key


class RuntimeLanceStoreResource(LanceStoreResource):
    """The LanceDB table of the configured embedding version under the run's ``storage.root``."""

    mmrag: MmragConfigResource

    def table(self, *, create: bool = True) -> Any:
        from mmrag_assets.lib.store import table as lx

        return lx.open_config_table(self.mmrag.runtime, create=create)  # the lite tier's is a token table


class RuntimeSearcherResource(SearcherResource):
    """A searcher over the published index of the configured embedding version. ``searcher`` is the
    library's ``Searcher`` itself, for callers that need more than a ranking: the ``answers`` asset
    hands it to the ``Answerer``, which reads the items' text from the searcher's index view."""

    mmrag: MmragConfigResource
    _searcher: "Searcher | None" = PrivateAttr(default=None)

    @property
    def searcher(self) -> "Searcher":
        from mmrag_assets.lib.search.searcher import Searcher

        if self._searcher is None:
            self._searcher = Searcher(self.mmrag.runtime)
        return self._searcher

    def search(self, query: str) -> "SearchResponse":
        return self.searcher.search(query)

    def index_version(self) -> IndexVersion:
        meta = self.searcher.meta
        return IndexVersion(table=meta["table"], table_version=int(meta["table_version"]))
